"""A run's learning curve, read from outside the sandbox, and the check that stops a run at a rung (TRUSTED).

A run reports its training loss as it goes (`prepare.log_progress`); the orchestrator parses it here with every
malformed point dropped, and stops the run once its loss at a rung it has passed is above that rung's limit. The
limits themselves are the lab's decision (`autoresearch.lab.pruning`), handed in with the experiment. The signal
is untrusted, but it can only ever stop the run that reports it.
"""

from __future__ import annotations

import json
import math
import statistics

WINDOW = 0.05
"""A curve's loss at a rung is the mean of its points in the last `WINDOW` of the budget before it."""


Curve = list[tuple[float, float]]
"""(fraction of the token budget, training loss) points, in order."""


def loss_at(curve: Curve, fraction: float, window: float) -> float | None:
    """The mean reported loss in `[fraction - window, fraction]`, or None if the curve has no point there."""
    points = [loss for f, loss in curve if fraction - window <= f <= fraction and math.isfinite(loss)]
    return statistics.fmean(points) if points else None


def verdict(curve: Curve, limits: list[tuple[float, float]], window: float = WINDOW) -> str | None:
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
