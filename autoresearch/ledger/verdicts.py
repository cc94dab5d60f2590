"""Research verdicts as pure functions: seed noise, the acceptance gate, confirmation and the incumbent.

The rule (one home; the README and the directive quote it):

- **Noise.** Every config has its own seed noise. sigma, the pooled standard deviation over seeds (the baseline's
  replicates and every candidate's fresh seeds), is the prior: a side of a comparison with few seeds leans on the
  spread of every other config (at most `prior_df` pseudo degrees of freedom), one with many seeds on its own.
- **Comparisons** use Welch's t on each side's own variance, with Satterthwaite's degrees of freedom, never more
  than the distinct degrees of freedom behind the two variances (`stattests`).
- **Screen.** An experiment's first run (the screen seed) against the incumbent's mean, one-sided at
  `alpha_screen`. Passing makes it `unconfirmed` and schedules confirmation; worse at `alpha_worse` is a
  `regression`; anything else is `within_noise`.
- **Confirmation.** The candidate is re-run on the baseline's other seeds ("fresh" seeds: the screen seed was
  selected for looking good, so it is left out of the test and of the reported gain, to avoid the winner's
  curse). The fresh mean must beat the incumbent's at the level the campaign grants this candidate: the k-th
  screened candidate of a key may be falsely confirmed (screen AND confirmation) with probability at most
  `campaign.level(k)`, and those levels sum to at most `alpha_campaign` over the whole key (`campaign.py`). The
  confirmation alone is tested at that level, so the screen (which only saves confirmation runs) cannot raise it.
  Passing gives `confirmed` and the candidate becomes the incumbent. While the fresh seeds come in, the gate gives
  the chance that they will pass (`confirm_chance`; before any, from the screen seed: `Verdict.screen_chance`); pruning may
  stop a confirmation whose chance is tiny (`FUTILE`), which only withholds a confirmation.
- **The incumbent's side** of every comparison is its unbiased seeds: all of the baseline's, a confirmed
  candidate's fresh seeds (its screen seed was selected).
- **Ranking** is by the mean over every successful seed, shown with its standard error and seed count.
- **Over budget.** A run that used far more training CPU than its trusted work predicts is `over_budget`: shown,
  never ranked (the rule and its reasons: `arrivals.py`).

`judge` folds every run, in the order results arrived, into one verdict per experiment: the same
records always give the same verdicts, so a resumed key keeps them.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from autoresearch.ledger.arrivals import (  # noqa: F401 - OVER_BUDGET_SLACK_S, predicted_work: re-exported
    BASELINE,
    OVER_BUDGET_SLACK_S,
    Arrival,
    over_budget,
    predicted_work,
)
from autoresearch.ledger.campaign import Campaign, level
from autoresearch.ledger.stattests import (  # noqa: F401 - SIGMA_FLOOR, pooled_sigma: re-exported
    NORMAL,
    SIGMA_FLOOR,
    Noise,
    Side,
    design_rho,
    mean_se,
    min_detectable,
    pooled_sigma,
    side,
    t_critical,
    t_sf,  # noqa: F401 - re-exported: the gate's tests read the distribution here
    variance,
    welch,
)
from autoresearch_types import trusted_bpb

LABELS = (
    "baseline",
    "confirmed",
    "unconfirmed",
    "within_noise",
    "regression",
    "truncated",
    "over_budget",
    "pruned",
    "failed",
    "unjudged",
    "not_run",
    "accepted",
    "rejected",
)
"""Every verdict label. `unjudged`: scored before any noise floor existed (a baseline with fewer than
two successful seeds). `accepted` / `rejected`: a human's verdict (or a judge's rejection), see `Decision`."""
DECISIONS = ("accept", "reject", "more_seeds")
"""What a judge may answer on a borderline case; a human answers accept or reject."""
FUTILE = "futile"
"""Pruning's decision on a confirmation in progress whose chance to pass is tiny (`confirm_chance`): its remaining
seeds are not run and it is `pruned`. Withholding a confirmation never grants one, so the campaign's bound stands."""


@dataclass(frozen=True)
class Decision:
    """A verdict from outside the gate on one experiment: a judge's on a borderline case, or a human's.

    A human's `accept` makes the experiment the incumbent (once it has a successful run); a `reject` from anyone
    keeps it out of the ranking, the incumbency and forking. A judge's `accept` keeps the gate's label (it cannot
    confirm a gain: only fresh seeds can); its `more_seeds` queues the fresh-seed confirmation runs, whose
    result the gate then judges as for any candidate."""

    title: str
    decision: str
    by: str
    reason: str = ""


