"""Shared pieces of the report renderers: escaping, safe number reading, small HTML builders, snapshot access.

Pure functions. Every string that may come from the agent, the LLM or the ledger goes through `_e`
(html.escape); every number through `_num`. The names keep their leading underscore: they are the report
modules' own vocabulary (`html.py`, `chart.py`), not an API for anything else.
"""

from __future__ import annotations

import html
import math
from typing import Any

from autoresearch.ledger.records import BASELINE_TITLE
from autoresearch.ledger.views import arrival_order
from autoresearch_types import trusted_bpb

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
.ar .regression,.ar .running,.ar .stopped,.ar .unconfirmed,.ar .truncated,.ar .over_budget,.ar .pruned{color:var(--warn)}.ar .not_run,.ar .within_noise,.ar .legacy{color:var(--muted)}
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
.ar svg .curve{fill:none;stroke:var(--muted);stroke-width:1;opacity:.7}.ar svg .curve.pruned{stroke-dasharray:4 3;stroke:var(--warn)}
.ar svg .curve.best{stroke:var(--good);stroke-width:2.5;opacity:1}
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
    return trusted_bpb(result.get("outcome"), result.get("val_bpb"))


def _run_order(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """Experiments with a result, in the order their results arrived (seq), ties in creation order."""
    ran = [x for x in _experiments(snapshot) if isinstance(x.get("result"), dict)]
    return arrival_order(ran, lambda x: _num(x.get("seq")))


def _baseline_title(snapshot: dict[str, Any]) -> str:
    """The baseline experiment's title."""
    return str(snapshot.get("baseline_title") or BASELINE_TITLE)


def _rows(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Leaderboard rows keyed by title."""
    return {str(r.get("title")): r for r in _list(snapshot.get("leaderboard")) if isinstance(r, dict)}


def cost_text(usage: dict[str, Any]) -> str:
    """An LLM's dollars, or "cost unknown" when litellm could not price the model (a local or unknown one)."""
    if usage.get("cost_known") is False:
        return "cost unknown"
    return f"${float(usage.get('cost_usd') or 0.0):.4f}"
