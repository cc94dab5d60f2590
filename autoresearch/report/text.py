"""A key's results as plain text, for the terminal and `summary`: the leaderboard table and the audit sentence.

Pure functions of leaderboard row dicts and audit dicts (`ui` re-exports them for the run's closing lines).
"""

from __future__ import annotations

from typing import Any


def fmt_bpb(value: float | None) -> str:
    """A val_bpb with four decimals, or "-"."""
    return "-" if value is None else f"{value:.4f}"


def _split_text(stats: dict[str, Any] | None) -> str:
    stats = stats or {}
    if stats.get("mean") is None:
        return "-"
    se = f" ± {stats['se']:.4f}" if stats.get("se") is not None else ""
    return f"{stats['mean']:.4f}{se} ({stats.get('n', 0)} seed{'s' if stats.get('n') != 1 else ''})"


def audit_text(audit: dict[str, Any]) -> str:
    """The held-out audit in one sentence: both splits for the pick and the baseline, the gains and the gap."""
    best, base = audit.get("best"), audit.get("baseline", "baseline")
    val, test = audit.get("val") or {}, audit.get("test") or {}
    if best == base:
        return f"Held-out test audit: the baseline scores {_split_text(test.get(base))} on the test split (val {_split_text(val.get(base))})."
    text = (
        f"Held-out test audit of {best!r}: test {_split_text(test.get(best))} vs the baseline's "
        f"{_split_text(test.get(base))}"
    )
    if audit.get("test_gain") is not None and audit.get("val_gain") is not None:
        text += (
            f": test gain {audit['test_gain']:+.4f}, val gain {audit['val_gain']:+.4f}, selection gap "
            f"{audit['selection_gap']:+.4f}"
        )
    failed = audit.get("failed") or []
    return text + (f" ({len(failed)} audit run(s) failed)" if failed else "") + "."


def leaderboard_text(rows: list[dict[str, Any]], limit: int = 20) -> str:
    """The leaderboard as a fixed-width table: mean val_bpb ± standard error over seeds, deltas and the verdict."""
    head = f"{'rank':>4}  {'title':<36} {'val_bpb':>8} {'± se':>7} {'seeds':>5} {'vs best':>8} {'vs base':>8}  verdict"
    lines = [head, "-" * len(head)]
    for row in rows[:limit]:
        vs_best = "" if row.get("delta_vs_best") is None else f"{row['delta_vs_best']:+.4f}"
        vs_base = "" if row.get("delta_vs_baseline") is None else f"{row['delta_vs_baseline']:+.4f}"
        rank = "" if row.get("rank") is None else str(row["rank"])
        se = "" if row.get("se") is None else f"{row['se']:.4f}"
        label = str(row.get("label") or "-") + (" *best*" if row.get("incumbent") else "")
        if row.get("label") == "failed":
            label += f" ({row.get('outcome')})"
        elif row.get("n_seeds") == 1 and row.get("rank") is not None:
            label += " (one seed)"
        lines.append(
            f"{rank:>4}  {str(row['title'])[:36]:<36} {fmt_bpb(row.get('val_bpb')):>8} {se:>7} "
            f"{row.get('n_seeds', 0) or '':>5} {vs_best:>8} {vs_base:>8}  {label}"
        )
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more")
    return "\n".join(lines)


def cost_per_gain(confirmed: int, cpu_s: float, usd: float | None) -> dict[str, Any]:
    """What each confirmed improvement cost: training CPU-seconds and LLM dollars over the confirmed gains (None when
    nothing was confirmed, or the dollars are unknown)."""

    def per(total: float | None) -> float | None:
        return None if total is None or not confirmed else round(total / confirmed, 6)

    return {"confirmed_gains": confirmed, "cpu_s_per_gain": per(cpu_s), "usd_per_gain": per(usd)}


def cost_per_gain_text(cost: dict[str, Any]) -> str:
    """`cost per confirmed gain: 412 CPU-s, $0.0031 (2 gains)`, or that nothing was confirmed."""
    n = cost.get("confirmed_gains") or 0
    if not n:
        return "cost per confirmed gain: no gain confirmed yet"
    usd = cost.get("usd_per_gain")
    dollars = "LLM cost unknown" if usd is None else f"${usd:.4f} of LLM calls"
    return f"cost per confirmed gain: {cost['cpu_s_per_gain']:.0f} training CPU-s, {dollars} ({n} gain{'s' if n != 1 else ''})"


def transfer_text(check: dict[str, Any]) -> str:
    """The transfer check in one sentence: the pick and the baseline at K x the token budget, and whether the gain
    held."""
    if check.get("error"):
        return f"Transfer check at {float(check.get('scale') or 0):g}x the token budget: not done ({check['error']})."
    pick, base = check.get("pick"), check.get("baseline", "baseline")
    stats = check.get("stats") or {}
    text = (
        f"Transfer check at {float(check.get('scale') or 0):g}x the token budget on fresh seeds: {pick!r} "
        f"{_split_text(stats.get(pick))} vs the baseline {_split_text(stats.get(base))}"
    )
    if check.get("gain") is not None:
        text += f": gain {check['gain']:+.4f} at scale against {check.get('gain_at_budget', 0.0):+.4f} at the budget"
    return text + f"; {check.get('verdict', '')}."
