"""Error control across a key's whole campaign: alpha spending over the candidates the gate screens.

The k-th candidate of a key (numbered in the order their screen seeds scored) may be falsely confirmed with
probability at most `level(k)`: its confirmation is a one-sided test at that level (the screen before it only
makes a false confirmation rarer). The levels sum to at most `alpha_campaign` over any number of candidates, so the expected number of false confirmations in a key
is at most the sum of the levels its candidates used (`spent`), whatever the candidates were and in whatever
order they came: the levels depend only on k, never on results.

Spending: most of the budget (`1 - TAIL`) is spread evenly over the ideas the key was created for (its horizon);
the rest is kept for candidates beyond it, the j-th beyond at `TAIL * alpha / (j (j + 1))` (never more than a
candidate within the horizon got), which sums to at most `TAIL * alpha` however far a resumed key goes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

TAIL = 0.2
"""The share of the campaign's budget kept for candidates beyond the key's horizon."""


def level(k: int, alpha: float, horizon: int) -> float:
    """The false-confirmation probability the k-th candidate (1-based) may use: never more than an earlier one."""
    horizon = max(1, horizon)
    within = alpha * (1.0 - TAIL) / horizon
    if k <= horizon:
        return within
    j = k - horizon
    return min(within, alpha * TAIL / (j * (j + 1)))


def spent(k: int, alpha: float, horizon: int) -> float:
    """The sum of the first k levels: the bound on the expected false confirmations among k candidates."""
    return math.fsum(level(i, alpha, horizon) for i in range(1, k + 1))


@dataclass(frozen=True)
class Campaign:
    """Where a key's error control stands: candidates screened so far, the bound they spent, the next level."""

    alpha: float
    horizon: int
    candidates: int

    @property
    def bound(self) -> float:
        """Expected false confirmations in this key so far are at most this."""
        return spent(self.candidates, self.alpha, self.horizon)

    @property
    def next_level(self) -> float:
        return level(self.candidates + 1, self.alpha, self.horizon)

    def text(self) -> str:
        """The bound in one sentence, for the summary, the report and the directive."""
        return (
            f"expected false confirmations <= {self.bound:.4f} over {self.candidates} screened candidate(s) "
            f"(campaign budget {self.alpha:g}, spread over {self.horizon} ideas; the next candidate may use "
            f"{self.next_level:.2g})"
        )

    def to_dict(self) -> dict[str, Any]:
        out = {"alpha": self.alpha, "horizon": self.horizon, "candidates": self.candidates}
        return {**out, "bound": self.bound, "next_level": self.next_level, "text": self.text()}
