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

import math
import statistics
from dataclasses import dataclass

Curve = list[tuple[float, float]]
"""(fraction of the token budget, training loss) points, in order."""
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
    window: float = 0.05
    """A curve's loss at a rung is the mean of its points in the last `window` of the budget before it."""

    @property
    def on(self) -> bool:
        return self.mode != "off"


def loss_at(curve: Curve, fraction: float, window: float) -> float | None:
    """The mean reported loss in `[fraction - window, fraction]`, or None if the curve has no point there."""
    points = [loss for f, loss in curve if fraction - window <= f <= fraction and math.isfinite(loss)]
    return statistics.fmean(points) if points else None


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


def verdict(curve: Curve, limits: list[tuple[float, float]], window: float = PruneRule.window) -> str | None:
    """Why the run should stop now (its loss at a rung it has passed is above the threshold), or None."""
    reached = max((f for f, _ in curve), default=0.0)
    for rung, limit in limits:
        if reached < rung:
            continue
        loss = loss_at(curve, rung, window)
        if loss is not None and loss > limit:
            return f"pruned at {rung:.0%} of its budget: training loss {loss:.4f} above the threshold {limit:.4f}"
    return None


MAX_POINTS = 400
"""A curve keeps at most this many points (a run may report as often as it likes)."""


def parse_curve(text: str, planned_steps: int) -> Curve:
    """The (fraction, loss) points of a progress log written by the sandboxed run: every malformed line, step
    outside `[1, planned_steps]` or non-finite loss is dropped, and at most `MAX_POINTS` evenly spaced points kept."""
    import json

    points: dict[int, float] = {}
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            step, loss = entry["step"], entry["loss"]
        except (ValueError, TypeError, KeyError):
            continue
        ok = isinstance(step, int) and not isinstance(step, bool) and 1 <= step <= planned_steps
        if ok and isinstance(loss, (int, float)) and not isinstance(loss, bool) and math.isfinite(loss):
            points[step] = float(loss)
    steps = sorted(points)
    if len(steps) > MAX_POINTS:
        steps = [steps[round(i * (len(steps) - 1) / (MAX_POINTS - 1))] for i in range(MAX_POINTS)]
    return [(s / planned_steps, points[s]) for s in steps]
