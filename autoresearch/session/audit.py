"""The held-out audit: the final pick and the baseline scored once on the test split, after research ends.

Selection only ever sees the validation split. The audit's numbers go to the ledger's `audits/`, the output, the
terminal and the report; no tool, directive or verdict reads them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import flyte

from autoresearch.lab import sizing
from autoresearch.lab.runner import ExperimentRunner
from autoresearch.ledger.records import BASELINE_TITLE
from autoresearch.ledger.verdicts import mean_se
from autoresearch_types import ExperimentResult


async def held_out_audit(session: Any, runner: ExperimentRunner, score_task: Any) -> dict[str, Any]:
    """The final pick and the baseline, every successful seed, scored once on the test split (never seen before)
    by `score_task` (the `score_on_test` task); stored in the ledger. Empty when nothing was kept to audit."""
    ledger = session.ledger
    records, verdicts, _ = await ledger.view()
    if verdicts.incumbent is None:
        return {}
    picked = [r for r in records if r.title in (verdicts.incumbent, BASELINE_TITLE)]
    jobs = [(rec, run) for rec in picked for run in rec.runs if run.val_bpb is not None and run.result.checkpoint]
    if not jobs:
        return {}
    which = "the baseline" if verdicts.incumbent == BASELINE_TITLE else f"{verdicts.incumbent!r} and the baseline"
    print(f"held-out audit: scoring {len(jobs)} run(s) of {which} on the test split", flush=True)
    slots = asyncio.Semaphore(runner.concurrency)

    async def audit_one(rec: Any, run: Any) -> ExperimentResult:
        config = ledger.effective_config(rec.spec).with_overrides({"seed": run.seed}).to_dict()
        async with slots:
            try:
                return await score_task.aio(config=config, data=session.data, checkpoint=run.result.checkpoint)
            except Exception as exc:
                return sizing.failure_from_exception(exc)

    with flyte.group("held-out-audit"):
        results = await asyncio.gather(*(audit_one(rec, run) for rec, run in jobs))
    val: dict[str, list[float]] = {}
    test: dict[str, list[float]] = {}
    for (rec, run), result in zip(jobs, results, strict=True):
        if result.outcome == "success" and result.val_bpb is not None:
            val.setdefault(rec.title, []).append(run.val_bpb)
            test.setdefault(rec.title, []).append(result.val_bpb)
    audit = audit_summary(verdicts.incumbent, val, test)
    audit["failed"] = [
        f"{rec.title} seed {run.seed}: {r.outcome}"
        for (rec, run), r in zip(jobs, results, strict=True)
        if r.outcome != "success"
    ]
    await ledger.record_audit(audit)
    return audit


def audit_summary(best: str, val: dict[str, list[float]], test: dict[str, list[float]]) -> dict[str, Any]:
    """The final pick and the baseline on both splits, from the same audited runs: means, errors, gains and the
    selection gap (the val gain minus the test gain: how much of the gain came from choosing on val)."""

    def stats(values: list[float]) -> dict[str, Any]:
        mean, se = mean_se(values)
        return {"mean": mean, "se": se, "n": len(values)}

    out: dict[str, Any] = {"best": best, "baseline": BASELINE_TITLE}
    out["val"] = {t: stats(v) for t, v in val.items()}
    out["test"] = {t: stats(v) for t, v in test.items()}

    def gain(split: dict[str, dict[str, Any]]) -> float | None:
        b, m = split.get(BASELINE_TITLE, {}).get("mean"), split.get(best, {}).get("mean")
        return None if b is None or m is None else b - m

    out["val_gain"], out["test_gain"] = gain(out["val"]), gain(out["test"])
    gap = None if out["val_gain"] is None or out["test_gain"] is None else out["val_gain"] - out["test_gain"]
    out["selection_gap"] = gap
    return out