@dataclass(frozen=True)
class GateRule:
    """The acceptance gate's error rates, its variance prior, the campaign's budget and the seeds a gain needs."""

    alpha_screen: float = 0.10
    """A candidate's first seed must beat the incumbent at this level to earn its confirmation runs."""
    alpha_campaign: float = 0.05
    """The expected number of false confirmations over the whole key is at most this (`campaign.py`)."""
    alpha_worse: float = 0.05
    """A result worse than the incumbent at this level is labelled a `regression` (a signal for the planner)."""
    prior_df: float = 4.0
    """How many degrees of freedom the pooled spread of the other configs is worth to a config with few seeds."""
    horizon: int = 10
    """The ideas the key was created for: the campaign's budget is spread over them (`campaign.level`)."""
    over_budget_factor: float = 4.0
    """A run using more than this many times its predicted training CPU is `over_budget`."""
    replicates: int = 5
    """Seeds of the baseline; a candidate is confirmed on the baseline's seeds it has not run yet."""

    def describe(self) -> str:
        """The rule in one paragraph, for the directive, the README and the report."""
        return (
            f"A change counts only if it beats seed noise, each config judged by its own spread (Welch's t; a config "
            f"with few seeds leans on the pooled spread of the others): its first seed must beat the incumbent's "
            f"mean at {self.alpha_screen:g}, then it is re-run on {self.replicates - 1} fresh seeds whose mean must "
            f"beat the incumbent's at the level this key's campaign grants it. Only then is it 'confirmed' and the "
            f"new incumbent. The levels are spent so that the expected number of false confirmations over the whole "
            f"key stays at most {self.alpha_campaign:g}; confirmation runs draw on the run budget, not on the ideas."
        )


@dataclass
class Verdict:
    """What the gate decided about one experiment, who decided, why, and the numbers it used."""

    title: str
    label: str
    by: str = "rule"
    reason: str = ""
    mean: float | None = None
    se: float | None = None
    n: int = 0
    fresh_mean: float | None = None
    n_fresh: int = 0
    fresh_se: float | None = None
    """The standard error of the fresh seeds' mean (None with fewer than two)."""
    sigma: float | None = None
    df: float = 0.0
    """Degrees of freedom of the test that settled the label (Welch-Satterthwaite), or of sigma before any test."""
    versus: str | None = None
    gain: float | None = None
    """Incumbent mean minus this experiment's mean used in the test (positive is better): the fresh seeds' for a
    confirmation, the screen seed's for a screen."""
    t: float | None = None
    candidate: int = 0
    """Its number among the key's screened candidates (1-based; 0 before its screen scored)."""
    level: float | None = None
    """The joint false-confirmation probability the campaign granted it (`campaign.level`)."""
    confirm_chance: float | None = None
    """While its confirmation is in progress: the chance it passes once its remaining fresh seeds are in."""
    screen_chance: float | None = None
    """Before any fresh seed: the chance a confirmation would pass, predicted from the screen seed alone."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Judgement:
    """The fold's result: a verdict per experiment, the incumbent, the noise floor, pending confirmations, where the
    campaign's error control stands and what the incumbent lets the next candidate show."""

    verdicts: dict[str, Verdict] = field(default_factory=dict)
    incumbent: str | None = None
    sigma: float | None = None
    df: int = 0
    confirm_seeds: dict[str, list[int]] = field(default_factory=dict)
    """title -> seeds still to run to confirm it (only for `unconfirmed` experiments)."""
    budget_notes: dict[int, str] = field(default_factory=dict)
    """seq -> why that run was over budget."""
    campaign: Campaign | None = None
    mde: float | None = None
    """The smallest effect (val_bpb) the next candidate is found with 80% chance against the incumbent, at the
    key's seeds and the campaign's next level; None before a noise floor."""


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Comparison:
    """A candidate's seeds against the incumbent's: both sides, Welch's t, its standard error and df."""

    incumbent: Side
    candidate: Side
    t: float
    se: float
    df: float


def _side(values: list[float], prior: tuple[float | None, int], rule: GateRule, fallback: Side | None = None) -> Side:
    """One side's mean and variance: its own seeds, shrunk toward the `prior` (the pooled spread of the other
    configs, and its df); a lone seed with nothing to lean on takes the other side's variance (equal variances)."""
    sigma, df = prior
    prior_df = min(rule.prior_df, df) if sigma is not None else 0.0
    if len(values) < 2 and prior_df == 0 and fallback is not None:
        return Side(statistics.fmean(values), fallback.var, len(values), fallback.df)
    return side(values, max((sigma or 0.0) ** 2, SIGMA_FLOOR**2), prior_df)


