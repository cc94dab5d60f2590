"""The transfer check's verdict as a pure function: does a gain found at the key's token budget hold at K times it?

Small-budget research finds wins that can vanish at scale. After research, the final pick and the baseline are
re-run at K x the token budget on seeds the key never used; this module only judges those numbers (Welch's t on
each side's own spread, one-sided at `ALPHA`). Nothing here feeds back into selection.
"""

from __future__ import annotations

from typing import Any

from autoresearch.ledger.stattests import side, t_critical, welch
from autoresearch.ledger.verdicts import BASELINE, mean_se

ALPHA = 0.05
"""The one-sided level at which the gain (or a reversal) counts as shown at scale."""


def transfer_summary(
    pick: str, values: dict[str, list[float]], scale: float, gain_at_budget: float | None
) -> dict[str, Any]:
    """The pick and the baseline at `scale` x the budget: means, the gain, and whether it holds, reverses or is not
    shown (either side with fewer than two successful seeds cannot be tested)."""
    stats = {}
    for title, vals in values.items():
        mean, se = mean_se(vals)
        stats[title] = {"mean": mean, "se": se, "n": len(vals)}
    out: dict[str, Any] = {"pick": pick, "baseline": BASELINE, "scale": scale, "stats": stats}
    out["gain_at_budget"] = gain_at_budget
    mine, base = values.get(pick) or [], values.get(BASELINE) or []
    if len(mine) < 2 or len(base) < 2:
        out.update(gain=None, t=None, verdict="too few successful runs at scale to tell")
        return out
    t, _, df = welch(side(base, 0.0, 0.0), side(mine, 0.0, 0.0))
    out.update(gain=stats[BASELINE]["mean"] - stats[pick]["mean"], t=t, df=df)
    critical = t_critical(ALPHA, df)
    if t > critical:
        out["verdict"] = "the gain holds at scale"
    elif t < -critical:
        out["verdict"] = "the gain reverses at scale: the baseline is better"
    else:
        out["verdict"] = "the gain is not shown at scale (within noise)"
    return out
