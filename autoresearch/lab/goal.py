"""The research goal: stop cleanly once a confirmed result reaches a target (pure functions).

`--target-val-bpb X` is met by an incumbent other than the baseline whose mean val_bpb is at most X;
`--target-gain PCT` by one whose mean is at least PCT percent below the baseline's. Only a confirmed (or a
human-accepted) incumbent counts: a lucky screen seed never ends research.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Goal:
    """What counts as done; both None means research runs to its budget."""

    val_bpb: float | None = None
    gain_pct: float | None = None

    @property
    def on(self) -> bool:
        return self.val_bpb is not None or self.gain_pct is not None

    def describe(self) -> str:
        parts = [f"val_bpb <= {self.val_bpb:g}"] if self.val_bpb is not None else []
        parts += [f"a gain of {self.gain_pct:g}% over the baseline"] if self.gain_pct is not None else []
        return " or ".join(parts) or "none"


def goal_met(goal: Goal, rows: list[Any], baseline_title: str = "baseline") -> str | None:
    """Why the goal is met by the leaderboard's incumbent (rows are `LeaderboardRow`s), or None."""
    if not goal.on:
        return None
    best = next((r for r in rows if r.incumbent), None)
    base = next((r for r in rows if r.title == baseline_title), None)
    if best is None or best.title == baseline_title or best.val_bpb is None:
        return None
    if best.label not in ("confirmed", "accepted"):
        return None
    if goal.val_bpb is not None and best.val_bpb <= goal.val_bpb:
        return f"goal reached: {best.title!r} ({best.label}) at val_bpb {best.val_bpb:.4f} <= {goal.val_bpb:g}"
    if goal.gain_pct is not None and base is not None and base.val_bpb:
        gain = (base.val_bpb - best.val_bpb) / base.val_bpb * 100
        if gain >= goal.gain_pct:
            return f"goal reached: {best.title!r} ({best.label}) is {gain:.2f}% better than the baseline (>= {goal.gain_pct:g}%)"
    return None
