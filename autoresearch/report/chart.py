"""The Leaderboard tab's chart: val_bpb per experiment in run order, other seeds beside, the confirmed best.

Pure functions, snapshot in, inline SVG out (no script, no external reference).
"""

from __future__ import annotations

import math
from typing import Any

from autoresearch.report.parts import _baseline_title, _bpb, _dict, _e, _empty, _list, _num, _rows, _run_order, _short

CONFIRMED = "confirmed"


def chart_points(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """One point per experiment with a result, in run order: its first run's val_bpb, its other seeds, and the
    incumbent's mean after it.

    `kind` is "confirmed" (beat seed noise), "ran" (scored, not confirmed) or "failed" (val_bpb None); `seeds`
    holds the val_bpb of its other successful seeds; `best` is the incumbent's mean (the baseline's, then each
    confirmed experiment that lowered it).
    """
    rows = _rows(snapshot)
    base = _num(_dict(rows.get(_baseline_title(snapshot))).get("val_bpb"))
    points: list[dict[str, Any]] = []
    best = base
    for x, exp in enumerate(_run_order(snapshot), start=1):
        row = _dict(rows.get(str(exp.get("title"))))
        bpb = _bpb(exp)
        kind = "failed" if bpb is None else (CONFIRMED if row.get("label") == CONFIRMED else "ran")
        mean = _num(row.get("val_bpb"))
        if kind == CONFIRMED and mean is not None and (best is None or mean < best):
            best = mean
        runs = [r for r in _list(exp.get("runs"))[1:] if isinstance(r, dict)]
        seeds = [v for v in (_num(r.get("val_bpb")) for r in runs) if v is not None]
        outcome = _dict(exp.get("result")).get("outcome")
        label = row.get("label") or outcome
        points.append(
            {
                "x": x,
                "title": exp.get("title"),
                "val_bpb": bpb,
                "seeds": seeds,
                "kind": kind,
                "label": label,
                "best": best,
                "outcome": outcome,
            }
        )
    return points


# ---------------------------------------------------------------- chart


CHART_W, CHART_H = 960, 300
PAD_L, PAD_R, PAD_T, PAD_B = 64, 16, 28, 40


def _scales(points: list[dict[str, Any]]) -> tuple[Any, Any, float, float]:
    """x and y scale functions for the chart and the y range they map."""
    values = [v for p in points for v in [p["val_bpb"], *p.get("seeds", [])] if v is not None] or [1.0]
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or 0.05
    low, high = low - pad, high + pad
    n = max(1, len(points))
    plot_w, plot_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B

    def sx(x: float) -> float:
        """Run number to SVG x."""
        return round(PAD_L + (x - 0.5) * plot_w / n, 1)

    def sy(v: float) -> float:
        """val_bpb to SVG y (lower values sit lower)."""
        return round(PAD_T + (high - v) * plot_h / (high - low), 1)

    return sx, sy, low, high


def _frame(sy: Any, low: float, high: float, digits: int) -> list[str]:
    """The two axis lines and five y ticks labelled with `digits` decimals: what both charts share."""
    bottom = CHART_H - PAD_B
    parts = [f'<line class="axis" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{bottom}"/>']
    parts.append(f'<line class="axis" x1="{PAD_L}" y1="{bottom}" x2="{CHART_W - PAD_R}" y2="{bottom}"/>')
    for i in range(5):
        v = low + (high - low) * i / 4
        parts.append(f'<text x="{PAD_L - 6}" y="{sy(v) + 4}" text-anchor="end">{v:.{digits}f}</text>')
    return parts


def _axes(points: list[dict[str, Any]], sy: Any, sx: Any, low: float, high: float) -> str:
    """Axis lines, y ticks with val_bpb labels and x ticks with run numbers."""
    bottom = CHART_H - PAD_B
    parts = _frame(sy, low, high, 3)
    step = max(1, math.ceil(len(points) / 20))
    for p in points[::step]:
        parts.append(f'<text x="{sx(p["x"])}" y="{bottom + 16}" text-anchor="middle">{p["x"]}</text>')
    parts.append(f'<text x="{PAD_L}" y="{CHART_H - 6}">run order →</text>')
    parts.append('<text x="8" y="12">val_bpb (lower is better)</text>')
    return "".join(parts)


def _best_path(points: list[dict[str, Any]], sx: Any, sy: Any) -> str:
    """The incumbent's mean as a step line: the baseline's, stepping down at each confirmed gain."""
    steps = [p for p in points if p["best"] is not None]
    if not steps:
        return ""
    d = f"M{sx(steps[0]['x'] - 0.4)} {sy(steps[0]['best'])}"
    for prev, p in zip(steps, steps[1:], strict=False):
        if p["best"] != prev["best"]:
            d += f" H{sx(p['x'])} V{sy(p['best'])}"
    d += f" H{sx(points[-1]['x'] + 0.4)}"
    return f'<path class="best-line" d="{d}"/>'


def _marker(p: dict[str, Any], sx: Any, sy: Any) -> str:
    """One marker: a circle for the first run (filled green when confirmed), small dots for its other seeds,
    a cross at the top for a failure."""
    label = f"#{p['x']} {_short(p['title'], 80)}: "
    if p["val_bpb"] is None:
        x, y = sx(p["x"]), PAD_T - 2
        tip = _e(label + str(p.get("outcome") or "failed"))
        return f'<path class="fail" d="M{x - 5} {y - 5}L{x + 5} {y + 5}M{x - 5} {y + 5}L{x + 5} {y - 5}"><title>{tip}</title></path>'
    confirmed = p["kind"] == CONFIRMED
    tip = _e(label + f"{p['val_bpb']:.4f} ({str(p.get('label') or p['kind']).replace('_', ' ')})")
    cls = "pt kept" if confirmed else "pt"
    seeds = "".join(f'<circle class="seed" cx="{sx(p["x"])}" cy="{sy(v)}" r="2.5"/>' for v in p.get("seeds", []))
    return (
        seeds
        + f'<circle class="{cls}" cx="{sx(p["x"])}" cy="{sy(p["val_bpb"])}" r="{6 if confirmed else 4.5}"><title>{tip}</title></circle>'
    )


def _legend() -> str:
    """The chart legend, top right."""
    return (
        f'<g transform="translate({CHART_W - 520},{CHART_H - 10})"><circle class="lg-kept" cx="0" cy="0" r="5"/><text x="9" y="4">confirmed gain</text>'
        '<circle class="lg-pt" cx="120" cy="0" r="4"/><text x="129" y="4">not confirmed</text>'
        '<circle class="seed" cx="230" cy="0" r="2.5"/><text x="238" y="4">other seeds</text>'
        '<path class="lg-fail" d="M315 -5L325 5M315 5L325 -5"/><text x="331" y="4">failed</text>'
        '<path class="lg-best" d="M380 0H400"/><text x="405" y="4">confirmed best</text></g>'
    )


def chart_svg(snapshot: dict[str, Any]) -> str:
    """The val_bpb-per-experiment chart as inline SVG, or a placeholder before any result."""
    points = chart_points(snapshot)
    if not points:
        return _empty("No results yet: the chart appears when the first experiment finishes.")
    sx, sy, low, high = _scales(points)
    body = _axes(points, sy, sx, low, high) + _best_path(points, sx, sy) + _legend()
    body += "".join(_marker(p, sx, sy) for p in points)
    return (
        f'<svg class="chart" viewBox="0 0 {CHART_W} {CHART_H}" role="img" '
        f'aria-label="val_bpb per experiment in run order">{body}</svg>'
    )


# ---------------------------------------------------------------- learning curves

MAX_CURVES = 40
"""Curves drawn at most (the most recent first runs); the rest would only be noise on the chart."""


def curve_lines(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """Each experiment's first-run learning curve, in run order: title, points, whether it was pruned or is the
    confirmed best."""
    rows = _rows(snapshot)
    out = []
    for exp in _run_order(snapshot)[-MAX_CURVES:]:
        points = []
        for point in _list(_dict(exp.get("result")).get("curve")):
            pair = _list(point)
            f, loss = (_num(pair[0]), _num(pair[1])) if len(pair) == 2 else (None, None)
            if f is not None and loss is not None:
                points.append((f, loss))
        if len(points) >= 2:
            row = _dict(rows.get(str(exp.get("title"))))
            pruned = _dict(exp.get("result")).get("outcome") == "pruned"
            out.append(
                {"title": exp.get("title"), "points": points, "pruned": pruned, "best": bool(row.get("incumbent"))}
            )
    return out


def curves_svg(snapshot: dict[str, Any]) -> str:
    """Training loss against the fraction of the token budget for each experiment's first run, as inline SVG;
    pruned runs dashed, the confirmed best bold."""
    lines = curve_lines(snapshot)
    if not lines:
        return _empty("No learning curves yet: they appear as runs report their training loss.")
    losses = [loss for c in lines for _, loss in c["points"]]
    low, high = min(losses), max(losses)
    pad = (high - low) * 0.05 or 0.05
    low, high = low - pad, high + pad
    plot_w, plot_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B

    def sx(f: float) -> float:
        return round(PAD_L + f * plot_w, 1)

    def sy(v: float) -> float:
        return round(PAD_T + (high - v) * plot_h / (high - low), 1)

    bottom = CHART_H - PAD_B
    parts = _frame(sy, low, high, 2)
    for f in (0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{sx(f)}" y="{bottom + 16}" text-anchor="middle">{f:.0%}</text>')
    parts.append(f'<text x="{PAD_L}" y="{CHART_H - 6}">share of the token budget →</text>')
    parts.append('<text x="8" y="12">training loss (reported by the run)</text>')
    for c in lines:
        d = "M" + " L".join(f"{sx(f)} {sy(v)}" for f, v in c["points"])
        cls = "curve" + (" pruned" if c["pruned"] else "") + (" best" if c["best"] else "")
        parts.append(f'<path class="{cls}" d="{d}"><title>{_e(_short(c["title"], 80))}</title></path>')
    body = "".join(parts)
    return (
        f'<svg class="chart" viewBox="0 0 {CHART_W} {CHART_H}" role="img" '
        f'aria-label="learning curves: training loss per share of the token budget">{body}</svg>'
    )
