"""Learning-curve pruning as pure functions: when to stop a run that is clearly losing.

A run reports its training loss as it goes (`prepare.log_progress`); the orchestrator reads it from outside.
The signal is untrusted, but it can only ever stop the run that reports it: a lie wastes that run's own
compute and never reaches a metric.

Curves are compared at the same fraction of the token budget (every run trains on the same number of
tokens, so a quarter of the steps is a quarter of the data, whatever the batch). At each rung (by default
25% and 50% of the budget) a run is stopped if its smoothed loss is above a threshold:

- `median`: the median of the finished runs' losses at that rung (at least `min_curves` of them);
- `parent`: the mean of the parent's runs at that rung;

plus `z` times the seed noise of the loss at that rung (the spread of the baseline's replicate curves
there, never below `min_margin` of the loss), so noise alone does not stop a run. A stopped run is
`pruned`: it keeps its curve, frees its slot at once, and counts as a soft failure for the planner.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from autoresearch.ledger.records import BASELINE_TITLE, ExperimentRecord
from autoresearch.sandbox.curve import WINDOW, Curve, loss_at

MODES = ("off", "median", "parent")


@dataclass(frozen=True)
class PruneRule:
    """How pruning decides: the mode, the rungs, and how far above the reference a run must be."""

    mode: str = "off"
    rungs: tuple[float, ...] = (0.25, 0.5)
    z: float = 3.0
    min_margin: float = 0.01
    """The least margin, as a fraction of the reference loss (seed noise measured on few curves can be tiny)."""
    min_curves: int = 3
    window: float = WINDOW
    """A curve's loss at a rung is the mean of its points in the last `window` of the budget before it."""

    @property
    def on(self) -> bool:
        return self.mode != "off"


def noise_at(replicates: list[Curve], fraction: float, window: float) -> float | None:
    """The seed noise of the loss at `fraction`: the spread of the baseline's replicate curves there."""
    values = [v for c in replicates if (v := loss_at(c, fraction, window)) is not None]
    return statistics.stdev(values) if len(values) >= 2 else None


def thresholds(rule: PruneRule, references: list[Curve], replicates: list[Curve]) -> list[tuple[float, float]]:
    """(rung, loss threshold) pairs for a new run; empty when pruning is off or the evidence is too thin.

    `references` are the finished curves to compare with (all successful runs for `median`, the parent's runs
    for `parent`); `replicates` are the baseline's seeds, which measure the loss's seed noise at each rung.
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
        out.append((rung, center + max(rule.z * noise, rule.min_margin * abs(center))))
    return out


def prune_limits(records: list[ExperimentRecord], parent: str | None, rule: PruneRule) -> list[tuple[float, float]]:
    """The pruning thresholds for a new experiment forked from `parent`, from the finished runs' learning curves
    (see `pruning.thresholds`): every successful run's for `median`, the parent's for `parent`."""
    if not rule.on:
        return []

    def curves(recs: list[ExperimentRecord]) -> list[list[tuple[float, float]]]:
        return [[(f, loss) for f, loss in run.result.curve] for r in recs for run in r.runs if run.val_bpb is not None]

    replicates = curves([r for r in records if r.title == BASELINE_TITLE])
    if rule.mode == "parent":
        references = curves([r for r in records if r.title == (parent or BASELINE_TITLE)])
    else:
        references = curves(records)
    return thresholds(rule, references, replicates)
