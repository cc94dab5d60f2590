"""Pure functions behind the ledger: the spec record, code normalisation, signatures and derived views.

Nothing here touches Flyte or the `MemoryStore`: `ledger.py` reads the records and hands them in, so
every decision and every view (leaderboard, history table, lineage, diff) is testable on plain data.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from autoresearch_types import RUN_KEYS, ExperimentConfig, ExperimentResult

ENTRY_POINTS = ("run_training", "build_model")
"""Top-level functions every `train.py` must define: the trusted harness calls both."""

BASELINE_TITLE = "baseline"
"""The experiment every ledger starts with: the repository's `train.py` under the base config."""

BUDGET_KEYS = tuple(k for k in RUN_KEYS if k != "seed")
"""The base-config fields a spec pins at creation, so a resumed run with another budget reproduces it."""

LABELS = ("new_best", "regression", "failed", "not_run")
"""Leaderboard outcome labels: improved on the best so far, ran but did not, did not succeed, no result yet."""


@dataclass
class ExperimentSpec:
    """One planned experiment as `experiments/<slug>/spec.json` stores it (its code lives beside it).

    `overrides` are already clamped and include those inherited from `parent`; `budget` pins the
    base budget the experiment was planned (and signed) under, so `effective_config(base)` gives the
    same config even if a later run of the ledger uses another budget.
    """

    title: str
    slug: str
    parent: str | None = None
    change_summary: str = ""
    hypothesis: str = ""
    expected_effect: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    batch_id: str = ""
    created_at: str = ""
    signature: str = ""
    budget: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict, for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentSpec:
        """Build from a dict, ignoring keys this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def effective_config(self, base: ExperimentConfig) -> ExperimentConfig:
        """The config this experiment trains with: `base`, then the pinned budget, then the overrides."""
        return base.with_overrides({**self.budget, **self.overrides})


@dataclass
class ExperimentRecord:
    """Everything the ledger holds about one experiment: spec, effective source, and result if any."""

    spec: ExperimentSpec
    train_py: str
    result: ExperimentResult | None = None
    seq: int | None = None
    recorded_at: str = ""

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def val_bpb(self) -> float | None:
        """The trusted metric, only for a successful run with a finite value."""
        if self.result is None or self.result.outcome != "success" or self.result.val_bpb is None:
            return None
        return self.result.val_bpb if math.isfinite(self.result.val_bpb) else None


@dataclass
class LeaderboardRow:
    """One leaderboard line: rank among successes (None otherwise), deltas, label and kept flag."""

    rank: int | None
    title: str
    parent: str | None
    val_bpb: float | None
    delta_vs_best: float | None
    delta_vs_baseline: float | None
    label: str
    kept: bool
    outcome: str | None
    seq: int | None
    change_summary: str
    overrides: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- names and code


def budget_of(config: ExperimentConfig) -> dict[str, Any]:
    """The budget fields of a config (see `BUDGET_KEYS`)."""
    return {k: getattr(config, k) for k in BUDGET_KEYS}


def slugify(title: str) -> str:
    """A path-safe, case-insensitive name: 'Deeper 6L' and 'deeper-6l' both give 'deeper-6l'."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:80]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Drop module, class and function docstrings so editing prose is not a code change."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0].value if body and isinstance(body[0], ast.Expr) else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def normalize_code(source: str) -> str:
    """The code's AST without comments, whitespace or docstrings (raises SyntaxError if it does not parse)."""
    return ast.dump(_strip_docstrings(ast.parse(source)))


