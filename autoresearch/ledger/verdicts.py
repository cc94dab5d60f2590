"""Research verdicts as pure functions: seed noise, the acceptance gate, confirmation and the incumbent.

The rule (one home; the README and the directive quote it):

- **Noise floor.** sigma is the pooled standard deviation of val_bpb across seeds: the baseline's replicates,
  and every candidate's fresh (confirmation) seeds, for groups of two or more. Its degrees of freedom are
  `sum(n_i - 1)`. Seed noise is assumed to be the same for every config.
- **Screen.** An experiment's first run (the screen seed) is compared with the incumbent's mean by a
  one-sided t-test at `alpha_screen` (default 0.10): `t = (incumbent mean - x) / (sigma * sqrt(1 + 1/n_inc))`.
  Passing makes it `unconfirmed` and schedules confirmation; worse at `alpha_worse` (0.05) is a
  `regression`; anything else is `within_noise`.
- **Confirmation.** The candidate is re-run on the baseline's other seeds ("fresh" seeds: the screen
  seed was selected for looking good, so it is left out of the test to avoid the winner's curse). The
  fresh mean must beat the incumbent's mean by a one-sided t-test at `alpha` (default 0.01):
  `t = (incumbent mean - fresh mean) / (sigma * sqrt(1/n_fresh + 1/n_inc))`. Passing gives `confirmed`
  and the candidate becomes the incumbent.
- **False discoveries.** The confirmation test alone holds the rate at `alpha`: a null edit is confirmed
  with probability about 0.01 (the test suite simulates it). The screen does not multiply that down: both
  tests share the incumbent's mean and the sigma estimate, so a key whose baseline drew high, or whose
  few seeds happened to agree, passes both more easily. The screen only decides which candidates are
  worth their confirmation runs. With the default 3 replicates (2 degrees of freedom at first) a true
  effect of 6 sigma is confirmed about 88% of the time, 4 sigma about 55%; power grows as confirmations
  add degrees of freedom to sigma.
- **Ranking** is by the mean over every successful seed, shown with its standard error and seed count.
- **Over budget.** A run's training CPU-seconds are measured outside the sandbox. Its work is predicted
  from what the trusted side measured, never from the declared config: `TRAIN_FORWARDS` (3) x the forward
  FLOPs per token the scorer counted on its exported graph x the tokens handed to it. The baseline's runs
  calibrate CPU-seconds per FLOP; a run that used more than `over_budget_factor` (4) times its predicted
  CPU, plus 10 s, bought its score with compute its model does not account for (more passes over its
  handed batches, a large teacher behind a small exported student, a config that declares a big model and
  builds a small one) and is `over_budget`: shown, never ranked. Runs without a measured graph (recorded
  before graphs were exported) are neither calibrated on nor flagged.

`judge` folds every run, in the order results arrived, into one verdict per experiment: the same
records always give the same verdicts, so a resumed key keeps them.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from autoresearch_types import trusted_bpb

BASELINE = "baseline"
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


SIGMA_FLOOR = 1e-4
"""sigma never goes below this (in bpb), so identical replicates cannot make every difference significant."""


@dataclass(frozen=True)
class GateRule:
    """The acceptance gate's false-positive rates and how many seeds a confirmed result needs."""

    alpha_screen: float = 0.10
    alpha: float = 0.01
    alpha_worse: float = 0.05
    """A result worse than the incumbent at this level is labelled a `regression` (a signal for the planner)."""
    over_budget_factor: float = 4.0
    """A run using more than this many times its predicted training CPU is `over_budget`."""
    replicates: int = 3
    """Seeds of the baseline; a candidate is confirmed on the baseline's seeds it has not run yet."""

    def describe(self) -> str:
        """The rule in one paragraph, for the directive, the README and the report."""
        return (
            f"A change counts only if it beats seed noise: its first seed must beat the incumbent's mean in a "
            f"one-sided t-test at {self.alpha_screen:g} (pooled sigma across seeds), then it is re-run on "
            f"{self.replicates - 1} fresh seeds whose mean must beat the incumbent's at {self.alpha:g}. Only then is it "
            f"'confirmed' and the new incumbent (a change that does nothing is confirmed with probability about "
            f"{self.alpha:g}). Confirmation runs count against the experiment budget."
        )


