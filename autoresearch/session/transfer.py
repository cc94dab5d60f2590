"""The transfer check: after research, the final pick and the baseline re-run at K x the token budget on fresh
seeds, to see whether the gain holds at scale. Recorded in the ledger's `transfers/`; no tool, directive or verdict
reads it, and its runs do not count against the key's budget.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import flyte

from autoresearch.lab.runner import ExperimentRunner, Job
from autoresearch.ledger.records import BASELINE_TITLE, ExperimentRecord
from autoresearch.ledger.scaling import transfer_summary
from autoresearch.ledger.views import headline_gain

FRESH_OFFSET = 1000
"""Transfer seeds start this far past the key's base seed: no run of the key ever used them."""


def scaled(rec: ExperimentRecord, base_budget: dict[str, Any], scale: float) -> ExperimentRecord:
    """The experiment with its pinned budget scaled: `scale` x the tokens and the time cap (same steps per token)."""
    budget = {**base_budget, **rec.spec.budget}
    budget["token_budget"] = int(round(budget["token_budget"] * scale))
    budget["time_budget_s"] = float(budget["time_budget_s"]) * scale
    return dataclasses.replace(rec, spec=dataclasses.replace(rec.spec, budget=budget))


async def transfer_check(session: Any, runner: ExperimentRunner, scale: float) -> dict[str, Any]:
    """Run the pick and the baseline at `scale` x the token budget on `replicates` fresh seeds each, judge, record."""
    ledger = session.ledger
    records, verdicts, rows = await ledger.view()
    pick = verdicts.incumbent
    if not pick or pick == BASELINE_TITLE:
        check = {"scale": scale, "pick": pick, "error": "no confirmed gain to check"}
        await ledger.record_transfer(check)
        return check
    base_cfg = ledger.base_config
    budget = {"token_budget": base_cfg.token_budget, "time_budget_s": base_cfg.time_budget_s}
    seeds = [base_cfg.seed + FRESH_OFFSET + i for i in range(ledger.rule.replicates)]
    jobs = [
        Job(scaled(r, budget, scale), s, "transfer")
        for r in records
        if r.title in (pick, BASELINE_TITLE)
        for s in seeds
    ]
    print(f"transfer check: {pick!r} and the baseline at {scale:g}x the token budget, {len(seeds)} fresh seeds each")
    slots = asyncio.Semaphore(runner.concurrency)

    async def one(job: Job) -> Any:
        async with slots:
            return await runner.call(job, runner.extras())

    with flyte.group("transfer-check"):
        results = await asyncio.gather(*(one(j) for j in jobs))
    values: dict[str, list[float]] = {}
    for job, result in zip(jobs, results, strict=True):
        if result.outcome == "success" and result.val_bpb is not None:
            values.setdefault(job.title, []).append(result.val_bpb)
    row_dicts = [r.to_dict() for r in rows]
    best = next(r for r in row_dicts if r["incumbent"])
    gain = headline_gain(best, next((r for r in row_dicts if r["title"] == BASELINE_TITLE), None))
    check = transfer_summary(pick, values, scale, gain[0] if gain else None)
    check["seeds"] = seeds
    check["failed"] = [
        f"{j.title} seed {j.seed}: {r.outcome}" for j, r in zip(jobs, results, strict=True) if r.outcome != "success"
    ]
    check["cpu_s"] = round(sum(r.train_cpu_s for r in results), 1)
    await ledger.record_transfer(check)
    return check
