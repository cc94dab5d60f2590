"""The warm pool: sandboxed interpreters started ahead of their job, each used for one phase only.

Real sandboxed processes throughout (the default backend; the warm-versus-cold test runs under each isolating one). Each test runs in one event loop, as a
driver run does, and leaves no process or work dir behind.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

import prepare
from autoresearch.sandbox import backends
from autoresearch.sandbox import experiment as sandbox
from autoresearch.sandbox import pool as sandbox_pool
from autoresearch.sandbox.processes import marked_pids
from autoresearch_types import ExperimentConfig, ExperimentResult

REPO = Path(__file__).resolve().parent.parent
BASELINE = (REPO / "train.py").read_text()
TINY = ExperimentConfig(
    n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=4, token_budget=3 * 4 * 32, vocab_size=512
)
MIB = 1024 * 1024
ISOLATING = [b for b in ("bubblewrap", "userns") if b in backends.available_backends()]
OBSERVER = (
    BASELINE
    + """

_baseline_run_training = run_training


def run_training(config, data_dir):
    import json, os, resource
    limits = {"as": resource.getrlimit(resource.RLIMIT_AS), "cpu": resource.getrlimit(resource.RLIMIT_CPU)}
    with open("observed.json", "w") as fh:
        json.dump({"marker": os.environ["AUTORESEARCH_SANDBOX_RUN"], "limits": limits}, fh)
    return _baseline_run_training(config, data_dir)
