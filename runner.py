"""The experiment runner: runs jobs (one experiment on one seed) a fixed number at a time, with follow-ups.

A job that finishes may queue follow-up jobs (the confirmation seeds of a candidate that passed the
screen); they go to the front of the queue, so a confirmation runs as soon as a slot frees, beside the
rest of the batch. Every job asks `admit` just before it starts, which is where the experiment budget
is charged: a job refused there is reported as skipped, never silently dropped.

Locally each job is a sandboxed subprocess, so this is real concurrency; on a cluster each job is its
own Flyte action, so the same loop fans out across pods without a barrier per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from autoresearch_types import ExperimentResult
from ledger_views import ExperimentRecord

log = logging.getLogger(__name__)

ROLES = ("screen", "replicate", "confirm")
"""Why a job runs: an experiment's first run, a baseline seed for the noise floor, or a fresh-seed re-run."""


@dataclass(frozen=True)
class Job:
    """One run to do: an experiment (spec and source) on one seed, and why."""

    record: ExperimentRecord
    seed: int
    role: str

    @property
    def title(self) -> str:
        return self.record.title

    @property
    def key(self) -> tuple[str, int]:
        return (self.record.title, self.seed)


Execute = Callable[[Job], Awaitable[ExperimentResult]]
"""Runs one job (sized, retried on OOM) and returns its result; never raises."""
OnResult = Callable[[Job, ExperimentResult], Awaitable[list[Job]]]
"""Records a finished job and returns its follow-up jobs."""


@dataclass
class Outcome:
    """What a `run` call did: results in the order they finished, and the jobs the budget refused."""

    done: list[tuple[Job, ExperimentResult]]
    skipped: list[Job]


class ExperimentRunner:
    """Runs jobs at most `concurrency` at a time; finished jobs may queue follow-ups at the front."""

    def __init__(
        self,
        execute: Execute,
        concurrency: int,
        group: Callable[[str], contextlib.AbstractContextManager] | None = None,
    ):
        self.execute = execute
        self.concurrency = max(1, int(concurrency))
        self.group = group or (lambda name: contextlib.nullcontext())

    async def run(
        self, jobs: list[Job], on_result: OnResult, admit: Callable[[Job], bool], name: str = "batch"
    ) -> Outcome:
        """Run `jobs` (and their follow-ups) to the end; a failing callback is logged and does not stop the rest."""
        queue: deque[Job] = deque(jobs)
        seen = {j.key for j in jobs}
        out = Outcome([], [])
        idle = asyncio.Condition()
        busy = 0

        def ready() -> bool:
            return bool(queue) or busy == 0

        async def worker() -> None:
            nonlocal busy
            while True:
                async with idle:
                    await idle.wait_for(ready)
                    if not queue:
                        return
                    job = queue.popleft()
                    if not admit(job):
                        out.skipped.append(job)
                        continue
                    busy += 1
                follow: list[Job] = []
                try:
                    follow = await self._one(job, on_result, out)
                finally:
                    async with idle:
                        busy -= 1
                        fresh = [f for f in follow if f.key not in seen]
                        seen.update(f.key for f in fresh)
                        queue.extendleft(reversed(fresh))
                        idle.notify_all()

        with self.group(name):
            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return out

    async def _one(self, job: Job, on_result: OnResult, out: Outcome) -> list[Job]:
        """Run one job and its callback; returns its follow-ups (none if the callback failed)."""
        try:
            result = await self.execute(job)
        except Exception as exc:  # `execute` turns failures into results; this guards against the unexpected
            result = ExperimentResult(outcome="crash", seed=job.seed, message=f"{type(exc).__name__}: {exc}"[:2000])
        out.done.append((job, result))
        try:
            return await on_result(job, result)
        except Exception as exc:  # one bad record must not stop the batch
            log.error("recording %r (seed %s) failed: %s", job.title, job.seed, exc)
            return []
