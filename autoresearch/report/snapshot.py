"""The report's snapshot: everything the tabs render, as one plain dict built from the ledger's records.

Pure: the session reads the store once (`StoreView`) and hands it in with the run's own facts, so the same
records always give the same snapshot, and the tests build it from real records with the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autoresearch.ledger.records import BASELINE_TITLE, ExperimentRecord, LeaderboardRow
from autoresearch.ledger.verdicts import Judgement
from autoresearch.ledger.views import lineage
from autoresearch.report.text import cost_per_gain

ACTIVITY_SHOWN = 300
"""The newest activity events a snapshot carries."""


@dataclass
class StoreView:
    """What the report reads from a key's store: its records, their verdicts and board, and its other records."""

    records: list[ExperimentRecord]
    verdicts: Judgement
    board: list[LeaderboardRow]
    gate: str
    batch_plans: list[dict[str, Any]] = field(default_factory=list)
    audit_tail: list[dict[str, Any]] = field(default_factory=list)
    audit: dict[str, Any] = field(default_factory=dict)
    transfer: dict[str, Any] = field(default_factory=dict)


def experiment_entry(rec: ExperimentRecord, label: str | None) -> dict[str, Any]:
    """One experiment as the tabs read it: its spec, source, first result, every run and its verdict label."""
    runs = [
        {"seed": r.seed, "seq": r.seq, "role": r.role, "outcome": r.result.outcome, "val_bpb": r.val_bpb}
        for r in rec.runs
    ]
    result = rec.result.to_dict() if rec.result else None
    return {
        **rec.spec.to_dict(),
        "seq": rec.seq,
        "train_py": rec.train_py,
        "result": result,
        "runs": runs,
        "label": label,
    }


def totals(records: list[ExperimentRecord]) -> dict[str, Any]:
    """Compute and outcomes over every run of the key."""
    runs = [run.result for r in records for run in r.runs]
    by_outcome: dict[str, int] = {}
    for result in runs:
        by_outcome[result.outcome] = by_outcome.get(result.outcome, 0) + 1
    return {
        "compute_s": round(sum(r.wall_seconds for r in runs), 1),
        "train_cpu_s": round(sum(r.train_cpu_s for r in runs), 1),
        "experiments_run": sum(1 for r in records if r.runs and r.title != BASELINE_TITLE),
        "runs": len(runs),
        "by_outcome": by_outcome,
    }


def build_snapshot(
    view: StoreView, run_info: dict[str, Any], events: list[dict[str, Any]], usage: dict[str, Any]
) -> dict[str, Any]:
    """Everything the report renders: the run, experiments, board, lineage, plans, noise, audit, activity, totals."""
    records = sorted(view.records, key=lambda r: r.spec.created_at)
    labels = {r.title: r.label for r in view.board}
    verdicts = view.verdicts
    key_totals = totals(records)
    usd = usage.get("cost_usd") if usage.get("cost_known", True) is not False else None
    confirmed = sum(r.label == "confirmed" for r in view.board)
    campaign = verdicts.campaign.to_dict() if verdicts.campaign else {}
    return {
        "run": run_info,
        "experiments": [experiment_entry(r, labels.get(r.title)) for r in records],
        "leaderboard": [r.to_dict() for r in view.board],
        "lineage": lineage(view.records, view.board),
        "batch_plans": list(view.batch_plans),
        "audit_tail": list(view.audit_tail),
        "activity": list(events[-ACTIVITY_SHOWN:]),
        "usage": usage,
        "noise": {
            "sigma": verdicts.sigma,
            "df": verdicts.df,
            "gate": view.gate,
            "incumbent": verdicts.incumbent,
            "mde": verdicts.mde,
            "campaign": campaign,
        },
        "audit": dict(view.audit or {}),
        "transfer": dict(view.transfer or {}),
        "cost_per_gain": cost_per_gain(confirmed, key_totals["train_cpu_s"], usd),
        "totals": key_totals,
        "baseline_title": BASELINE_TITLE,
    }
