"""Views derived from the ledger's records, as pure functions: verdicts, leaderboard, history, lineage, briefs.

Nothing here touches Flyte or the `MemoryStore`: `ledger.py` reads the records and hands them in, so every view
(the gate's judgement over the records, the leaderboard, the history table, the lineage tree) is testable on plain
data. The records themselves are `records.py`'s; code normalisation and diffs are `source.py`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autoresearch.ledger.records import BASELINE_TITLE, RANKED_LABELS, ExperimentRecord, LeaderboardRow
from autoresearch.ledger.source import unified_diff
from autoresearch.ledger.verdicts import Arrival, Decision, GateRule, Judgement, judge, predicted_work
from autoresearch_types import ExperimentConfig, ExperimentResult

# ---------------------------------------------------------------- the key's fixed comparison


# ---------------------------------------------------------------- names and code


# ---------------------------------------------------------------- derived views


def arrival_order(items: list[Any], seq: Callable[[Any], float | None]) -> list[Any]:
    """The one run-order rule: items with a result sequence number in arrival order, then the rest; ties and the
    rest keep the order given (creation order)."""
    ran = sorted((x for x in items if seq(x) is not None), key=lambda x: seq(x) or 0)
    return ran + [x for x in items if seq(x) is None]


def run_order(records: list[ExperimentRecord]) -> list[ExperimentRecord]:
    """Experiments with a result in the order their first runs arrived, then those not run in creation order."""
    return arrival_order(sorted(records, key=lambda r: (r.spec.created_at, r.title)), lambda r: r.seq)


def judgement(
    records: list[ExperimentRecord],
    rule: GateRule,
    base: ExperimentConfig | None = None,
    decisions: dict[str, Decision] | None = None,
) -> Judgement:
    """The gate's verdicts for the ledger's records under the key's base config, with the judge's and humans'
    decisions applied (see `verdicts.judge`)."""
    base = base or ExperimentConfig()
    arrivals = []
    for rec in records:
        for run in rec.runs:
            work = predicted_work(run.result.flops_per_token, run.result.tokens_handed)
            arrivals.append(
                Arrival(run.seq, rec.title, run.seed, run.result.outcome, run.val_bpb, run.result.train_cpu_s, work)
            )
    return judge(arrivals, [r.title for r in records], rule, base.seed, decisions)


LEGACY_NOTE = "ran before seeds and token budgets were recorded: shown, not compared"


def leaderboard(records: list[ExperimentRecord], verdicts: Judgement) -> list[LeaderboardRow]:
    """The incumbent first, then confirmed (and human-accepted) results, then the other ranked experiments by mean
    val_bpb over seeds (lower is better), then scored-but-unranked, failed, not run.

    `delta_vs_best` is against the incumbent (the confirmed best, or the baseline before any confirmed gain).
    """
    means = {r.title: verdicts.verdicts[r.title].mean for r in records}
    best = means.get(verdicts.incumbent) if verdicts.incumbent else None
    baseline = means.get(BASELINE_TITLE)
    order = {r.title: i for i, r in enumerate(run_order(records))}

    def ranked(rec: ExperimentRecord) -> bool:
        return verdicts.verdicts[rec.title].label in RANKED_LABELS and means[rec.title] is not None

    def key(rec: ExperimentRecord) -> tuple:
        if ranked(rec):
            tier = 0 if rec.title == verdicts.incumbent else 1 if verdicts.verdicts[rec.title].label in KEPT else 2
            return (tier, means[rec.title], order[rec.title])
        return (4 if rec.runs or rec.legacy else 5, 0.0, order[rec.title])

    rows = []
    for i, rec in enumerate(sorted(records, key=key)):
        verdict = verdicts.verdicts[rec.title]
        shown = rec.result or (None if rec.runs else rec.legacy)
        mean = means[rec.title] if ranked(rec) else (shown.val_bpb if shown else None)
        legacy = not rec.runs and rec.legacy is not None
        rows.append(
            LeaderboardRow(
                rank=i + 1 if ranked(rec) else None,
                title=rec.title,
                parent=rec.spec.parent,
                val_bpb=mean,
                se=verdict.se,
                n_seeds=verdict.n,
                delta_vs_best=None if mean is None or best is None else mean - best,
                delta_vs_baseline=None if mean is None or baseline is None else mean - baseline,
                label="legacy" if legacy else verdict.label,
                verdict=LEGACY_NOTE if legacy else verdict.reason,
                gain=None if legacy else verdict.gain,
                incumbent=rec.title == verdicts.incumbent,
                outcome=shown.outcome if shown else None,
                seq=rec.seq,
                change_summary=rec.spec.change_summary,
                overrides=dict(rec.spec.overrides),
                step=rec.spec.step,
                decided_by=verdict.by,
                fresh_mean=verdict.fresh_mean,
                fresh_se=verdict.fresh_se,
                n_fresh=verdict.n_fresh,
            )
        )
    return rows


KEPT = ("confirmed", "accepted")
"""Labels of results that count as gains: listed right after the incumbent."""


def fmt_mean(mean: float | None, se: float | None, n: int) -> str:
    """`2.5421 ± 0.0123 (3 seeds)`, or just the value for one seed."""
    if mean is None:
        return "-"
    if se is None or n < 2:
        return f"{mean:.4f} (1 seed)" if n == 1 else f"{mean:.4f}"
    return f"{mean:.4f} ± {se:.4f} ({n} seeds)"


def headline_gain(best: dict[str, Any], base: dict[str, Any] | None) -> tuple[float, float | None, str] | None:
    """The incumbent's gain over the baseline from its fresh seeds only (its screen seed was selected for looking
    good), with the standard error of that difference and what it rests on; None without both means."""
    if not base or base.get("val_bpb") is None:
        return None
    fresh = best.get("fresh_mean") is not None
    mean = best["fresh_mean"] if fresh else best.get("val_bpb")
    se = best.get("fresh_se") if fresh else best.get("se")
    if mean is None:
        return None
    n = best.get("n_fresh") if fresh else best.get("n_seeds", 0)
    what = f"{n} fresh seed{'s' if n != 1 else ''}" if fresh else f"all {n} seed(s), its screen seed included"
    base_se = base.get("se")
    both = None if se is None or base_se is None else (se * se + base_se * base_se) ** 0.5
    return base["val_bpb"] - mean, both, what


def best_line(rows: list[dict[str, Any]], sigma: float | None = None) -> str | None:
    """The verdict in one sentence, from leaderboard row dicts: the confirmed best and its gain (from fresh seeds
    only), or that nothing beat seed noise. None before the baseline succeeded."""
    best = next((r for r in rows if r.get("incumbent")), None)
    if best is None:
        return None
    noise = f"sigma = {sigma:.4f}" if sigma is not None else "sigma not measured"
    shown = fmt_mean(best["val_bpb"], best.get("se"), best.get("n_seeds", 0))
    if best["title"] == BASELINE_TITLE:
        return f"No edit beat seed noise ({noise}); the baseline stays best at val_bpb {shown}"
    text = f"Best: {best['title']!r} at val_bpb {shown}, confirmed against seed noise ({noise})"
    base = next((r for r in rows if r.get("title") == BASELINE_TITLE), None)
    gain = headline_gain(best, base)
    if gain and base:
        value, se, what = gain
        spread = f" ± {se:.4f}" if se is not None else ""
        text += (
            f"; gain over the baseline's {base['val_bpb']:.4f}: {value:+.4f}{spread} "
            f"({value / base['val_bpb'] * 100:.2f}%, from {what})"
        )
    return text


def _cell(text: Any, width: int = 60) -> str:
    """One markdown table cell: single line, pipes escaped, long text cut."""
    s = " ".join(str(text).split()).replace("|", "\\|")
    return s if len(s) <= width else s[: width - 1] + "…"


def _fmt(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def history_table(records: list[ExperimentRecord], rows: list[LeaderboardRow], last_n: int = 20) -> str:
    """The research history for the directive: a markdown table of the last `last_n` experiments in run order."""
    if not records:
        return "No experiments yet."
    by_title = {r.title: r for r in rows}
    ordered = run_order(records)
    shown = ordered[-last_n:] if last_n > 0 else []
    out = [
        "| # | title | parent | step | change | overrides | val_bpb (mean ± se, seeds) | Δ best | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rec in shown:
        row = by_title[rec.title]
        label = row.label if row.label != "failed" else f"failed ({row.outcome})"
        label += f" ({row.decided_by})" if row.decided_by != "rule" else ""
        overrides = ", ".join(f"{k}={v}" for k, v in sorted(rec.spec.overrides.items())) or "-"
        out.append(
            f"| {rec.seq if rec.seq is not None else '-'} | {_cell(rec.title, 40)} | {_cell(rec.spec.parent or '-', 30)} "
            f"| {rec.spec.step or '-'} | {_cell(rec.spec.change_summary or '-')} | {_cell(overrides, 50)} "
            f"| {fmt_mean(row.val_bpb, row.se, row.n_seeds)} | {_fmt(row.delta_vs_best, signed=True)} | {label} |"
        )
    out.append("\n(Δ best = mean val_bpb minus the incumbent's; verdicts: see the gate rule above.)")
    omitted = len(ordered) - len(shown)
    if omitted:
        out.append(f"\n({omitted} earlier experiment{'s' if omitted != 1 else ''} omitted; {len(ordered)} in total.)")
    return "\n".join(out)


def lineage(records: list[ExperimentRecord], rows: list[LeaderboardRow]) -> list[dict[str, Any]]:
    """The fork tree: roots (no parent, or a parent the ledger does not know) with nested children."""
    by_row = {r.title: r for r in rows}
    by_title = {r.title: r for r in records}
    children: dict[str | None, list[ExperimentRecord]] = {}
    for rec in run_order(records):
        parent = rec.spec.parent if rec.spec.parent in by_title else None
        children.setdefault(parent, []).append(rec)

    def node(rec: ExperimentRecord) -> dict[str, Any]:
        row = by_row[rec.title]
        return {
            "title": rec.title,
            "val_bpb": row.val_bpb if row.rank is not None else None,
            "label": row.label,
            "step": rec.spec.step,
            "incumbent": row.incumbent,
            "outcome": rec.result.outcome if rec.result else None,
            "children": [node(c) for c in children.get(rec.title, [])],
        }

    return [node(r) for r in children.get(None, [])]


def lineage_text(tree: list[dict[str, Any]]) -> str:
    """The fork tree as indented text lines, each with its val_bpb or outcome."""
    lines: list[str] = []

    def walk(nodes: list[dict[str, Any]], depth: int) -> None:
        for n in nodes:
            metric = _fmt(n["val_bpb"]) if n["val_bpb"] is not None else (n["outcome"] or "not run")
            mark = " *best*" if n.get("incumbent") else ""
            step = f" ({n['step']})" if n.get("step") else ""
            lines.append(f"{'  ' * depth}- {n['title']}{step}: {metric} [{n.get('label') or '-'}]{mark}")
            walk(n["children"], depth + 1)

    walk(tree, 0)
    return "\n".join(lines)


def result_brief(result: ExperimentResult | None) -> dict[str, Any] | None:
    """The fields of one run's result the agent needs, without logs."""
    if result is None:
        return None
    brief = {"outcome": result.outcome, "val_bpb": result.val_bpb, "seed": result.seed, "steps": result.steps}
    brief.update(
        planned_steps=result.planned_steps, n_params=result.n_params, wall_seconds=round(result.wall_seconds, 1)
    )
    brief.update(oom_retries=result.oom_retries)
    if result.outcome != "success":
        brief["message"] = result.message[:400]
    return brief