def compare(inc: tuple[str, list[float]], cand: tuple[str, list[float]], noise: Noise, rule: GateRule) -> Comparison:
    """Welch's comparison of a candidate's seeds with the incumbent's, each side's variance leaning on the other
    configs' spread. The degrees of freedom never exceed the distinct ones behind both variances (their own seeds
    and the configs beside them), so a prior shared by both sides is not counted twice."""
    (inc_title, inc_values), (cand_title, cand_values) = inc, cand
    incumbent = _side(inc_values, noise.pooled(inc_title), rule)
    candidate = _side(cand_values, noise.pooled(cand_title), rule, fallback=incumbent)
    t, se, df = welch(incumbent, candidate)
    shared = noise.pooled(inc_title, cand_title)[1]
    distinct = len(inc_values) - 1 + len(cand_values) - 1 + shared
    return Comparison(incumbent, candidate, t, se, min(df, max(distinct, 1)))


def screen(x: float, inc: tuple[str, list[float]], cand: str, noise: Noise, rule: GateRule) -> tuple[str, Comparison]:
    """`unconfirmed`, `within_noise` or `regression` for a single-seed result against the incumbent; and the test."""
    c = compare(inc, (cand, [x]), noise, rule)
    if c.t > t_critical(rule.alpha_screen, c.df):
        return "unconfirmed", c
    if c.t < -t_critical(rule.alpha_worse, c.df):
        return "regression", c
    return "within_noise", c


def confirm(
    fresh: list[float],
    inc: tuple[str, list[float]],
    cand: str,
    noise: Noise,
    rule: GateRule,
    level: float,
) -> tuple[str, Comparison]:
    """`confirmed`, `within_noise` or `regression` for the fresh seeds' mean against the incumbent at the campaign's
    `level` for this candidate; and the test. The confirmation alone holds the level (a candidate that does nothing
    passes the screen AND the confirmation no more often than the confirmation alone): the screen only decides
    which candidates are worth their confirmation runs, so the bound needs no assumption about how the two tests
    depend on each other (they share the incumbent's mean and the variance estimates)."""
    c = compare(inc, (cand, fresh), noise, rule)
    if c.t > t_critical(level, c.df):
        return "confirmed", c
    if c.t < -t_critical(rule.alpha_worse, c.df):
        return "regression", c
    return "within_noise", c


def confirm_chance(
    seen: list[float],
    owed: int,
    inc: tuple[str, list[float]],
    cand: str,
    noise: Noise,
    rule: GateRule,
    level: float,
    counted: bool = True,
) -> float:
    """The predictive chance that a confirmation passes once its `owed` remaining fresh seeds are in, from the seeds
    `seen` so far: their mean predicts the rest's (flat prior), with the rest's own spread and the uncertainty of
    that mean, against the final test's threshold (Welch, at `level`). `seen` are fresh seeds, which count in the
    final mean; or, before any (`counted` False), the screen seed alone, which does not, and which was selected for
    looking good, so that chance is optimistic. Pruning stops a confirmation whose chance is tiny (`FUTILE`):
    simulated through this fold at 5 replicates, a chance under 10% cuts a null edit's 4 fresh runs to about 1.1,
    and the share confirmed at the minimum detectable effect by under a point."""
    now = compare(inc, (cand, seen), noise, rule)
    k = len(seen) if counted else 0
    m = k + owed
    se_final = math.sqrt(now.incumbent.var / now.incumbent.n + now.candidate.var / m)
    bar = now.incumbent.mean - t_critical(level, now.df + m - len(seen)) * se_final
    need = (m * bar - k * now.candidate.mean) / owed  # what the remaining seeds' mean must come in under
    spread = math.sqrt(now.candidate.var * (1 / owed + 1 / len(seen)))
    return NORMAL.cdf((need - now.candidate.mean) / spread)


