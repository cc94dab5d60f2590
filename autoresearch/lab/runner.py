"""The experiment runner: one object per research run that owns the slots, the warm pool and the sizing policy.

Jobs (one experiment on one seed) are submitted at any time and run at most `concurrency` at once; each
result is handed to `on_result` (which records it and may return follow-up jobs, e.g. a candidate's
confirmation seeds, queued at the front) and then waits to be collected with `wait`. `run` is the batch
form: submit, then wait for everything. Every job asks `admit` as it starts, which is where the experiment
budget is charged: a job refused there is reported as skipped, never silently dropped.

Locally each job is a sandboxed subprocess of this process, so the slots are real concurrency and the warm
pool (owned here, closed by `aclose`) hands out pre-imported interpreters. On a cluster each job is its own
Flyte action, started as a slot frees, with no barrier per batch.

What the runner hands each job's call (`extras`): its sizing policy (the call binds it into the `right_size`
call handler) and the pool's handle. Flyte pickles task inputs, so a live pool cannot be one; the handle lets a
task running in this process find the pool this runner owns (see `sandbox_pool.register`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import flyte

from autoresearch.lab import pods, sizing
from autoresearch.lab.pods import PodSettings
from autoresearch.lab.pruning import PRUNED_ROLES, PruneRule, prune_limits
from autoresearch.lab.sizing import SizingPolicy
from autoresearch.ledger.ledger import Ledger
from autoresearch.ledger.records import ExperimentRecord
from autoresearch.sandbox import pool as sandbox_pool
from autoresearch_types import ExperimentResult

log = logging.getLogger(__name__)

ROLES = ("screen", "replicate", "confirm", "transfer")
"""Why a job runs: an experiment's first run, a baseline seed for the noise floor, a fresh-seed re-run, or the
transfer check at a larger budget (never recorded as a run of the key)."""


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


Call = Callable[[Job, dict[str, Any]], Awaitable[ExperimentResult]]
"""Runs one job with the runner's extras (sized, retried on OOM) and returns its result; never raises."""
OnResult = Callable[[Job, ExperimentResult], Awaitable[list[Job]]]
"""Records a finished job and returns its follow-up jobs."""
Admit = Callable[[Job], bool]
"""Charges a job to the budget as it starts; False refuses it."""


@dataclass
class Outcome:
    """What a wait collected: results in the order they finished, and the jobs the budget refused."""

    done: list[tuple[Job, ExperimentResult]] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)


@dataclass
class Slot:
    """When one job started and ended (wall clock), for slot utilisation."""

    key: tuple[str, int]
    start: float
    end: float | None = None


async def _no_follow_ups(job: Job, result: ExperimentResult) -> list[Job]:
    return []


