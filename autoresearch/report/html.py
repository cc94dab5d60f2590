"""The report HTML: one self-contained fragment per Flyte report tab, built from the driver's snapshot dict.

Pure functions, data in, HTML out: nothing here touches Flyte, the ledger store or the sandbox. Every string
that may come from the agent, the LLM or the ledger goes through `_e` (html.escape); numbers go through `_num`.
The fragments carry their own CSS (light and dark) and inline SVG, fetch nothing and need no JavaScript.
"""

from __future__ import annotations

import json
from typing import Any

from autoresearch.ledger.source import unified_diff
from autoresearch.ledger.views import headline_gain
from autoresearch.report.chart import chart_svg, curves_svg
from autoresearch.report.parts import (
    _badge,
    _baseline_title,
    _bpb,
    _by_title,
    _clock,
    _css_class,
    _dict,
    _e,
    _empty,
    _experiments,
    _fmt,
    _list,
    _num,
    _outcome_badge,
    _rows,
    _short,
    _table,
    _wrap,
    cost_text,
)
from autoresearch.report.text import cost_per_gain_text, transfer_text

TABS = ("Summary", "Leaderboard", "Code edits", "Lineage", "Activity", "Memory")
"""Report tab names, in display order."""

MAX_DIFF_LINES = 400
"""Diff lines shown per diff; the rest is summarised in one line."""

MAX_ACTIVITY = 400
"""Activity events shown (the most recent)."""

# ---------------------------------------------------------------- tabs


def _improvement(snapshot: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None, float | None]:
    """The incumbent's leaderboard row (the confirmed best, or the baseline), the baseline's row, and the gain in
    percent of the baseline's mean."""
    rows = [r for r in _list(snapshot.get("leaderboard")) if isinstance(r, dict)]
    best = next((r for r in rows if r.get("incumbent")), None)
    base = _rows(snapshot).get(_baseline_title(snapshot))
    gain = headline_gain(best, base) if best else None
    b = _num(_dict(base).get("val_bpb"))
    pct = None if gain is None or not b else gain[0] / b * 100
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
    status = str(run.get("status") or "running")
    out = f"<p>Status {_badge(status, status.split(':')[0].split(',')[0])} · started {_e(run.get('started_at') or '-')}</p>"
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
            f"{runs} / {int(_num(run.get('max_runs')) or 0)}" if run.get("max_runs") else str(runs),
            f"{int(_num(totals.get('experiments_run')) or 0)} of {planned} ideas beyond the baseline",
        ),
        _kpi(
            "compute",
            f"{_fmt(totals.get('compute_s'), '.0f')} s",
            f"sandboxed training and evaluation; {_fmt(totals.get('train_cpu_s'), '.0f')} training CPU-s",
        ),
        _kpi("LLM tokens", f"{tokens:,}", f"{calls} calls, {int(_num(usage.get('errored_turns')) or 0)} errored turns"),
        _kpi("LLM cost", cost_text(usage), f"{retries} retries"),
    ]
    research_calls = int(_num(usage.get("research_calls")) or 0)
    if research_calls:
        research_tokens = int(_num(usage.get("research_tokens")) or 0)
        note = f"{research_calls} calls, ${_fmt(usage.get('research_cost_usd'), '.4f')} (included above)"
        kpis.append(_kpi("research subagent", f"{research_tokens:,} tokens", note))
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


def _sandbox_html(run: dict[str, Any]) -> str:
    """Which sandbox backends the experiments really ran under, and what each does not guarantee."""
    used = _dict(run.get("sandbox"))
    if not used:
        return ""
    items = "".join(
        f"<li><b>{_e(name)}</b> does not guarantee:<ul>{''.join(f'<li>{_e(g)}</li>' for g in gaps)}</ul></li>"
        for name, gaps in sorted(used.items())
    )
    return f"<h3>Sandbox</h3><ul>{items}</ul>"


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
        gain = headline_gain(best, base)
        if gain:
            spread = "" if gain[1] is None else f" ± {gain[1]:.4f}"
            text += f" Gain {gain[0]:+.4f}{spread} val_bpb, from {_e(gain[2])} (the screen seed is left out)."
    gate = f'<p class="muted small">{_e(noise.get("gate"))}</p>' if noise.get("gate") else ""
    return f"<h3>Verdict</h3><p>{_e(text) if best is None else text}</p>{gate}{_statistics_html(snapshot)}"


