"""The report HTML: one self-contained fragment per Flyte report tab, built from the driver's snapshot dict.

Pure functions, data in, HTML out: nothing here touches Flyte, the ledger store or the sandbox. Every string
that may come from the agent, the LLM or the ledger goes through `_e` (html.escape); numbers go through `_num`.
The fragments carry their own CSS (light and dark) and inline SVG, fetch nothing and need no JavaScript.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from ledger_views import BASELINE_TITLE, unified_diff

TABS = ("Summary", "Leaderboard", "Code edits", "Lineage", "Activity", "Memory")
"""Report tab names, in display order."""

MAX_DIFF_LINES = 400
"""Diff lines shown per diff; the rest is summarised in one line."""

MAX_ACTIVITY = 400
"""Activity events shown (the most recent)."""

CSS = """
:root{color-scheme:light dark}
.ar{--fg:#1c2430;--muted:#5a6676;--bg:#fff;--card:#f4f6f9;--line:#d6dce4;--accent:#6d28d9;--good:#157f3b;
--bad:#b42318;--warn:#a15c07;--add:#e3f4e8;--addfg:#14532d;--del:#fde8e6;--delfg:#7f1d1d;--hunk:#1e4fd8;
color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
max-width:1200px;margin:0 auto;overflow-wrap:anywhere}
@media (prefers-color-scheme:dark){
body{background:#10151c;color:#e4e8ee}
#flyte-frame-tabs li{color:#9aa6b5!important}#flyte-frame-tabs li.active{color:#e4e8ee!important}
.ar{--fg:#e4e8ee;--muted:#9aa6b5;--bg:#10151c;--card:#19202a;--line:#2f3a48;--accent:#a78bfa;--good:#4ade80;
--bad:#f87171;--warn:#fbbf24;--add:#12301d;--addfg:#bbf7d0;--del:#3a1515;--delfg:#fecaca;--hunk:#93c5fd}}
.ar h2{font-size:20px;margin:0 0 12px}.ar h3{font-size:16px;margin:18px 0 8px}
.ar .muted{color:var(--muted)}.ar .small{font-size:12px}
.ar table{border-collapse:collapse;width:100%;margin:6px 0 14px}
.ar th,.ar td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
.ar table.fixed{table-layout:fixed}.ar .nw{white-space:nowrap}
.ar table.kv th{width:110px;white-space:nowrap}
.ar th{font-size:12px;text-transform:uppercase;letter-spacing:.03em;color:var(--muted)}
.ar td.num,.ar th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.ar tr.best td{background:var(--add)}
.ar .card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px;margin:0 0 12px}
.ar .kpis{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:12px}
.ar .kpi{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:160px}
.ar .kpi b{display:block;font-size:22px}
.ar .badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;border:1px solid currentColor}
.ar .ok,.ar .confirmed,.ar .success,.ar .done{color:var(--good)}
.ar .failed,.ar .error,.ar .oom,.ar .crash,.ar .timeout,.ar .invalid,.ar .leak,.ar .tampered,.ar .implausible{color:var(--bad)}
.ar .regression,.ar .running,.ar .unconfirmed,.ar .truncated,.ar .over_budget{color:var(--warn)}.ar .not_run,.ar .within_noise,.ar .legacy{color:var(--muted)}
.ar pre{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:8px;margin:6px 0;
font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow:auto;max-height:480px;
white-space:pre}
.ar pre.wrap{white-space:pre-wrap}
.ar pre.diff span{display:block}.ar .add{background:var(--add);color:var(--addfg)}
.ar .del{background:var(--del);color:var(--delfg)}.ar .hunk{color:var(--hunk)}.ar .dh{color:var(--muted)}
.ar code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.ar details summary{cursor:pointer;color:var(--accent)}
.ar .bar{background:var(--accent);height:10px;border-radius:3px;display:inline-block;vertical-align:middle}
.ar ul.tree,.ar ul.tree ul{list-style:none;margin:0;padding-left:22px}
.ar ul.tree{padding-left:0}.ar ul.tree ul{border-left:1px dashed var(--line)}
.ar ul.tree li{margin:3px 0}.ar .node{padding:1px 6px;border-radius:5px;border:1px solid var(--line)}
.ar .node.onpath{border-color:var(--accent);font-weight:600}
.ar .node.best{background:var(--accent);color:var(--bg);border-color:var(--accent)}
.ar svg.chart{width:100%;height:auto;max-width:1000px;display:block}
.ar svg .axis{stroke:var(--line)}.ar svg text{fill:var(--muted);font-size:11px}
.ar svg .pt{fill:var(--muted);stroke:var(--bg);stroke-width:1}.ar svg .pt.kept{fill:var(--good)}.ar svg .seed{fill:var(--muted);opacity:.6}
.ar svg .fail,.ar svg .lg-fail{stroke:var(--bad);stroke-width:2;fill:none}
.ar svg .best-line,.ar svg .lg-best{stroke:var(--accent);stroke-width:2;fill:none}
.ar svg .lg-kept{fill:var(--good)}.ar svg .lg-pt{fill:var(--muted)}
"""


# ---------------------------------------------------------------- small helpers


def _e(value: Any) -> str:
    """HTML-escape any value (None becomes an empty string)."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> float | None:
    """A finite float, or None for anything else (None, NaN, text, booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: Any, spec: str = ".4f") -> str:
    """A number formatted with `spec`, or '-' when it is not a finite number."""
    number = _num(value)
    return "-" if number is None else format(number, spec)


def _dict(value: Any) -> dict[str, Any]:
    """`value` if it is a dict, else an empty dict."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    """`value` if it is a list, else an empty list."""
    return value if isinstance(value, list) else []


def _short(value: Any, limit: int = 160) -> str:
    """One line of text, cut to `limit` characters (not escaped)."""
    text = " ".join(str("" if value is None else value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _css_class(value: Any) -> str:
    """A safe CSS class name from an outcome or label (letters, digits and underscores only)."""
    return "".join(c for c in str(value or "") if c.isalnum() or c == "_")[:20]


def _badge(text: Any, kind: Any = None) -> str:
    """A small coloured label; its colour follows `kind` (defaults to the text)."""
    return f'<span class="badge {_css_class(kind if kind is not None else text)}">{_e(text)}</span>'


def _outcome_badge(outcome: Any) -> str:
    """An outcome badge; no outcome reads 'not run'."""
    return _badge(outcome or "not run", outcome or "not_run")


def _table(
    headers: list[str], rows: list[list[str]], numeric: set[int] | None = None, widths: tuple[str, ...] = ()
) -> str:
    """A table from header names and rows of already-escaped HTML cells; `widths` fixes the column widths."""
    numeric = numeric or set()
    cols = "<colgroup>" + "".join(f'<col style="width:{w}">' for w in widths) + "</colgroup>" if widths else ""
    head = "".join(f'<th class="num">{h}</th>' if i in numeric else f"<th>{h}</th>" for i, h in enumerate(headers))
    body = []
    for row in rows:
        attrs, cells = (row[0], row[1:]) if row and row[0].startswith("<tr") else ("<tr>", row)
        tds = "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(cells))
        body.append(f"{attrs}{tds}</tr>")
    fixed = ' class="fixed"' if widths else ""
    return f"<table{fixed}>{cols}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _wrap(tab: str, body: str) -> str:
    """A tab fragment: the shared style, the tab heading and its body."""
    return f'<div class="ar"><style>{CSS}</style><h2>{_e(tab)}</h2>{body}</div>'


def _empty(text: str) -> str:
    """A muted placeholder paragraph for a section with nothing to show yet."""
    return f'<p class="muted">{_e(text)}</p>'


def _clock(seconds: Any) -> str:
    """Seconds since the start as m:ss (or h:mm:ss)."""
    s = _num(seconds)
    if s is None:
        return "-"
    minutes, sec = divmod(int(s), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


# ---------------------------------------------------------------- experiments


def _experiments(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """The snapshot's experiments that are dicts, in creation order."""
    return [x for x in _list(snapshot.get("experiments")) if isinstance(x, dict)]


def _by_title(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Experiments keyed by title."""
    return {str(x.get("title")): x for x in _experiments(snapshot)}


def _bpb(experiment: dict[str, Any]) -> float | None:
    """The trusted val_bpb of a successful experiment, else None."""
    result = _dict(experiment.get("result"))
    return _num(result.get("val_bpb")) if result.get("outcome") == "success" else None


def _run_order(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """Experiments with a result, in the order their results arrived (seq), ties in creation order."""
    ran = [(i, x) for i, x in enumerate(_experiments(snapshot)) if isinstance(x.get("result"), dict)]
    ran.sort(key=lambda p: (_num(p[1].get("seq")) is None, _num(p[1].get("seq")) or 0, p[0]))
    return [x for _, x in ran]


def _baseline_title(snapshot: dict[str, Any]) -> str:
    """The baseline experiment's title."""
    return str(snapshot.get("baseline_title") or BASELINE_TITLE)


def _rows(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Leaderboard rows keyed by title."""
    return {str(r.get("title")): r for r in _list(snapshot.get("leaderboard")) if isinstance(r, dict)}


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


def _axes(points: list[dict[str, Any]], sy: Any, sx: Any, low: float, high: float) -> str:
    """Axis lines, y ticks with val_bpb labels and x ticks with run numbers."""
    bottom = CHART_H - PAD_B
    parts = [f'<line class="axis" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{bottom}"/>']
    parts.append(f'<line class="axis" x1="{PAD_L}" y1="{bottom}" x2="{CHART_W - PAD_R}" y2="{bottom}"/>')
    for i in range(5):
        v = low + (high - low) * i / 4
        parts.append(f'<text x="{PAD_L - 6}" y="{sy(v) + 4}" text-anchor="end">{v:.3f}</text>')
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


# ---------------------------------------------------------------- tabs


def _improvement(snapshot: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None, float | None]:
    """The incumbent's leaderboard row (the confirmed best, or the baseline), the baseline's row, and the gain in
    percent of the baseline's mean."""
    rows = [r for r in _list(snapshot.get("leaderboard")) if isinstance(r, dict)]
    best = next((r for r in rows if r.get("incumbent")), None)
    base = _rows(snapshot).get(_baseline_title(snapshot))
    b, m = _num(_dict(base).get("val_bpb")), _num(_dict(best).get("val_bpb"))
    pct = None if b is None or m is None or not b else (b - m) / b * 100
    return best, base, pct


def _mean_text(row: dict[str, Any] | None) -> str:
    """`2.5421 ± 0.0123 (3 seeds)` for a leaderboard row."""
    row = _dict(row)
    mean, se, n = _num(row.get("val_bpb")), _num(row.get("se")), int(_num(row.get("n_seeds")) or 0)
    if mean is None:
        return "-"
    return f"{mean:.4f}" + (f" ± {se:.4f}" if se is not None else "") + f" ({n} seed{'s' if n != 1 else ''})"


def _outcome_counts(snapshot: dict[str, Any]) -> dict[str, int]:
    """Experiments by outcome: from `totals.by_outcome`, else counted; 'not run' for those without a result."""
    counts = {str(k): int(_num(v) or 0) for k, v in _dict(_dict(snapshot.get("totals")).get("by_outcome")).items()}
    if not counts:
        for exp in _experiments(snapshot):
            outcome = _dict(exp.get("result")).get("outcome")
            if outcome:
                counts[str(outcome)] = counts.get(str(outcome), 0) + 1
    pending = sum(1 for x in _experiments(snapshot) if not isinstance(x.get("result"), dict))
    if pending:
        counts["not run"] = pending
    return counts


def _kpi(label: str, value: str, note: str = "") -> str:
    """One summary figure (escaped value and note)."""
    return f'<div class="kpi"><span class="muted small">{_e(label)}</span><b>{_e(value)}</b><span class="small">{_e(note)}</span></div>'


def _status_html(run: dict[str, Any]) -> str:
    """The run status line, with the error when the run failed."""
    status = run.get("status") or "running"
    out = f"<p>Status {_badge(status)} · started {_e(run.get('started_at') or '-')}</p>"
    if run.get("error"):
        out += f"<pre>{_e(run['error'])}</pre>"
    return out


def _summary_kpis(snapshot: dict[str, Any]) -> str:
    """The headline figures: best, improvement, experiments, compute, tokens and cost."""
    best, base, pct = _improvement(snapshot)
    usage, totals, run = _dict(snapshot.get("usage")), _dict(snapshot.get("totals")), _dict(snapshot.get("run"))
    noise = _dict(snapshot.get("noise"))
    tokens = int((_num(usage.get("prompt_tokens")) or 0) + (_num(usage.get("completion_tokens")) or 0))
    runs = int(_num(totals.get("runs")) or 0)
    planned = int(_num(run.get("n_experiments")) or 0)
    best_note = _short(best.get("title"), 60) + " " + _mean_text(best) if best else "no result yet"
    calls, retries = int(_num(usage.get("calls")) or 0), int(_num(usage.get("retries")) or 0)
    confirmed = bool(best) and best.get("title") != _baseline_title(snapshot)
    sigma = _num(noise.get("sigma"))
    kpis = [
        _kpi(
            "confirmed best val_bpb" if confirmed else "best val_bpb (baseline)",
            _fmt(_dict(best).get("val_bpb")),
            best_note,
        ),
        _kpi("vs baseline", "-" if pct is None or not confirmed else f"{pct:+.2f}%", f"baseline {_mean_text(base)}"),
        _kpi("seed noise sigma", _fmt(sigma), f"{int(_num(noise.get('df')) or 0)} degrees of freedom"),
        _kpi(
            "runs used",
            f"{runs} / {planned}" if planned else str(runs),
            f"{int(_num(totals.get('experiments_run')) or 0)} experiments beyond the baseline",
        ),
        _kpi("compute", f"{_fmt(totals.get('compute_s'), '.0f')} s", "sandboxed training and evaluation"),
        _kpi("LLM tokens", f"{tokens:,}", f"{calls} calls"),
        _kpi("LLM cost", f"${_fmt(usage.get('cost_usd'), '.4f')}", f"{retries} retries"),
    ]
    return f'<div class="kpis">{"".join(kpis)}</div>'


def _outcomes_table(snapshot: dict[str, Any]) -> str:
    """Experiments by outcome, with a bar per outcome."""
    counts = _outcome_counts(snapshot)
    if not counts:
        return _empty("No experiments yet.")
    top = max(counts.values()) or 1
    rows = [
        [_badge(k), str(v), f'<span class="bar" style="width:{round(240 * v / top)}px"></span>']
        for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
    ]
    return _table(["outcome", "count", ""], rows, numeric={1})


def _settings_table(run: dict[str, Any]) -> str:
    """The run's settings as a two-column table."""
    keys = ("memory_key", "model", "model_reason", "dataset", "n_experiments", "batch_size", "concurrency")
    rows = [[_e(k), _e(run.get(k, "-"))] for k in keys if k in run]
    return _table(["setting", "value"], rows) if rows else ""


def _verdict_html(snapshot: dict[str, Any]) -> str:
    """The verdict in words: the confirmed gain, or that nothing beat seed noise; and the gate rule."""
    best, base, _ = _improvement(snapshot)
    noise = _dict(snapshot.get("noise"))
    sigma = _num(noise.get("sigma"))
    if best is None:
        text = "No result yet."
    elif best.get("title") == _baseline_title(snapshot):
        text = f"No edit beat seed noise (sigma = {_fmt(sigma)}): the baseline stays best at {_mean_text(base)}."
    else:
        text = (
            f"Confirmed gain: {_e(best.get('title'))} at {_mean_text(best)} against the baseline's {_mean_text(base)}."
        )
    gate = f'<p class="muted small">{_e(noise.get("gate"))}</p>' if noise.get("gate") else ""
    return f"<h3>Verdict</h3><p>{_e(text) if best is None else text}</p>{gate}"


def summary_html(snapshot: dict[str, Any]) -> str:
    """The Summary tab: status, best experiment and improvement, outcomes, LLM usage, compute, settings."""
    run = _dict(snapshot.get("run"))
    body = _status_html(run) + _summary_kpis(snapshot)
    body += _verdict_html(snapshot)
    body += "<h3>Runs by outcome</h3>" + _outcomes_table(snapshot)
    body += "<h3>Run settings</h3>" + (_settings_table(run) or _empty("No settings recorded."))
    return _wrap("Summary", body)


def _resources(result: dict[str, Any]) -> str:
    """CPU and memory given to an experiment, and its measured peak."""
    res = _dict(result.get("resources"))
    given = []
    if res.get("cpu") is not None:
        given.append(f"{_e(res.get('cpu'))} cpu")
    if res.get("memory_mb") is not None:
        given.append(f"{_e(res.get('memory_mb'))} MB")
    out = f'<span class="nw">{" · ".join(given)}</span>' if given else "-"
    if _num(result.get("peak_memory_mb")):
        out += f'<br><span class="muted nw">peak {_fmt(result.get("peak_memory_mb"), ".0f")} MB</span>'
    return out


def _leader_row(row: dict[str, Any], exp: dict[str, Any]) -> list[str]:
    """One leaderboard table row (the first cell carries the row's <tr> tag)."""
    result = _dict(exp.get("result"))
    label = row.get("label") or "not_run"
    outcome = _outcome_badge(row.get("outcome"))
    if row.get("outcome") or label != "not_run":
        outcome += " " + _badge(label.replace("_", " "), label)
    if row.get("verdict"):
        outcome += f'<div class="muted small">{_e(_short(row.get("verdict"), 160))}</div>'
    if result.get("message") and row.get("outcome") != "success":
        outcome += f'<div class="muted small">{_e(_short(result.get("message"), 140))}</div>'
    n_params = _num(result.get("n_params"))
    se = _num(row.get("se"))
    return [
        '<tr class="best">' if row.get("incumbent") else "<tr>",
        _e(row.get("rank") if row.get("rank") is not None else "-"),
        f"{_e(row.get('title'))}<div class='muted small'>{_e(_short(row.get('change_summary'), 120))}</div>",
        _fmt(row.get("val_bpb")) + ("" if se is None else f'<div class="muted small nw">± {se:.4f}</div>'),
        _e(row.get("n_seeds") or "-"),
        _fmt(row.get("delta_vs_best"), "+.4f"),
        "-" if not n_params else f"{n_params / 1e6:.2f}M",
        _e(result.get("steps", "-")),
        _resources(result),
        _e(result.get("oom_retries", "-")),
        outcome,
    ]


def leaderboard_html(snapshot: dict[str, Any]) -> str:
    """The Leaderboard tab: the val_bpb chart, then the ranked table."""
    by_title = _by_title(snapshot)
    rows = [r for r in _list(snapshot.get("leaderboard")) if isinstance(r, dict)]
    table_rows = [_leader_row(r, by_title.get(str(r.get("title")), {})) for r in rows]
    headers = [
        "rank",
        "title",
        "val_bpb (mean ± se)",
        "seeds",
        "Δ vs best",
        "params",
        "steps",
        "resources",
        "OOM retries",
        "verdict",
    ]
    table = _table(headers, table_rows, numeric={0, 2, 3, 4, 5, 6, 8}) if rows else _empty("No experiments yet.")
    return _wrap("Leaderboard", chart_svg(snapshot) + "<h3>Ranking</h3>" + table)


def diff_html(diff_text: str, max_lines: int = MAX_DIFF_LINES) -> str:
    """A unified diff as a <pre> with one coloured span per line: added, deleted, hunk header, file header."""
    lines = diff_text.splitlines()
    spans = []
    for line in lines[:max_lines]:
        if line.startswith(("+++", "---")):
            cls = "dh"
        elif line.startswith("@@"):
            cls = "hunk"
        else:
            cls = {"+": "add", "-": "del"}.get(line[:1], "ctx")
        spans.append(f'<span class="{cls}">{_e(line) or " "}</span>')
    if len(lines) > max_lines:
        spans.append(f'<span class="dh">… {len(lines) - max_lines} more diff lines not shown</span>')
    return f'<pre class="diff">{"".join(spans)}</pre>'


def _diff_block(label: str, a: dict[str, Any], b: dict[str, Any], open_: bool) -> str:
    """A collapsible diff of experiment `a`'s train.py to `b`'s."""
    a_title, b_title = str(a.get("title")), str(b.get("title"))
    text = unified_diff(a_title, str(a.get("train_py") or ""), b_title, str(b.get("train_py") or ""))
    if not text:
        inner = _empty("No code change (config overrides only).")
    else:
        added = sum(1 for ln in text.splitlines() if ln.startswith("+") and not ln.startswith("+++"))
        removed = sum(1 for ln in text.splitlines() if ln.startswith("-") and not ln.startswith("---"))
        label += f" (+{added} −{removed})"
        inner = diff_html(text)
    return f"<details{' open' if open_ else ''}><summary>{_e(label)}</summary>{inner}</details>"


def _effect_vs_outcome(exp: dict[str, Any], parent: dict[str, Any] | None) -> str:
    """The expected effect next to what happened (val_bpb and its change vs the parent)."""
    result = _dict(exp.get("result"))
    if not result:
        got = _badge("not run", "not_run")
    else:
        bpb, pbpb = _bpb(exp), _bpb(parent) if parent else None
        delta = f" (Δ vs parent {bpb - pbpb:+.4f})" if bpb is not None and pbpb is not None else ""
        got = f"{_badge(result.get('outcome') or '?')} val_bpb {_fmt(bpb)}{_e(delta)}"
        if result.get("message") and result.get("outcome") != "success":
            got += f' <span class="muted">{_e(_short(result.get("message"), 200))}</span>'
    expected = _e(exp.get("expected_effect")) or '<span class="muted">-</span>'
    return f"<tr><th>expected</th><td>{expected}</td></tr><tr><th>outcome</th><td>{got}</td></tr>"


def _edit_card(exp: dict[str, Any], by_title: dict[str, dict[str, Any]], baseline: str) -> str:
    """One experiment's card: what changed, why, what was expected vs what happened, and its diffs."""
    parent = by_title.get(str(exp.get("parent"))) if exp.get("parent") is not None else None
    overrides = _dict(exp.get("overrides"))
    rows = [
        ["parent", _e(exp.get("parent") or "-")],
        ["batch", _e(exp.get("batch_id") or "-")],
        ["change", _e(exp.get("change_summary") or "-")],
        ["overrides", f"<code>{_e(json.dumps(overrides, sort_keys=True, default=str))}</code>" if overrides else "-"],
        ["hypothesis", _e(exp.get("hypothesis") or "-")],
    ]
    info = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + _effect_vs_outcome(exp, parent)
    diffs = ""
    if parent is not None:
        diffs += _diff_block(f"diff vs parent {_short(parent.get('title'), 60)}", parent, exp, True)
    base = by_title.get(baseline)
    if base is not None and exp is not base and parent is not base:
        diffs += _diff_block(f"diff vs baseline {_short(baseline, 60)}", base, exp, parent is None)
    return f'<div class="card"><h3>{_e(exp.get("title"))}</h3><table class="kv">{info}</table>{diffs}</div>'


def code_edits_html(snapshot: dict[str, Any]) -> str:
    """The Code edits tab: one card per experiment, newest first."""
    experiments = _experiments(snapshot)
    if not experiments:
        return _wrap("Code edits", _empty("No experiments yet."))
    by_title, baseline = _by_title(snapshot), _baseline_title(snapshot)
    cards = "".join(_edit_card(x, by_title, baseline) for x in reversed(experiments))
    note = '<p class="muted">Newest first. Green lines were added, red lines removed.</p>'
    return _wrap("Code edits", note + cards)


def _best_path_titles(nodes: list[dict[str, Any]]) -> list[str]:
    """Titles from a root to the incumbent (the confirmed best, else the baseline); empty when there is none."""
    stack = [(n, [str(n.get("title"))]) for n in nodes if isinstance(n, dict)]
    while stack:
        node, path = stack.pop()
        if node.get("incumbent"):
            return path
        stack += [(c, [*path, str(c.get("title"))]) for c in _list(node.get("children")) if isinstance(c, dict)]
    return []


def _tree_html(nodes: list[dict[str, Any]], path: list[str], depth: int = 0) -> str:
    """Nested lists of fork nodes; nodes on the best path are highlighted, the best one filled."""
    items = []
    for node in (n for n in nodes if isinstance(n, dict)):
        title = str(node.get("title"))
        on_path = depth < len(path) and path[depth] == title
        cls = "node best" if on_path and depth == len(path) - 1 else ("node onpath" if on_path else "node")
        bpb = _num(node.get("val_bpb"))
        metric = f"{bpb:.4f}" if bpb is not None else _outcome_badge(node.get("outcome"))
        if node.get("label"):
            metric += " " + _badge(str(node["label"]).replace("_", " "), str(node["label"]))
        children = _list(node.get("children"))
        sub = _tree_html(children, path if on_path else [], depth + 1) if children and depth < 200 else ""
        items.append(f'<li><span class="{cls}">{_e(title)}</span> {metric}{sub}</li>')
    return f'<ul class="tree">{"".join(items)}</ul>'


def lineage_html(snapshot: dict[str, Any]) -> str:
    """The Lineage tab: the fork tree with val_bpb at each node and the path to the best highlighted."""
    tree = [n for n in _list(snapshot.get("lineage")) if isinstance(n, dict)]
    if not tree:
        return _wrap("Lineage", _empty("No experiments yet."))
    path = _best_path_titles(tree)
    note = "Path to the confirmed best: " + " → ".join(_e(t) for t in path) if path else "No successful experiment yet."
    return _wrap("Lineage", f'<p class="muted">{note}</p>' + _tree_html(tree, path))


def _event_row(event: dict[str, Any]) -> list[str]:
    """One activity row: time, kind, name, details (code as a block), duration and error."""
    kind = str(event.get("kind") or "")
    detail = event.get("detail") or ""
    if kind == "code" and detail:
        detail_html = (
            f'<details open><summary>code the agent ran</summary><pre class="wrap">{_e(detail)}</pre></details>'
        )
    else:
        detail_html = f"<code>{_e(_short(detail, 300))}</code>" if detail else ""
    error = f'<span class="error">{_e(_short(event.get("error"), 300))}</span>' if event.get("error") else ""
    duration = _num(event.get("duration_s"))
    row_cls = _css_class(kind)
    return [
        f'<tr class="ev-{row_cls}">',
        _clock(event.get("t")),
        _badge(kind or "?"),
        _e(event.get("name")),
        detail_html,
        "-" if duration is None else f"{duration:.1f}s",
        error,
    ]


def _activity_counts(events: list[dict[str, Any]]) -> str:
    """Turns, tool calls, errors and tool time over all events."""
    kinds = [str(e.get("kind")) for e in events]
    tool_s = sum(_num(e.get("duration_s")) or 0.0 for e in events if e.get("kind") == "tool")
    errors = sum(1 for e in events if e.get("kind") == "error" or e.get("error"))
    return (
        f"<p>{kinds.count('turn')} turns · {kinds.count('tool')} tool calls ({tool_s:.1f} s) · "
        f"{kinds.count('code')} code blocks · {errors} errors</p>"
    )


def activity_html(snapshot: dict[str, Any]) -> str:
    """The Activity tab: turn and tool-call counts, then the most recent events in time order."""
    events = [e for e in _list(snapshot.get("activity")) if isinstance(e, dict)]
    if not events:
        return _wrap("Activity", _empty("No agent activity yet."))
    shown = events[-MAX_ACTIVITY:]
    cut = len(events) - len(shown)
    note = f'<p class="muted">The last {len(shown)} events ({cut} earlier not shown).</p>' if cut else ""
    headers, widths = (
        ["t", "kind", "name", "details", "duration", "error"],
        ("64px", "84px", "180px", "auto", "80px", "22%"),
    )
    table = _table(headers, [_event_row(e) for e in shown], numeric={4}, widths=widths)
    return _wrap("Activity", _activity_counts(events) + note + table)


def _plan_card(plan: dict[str, Any], by_title: dict[str, dict[str, Any]]) -> str:
    """One batch plan: id, time, rationale and each title with its hypothesis and expected effect.

    The plan's own `hypotheses` come first; without them, the experiment's spec supplies both.
    """
    hyps = _dict(plan.get("hypotheses"))
    rows = []
    for title in _list(plan.get("titles")):
        h = _dict(hyps.get(str(title))) or by_title.get(str(title), {})
        rows.append([_e(title), _e(h.get("hypothesis") or "-"), _e(h.get("expected_effect") or "-")])
    table = _table(["title", "hypothesis", "expected effect"], rows) if rows else ""
    head = f"<h3>{_e(plan.get('batch_id') or 'batch')} <span class='muted small'>{_e(plan.get('created_at') or '')}</span></h3>"
    return f'<div class="card">{head}<p>{_e(plan.get("rationale") or "-")}</p>{table}</div>'


AUDIT_KEYS = ("ts", "actor", "op", "path", "reason")
"""Audit-entry fields shown as columns; any others go in the last column as JSON."""


def _audit_table(entries: list[dict[str, Any]]) -> str:
    """The audit tail: known fields as columns, the rest as compact JSON."""
    rows = []
    for entry in entries:
        extra = {k: v for k, v in entry.items() if k not in AUDIT_KEYS}
        cells = [_e(_short(entry.get(k, ""), 200)) for k in AUDIT_KEYS]
        rows.append([*cells, f"<code>{_e(_short(json.dumps(extra, default=str), 300))}</code>" if extra else ""])
    return _table([*AUDIT_KEYS, "other"], rows, widths=("170px", "90px", "90px", "22%", "auto", "22%"))


def memory_html(snapshot: dict[str, Any]) -> str:
    """The Memory tab: batch plans with their hypotheses (newest first), then the store's audit tail."""
    plans = [p for p in _list(snapshot.get("batch_plans")) if isinstance(p, dict)]
    audit = [a for a in _list(snapshot.get("audit_tail")) if isinstance(a, dict)]
    cards = "".join(_plan_card(p, _by_title(snapshot)) for p in reversed(plans))
    body = "<h3>Batch plans</h3>" + (cards or _empty("No batch plans yet."))
    body += "<h3>Audit tail</h3>" + (_audit_table(audit) if audit else _empty("No audit entries yet."))
    return _wrap("Memory", body)


RENDERERS = {
    "Summary": summary_html,
    "Leaderboard": leaderboard_html,
    "Code edits": code_edits_html,
    "Lineage": lineage_html,
    "Activity": activity_html,
    "Memory": memory_html,
}


def render_report(snapshot: dict[str, Any]) -> dict[str, str]:
    """Every report tab as a self-contained HTML fragment, keyed by tab name in display order."""
    snap = _dict(snapshot)
    return {tab: RENDERERS[tab](snap) for tab in TABS}