@dataclass(frozen=True)
class Arrival:
    """One finished run: which experiment, which seed, its outcome and val_bpb, in arrival order (`seq`);
    with the training CPU-seconds measured outside the sandbox and its predicted work (`predicted_work`)."""

    seq: int
    title: str
    seed: int
    outcome: str
    val_bpb: float | None
    cpu_s: float = 0.0
    work: float = 0.0


TRAIN_FORWARDS = 3.0
"""Training FLOPs per token in forward passes: the forward, and a backward pass of about twice its cost."""
OVER_BUDGET_SLACK_S = 10.0
"""CPU-seconds of start-up, export and measurement noise allowed on top of the factor."""


def predicted_work(flops_per_token: float, tokens_handed: int) -> float:
    """Training FLOPs a run should need: from its exported graph's measured forward cost and the tokens handed
    to it (both counted by the trusted side; 0 when either is unknown)."""
    return TRAIN_FORWARDS * max(0.0, float(flops_per_token)) * max(0, int(tokens_handed))


def over_budget(arrivals: list[Arrival], factor: float, slack_s: float = OVER_BUDGET_SLACK_S) -> dict[int, str]:
    """The runs (by seq) that used far more training CPU than their work predicts, with the reason.

    The baseline's successful runs calibrate CPU-seconds per FLOP (their median); without them, or
    without measurements, nothing is flagged."""
    rates = sorted(
        a.cpu_s / a.work
        for a in arrivals
        if a.title == BASELINE and a.outcome == "success" and a.cpu_s > 0 and a.work > 0
    )
    if not rates:
        return {}
    rate = rates[len(rates) // 2]
    flagged = {}
    for a in arrivals:
        if a.title == BASELINE or a.outcome != "success" or a.cpu_s <= 0 or a.work <= 0:
            continue
        predicted = rate * a.work
        if a.cpu_s > factor * predicted + slack_s:
            flagged[a.seq] = (
                f"trained on {a.cpu_s:.0f} CPU-s where its exported graph predicts {predicted:.0f} "
                f"(limit {factor:g}x): compute its model does not account for"
            )
    return flagged


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
    sigma: float | None = None
    df: int = 0
    versus: str | None = None
    gain: float | None = None
    """Incumbent mean minus this experiment's mean used in the test (positive is better)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Judgement:
    """The fold's result: a verdict per experiment, the incumbent, the noise floor and pending confirmations."""

    verdicts: dict[str, Verdict] = field(default_factory=dict)
    incumbent: str | None = None
    sigma: float | None = None
    df: int = 0
    confirm_seeds: dict[str, list[int]] = field(default_factory=dict)
    """title -> seeds still to run to confirm it (only for `unconfirmed` experiments)."""
    budget_notes: dict[int, str] = field(default_factory=dict)
    """seq -> why that run was over budget."""


# ---------------------------------------------------------------- Student's t


def _nonzero(x: float, tiny: float = 1e-300) -> float:
    return x if abs(x) > tiny else tiny


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), for `_betainc`."""
    c, d = 1.0, 1.0 / _nonzero(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, 300):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        for num in (even, odd):
            d = 1.0 / _nonzero(1.0 + num * d)
            c = _nonzero(1.0 + num / c)
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_critical(alpha: float, df: float) -> float:
    """The one-sided critical value: P(T > t) = alpha (bisection on `t_sf`)."""
    if df <= 0:
        return math.inf
    low, high = 0.0, 1e6
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if t_sf(mid, df) > alpha else (low, mid)
    return (low + high) / 2


# ---------------------------------------------------------------- statistics


def mean_se(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and standard error (None with fewer than two values)."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return mean, se


def pooled_sigma(groups: list[list[float]]) -> tuple[float | None, int]:
    """Pooled standard deviation over groups of seed results, and its degrees of freedom (None if df = 0)."""
    usable = [g for g in groups if len(g) >= 2]
    df = sum(len(g) - 1 for g in usable)
    if df == 0:
        return None, 0
    ss = sum((len(g) - 1) * statistics.variance(g) for g in usable)
    return max(SIGMA_FLOOR, math.sqrt(ss / df)), df


def screen(x: float, incumbent: list[float], sigma: float, df: int, rule: GateRule) -> tuple[str, float]:
    """`unconfirmed`, `within_noise` or `regression` for a single-seed result against the incumbent; and t."""
    t = (statistics.fmean(incumbent) - x) / (sigma * math.sqrt(1.0 + 1.0 / len(incumbent)))
    if t > t_critical(rule.alpha_screen, df):
        return "unconfirmed", t
    if t < -t_critical(rule.alpha_worse, df):
        return "regression", t
    return "within_noise", t


def confirm(fresh: list[float], incumbent: list[float], sigma: float, df: int, rule: GateRule) -> tuple[str, float]:
    """`confirmed`, `within_noise` or `regression` for the fresh seeds' mean against the incumbent; and t."""
    se = sigma * math.sqrt(1.0 / len(fresh) + 1.0 / len(incumbent))
    t = (statistics.fmean(incumbent) - statistics.fmean(fresh)) / se
    if t > t_critical(rule.alpha, df):
        return "confirmed", t
    if t < -t_critical(rule.alpha_worse, df):
        return "regression", t
    return "within_noise", t


