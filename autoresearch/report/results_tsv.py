"""`results.tsv`: karpathy/autoresearch's log of experiments, from a key's records (pure functions).

Karpathy's five columns come first, with his conventions (tab-separated, `val_bpb` to six places, memory in GB to
one, a crash logged as `0.000000` and `0.0`), then ours. One row per experiment that ran, baseline first, then in
the order the runs arrived. `commit` is the experiment's commit as `export --git` writes it (`lineage_git.py`).
"""

from __future__ import annotations

from typing import Any

from autoresearch.ledger.records import BASELINE_TITLE, ExperimentRecord, LeaderboardRow
from autoresearch.report.lineage_git import commit_ids, commit_plans, one_line
from autoresearch.report.summary import rooted
from autoresearch_types import ExperimentConfig

COLUMNS = ("commit", "val_bpb", "memory_gb", "status", "description", "seeds", "se", "verdict", "step", "parent")
"""Karpathy's columns (commit, val_bpb, memory_gb, status, description), then ours."""

STATUS = {
    "baseline": "keep",
    "confirmed": "keep",
    "accepted": "keep",
    "unconfirmed": "discard",
    "within_noise": "discard",
    "regression": "discard",
    "truncated": "discard",
    "over_budget": "discard",
    "pruned": "discard",
    "unjudged": "discard",
    "rejected": "discard",
    "failed": "crash",
}
"""Karpathy's status for each verdict label of an experiment that ran (`not_run` experiments get no row): `keep`
is what moved the incumbent (and the baseline, his first row), `crash` a run that produced no score."""

SHORT = 7
"""Characters of the commit id, as karpathy logs it."""


def memory_gb(rec: ExperimentRecord) -> float:
    """The highest peak memory among the experiment's runs, in GB (MB / 1024, as karpathy computes it)."""
    return max((r.result.peak_memory_mb for r in rec.runs), default=0.0) / 1024


def result_row(rec: ExperimentRecord, row: LeaderboardRow, commit: str) -> dict[str, Any]:
    """One experiment's row as plain values (None where there is no number)."""
    status = STATUS.get(row.label, "discard")
    crashed = status == "crash"
    return {
        "commit": commit[:SHORT],
        "val_bpb": 0.0 if crashed else row.val_bpb,
        "memory_gb": 0.0 if crashed else memory_gb(rec),
        "status": status,
        "description": one_line(rec.title),
        "seeds": row.n_seeds,
        "se": row.se,
        "verdict": row.label,
        "step": rec.spec.step,
        "parent": one_line(rec.spec.parent or "") if rec.title != BASELINE_TITLE else "",
    }


def result_rows(
    records: list[ExperimentRecord], rows: list[LeaderboardRow], key: str, base: ExperimentConfig
) -> list[dict[str, Any]]:
    """Every experiment that ran, baseline first, then by the arrival of its first run."""
    tree = rooted(records)
    ids = commit_ids(commit_plans(tree, rows, key, base))
    by_row = {r.title: r for r in rows}
    ran = [r for r in tree if r.runs and r.title in by_row]
    ran.sort(key=lambda r: (r.title != BASELINE_TITLE, r.seq or 0))
    return [result_row(r, by_row[r.title], ids[r.title]) for r in ran]


def cell(name: str, value: Any) -> str:
    """A value as karpathy writes it: val_bpb and se to 6 places, memory to 1, nothing for a missing number."""
    if value is None:
        return ""
    if name in ("val_bpb", "se"):
        return f"{value:.6f}"
    if name == "memory_gb":
        return f"{value:.1f}"
    return one_line(value)


def tsv_text(rows: list[dict[str, Any]]) -> str:
    """The header and one tab-separated line per row."""
    lines = ["\t".join(COLUMNS)] + ["\t".join(cell(c, r[c]) for c in COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


def results_tsv(records: list[ExperimentRecord], rows: list[LeaderboardRow], key: str, base: ExperimentConfig) -> str:
    """The whole `results.tsv` of a key."""
    return tsv_text(result_rows(records, rows, key, base))