def _statistics_html(snapshot: dict[str, Any]) -> str:
    """What the gate can see now and what the key spent per gain: the incumbent's minimum detectable effect, the
    campaign's false-confirmation bound, the cost per confirmed gain and the transfer check."""
    noise = _dict(snapshot.get("noise"))
    lines = []
    mde = _num(noise.get("mde"))
    if mde is not None:
        lines.append(
            f"Minimum detectable effect: the next idea must be about {mde:.4f} val_bpb better than the incumbent to "
            "be confirmed with 80% chance at this key's seeds."
        )
    campaign = _dict(noise.get("campaign"))
    if campaign.get("text"):
        lines.append(f"Campaign error control: {campaign['text']}.")
    cost = _dict(snapshot.get("cost_per_gain"))
    if cost:
        lines.append(cost_per_gain_text(cost)[0].upper() + cost_per_gain_text(cost)[1:] + ".")
    transfer = _dict(snapshot.get("transfer"))
    if transfer:
        lines.append(transfer_text(transfer))
    return "".join(f'<p class="small">{_e(line)}</p>' for line in lines)


def _audit_html(snapshot: dict[str, Any]) -> str:
    """The held-out test audit of the final pick and the baseline, or a note that it runs when the research ends."""
    audit = _dict(snapshot.get("audit"))
    if not audit:
        note = "Runs once, when the research ends: the final pick and the baseline on the test split."
        return "<h3>Held-out test audit</h3>" + _empty(note)
    best, base = str(audit.get("best")), str(audit.get("baseline") or _baseline_title(snapshot))
    titles = [best] if best == base else [best, base]

    def cell(split: str, title: str) -> str:
        stats = _dict(_dict(audit.get(split)).get(title))
        mean, se, n = _num(stats.get("mean")), _num(stats.get("se")), int(_num(stats.get("n")) or 0)
        return "-" if mean is None else f"{mean:.4f}" + ("" if se is None else f" ± {se:.4f}") + f" ({n})"

    rows = [[_e(s), *(cell(s, t) for t in titles), _fmt(audit.get(f"{s}_gain"), "+.4f")] for s in ("val", "test")]
    table = _table(["split", *(_e(t) for t in titles), "gain"], rows)
    gap = f"<p>Selection gap (val gain minus test gain): <b>{_fmt(audit.get('selection_gap'), '+.4f')}</b></p>"
    return "<h3>Held-out test audit</h3>" + table + (gap if best != base else "")


def summary_html(snapshot: dict[str, Any]) -> str:
    """The Summary tab: status, best experiment and improvement, outcomes, LLM usage, compute, settings."""
    run = _dict(snapshot.get("run"))
    body = _status_html(run) + _summary_kpis(snapshot)
    body += _verdict_html(snapshot) + _audit_html(snapshot)
    body += "<h3>Runs by outcome</h3>" + _outcomes_table(snapshot)
    body += _sandbox_html(run)
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
        by = str(row.get("decided_by") or "rule")
        outcome += f'<div class="muted small">{_e(by)}: {_e(_short(row.get("verdict"), 160))}</div>'
    if result.get("message") and row.get("outcome") != "success":
        outcome += f'<div class="muted small">{_e(_short(result.get("message"), 140))}</div>'
    n_params = _num(result.get("n_params"))
    se = _num(row.get("se"))
    return [
        '<tr class="best">' if row.get("incumbent") else "<tr>",
        _e(row.get("rank") if row.get("rank") is not None else "-"),
        f"{_e(row.get('title'))}{_step_tag(row.get('step'))}"
        f"<div class='muted small'>{_e(_short(row.get('change_summary'), 120))}</div>",
        _fmt(row.get("val_bpb")) + ("" if se is None else f'<div class="muted small nw">± {se:.4f}</div>'),
        _e(row.get("n_seeds") or "-")
        + ('<div class="muted small nw">one seed</div>' if row.get("n_seeds") == 1 else ""),
        _fmt(row.get("delta_vs_best"), "+.4f"),
        "-" if not n_params else f"{n_params / 1e6:.2f}M",
        _e(result.get("steps", "-")),
        _resources(result),
        _e(result.get("oom_retries", "-")),
        outcome,
    ]


def _step_tag(step: Any) -> str:
    """The edit's step type as a small muted tag after its title ("" for none)."""
    return f' <span class="muted small">[{_e(step)}]</span>' if step else ""


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
    curves = "<h3>Learning curves</h3>" + curves_svg(snapshot)
    return _wrap("Leaderboard", chart_svg(snapshot) + curves + "<h3>Ranking</h3>" + table)


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
        ["step", _e(exp.get("step") or "-")],
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
        items.append(f'<li><span class="{cls}">{_e(title)}</span>{_step_tag(node.get("step"))} {metric}{sub}</li>')
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
