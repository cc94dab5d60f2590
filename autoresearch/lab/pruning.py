"""Learning-curve pruning as pure functions: when to stop a run that is clearly losing.

A run reports its training loss as it goes (`prepare.log_progress`); the orchestrator reads it from outside. The
signal is untrusted, so two rules keep a lie inside the run that tells it:

- **Only trusted curves set thresholds.** A curve is a reference only if its run trained the repository's own
  `train.py` (the baseline, or an edit that changes only the config: code the agent did not write reported it)
  AND ended with a trusted score consistent with its curve: the curve's final loss over the trusted val_bpb lies
  within the band the baseline's replicates show. An edited `train.py` may report anything about itself; its curve
  is never another run's reference, so it can stop only itself.
- **A noise band per rung,** measured from the baseline's replicate curves at that share of the budget.

Curves are compared at the same fraction of the token budget (every run trains on the same number of tokens, so a
quarter of the steps is a quarter of the data, whatever the batch). At each rung a run is stopped if its smoothed
loss is above a threshold:

- `incumbent`: the mean of the incumbent's trusted curves at that rung (or, when the incumbent is an edited
  `train.py`, of the best trusted experiment's) plus `z` (0.5) noise bands: a run clearly behind the best so far
  will not pass the screen;
- `median`: the median of the trusted finished curves there (at least `min_curves`), plus `z` (3) bands;
- `parent`: the mean of the parent's trusted curves (the best trusted experiment's when the parent's are not
  trusted), plus `z` (3) bands;

never closer than `min_margin` of the reference loss. A stopped run is `pruned`: it keeps its curve, frees its slot
at once, and counts as a soft failure for the planner; its idea is spent, its screen never scored. A candidate's
confirmation re-runs are held to the same thresholds: one pruned fresh seed ends its confirmation (`pruned`), which
can only withhold a confirmation, never grant one, so the campaign's bound stands.

Confirmations are also stopped for futility: after each fresh seed, the gate gives the chance that the
confirmation passes once its remaining seeds are in (`verdicts.confirm_chance`, predicted from the fresh seeds so
far); below `futility` (10%) its seeds not yet started are not run and it is `pruned` (a `FUTILE` decision in the
ledger, so a resumed key keeps it). Before its first fresh seed, the screen seed alone predicts the chance
(`Verdict.screen_chance`: optimistic, since the screen was selected for looking good), so a confirmation that even
its screen leaves hopeless, most often a judge's second chance for a near miss, costs no run. With pruning on, the
loop runs a candidate's fresh seeds one at a time, so the chance is known before each next seed starts, until that
chance reaches `together` (90%): then the rest start at once. This saves most of the runs that confirmations of
null edits cost.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from autoresearch.ledger.records import BASELINE_TITLE, ExperimentRecord, SeedRun
from autoresearch.ledger.source import normalize_code
from autoresearch.ledger.verdicts import Verdict
from autoresearch.sandbox.curve import WINDOW, Curve, loss_at

MODES = ("off", "incumbent", "median", "parent")
PRUNED_ROLES = ("screen", "confirm")
"""The runs pruning may stop: an experiment's screen and its confirmation re-runs; never a baseline seed or the
transfer check, the yardsticks."""
Z_BY_MODE = {"incumbent": 0.5, "median": 3.0, "parent": 3.0}
"""Noise bands above the reference a run must be to be stopped, per mode."""
CONSISTENCY_SDS = 4.0
"""How many standard deviations of the baseline replicates' final-loss-to-score ratio a trusted curve may stray."""
CONSISTENCY_FLOOR = 0.05
"""The least band for that ratio, relative to it (two or three replicates can agree by chance)."""


@dataclass(frozen=True)
class PruneRule:
    """How pruning decides: the mode, the rungs, and how far above the reference a run must be."""

    mode: str = "off"
    rungs: tuple[float, ...] = (0.25, 0.5, 0.75)
    z: float | None = None
    """Noise bands above the reference; None takes the mode's (`Z_BY_MODE`)."""
    min_margin: float = 0.01
    """The least margin, as a fraction of the reference loss (seed noise measured on few curves can be tiny)."""
    min_curves: int = 3
    window: float = WINDOW
    """A curve's loss at a rung is the mean of its points in the last `window` of the budget before it."""
    futility: float = 0.1
    """A confirmation in progress whose chance to pass (`verdicts.confirm_chance`) is below this is stopped
    (simulated: a null edit then runs about 1.1 of its 4 fresh seeds; the power at the MDE drops under 1 point)."""
    together: float = 0.9
    """A confirmation's fresh seeds run one at a time until its chance to pass reaches this; then the rest start
    together, so a clear gain is not slowed (simulated, null edits almost never reach it after one fresh seed)."""

    @property
    def on(self) -> bool:
        return self.mode != "off"

    @property
    def bands(self) -> float:
        return self.z if self.z is not None else Z_BY_MODE.get(self.mode, 3.0)


def noise_at(replicates: list[Curve], fraction: float, window: float) -> float | None:
    """The seed noise of the loss at `fraction`: the spread of the baseline's replicate curves there."""
    values = [v for c in replicates if (v := loss_at(c, fraction, window)) is not None]
    return statistics.stdev(values) if len(values) >= 2 else None


