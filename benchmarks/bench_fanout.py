"""Real concurrency of the experiment runner: a batch of sleepers, and slot utilisation in batch versus async mode.

    python benchmarks/bench_fanout.py [--quick] [--json PATH]

Everything goes through the product's path: `ExperimentRunner` (its slots and its warm pool), the
`run_experiment` tool with its `right_size` call handler, and the sandbox (train, serve, check), in Flyte
local mode. Every experiment gets a fresh seed, so none is a Flyte cache hit.

(a) Four experiments whose `run_training` sleeps 5 s, then trains one tiny step, at concurrency 4, the pool
    warm as between a driver's batches. Target: batch wall <= 6.5 s (1.3 x 5 s); one after another they
    would take at least 20 s.
(b) Slot utilisation = busy slot-seconds / (concurrency x wall), on experiments that sleep 2 to 10 s (a
    fixed draw), at concurrency 4:
    - batch mode: a planner that submits 4, waits for all 4, then submits the next 4 (a barrier per batch);
    - async mode: a planner that keeps every slot busy: it submits 4, and each time a result comes back
      it submits the next experiment into the freed slot.
    Target: async >= 0.9. Both report their wall too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flyte  # noqa: E402

import bundle  # noqa: E402
import parallelized_autoresearch as pa  # noqa: E402
from autoresearch import llm  # noqa: E402
from autoresearch.lab import sizing  # noqa: E402
from autoresearch.lab.runner import ExperimentRunner, Job  # noqa: E402
from autoresearch.ledger import ledger  # noqa: E402
from autoresearch.ledger.records import ExperimentRecord, ExperimentSpec  # noqa: E402
from autoresearch.session import driver  # noqa: E402
from autoresearch_types import ExperimentConfig, ExperimentResult  # noqa: E402
from benchmarks.common import parse_args, report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASELINE = (ROOT / "train.py").read_text()
SLEEP_S = 5.0
TARGET_WALL_S = 1.3 * SLEEP_S
CONCURRENCY = 4
TINY = ExperimentConfig(n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=4, token_budget=128, eval_tokens=1024)
ANCHOR = "    set_threads()\n    device = pick_device()\n"

bench_env = flyte.TaskEnvironment("bench_fanout", depends_on=[bundle.experiment_env])


def sleeping_train_py(seconds: float) -> str:
    """The baseline `train.py` whose `run_training` first sleeps `seconds`, then trains as usual."""
    if ANCHOR not in BASELINE:
        raise RuntimeError("train.py's run_training changed; update the anchor in bench_fanout.py")
    return BASELINE.replace(ANCHOR, f"    time.sleep({seconds})\n{ANCHOR}", 1)


def jobs(durations: list[float], label: str) -> list[Job]:
    """One sleeping experiment per duration, each on a fresh seed (no cache hit)."""
    seed = random.SystemRandom().randint(1, 2**30)
    out = []
    for i, seconds in enumerate(durations):
        spec = ExperimentSpec(title=f"{label} {i}", slug=f"{label}-{i}", batch_id=f"bench-{label}")
        out.append(Job(ExperimentRecord(spec, sleeping_train_py(seconds)), seed + i, "screen"))
    return out


def make_runner(data: bundle.Bundle) -> ExperimentRunner:
    """The product's runner (slots, warm pool, sizing policy) calling the real `run_experiment` tool."""
    tool_obj = dataclasses.replace(pa.run_experiment, model=llm.BUILTIN)

    async def call(job: Job, extras: dict[str, Any]) -> ExperimentResult:
        config = dataclasses.replace(TINY, seed=job.seed, vocab_size=512).to_dict()
        tool = dataclasses.replace(tool_obj, call_handler=sizing.handler(extras["policy"]))
        return await tool.aio(train_py=job.record.train_py, config=config, data=data, pool=extras["pool"])

    runner = ExperimentRunner(call, CONCURRENCY)
    runner.bind(_no_follow, lambda job: True)
    return runner


async def _no_follow(job: Job, result: ExperimentResult) -> list[Job]:
    if result.outcome != "success":
        raise RuntimeError(f"{job.title}: {result.outcome} {result.message[:300]}")
    return []