def check_source(source: str) -> str | None:
    """None if `source` parses and defines every entry point at top level, else what is wrong and what to do."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return f"train_py does not parse: {exc.msg} at line {exc.lineno}. Send the full corrected file."
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    missing = [name for name in ENTRY_POINTS if name not in defined]
    if missing:
        return (
            f"train_py must define {', '.join(f'{m}(...)' for m in missing)} at top level (the harness calls "
            "run_training(config, data_dir) and build_model(config)). Send the whole file, not a fragment; "
            "or leave train_py out to reuse the parent's code."
        )
    return None


def signature(source: str, config: ExperimentConfig) -> str:
    """The dedup key: normalised code plus the effective config (overrides and budget included)."""
    payload = json.dumps({"code": normalize_code(source), "config": config.to_dict()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def close_titles(name: str, titles: list[str], n: int = 5) -> list[str]:
    """Titles that look like `name` (by text and by slug), for 'did you mean' messages."""
    by_slug = {slugify(t): t for t in titles}
    hits = difflib.get_close_matches(name, titles, n=n, cutoff=0.5)
    hits += [by_slug[s] for s in difflib.get_close_matches(slugify(name), list(by_slug), n=n, cutoff=0.5)]
    return list(dict.fromkeys(hits))[:n]


def unified_diff(a_title: str, a_src: str, b_title: str, b_src: str, context: int = 3) -> str:
    """A unified diff of two sources, labelled by experiment title."""
    lines = difflib.unified_diff(
        a_src.splitlines(keepends=True),
        b_src.splitlines(keepends=True),
        f"{a_title}/train.py",
        f"{b_title}/train.py",
        n=context,
    )
    return "".join(lines)


# ---------------------------------------------------------------- derived views


def run_order(records: list[ExperimentRecord]) -> list[ExperimentRecord]:
    """Experiments with a result in the order results arrived, then those not run in creation order."""
    ran = sorted((r for r in records if r.seq is not None), key=lambda r: r.seq or 0)
    pending = sorted((r for r in records if r.seq is None), key=lambda r: (r.spec.created_at, r.title))
    return ran + pending


def _label(record: ExperimentRecord, best_before: float | None) -> str:
    if record.result is None:
        return "not_run"
    bpb = record.val_bpb
    if bpb is None:
        return "failed"
    return "new_best" if best_before is None or bpb < best_before else "regression"


def leaderboard(records: list[ExperimentRecord]) -> list[LeaderboardRow]:
    """Successes ranked by val_bpb (lower is better), then failures, then experiments not run yet.

    `kept` means the experiment beat every val_bpb recorded before it, in the order results arrived.
    """
    ordered = run_order(records)
    labels: dict[str, str] = {}
    best_so_far: float | None = None
    for rec in ordered:
        labels[rec.title] = _label(rec, best_so_far)
        if rec.val_bpb is not None and (best_so_far is None or rec.val_bpb < best_so_far):
            best_so_far = rec.val_bpb
    baseline = next((r.val_bpb for r in records if r.title == BASELINE_TITLE), None)
    ranked = sorted((r for r in ordered if r.val_bpb is not None), key=lambda r: (r.val_bpb, r.seq or 0))
    rest = [r for r in ordered if r.val_bpb is None and r.result is not None]
    rest += [r for r in ordered if r.result is None]
    rows = []
    for i, rec in enumerate(ranked + rest):
        bpb = rec.val_bpb
        rows.append(
            LeaderboardRow(
                rank=i + 1 if bpb is not None else None,
                title=rec.title,
                parent=rec.spec.parent,
                val_bpb=bpb,
                delta_vs_best=None if bpb is None or best_so_far is None else bpb - best_so_far,
                delta_vs_baseline=None if bpb is None or baseline is None else bpb - baseline,
                label=labels[rec.title],
                kept=labels[rec.title] == "new_best",
                outcome=rec.result.outcome if rec.result else None,
                seq=rec.seq,
                change_summary=rec.spec.change_summary,
                overrides=dict(rec.spec.overrides),
            )
        )
    return rows


def best_line(rows: list[dict[str, Any]]) -> str | None:
    """ "Best: 'T' at val_bpb X, P% better than the baseline (B)" from leaderboard row dicts; None without a success."""
    best = next((r for r in rows if r.get("rank") == 1), None)
    if best is None:
        return None
    text = f"Best: {best['title']!r} at val_bpb {best['val_bpb']:.4f}"
    base = next((r.get("val_bpb") for r in rows if r.get("title") == BASELINE_TITLE), None)
    if base:
        text += f", {(base - best['val_bpb']) / base * 100:.2f}% better than the baseline ({base:.4f})"
    return text


def _cell(text: Any, width: int = 60) -> str:
    """One markdown table cell: single line, pipes escaped, long text cut."""
    s = " ".join(str(text).split()).replace("|", "\\|")
    return s if len(s) <= width else s[: width - 1] + "…"


def _fmt(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def history_table(records: list[ExperimentRecord], last_n: int = 20) -> str:
    """The research history for the directive: a markdown table of the last `last_n` experiments in run order."""
    if not records:
        return "No experiments yet."
    rows = {r.title: r for r in leaderboard(records)}
    ordered = run_order(records)
    shown = ordered[-last_n:] if last_n > 0 else []
    out = [
        "| # | title | parent | change | overrides | val_bpb | Δ best | outcome | kept |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rec in shown:
        row = rows[rec.title]
        outcome = row.label if row.label != "failed" else f"failed ({row.outcome})"
        overrides = ", ".join(f"{k}={v}" for k, v in sorted(rec.spec.overrides.items())) or "-"
        out.append(
            f"| {rec.seq if rec.seq is not None else '-'} | {_cell(rec.title, 40)} | {_cell(rec.spec.parent or '-', 30)} "
            f"| {_cell(rec.spec.change_summary or '-')} | {_cell(overrides, 50)} | {_fmt(row.val_bpb)} "
            f"| {_fmt(row.delta_vs_best, signed=True)} | {outcome} | {'yes' if row.kept else 'no'} |"
        )
    out.append("\n(kept = beat every val_bpb recorded before it; Δ best = val_bpb minus the current best.)")
    omitted = len(ordered) - len(shown)
    if omitted:
        out.append(f"\n({omitted} earlier experiment{'s' if omitted != 1 else ''} omitted; {len(ordered)} in total.)")
    return "\n".join(out)


def lineage(records: list[ExperimentRecord]) -> list[dict[str, Any]]:
    """The fork tree: roots (no parent, or a parent the ledger does not know) with nested children."""
    by_title = {r.title: r for r in records}
    children: dict[str | None, list[ExperimentRecord]] = {}
    for rec in run_order(records):
        parent = rec.spec.parent if rec.spec.parent in by_title else None
        children.setdefault(parent, []).append(rec)

    def node(rec: ExperimentRecord) -> dict[str, Any]:
        return {
            "title": rec.title,
            "val_bpb": rec.val_bpb,
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
            lines.append(f"{'  ' * depth}- {n['title']}: {metric}")
            walk(n["children"], depth + 1)

    walk(tree, 0)
    return "\n".join(lines)