class ExperimentRunner:
    """Runs jobs at most `concurrency` at a time, accepting new ones while others run."""

    def __init__(
        self,
        call: Call,
        concurrency: int,
        *,
        local: bool = True,
        policy: SizingPolicy | None = None,
        warm_pool: bool | None = None,
    ) -> None:
        self.call = call
        self.concurrency = max(1, int(concurrency))
        self.local = local
        base = policy or (SizingPolicy.for_machine(self.concurrency) if local else SizingPolicy())
        self.policy = base  # threads are the key's own (`config.threads`): results do not depend on load
        use_pool = local if warm_pool is None else warm_pool
        self.pool = (
            sandbox_pool.WarmPool(self.concurrency, launch_memory_mb=self.policy.ceiling_mb) if use_pool else None
        )
        self.pool_handle = sandbox_pool.register(self.pool) if self.pool is not None else ""
        self.on_result: OnResult = _no_follow_ups
        self.admit: Admit = lambda job: True
        self._queue: deque[Job] = deque()
        self._keys: set[tuple[str, int]] = set()
        self._busy = 0
        self._ready = Outcome()
        self._changed: asyncio.Condition | None = None
        self._workers: list[asyncio.Task] = []
        self.slots: list[Slot] = []
        self.started_at = time.monotonic()

    # ---------------------------------------------------------------- set-up and lifetime

    def bind(self, on_result: OnResult, admit: Admit) -> None:
        """Who records results (and returns follow-ups), and who charges the budget."""
        self.on_result, self.admit = on_result, admit

    def extras(self) -> dict[str, Any]:
        """What every job's task call carries: the sizing policy (for `right_size`) and the pool's handle."""
        return {"policy": self.policy, "pool": self.pool_handle}

    async def __aenter__(self) -> ExperimentRunner:
        """Start using the runner; in local mode give the loop room for every live sandboxed process."""
        if self.pool is not None:
            sandbox_pool.ensure_roomy_executor(asyncio.get_running_loop())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the slots (a running job is cancelled: its sandbox is killed) and close the warm pool."""
        self._queue.clear()
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(BaseException):
                await worker
        self._workers.clear()
        if self.pool is not None:
            await self.pool.close()

    # ---------------------------------------------------------------- submit and wait

    @property
    def in_flight(self) -> int:
        return self._busy

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def free_slots(self) -> int:
        return max(0, self.concurrency - self._busy - len(self._queue))

    def submit(self, jobs: list[Job]) -> list[Job]:
        """Queue jobs not already queued or running; returns those accepted. Returns at once."""
        fresh = self._enqueue(jobs, front=False)
        self._start_workers()
        self._notify()
        return fresh

    def _enqueue(self, jobs: list[Job], front: bool) -> list[Job]:
        fresh = [j for j in jobs if j.key not in self._keys]
        self._keys.update(j.key for j in fresh)
        if front:
            self._queue.extendleft(reversed(fresh))
        else:
            self._queue.extend(fresh)
        return fresh

    def titles(self, besides: tuple[str, int] | None = None) -> set[str]:
        """The titles with a job queued or running, but for the job `besides` (one being recorded holds its key)."""
        return {key[0] for key in self._keys if key != besides}

    @property
    def idle(self) -> bool:
        return self._busy == 0 and not self._queue

    async def wait(self, min_results: int = 1, timeout_s: float | None = None, until_idle: bool = False) -> Outcome:
        """Results not collected yet: once at least `min_results` are in, or (with `until_idle`) once nothing is
        queued or running; in any case when nothing more can come, or at the timeout."""
        cond = self._condition()

        def enough() -> bool:
            have = len(self._ready.done) + len(self._ready.skipped)
            return self.idle or (not until_idle and have >= min_results)

        async with cond:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cond.wait_for(enough), timeout_s)
            collected, self._ready = self._ready, Outcome()
        return collected

    async def run(self, jobs: list[Job]) -> Outcome:
        """The batch form: submit `jobs`, then wait until nothing is queued or running (follow-ups included)."""
        self.submit(jobs)
        return await self.wait(until_idle=True)

    # ---------------------------------------------------------------- the slots

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def _notify(self) -> None:
        cond = self._condition()

        async def ping() -> None:
            async with cond:
                cond.notify_all()

        task = asyncio.ensure_future(ping())
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def _has_work(self) -> bool:
        return bool(self._queue)

    def _start_workers(self) -> None:
        self._workers = [w for w in self._workers if not w.done()]
        while len(self._workers) < self.concurrency:
            self._workers.append(asyncio.ensure_future(self._worker()))

    async def _worker(self) -> None:
        cond = self._condition()
        while True:
            async with cond:
                await cond.wait_for(self._has_work)
                job = self._queue.popleft()
                if not self.admit(job):
                    self._keys.discard(job.key)
                    self._ready.skipped.append(job)
                    cond.notify_all()
                    continue
                self._busy += 1
            follow: list[Job] = []
            slot = Slot(job.key, time.monotonic())
            self.slots.append(slot)
            try:
                result = await self._execute(job)
                follow = await self._record(job, result)
            finally:
                slot.end = time.monotonic()
                async with cond:  # follow-ups are queued before this job stops counting: no false idle
                    self._keys.discard(job.key)
                    self._enqueue(follow, front=True)
                    self._busy -= 1
                    cond.notify_all()

    async def _execute(self, job: Job) -> ExperimentResult:
        try:
            return await self.call(job, self.extras())
        except Exception as exc:  # `call` turns failures into results; this guards against the unexpected
            return ExperimentResult(outcome="crash", seed=job.seed, message=f"{type(exc).__name__}: {exc}"[:2000])

    async def _record(self, job: Job, result: ExperimentResult) -> list[Job]:
        """Hand the result on (it becomes collectable once recorded); a failing callback does not stop the rest."""
        try:
            follow = await self.on_result(job, result)
        except Exception as exc:  # one bad record must not stop the run
            log.error("recording %r (seed %s) failed: %s", job.title, job.seed, exc)
            follow = []
        async with self._condition():
            self._ready.done.append((job, result))
        return follow

    # ---------------------------------------------------------------- figures

    def stats(self) -> dict[str, float]:
        """What the runner did: runs, slot utilisation, and warm versus cold starts of sandboxed processes."""
        pool = self.pool
        return {
            "runs": len(self.slots),
            "slot_utilization": round(self.utilization(), 3),
            "warm_starts": pool.hits if pool is not None else 0,
            "cold_starts": pool.misses if pool is not None else 0,
        }

    def utilization(self, since: float | None = None, until: float | None = None) -> float:
        """Busy slot-seconds over `concurrency` x wall between `since` and `until` (default: this runner's life)."""
        since = self.started_at if since is None else since
        until = time.monotonic() if until is None else until
        busy = sum(max(0.0, min(s.end or until, until) - max(s.start, since)) for s in self.slots)
        return busy / max(1e-9, self.concurrency * (until - since))


def task_call(
    tool_obj: Any,
    ledger: Ledger,
    data: Any,
    backend: str,
    allow_unsandboxed: bool = False,
    prune: PruneRule | None = None,
    pod: PodSettings | None = None,
) -> Any:
    """How the runner runs one job (an experiment on one seed) on the data bundle `data`: through the
    `run_experiment` tool `tool_obj`, and so `right_size`, with
    the runner's extras (its sizing policy and pool handle); failures become results. An experiment's screen and
    confirmation runs get pruning thresholds from the curves finished so far (never a baseline seed).
    With `pod` (a cluster) each call is its own action, configured by `pods.overrides`, named after the experiment
    and its seed, and grouped by batch in the UI."""
    where = {"data": data, "backend": backend, "allow_unsandboxed": allow_unsandboxed}
    rule = prune or PruneRule()

    async def call(job: Job, extras: dict[str, Any]) -> ExperimentResult:
        config = ledger.effective_config(job.record.spec).with_overrides({"seed": job.seed}).to_dict()
        limits = await _limits(ledger, job, rule)
        shape = pods.shape(pod, pods.short_name(job.title, job.seed)) if pod is not None else None
        tool = dataclasses.replace(tool_obj, call_handler=sizing.handler(extras["policy"], shape))
        try:
            kwargs = {**where, "pool": extras["pool"], "prune": [list(x) for x in limits]}
            with flyte.group(pods.group_name(job.record.spec.batch_id)):
                result = await tool.aio(train_py=job.record.train_py, config=config, **kwargs)
        except Exception as exc:  # right_size does not raise; this guards the batch against the unexpected
            result = sizing.failure_from_exception(exc)
        result.seed = job.seed
        return result

    return call


async def _limits(ledger: Ledger, job: Job, rule: PruneRule) -> list[tuple[float, float]]:
    """An experiment's runs (its screen and its confirmation re-runs) get pruning thresholds from the trusted curves
    finished so far. A pruned confirmation seed only keeps a candidate from being confirmed (the gate never confirms
    on fewer fresh seeds), so it cannot raise the false-confirmation bound. The baseline's seeds and the transfer
    check are never pruned: they are the yardstick."""
    if not rule.on or job.role not in PRUNED_ROLES:
        return []
    records, verdicts, _ = await ledger.view()
    return prune_limits(records, job.record.spec.parent, rule, verdicts.incumbent)