# ---------------------------------------------------------------- the fold


UNRANKED = {"truncated": "truncated", "over_budget": "over_budget", "pruned": "pruned"}


@dataclass
class _Runs:
    """The runs of one experiment seen so far in the fold."""

    screen_seed: int | None = None
    screen_seq: int = 0
    values: dict[int, float] = field(default_factory=dict)
    outcomes: dict[int, str] = field(default_factory=dict)


def judge(
    arrivals: list[Arrival],
    titles: list[str],
    rule: GateRule,
    base_seed: int = 0,
    decisions: dict[str, Decision] | None = None,
) -> Judgement:
    """Every experiment's verdict from its runs in arrival order (pure: the same runs and decisions give the same
    verdicts). `titles` lists every experiment (those without runs are `not_run`); `decisions` are the judge's and
    the humans' (see `Decision`), applied to their experiment at each of its arrivals.
    """
    decisions = decisions or {}
    out = Judgement()
    runs: dict[str, _Runs] = {t: _Runs() for t in titles}
    baseline_seeds = [base_seed + i for i in range(rule.replicates)]
    flagged = over_budget(arrivals, rule.over_budget_factor)
    arrivals = [dataclasses.replace(a, outcome="over_budget") if a.seq in flagged else a for a in arrivals]
    out.budget_notes = flagged
    for arrival in sorted(arrivals, key=lambda a: a.seq):
        rec = runs.setdefault(arrival.title, _Runs())
        if rec.screen_seed is None:
            rec.screen_seed, rec.screen_seq = arrival.seed, arrival.seq
        rec.outcomes[arrival.seed] = arrival.outcome
        bpb = trusted_bpb(arrival.outcome, arrival.val_bpb)
        if bpb is not None:
            rec.values[arrival.seed] = bpb
        out.sigma, out.df = pooled_sigma([_noise_sample(t, r) for t, r in runs.items()])
        _decide(arrival.title, runs, out, rule, baseline_seeds, decisions.get(arrival.title))
    for title in titles:
        if title not in out.verdicts:
            out.verdicts[title] = Verdict(title, "not_run", reason="no result yet")
    if out.incumbent is None and runs.get(BASELINE, _Runs()).values:
        out.incumbent = BASELINE
    return out


def _noise_sample(title: str, rec: _Runs) -> list[float]:
    """The seeds an experiment adds to the noise estimate: all of the baseline's; a candidate's fresh seeds only
    (its screen seed was selected for looking good, which would inflate the spread)."""
    if title == BASELINE:
        return list(rec.values.values())
    return [v for s, v in rec.values.items() if s != rec.screen_seed]