"""
)

pytestmark = pytest.mark.timeout(900)
IDLE_S = 900.0
"""How long a warm process waits for its job in these tests: longer than any test, so however slowly a busy
machine imports torch, a process never expires before the test looks at it."""
READY_S = 600.0
"""How long a test waits for warm processes to finish their imports (a generous bound, not a timing claim)."""


@pytest.fixture
def pool():
    """A pool of one process per role for one test, emptied afterwards (a runner owns one the same way)."""
    own = sandbox_pool.WarmPool(1, idle_s=IDLE_S)
    yield own
    own.close_now()


def spec(bundle: Path, source: str = BASELINE, **kw) -> sandbox.SandboxSpec:
    options = {"cpu": 1, "memory_mb": 3072, "deadline_s": 60.0, "keep_workdir": True}
    options["digests"] = prepare.bundle_digests(bundle)
    options.update(kw)
    return sandbox.SandboxSpec(source, TINY, str(bundle / "data"), str(bundle / "tokenizer"), **options)


async def observe(
    bundle: Path, name: str, pool: sandbox_pool.WarmPool | None = None, **kw
) -> tuple[ExperimentResult, dict]:
    """Run the observing `train.py`; return the result and what it saw inside the sandbox."""
    result = await sandbox.run_sandboxed(spec(bundle, OBSERVER, run_name=name, **kw), pool)
    root = sandbox.runs_root() / name
    observed = json.loads((root / "train" / "observed.json").read_text())
    return result, observed


def train_key(bundle: Path) -> sandbox_pool.LaunchKey:
    return sandbox_pool.LaunchKey(
        "train", backends.default_backend(), 1, (str((bundle / "data" / "train.npy").resolve()),)
    )


@pytest.mark.parametrize("backend", ISOLATING)
def test_warm_run_matches_cold_is_used_once_and_gets_the_experiments_limits(
    tiny_bundle: Path, pool, backend: str
) -> None:
    async def scenario():
        cold, cold_seen = await observe(tiny_bundle, "pool-cold", pool, memory_mb=4096, backend=backend)
        await pool.wait_ready(READY_S)
        assert len(pool) == 1, "one train process should be waiting (scoring runs no sandboxed process)"
        hits = pool.hits
        warm, warm_seen = await observe(tiny_bundle, "pool-warm", pool, memory_mb=3000, backend=backend)
        assert pool.hits == hits + 1, "the experiment's process should have come from the pool"
        await pool.close()
        return cold, cold_seen, warm, warm_seen

    cold, cold_seen, warm, warm_seen = asyncio.run(scenario())
    assert cold.outcome == warm.outcome == "success", (cold.message, warm.message)
    assert warm.val_bpb == cold.val_bpb, "a warm process must give exactly the cold result"
    assert warm_seen["marker"] != cold_seen["marker"], "a warm process is a different process"
    for name, seen in (("pool-cold", cold_seen), ("pool-warm", warm_seen)):
        assert not marked_pids(seen["marker"], sandbox.runs_root() / name / "train"), "no process of a run outlives it"
    assert cold_seen["limits"]["as"] == [4096 * MIB, 4096 * MIB]
    assert warm_seen["limits"]["as"] == [3000 * MIB, 3000 * MIB], "the job must lower the warm process's memory cap"
    assert warm_seen["limits"]["cpu"][1] <= 60 + sandbox_pool.NATIVE_GRACE_S + 5, warm_seen["limits"]
    for name in ("pool-cold", "pool-warm"):
        assert sorted(p.name for p in (sandbox.runs_root() / name).iterdir()) == ["train"]
        shutil.rmtree(sandbox.runs_root() / name)


def test_an_idle_warm_process_exits_on_its_own(tiny_bundle: Path, pool) -> None:
    pool.configure(1, idle_s=3.0)
    key = train_key(tiny_bundle)

    async def scenario():
        pool.refill(key, 3072, 30.0)
        await pool.wait_ready(READY_S)
        (warm,) = pool._ready
        await sandbox_pool.until_ready(warm, READY_S)  # it may be stale for the pool already: only 3 s idle
        assert warm.warmed_up(), "the warm process did its imports and waited for a job"
        await asyncio.wait_for(sandbox_pool._settle(warm.proc), READY_S)  # its own idle timer ends it
        assert warm.proc.returncode == 0, "an idle process gives up on its job and exits cleanly"
        assert await pool.take(key, 3072, 10.0) is None
        return warm

    warm = asyncio.run(scenario())
    assert not marked_pids(warm.token, warm.workdir)
    assert not warm.workdir.exists()


def test_close_and_a_new_event_loop_leave_nothing_behind(tiny_bundle: Path, pool) -> None:
    key = train_key(tiny_bundle)
    before = set(sandbox.runs_root().iterdir()) if sandbox.runs_root().exists() else set()

    async def launch_some() -> list[sandbox_pool.Launched]:
        pool.refill(key, 3072, 30.0)
        await pool.wait_ready(READY_S)
        assert len(pool) == 1 and all(marked_pids(w.token, w.workdir) for w in pool._ready)
        return list(pool._ready)

    async def take_in_another_loop() -> sandbox_pool.Launched | None:
        return await pool.take(key, 3072, 10.0)

    async def close_in_loop() -> list[sandbox_pool.Launched]:
        launched = await launch_some()
        await pool.close()
        return launched

    orphaned = asyncio.run(launch_some())
    assert asyncio.run(take_in_another_loop()) is None, "a process from a finished event loop is never handed out"
    pool.configure(1, idle_s=IDLE_S)
    closed = asyncio.run(close_in_loop())
    for warm in orphaned + closed:
        assert not marked_pids(warm.token, warm.workdir) and not warm.workdir.exists()
    assert len(pool) == 0 and pool.size == 0
    assert set(sandbox.runs_root().iterdir()) == before


def test_without_a_pool_every_process_starts_cold_and_runs_leave_no_work_dirs(tiny_bundle: Path) -> None:
    root = prepare.state_dir() / "runs"
    before = set(root.iterdir()) if root.exists() else set()
    result = asyncio.run(sandbox.run_sandboxed(spec(tiny_bundle, keep_workdir=False)))
    assert result.outcome == "success", result.message
    assert set(root.iterdir()) == before


def test_a_full_pool_refills_after_concurrent_batches(tiny_bundle: Path, pool) -> None:
    """Four experiments at once, twice, with a pool of four trainers: the second batch starts warm.

    The sandbox library waits on each process in a thread of the loop's default executor (6 threads
    on 2 cores); without a roomier executor the refills stalled behind the running processes.
    """
    pool.configure(4, idle_s=IDLE_S)

    async def scenario() -> tuple[list[ExperimentResult], int, int, int]:
        results = []
        for _ in range(2):
            hits = pool.hits
            results += await asyncio.gather(
                *(sandbox.run_sandboxed(spec(tiny_bundle, keep_workdir=False), pool) for _ in range(4))
            )
            await pool.wait_ready(READY_S)
        warmed = sum(w.warmed_up() for w in pool._ready)
        size = len(pool)
        await pool.close()
        return results, pool.hits - hits, size, warmed

    results, second_batch_hits, size, warmed = asyncio.run(scenario())
    assert [r.outcome for r in results] == ["success"] * 8
    assert second_batch_hits == 4, "the process of each of the four experiments should come from the pool"
    assert size == warmed == 4
