"""The runner on its own: slots, submit while others run, follow-ups first, the budget's veto, contained failures."""

from __future__ import annotations

import asyncio

import pytest

from autoresearch.lab.runner import ExperimentRunner, Job
from autoresearch.ledger.records import ExperimentRecord, ExperimentSpec
from autoresearch.sandbox import pool as sandbox_pool
from autoresearch_types import ExperimentResult


def job(title: str, seed: int = 0, role: str = "screen") -> Job:
    return Job(ExperimentRecord(ExperimentSpec(title=title, slug=title.lower()), ""), seed, role)


class Recorder:
    """A `call` that tracks how many jobs run at once, the order they start in, and the extras they got.

    Each job finishes when its gate opens (`release`), so a test decides the order things happen in."""

    def __init__(self, fail: frozenset[str] = frozenset(), gated: bool = False) -> None:
        self.running = 0
        self.peak = 0
        self.started: list[tuple[str, int]] = []
        self.extras: list[dict] = []
        self.fail = fail
        self.gates: dict[tuple[str, int], asyncio.Event] = {}
        self.gated = gated

    def release(self, *keys: tuple[str, int]) -> None:
        for key in keys:
            self.gates.setdefault(key, asyncio.Event()).set()

    async def __call__(self, j: Job, extras: dict) -> ExperimentResult:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.started.append(j.key)
        self.extras.append(extras)
        try:
            if self.gated:
                await self.gates.setdefault(j.key, asyncio.Event()).wait()
            else:
                await asyncio.sleep(0)  # yield so that the other slots get to start: not a synchronisation
            if j.title in self.fail:
                raise RuntimeError(f"{j.title} exploded")
            return ExperimentResult("success", val_bpb=2.0, seed=j.seed)
        finally:
            self.running -= 1


async def no_follow(j: Job, r: ExperimentResult) -> list[Job]:
    return []


def test_at_most_concurrency_jobs_run_and_every_job_finishes() -> None:
    async def main() -> tuple[ExperimentRunner, list]:
        rec = Recorder()
        async with ExperimentRunner(rec, 3, local=False) as runner:
            runner.bind(no_follow, lambda j: True)
            out = await runner.run([job(f"E{i}") for i in range(10)])
        return rec, out

    rec, out = asyncio.run(main())
    assert rec.peak == 3 and len(out.done) == 10 and not out.skipped
    assert all(e["policy"].cpu == 1 and e["pool"] == "" for e in rec.extras), "one thread each; no pool on a cluster"


def test_jobs_submitted_while_others_run_start_as_slots_free_and_come_back_as_they_finish() -> None:
    async def main() -> dict:
        rec = Recorder(gated=True)
        async with ExperimentRunner(rec, 2, local=False) as runner:
            runner.bind(no_follow, lambda j: True)
            runner.submit([job("A"), job("B")])
            await asyncio.sleep(0)
            runner.submit([job("C")])  # no slot yet: it waits in the queue
            state = (runner.in_flight, runner.queued, runner.free_slots)
            rec.release(("B", 0))
            first = await runner.wait(1)
            rec.release(("A", 0), ("C", 0))
            rest = await runner.wait(until_idle=True)
            return {
                "state": state,
                "first": [j.title for j, _ in first.done],
                "rest": sorted(j.title for j, _ in rest.done),
                "started": rec.started,
            }

    out = asyncio.run(main())
    assert out["state"] == (2, 1, 0)
    assert out["first"] == ["B"], "a result comes back as soon as it finishes, before the others"
    assert out["rest"] == ["A", "C"] and out["started"][2] == ("C", 0)


def test_follow_ups_run_next_and_duplicates_are_dropped() -> None:
    async def on_result(j: Job, r: ExperimentResult) -> list[Job]:
        if j.key == ("A", 0):
            return [job("A", 1, "confirm"), job("A", 2, "confirm"), job("B", 0)]  # B is already queued
        return []

    async def main() -> tuple[Recorder, list]:
        rec = Recorder()
        async with ExperimentRunner(rec, 1, local=False) as runner:
            runner.bind(on_result, lambda j: True)
            out = await runner.run([job("A"), job("B"), job("C"), job("D")])
        return rec, out

    rec, out = asyncio.run(main())
    assert rec.started == [("A", 0), ("A", 1), ("A", 2), ("B", 0), ("C", 0), ("D", 0)]
    assert [j.role for j, _ in out.done][1:3] == ["confirm", "confirm"]


def test_the_budget_vetoes_jobs_as_they_start() -> None:
    left = {"runs": 3}

    def admit(j: Job) -> bool:
        if left["runs"] <= 0:
            return False
        left["runs"] -= 1
        return True

    async def on_result(j: Job, r: ExperimentResult) -> list[Job]:
        return [job("A", 1, "confirm")] if j.key == ("A", 0) else []

    async def main() -> list:
        async with ExperimentRunner(Recorder(), 2, local=False) as runner:
            runner.bind(on_result, admit)
            return await runner.run([job("A"), job("B"), job("C")])

    out = asyncio.run(main())
    assert len(out.done) == 3 and [j.key for j in out.skipped] == [("C", 0)]


def test_a_failing_call_or_callback_is_contained() -> None:
    seen: list[str] = []

    async def on_result(j: Job, r: ExperimentResult) -> list[Job]:
        seen.append(j.title)
        if j.title == "Cursed":
            raise ValueError("the ledger said no")
        return []

    async def main() -> list:
        async with ExperimentRunner(Recorder(fail=frozenset({"Bad"})), 2, local=False) as runner:
            runner.bind(on_result, lambda j: True)
            return await runner.run([job("Bad"), job("Cursed"), job("Fine")])

    out = asyncio.run(main())
    results = {j.title: r for j, r in out.done}
    assert results["Bad"].outcome == "crash" and "exploded" in results["Bad"].message
    assert results["Fine"].outcome == "success" and sorted(seen) == ["Bad", "Cursed", "Fine"]


@pytest.mark.timeout(60)
def test_the_runner_owns_its_pool_and_leaves_nothing_behind_however_it_ends() -> None:
    async def main() -> tuple[str, bool]:
        rec = Recorder(gated=True)
        runner = ExperimentRunner(rec, 2, local=True)
        handle = runner.pool_handle
        assert sandbox_pool.lookup(handle) is runner.pool and runner.pool.size == 2
        runner.bind(no_follow, lambda j: True)
        runner.submit([job("Hangs")])
        await asyncio.sleep(0)
        await runner.aclose()  # a job still running: it is cancelled, the pool closed
        return handle, runner.pool.size == 0 and len(runner.pool) == 0 and runner.idle

    handle, closed = asyncio.run(main())
    assert closed
    import gc

    gc.collect()
    assert sandbox_pool.lookup(handle) is None, "a closed runner's pool cannot be found any more"