def _decide(
    title: str,
    runs: dict[str, _Runs],
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
    verdict = _rule_verdict(rec, base, runs, out, rule, baseline_seeds)
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
    if decision.decision == "more_seeds":
        owed = [s for s in fresh_seeds if s not in rec.outcomes]
        if not owed:  # the extra seeds are in: the gate's verdict on them stands
            return verdict
        out.confirm_seeds[verdict.title] = owed
    return dataclasses.replace(verdict, by=decision.by, reason=f"{why} (gate: {verdict.reason})")


def _rule_verdict(
    rec: _Runs, base: Verdict, runs: dict[str, _Runs], out: Judgement, rule: GateRule, baseline_seeds: list[int]
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
    inc_values = list(runs[incumbent].values.values()) if incumbent else []
    if not inc_values or out.sigma is None:
        base.label, base.reason = "unjudged", "no noise floor yet: the baseline needs two successful seeds"
        return base
    base.versus = incumbent
    fresh_seeds = [s for s in baseline_seeds if s != rec.screen_seed]
    done = [s for s in fresh_seeds if s in rec.outcomes]
    if not done:
        label, t = screen(rec.values[rec.screen_seed], inc_values, out.sigma, out.df, rule)
        base.label, base.gain = label, statistics.fmean(inc_values) - rec.values[rec.screen_seed]
        base.reason = (
            f"screen seed {rec.screen_seed}: t={t:+.2f} against {incumbent!r} (sigma {out.sigma:.4f}, df {out.df})"
        )
        if label == "unconfirmed":
            out.confirm_seeds[base.title] = fresh_seeds
        return base
    if len(done) < len(fresh_seeds):
        base.label, base.reason = (
            "unconfirmed",
            f"confirmation in progress: {len(done)} of {len(fresh_seeds)} fresh seeds",
        )
        out.confirm_seeds[base.title] = [s for s in fresh_seeds if s not in rec.outcomes]
        return base
    out.confirm_seeds.pop(base.title, None)
    fresh = [rec.values[s] for s in fresh_seeds if s in rec.values]
    if not fresh:
        base.label, base.reason = "within_noise", "every confirmation run failed"
        return base
    label, t = confirm(fresh, inc_values, out.sigma, out.df, rule)
    base.label, base.fresh_mean, base.n_fresh = label, statistics.fmean(fresh), len(fresh)
    base.gain = statistics.fmean(inc_values) - base.fresh_mean
    base.reason = (
        f"{len(fresh)} fresh seed(s): mean {base.fresh_mean:.4f} vs {incumbent!r} {statistics.fmean(inc_values):.4f}, "
        f"t={t:+.2f} (sigma {out.sigma:.4f}, df {out.df})"
    )
    return base


def _maybe_promote(title: str, verdict: Verdict, runs: dict[str, _Runs], out: Judgement) -> None:
    """A confirmed experiment that beats the incumbent's mean becomes the incumbent; so does one a human accepted."""
    if verdict.label == "accepted" and out.incumbent != title:
        out.incumbent = title
        return
    if verdict.label != "confirmed" or out.incumbent == title:
        return
    incumbent_values = list(runs[out.incumbent].values.values()) if out.incumbent else []
    challenger = verdict.fresh_mean if verdict.fresh_mean is not None else verdict.mean
    if not incumbent_values or (challenger is not None and challenger < statistics.fmean(incumbent_values)):
        out.incumbent = title


# ---------------------------------------------------------------- the held-out audit


def audit_summary(best: str, val: dict[str, list[float]], test: dict[str, list[float]]) -> dict[str, Any]:
    """The final pick and the baseline on both splits, from the same audited runs: means, errors, gains and the
    selection gap (the val gain minus the test gain: how much of the gain came from choosing on val)."""

    def stats(values: list[float]) -> dict[str, Any]:
        mean, se = mean_se(values)
        return {"mean": mean, "se": se, "n": len(values)}

    out: dict[str, Any] = {"best": best, "baseline": BASELINE}
    out["val"] = {t: stats(v) for t, v in val.items()}
    out["test"] = {t: stats(v) for t, v in test.items()}

    def gain(split: dict[str, dict[str, Any]]) -> float | None:
        b, m = split.get(BASELINE, {}).get("mean"), split.get(best, {}).get("mean")
        return None if b is None or m is None else b - m

    out["val_gain"], out["test_gain"] = gain(out["val"]), gain(out["test"])
    gap = None if out["val_gain"] is None or out["test_gain"] is None else out["val_gain"] - out["test_gain"]
    out["selection_gap"] = gap
    return out
