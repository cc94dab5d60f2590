"""The runner on its own: slots, follow-ups at the front, the budget's veto, and failures that stay contained."""

from __future__ import annotations

import asyncio

from autoresearch_types import ExperimentResult
from ledger_views import ExperimentRecord, ExperimentSpec
from runner import ExperimentRunner, Job


def job(title: str, seed: int = 0, role: str = "screen") -> Job:
    return Job(ExperimentRecord(ExperimentSpec(title=title, slug=title.lower()), ""), seed, role)


class Recorder:
    """An `execute` that tracks how many jobs run at once and the order they start in."""

    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.running = 0
        self.peak = 0
        self.started: list[tuple[str, int]] = []
        self.fail = fail

    async def __call__(self, j: Job) -> ExperimentResult:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.started.append(j.key)
        try:
            await asyncio.sleep(0)  # yield so that the other slots get to start: not a synchronisation
            if j.title in self.fail:
                raise RuntimeError(f"{j.title} exploded")
            return ExperimentResult("success", val_bpb=2.0, seed=j.seed)
        finally:
            self.running -= 1


def test_at_most_concurrency_jobs_run_and_every_job_finishes() -> None:
    rec = Recorder()

    async def on_result(j: Job, r: ExperimentResult) -> list[Job]:
        return []

    out = asyncio.run(ExperimentRunner(rec, 3).run([job(f"E{i}") for i in range(10)], on_result, lambda j: True))
    assert rec.peak == 3 and len(out.done) == 10 and not out.skipped


def test_follow_ups_run_next_and_duplicates_are_dropped() -> None:
    rec = Recorder()

    async def on_result(j: Job, r: ExperimentResult) -> list[Job]:
        if j.key == ("A", 0):
            return [job("A", 1, "confirm"), job("A", 2, "confirm"), job("B", 0)]  # B is already queued
        return []

    jobs = [job("A"), job("B"), job("C"), job("D")]
    out = asyncio.run(ExperimentRunner(rec, 1).run(jobs, on_result, lambda j: True))
    assert rec.started == [("A", 0), ("A", 1), ("A", 2), ("B", 0), ("C", 0), ("D", 0)]
    assert [j.role for j, _ in out.done][1:3] == ["confirm", "confirm"]


def test_the_budget_vetoes_jobs_as_they_start() -> None:
    rec = Recorder()
    left = {"runs": 3}

    def admit(j: Job) -> bool:
        if left["runs"] <= 0:
            return False
        left["runs"] -= 1
        return True

    async def on_result(j: Job, r: ExperimentResult) -> list[Job]:
        return [job("A", 1, "confirm")] if j.key == ("A", 0) else []

    out = asyncio.run(ExperimentRunner(rec, 2).run([job("A"), job("B"), job("C")], on_result, admit))
    assert len(out.done) == 3 and [j.key for j in out.skipped] == [("C", 0)]


def test_a_failing_execute_or_callback_is_contained() -> None:
    rec = Recorder(fail={"Bad"})
    seen: list[str] = []

    async def on_result(j: Job, r: ExperimentResult) -> list[Job]:
        seen.append(j.title)
        if j.title == "Cursed":
            raise ValueError("the ledger said no")
        return []

    jobs = [job("Bad"), job("Cursed"), job("Fine")]
    out = asyncio.run(ExperimentRunner(rec, 2).run(jobs, on_result, lambda j: True))
    results = {j.title: r for j, r in out.done}
    assert results["Bad"].outcome == "crash" and "exploded" in results["Bad"].message
    assert results["Fine"].outcome == "success" and sorted(seen) == ["Bad", "Cursed", "Fine"]