def min_effect(inc: tuple[str, list[float]], noise: Noise, rule: GateRule, joint: float) -> float | None:
    """The smallest true effect a new candidate is confirmed with 80% chance against the incumbent `inc`, with the
    key's seeds (one screen seed, `replicates - 1` fresh ones) and the campaign's next level `joint`; the candidate's
    own spread is taken to be the pooled one."""
    sigma, pool_df = noise.pooled()
    if sigma is None or not inc[1]:
        return None
    fresh = max(1, rule.replicates - 1)
    others = noise.pooled(inc[0])
    incumbent = _side(inc[1], others, rule)
    prior_df = min(rule.prior_df, pool_df)
    shared = len(inc[1]) - 1 + others[1]
    one, some = Side(0.0, sigma**2, 1, prior_df), Side(0.0, sigma**2, fresh, prior_df + fresh - 1)
    (_, se1, df1), (_, se2, df2) = welch(incumbent, one), welch(incumbent, some)
    df1, df2 = min(df1, max(shared, 1)), min(df2, max(shared + fresh - 1, 1))
    rho = design_rho(incumbent.var / incumbent.n, se1, se2)
    c1 = t_critical(rule.alpha_screen, df1)
    c2 = t_critical(joint, df2)
    return min_detectable((c1, se1), (c2, se2), rho)


# ---------------------------------------------------------------- the fold


UNRANKED = {"truncated": "truncated", "over_budget": "over_budget", "pruned": "pruned"}
SPOILED = {*UNRANKED, "failed"}
"""Labels that end an experiment's confirmation: no more seeds are owed to it, whoever asked for them."""


@dataclass
class _Runs:
    """The runs of one experiment seen so far in the fold."""

    screen_seed: int | None = None
    screen_seq: int = 0
    values: dict[int, float] = field(default_factory=dict)
    outcomes: dict[int, str] = field(default_factory=dict)
    candidate: int = 0
    """Its number among the key's screened candidates (0: its screen has not scored)."""
    seqs: dict[int, int] = field(default_factory=dict)


def judge(
    arrivals: list[Arrival],
    titles: list[str],
    rule: GateRule,
    base_seed: int = 0,
    decisions: dict[str, Decision] | None = None,
    with_mde: bool = True,
) -> Judgement:
    """Every experiment's verdict from its runs in arrival order (pure: the same runs and decisions give the same
    verdicts). `titles` lists every experiment (those without runs are `not_run`); `decisions` are the judge's and
    the humans' (see `Decision`), applied to their experiment at each of its arrivals. `with_mde` adds the
    incumbent's minimum detectable effect (skipped by simulations, which need only the labels).
    """
    decisions = decisions or {}
    out = Judgement()
    runs: dict[str, _Runs] = {t: _Runs() for t in titles}
    baseline_seeds = [base_seed + i for i in range(rule.replicates)]
    flagged = over_budget(arrivals, rule.over_budget_factor)
    arrivals = [dataclasses.replace(a, outcome="over_budget") if a.seq in flagged else a for a in arrivals]
    out.budget_notes = flagged
    screened, noise = 0, Noise()
    for arrival in sorted(arrivals, key=lambda a: a.seq):
        rec = runs.setdefault(arrival.title, _Runs())
        if rec.screen_seed is None:
            rec.screen_seed, rec.screen_seq = arrival.seed, arrival.seq
        rec.outcomes[arrival.seed] = arrival.outcome
        rec.seqs[arrival.seed] = arrival.seq
        bpb = trusted_bpb(arrival.outcome, arrival.val_bpb)
        if bpb is not None:
            rec.values[arrival.seed] = bpb
        if arrival.title != BASELINE and arrival.seed == rec.screen_seed and bpb is not None and not rec.candidate:
            screened += 1
            rec.candidate = screened
        noise.set(arrival.title, _noise_sample(arrival.title, rec))
        out.sigma, out.df = noise.pooled()
        _decide(arrival.title, runs, noise, out, rule, baseline_seeds, decisions.get(arrival.title))
    for title in titles:
        if title not in out.verdicts:
            out.verdicts[title] = Verdict(title, "not_run", reason="no result yet")
    if out.incumbent is None and runs.get(BASELINE, _Runs()).values:
        out.incumbent = BASELINE
    out.campaign = Campaign(rule.alpha_campaign, rule.horizon, screened)
    if with_mde and out.incumbent:
        inc = (out.incumbent, _comparator(out.incumbent, runs[out.incumbent]))
        out.mde = min_effect(inc, noise, rule, out.campaign.next_level)
    return out


def _noise_sample(title: str, rec: _Runs) -> list[float]:
    """The seeds an experiment adds to the noise estimate: all of the baseline's; a candidate's fresh seeds only
    (its screen seed was selected for looking good, which would inflate the spread)."""
    if title == BASELINE:
        return list(rec.values.values())
    return [v for s, v in rec.values.items() if s != rec.screen_seed]