def thresholds(rule: PruneRule, references: list[Curve], replicates: list[Curve]) -> list[tuple[float, float]]:
    """(rung, loss threshold) pairs for a new run; empty when pruning is off or the evidence is too thin.

    `references` are the trusted curves to compare with (see the module's rules); `replicates` are the baseline's
    seeds, which measure the loss's seed noise at each rung.
    """
    if not rule.on:
        return []
    needed = rule.min_curves if rule.mode == "median" else 1
    out = []
    for rung in rule.rungs:
        values = [v for c in references if (v := loss_at(c, rung, rule.window)) is not None]
        if len(values) < needed:
            continue
        center = statistics.median(values) if rule.mode == "median" else statistics.fmean(values)
        noise = noise_at(replicates, rung, rule.window) or 0.0
        out.append((rung, center + max(rule.bands * noise, rule.min_margin * abs(center))))
    return out


def _end_ratio(curve: Curve, val_bpb: float, window: float) -> float | None:
    """A curve's final training loss over its run's trusted val_bpb (None without a point near the end)."""
    end = loss_at(curve, 1.0, window)
    return None if end is None or val_bpb <= 0 else end / val_bpb


def trusted_curves(records: list[ExperimentRecord], window: float = WINDOW) -> dict[str, list[Curve]]:
    """title -> the curves that may set thresholds: successful runs of the repository's own `train.py` (the
    baseline and config-only edits) whose final loss matches their trusted score as the baseline's replicates do."""
    base = next((r for r in records if r.title == BASELINE_TITLE), None)
    if base is None:
        return {}
    own = normalize_code(base.train_py)
    ratios = [x for run in base.runs if run.val_bpb is not None and (x := _end_ratio(_curve(run), run.val_bpb, window))]
    if not ratios:
        return {}
    center = statistics.median(ratios)
    band = max(CONSISTENCY_SDS * (statistics.stdev(ratios) if len(ratios) > 1 else 0.0), CONSISTENCY_FLOOR * center)
    out: dict[str, list[Curve]] = {}
    for rec in records:
        if not _same_code(rec, own):
            continue
        for run in rec.runs:
            ratio = _end_ratio(_curve(run), run.val_bpb, window) if run.val_bpb is not None else None
            if ratio is not None and abs(ratio - center) <= band:
                out.setdefault(rec.title, []).append(_curve(run))
    return out


def _curve(run: SeedRun) -> Curve:
    return [(float(f), float(loss)) for f, loss in run.result.curve]


def _same_code(rec: ExperimentRecord, own: str) -> bool:
    try:
        return normalize_code(rec.train_py) == own
    except SyntaxError:
        return False


def _best_trusted(records: list[ExperimentRecord], curves: dict[str, list[Curve]], incumbent: str | None) -> str:
    """The incumbent if its curves are trusted, else the trusted experiment with the lowest mean val_bpb."""
    if incumbent in curves:
        return incumbent
    means = {r.title: statistics.fmean(r.values) for r in records if r.title in curves and r.values}
    return min(means, key=lambda t: means[t]) if means else BASELINE_TITLE


def chance_to_pass(verdict: Verdict) -> float | None:
    """A confirmation's chance to pass: predicted from its fresh seeds so far, or before any from its screen seed
    (`Verdict.screen_chance`, optimistic: the screen was selected for looking good); None when neither exists."""
    return verdict.confirm_chance if verdict.confirm_chance is not None else verdict.screen_chance


def futile(verdict: Verdict, owed: bool, rule: PruneRule) -> bool:
    """Whether pruning stops `verdict`'s confirmation now: pruning is on, fresh seeds are still `owed` to it, and its
    chance to pass (`chance_to_pass`) is below the rule's futility."""
    chance = chance_to_pass(verdict)
    return rule.on and owed and chance is not None and chance < rule.futility


def seeds_at_once(verdict: Verdict | None, owed: int, rule: PruneRule) -> int:
    """How many of a confirmation's `owed` fresh seeds may start now: all with pruning off; with it on, one at a time
    (so futility stops it before the next starts) until its chance to pass reaches `rule.together`."""
    chance = verdict.confirm_chance if verdict is not None else None
    return owed if not rule.on or (chance is not None and chance >= rule.together) else min(owed, 1)


def prune_limits(
    records: list[ExperimentRecord], parent: str | None, rule: PruneRule, incumbent: str | None = None
) -> list[tuple[float, float]]:
    """The pruning thresholds for a new experiment forked from `parent`, from the trusted finished curves (see the
    module's rules): the incumbent's for `incumbent`, all of them for `median`, the parent's for `parent`."""
    if not rule.on:
        return []
    curves = trusted_curves(records, rule.window)
    replicates = curves.get(BASELINE_TITLE, [])
    if rule.mode == "median":
        references = [c for cs in curves.values() for c in cs]
    else:
        wanted = (parent or BASELINE_TITLE) if rule.mode == "parent" else incumbent
        references = curves.get(wanted) if wanted in curves else curves.get(_best_trusted(records, curves, incumbent))
    return thresholds(rule, references or [], replicates)