async def batch_mode(runner: ExperimentRunner, work: list[Job]) -> float:
    """Barrier per batch: submit `concurrency`, wait for all of them, repeat. The wall seconds."""
    start = time.perf_counter()
    for i in range(0, len(work), runner.concurrency):
        await runner.run(work[i : i + runner.concurrency])
    return time.perf_counter() - start


async def async_mode(runner: ExperimentRunner, work: list[Job]) -> float:
    """Every slot busy: submit `concurrency`, then one more each time a result comes back. The wall seconds."""
    start = time.perf_counter()
    todo = list(work)
    runner.submit([todo.pop(0) for _ in range(min(runner.concurrency, len(todo)))])
    while todo or not runner.idle:
        got = await runner.wait(1)
        for _ in got.done:
            if todo:
                runner.submit([todo.pop(0)])
    return time.perf_counter() - start


async def measured(runner: ExperimentRunner, mode: Any, work: list[Job]) -> dict[str, float]:
    """Run `work` in one mode; its wall and slot utilisation over exactly that window."""
    await runner.pool.wait_ready()  # what the agent's planning time gives the first experiments
    begun = time.monotonic()
    wall = await mode(runner, work)
    return {"wall": wall, "utilization": runner.utilization(since=begun, until=time.monotonic())}


@bench_env.task
async def measure(quick: bool) -> str:
    """Every part of the benchmark in one Flyte task; the figures as JSON."""
    data = await driver.load_bundle("shakespeare", 1, 512)
    rng = random.Random(7)
    mixed = [round(rng.uniform(2.0, 10.0), 1) for _ in range(8 if quick else 16)]
    out: dict[str, Any] = {"durations": mixed}
    async with make_runner(data) as runner:
        await runner.run(jobs([0.0] * CONCURRENCY, "fill"))  # as the driver's first batch: fills the pool
        walls = []
        for i in range(1 if quick else 3):
            await runner.pool.wait_ready()
            begun = time.perf_counter()
            await runner.run(jobs([SLEEP_S] * CONCURRENCY, f"sleep-{i}"))
            walls.append(time.perf_counter() - begun)
        out["sleep_walls"] = walls
        out["batch"] = await measured(runner, batch_mode, jobs(mixed, "batch"))
        out["async"] = await measured(runner, async_mode, jobs(mixed, "async"))
        out["warm_starts"], out["cold_starts"] = runner.stats()["warm_starts"], runner.stats()["cold_starts"]
    return json.dumps(out)


def main() -> None:
    args = parse_args(__doc__)
    ledger.init_local(project="autoresearch-bench", log_level=logging.CRITICAL)
    run = flyte.with_runcontext(**ledger.run_context_kwargs()).run(measure, quick=args.quick)
    out = json.loads(run.outputs()[0])
    work = sum(out["durations"])
    print(f"\nsleeping batch: {CONCURRENCY} x {SLEEP_S:g} s at concurrency {CONCURRENCY}: walls {out['sleep_walls']}")
    print(f"mixed work: {len(out['durations'])} experiments sleeping {work:.0f} s in all (2-10 s each)")
    print(f"{'mode':<8}{'wall s':>9}{'slot utilisation':>18}")
    for mode in ("batch", "async"):
        print(f"{mode:<8}{out[mode]['wall']:>9.1f}{out[mode]['utilization']:>18.3f}")
    figures = {
        "sleep_batch_wall_s": round(statistics.median(out["sleep_walls"]), 2),
        "slot_utilization_batch": round(out["batch"]["utilization"], 3),
        "slot_utilization_async": round(out["async"]["utilization"], 3),
        "mixed_wall_s_batch": round(out["batch"]["wall"], 1),
        "mixed_wall_s_async": round(out["async"]["wall"], 1),
        "async_speedup": round(out["batch"]["wall"] / out["async"]["wall"], 2),
        "warm_starts": out["warm_starts"],
        "cold_starts": out["cold_starts"],
    }
    print()
    report(
        figures,
        args.json,
        {"sleep_batch_wall_s": f"<= {TARGET_WALL_S:g}", "slot_utilization_async": ">= 0.9"},
    )


if __name__ == "__main__":
    main()