def _comparator(title: str, rec: _Runs) -> list[float]:
    """The incumbent's side of a comparison: its unbiased seeds (all of the baseline's; a candidate's fresh seeds,
    or every seed when it has none, as a human-accepted one may)."""
    fresh = _noise_sample(title, rec)
    return fresh or list(rec.values.values())


def _decide(
    title: str,
    runs: dict[str, _Runs],
    noise: Noise,
    out: Judgement,
    rule: GateRule,
    baseline_seeds: list[int],
    decision: Decision | None = None,
) -> None:
    """Update `title`'s verdict (and maybe the incumbent) after one of its runs arrived."""
    rec = runs[title]
    mean, se = mean_se(list(rec.values.values()))
    base = Verdict(title, "", mean=mean, se=se, n=len(rec.values), sigma=out.sigma, df=out.df)
    if title == BASELINE:
        base.label, base.reason = "baseline", f"the reference, {len(rec.values)} successful seed(s)"
        out.verdicts[title] = base
        if out.incumbent is None and rec.values:
            out.incumbent = BASELINE
        return
    verdict = _rule_verdict(rec, base, runs, noise, out, rule, baseline_seeds)
    if decision is not None:
        verdict = _apply(decision, verdict, rec, out, [s for s in baseline_seeds if s != rec.screen_seed])
    out.verdicts[title] = verdict
    _maybe_promote(title, verdict, runs, out)


def _apply(decision: Decision, verdict: Verdict, rec: _Runs, out: Judgement, fresh_seeds: list[int]) -> Verdict:
    """The verdict after a judge's or a human's decision (see `Decision`)."""
    why = f"{decision.by}: {decision.reason}".rstrip(": ")
    if decision.decision == "reject":
        out.confirm_seeds.pop(verdict.title, None)
        return dataclasses.replace(verdict, label="rejected", by=decision.by, reason=f"{why} (gate: {verdict.reason})")
    if decision.decision == "accept" and decision.by == "human":
        if not rec.values:
            return dataclasses.replace(verdict, by="human", reason=f"{why}; no successful run to accept yet")
        return dataclasses.replace(verdict, label="accepted", by="human", reason=f"{why} (gate: {verdict.reason})")
    if decision.decision == FUTILE:
        if verdict.title not in out.confirm_seeds:  # its confirmation settled on all its seeds: that verdict stands
            return verdict
        out.confirm_seeds.pop(verdict.title)
        return dataclasses.replace(verdict, label="pruned", by=decision.by, reason=f"{why} (gate: {verdict.reason})")
    if decision.decision == "more_seeds":
        owed = [s for s in fresh_seeds if s not in rec.outcomes]
        if not owed or verdict.label in SPOILED:  # the seeds are in, or one spoiled them: the gate's verdict stands
            return verdict
        out.confirm_seeds[verdict.title] = owed
    return dataclasses.replace(verdict, by=decision.by, reason=f"{why} (gate: {verdict.reason})")