def verdict_brief(row: LeaderboardRow | None) -> dict[str, Any] | None:
    """An experiment's standing: mean over seeds, its standard error and seed count, and the gate's verdict."""
    if row is None:
        return None
    out = {"verdict": row.label, "mean_val_bpb": row.val_bpb, "se": row.se, "n_seeds": row.n_seeds}
    out.update(delta_vs_best=row.delta_vs_best, gain=row.gain, why=row.verdict, best=row.incumbent)
    return out


def comparison(ra: ExperimentRecord, rb: ExperimentRecord, rows: dict[str, LeaderboardRow]) -> dict[str, Any]:
    """Two experiments side by side: mean val_bpb delta (b minus a), seeds, verdicts, overrides, a unified diff."""
    a, b = ra.title, rb.title
    ma, mb = rows[a].val_bpb, rows[b].val_bpb
    return {
        "a": a,
        "b": b,
        "val_bpb": {a: ma, b: mb},
        "seeds": {a: rows[a].n_seeds, b: rows[b].n_seeds},
        "verdict": {a: rows[a].label, b: rows[b].label},
        "delta": None if ma is None or mb is None else mb - ma,
        "overrides": {a: ra.spec.overrides, b: rb.spec.overrides},
        "diff": unified_diff(a, ra.train_py, b, rb.train_py),
    }