def _rule_verdict(
    rec: _Runs,
    base: Verdict,
    runs: dict[str, _Runs],
    noise: Noise,
    out: Judgement,
    rule: GateRule,
    baseline_seeds: list[int],
) -> Verdict:
    """The gate's verdict for one experiment, given the incumbent and sigma at this point of the fold."""
    screen_outcome = rec.outcomes.get(rec.screen_seed)
    if screen_outcome in UNRANKED:
        why = {
            "truncated": "stopped at the time cap before its token budget",
            "over_budget": out.budget_notes.get(rec.screen_seq, "far more compute than predicted"),
            "pruned": "stopped early: its learning curve was clearly worse than the finished runs'",
        }
        base.label, base.reason = UNRANKED[screen_outcome], f"{why[screen_outcome]}: not compared with full runs"
        return base
    if rec.screen_seed not in rec.values:
        base.label, base.reason = "failed", f"its run ended {screen_outcome}"
        return base
    incumbent = out.incumbent
    inc_values = _comparator(incumbent, runs[incumbent]) if incumbent else []
    if not inc_values or out.sigma is None:
        base.label, base.reason = "unjudged", "no noise floor yet: the baseline needs two successful seeds"
        return base
    base.versus, base.candidate = incumbent, rec.candidate
    base.level = level(rec.candidate, rule.alpha_campaign, rule.horizon)
    fresh_seeds = [s for s in baseline_seeds if s != rec.screen_seed]
    done = [s for s in fresh_seeds if s in rec.outcomes]
    spoiled = _spoiled_confirmation(rec, done, out)
    if spoiled:
        out.confirm_seeds.pop(base.title, None)
        base.label, base.reason = spoiled
        return base
    inc = (incumbent, inc_values)
    if not done:
        label, c = screen(rec.values[rec.screen_seed], inc, base.title, noise, rule)
        base.label, base.gain, base.t, base.df = label, c.incumbent.mean - c.candidate.mean, c.t, c.df
        base.reason = f"screen seed {rec.screen_seed}: {_test_text(c, incumbent)}"
        if label != "regression":  # one that may be confirmed, or given a judge's second chance
            x = rec.values[rec.screen_seed]
            chance = confirm_chance([x], len(fresh_seeds), inc, base.title, noise, rule, base.level, counted=False)
            base.screen_chance = chance
        if label == "unconfirmed":
            out.confirm_seeds[base.title] = fresh_seeds
        return base
    if len(done) < len(fresh_seeds):
        owed = [s for s in fresh_seeds if s not in rec.outcomes]
        progress = f"confirmation in progress: {len(done)} of {len(fresh_seeds)} fresh seeds"
        if done:
            chance = confirm_chance([rec.values[s] for s in done], len(owed), inc, base.title, noise, rule, base.level)
            base.confirm_chance, progress = chance, f"{progress}, chance to confirm {chance:.1%}"
        base.label, base.reason = "unconfirmed", progress
        out.confirm_seeds[base.title] = owed
        return base
    out.confirm_seeds.pop(base.title, None)
    fresh = [rec.values[s] for s in fresh_seeds]
    label, c = confirm(fresh, inc, base.title, noise, rule, base.level)
    base.label, base.t, base.df = label, c.t, c.df
    base.fresh_mean, base.n_fresh, base.fresh_se = c.candidate.mean, len(fresh), mean_se(fresh)[1]
    base.gain = c.incumbent.mean - base.fresh_mean
    base.reason = (
        f"{len(fresh)} fresh seed(s): mean {base.fresh_mean:.4f}, {_test_text(c, incumbent)}; candidate "
        f"{rec.candidate} of the campaign, level {base.level:.2g}"
    )
    return base


def _test_text(c: Comparison, incumbent: str) -> str:
    """A comparison in words: the means, Welch's t and its degrees of freedom, each side's spread."""
    return (
        f"{c.candidate.mean:.4f} vs {incumbent!r} {c.incumbent.mean:.4f} ({c.incumbent.n} seeds), t={c.t:+.2f}, "
        f"df {c.df:.1f} (sd {math.sqrt(c.candidate.var):.4f} vs {math.sqrt(c.incumbent.var):.4f})"
    )


def _spoiled_confirmation(rec: _Runs, seeds: list[int], out: Judgement) -> tuple[str, str] | None:
    """(label, reason) when a confirmation seed ended unranked or failed, else None. The code is the same on every
    seed, so one seed over budget, truncated, pruned or failed speaks for the experiment: it is not confirmed on the
    seeds that remain."""
    for seed in seeds:
        outcome = rec.outcomes[seed]
        if outcome in UNRANKED:
            note = out.budget_notes.get(rec.seqs.get(seed, -1), "") if outcome == "over_budget" else ""
            detail = f" ({note})" if note else ""
            why = (
                f"confirmation seed {seed} was {outcome}{detail}; the code is the same on every seed, so not confirmed"
            )
            return UNRANKED[outcome], why
        if seed not in rec.values:
            return "failed", f"confirmation seed {seed} ended {outcome}; the code is the same on every seed"
    return None


def _maybe_promote(title: str, verdict: Verdict, runs: dict[str, _Runs], out: Judgement) -> None:
    """A confirmed experiment that beats the incumbent's mean becomes the incumbent; so does one a human accepted."""
    if verdict.label == "accepted" and out.incumbent != title:
        out.incumbent = title
        return
    if verdict.label != "confirmed" or out.incumbent == title:
        return
    incumbent_values = _comparator(out.incumbent, runs[out.incumbent]) if out.incumbent else []
    challenger = verdict.fresh_mean if verdict.fresh_mean is not None else verdict.mean
    if not incumbent_values or (challenger is not None and challenger < statistics.fmean(incumbent_values)):
        out.incumbent = title
