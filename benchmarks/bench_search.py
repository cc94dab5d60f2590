"""Search quality: the built-in planner against random search and the baseline alone, on the same budget.

    python benchmarks/bench_search.py [--quick] [--json PATH]

Each strategy starts from the same baseline `train.py` and base config, runs N experiments (plus the
baseline) with the same training steps, time budget, seed and data, through the product's path:
- planner: the research driver task `parallelized_autoresearch` with `model="builtin"` (the Agent in code
  mode, the tools, the ledger, the sized and sandboxed `run_experiment`), planner seed 0;
- random: the same tools, ledger and warm sandbox pool, each experiment a random point of the planner's
  config search space (`policy.search_space`: learning rate, depth, width, batch size, dropout), seed 0;
- baseline: the baseline experiment alone.
Every run disables Flyte's cache, so no strategy reuses another's (or an earlier run's) results.
Target: planner best < random best < baseline.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import prepare  # noqa: E402

os.environ.setdefault(
    prepare.STATE_DIR_ENV, str(Path.home() / ".cache" / "parallelized-autoresearch" / "bench")
)  # never /tmp: sandboxed code can write there
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch prices from the internet

import flyte  # noqa: E402

import bundle  # noqa: E402
import ledger as ledger_mod  # noqa: E402
import llm  # noqa: E402
import parallelized_autoresearch as pa  # noqa: E402
import tools  # noqa: E402
from autoresearch_types import ExperimentConfig  # noqa: E402
from benchmarks.common import parse_args, report  # noqa: E402
from policy import AXES, search_space  # noqa: E402

DATA = {"dataset": "shakespeare", "num_shards": 1, "vocab_size": 512}
SEED = 0
"""The training seed of every experiment, the planner's seed and random search's seed."""
BASE = {"n_layer": 2, "n_head": 4, "n_embd": 64, "seq_len": 128, "batch_size": 8, "learning_rate": 3e-3, "seed": SEED}
FULL = {"experiments": 15, "batch_size": 5, "max_steps": 300}
QUICK = {"experiments": 4, "batch_size": 2, "max_steps": 40}
CONCURRENCY = 2
TIME_BUDGET_S = 120.0

bench_env = flyte.TaskEnvironment("bench_search", depends_on=[bundle.experiment_env])


def random_edits(base: dict[str, Any], space: dict[str, list[Any]], n: int, rng: random.Random) -> list[dict]:
    """`n` distinct random points of the search space (every axis drawn at once), as config-only edits."""
    edits, seen = [], {tuple(base.get(k) for k in AXES)}
    while len(edits) < n and len(seen) < 10_000:
        point = {k: rng.choice(space[k]) for k in AXES}
        key = tuple(point.values())
        if key in seen:
            continue
        seen.add(key)
        changed = {k: v for k, v in point.items() if v != base.get(k)}
        p = point
        title = f"random {len(edits) + 1}: LR {p['learning_rate']:g} L{p['n_layer']} W{p['n_embd']} B{p['batch_size']} D{p['dropout']:g}"
        edits.append({"title": title, "overrides": changed, "change_summary": "a random point of the search space"})
    return edits


@bench_env.task
async def random_search(n: int, batch_size: int, max_steps: int, seed: int) -> str:
    """The baseline, then `n` random configs in batches, through the product's tools and ledger; the board as JSON."""
    data = await pa.load_bundle(**DATA)
    profile = await bundle.profile_bundle.aio(bundle=data)
    base = ExperimentConfig(time_budget_s=TIME_BUDGET_S, vocab_size=profile.vocab_size).with_overrides(
        {"max_steps": max_steps}
    )
    base = base.with_overrides(BASE)
    key = f"bench-random-{uuid.uuid4().hex[:8]}"
    ledger = await ledger_mod.Ledger.open(key, base, config_only_after=n + 1)
    budget = tools.Budget(n_experiments=n, batch_size=batch_size, concurrency=CONCURRENCY)
    research = tools.ResearchTools(
        ledger=ledger,
        run_one=pa.make_runner(dataclasses.replace(pa.run_experiment, model=llm.BUILTIN), ledger, data, "userns"),
        fan_out=lambda recs, worker: pa.fan_out(recs, worker, CONCURRENCY),
        budget=budget,
        profile=profile.to_dict(),
    )
    async with pa.experiment_runtime(CONCURRENCY):  # sizing and the warm pool, as the driver sets them up
        await research.run_records(await ledger.specs(["baseline"]))
        edits = random_edits(
            base.to_dict(), search_space(base.to_dict(), ledger.bounds.describe()), n, random.Random(seed)
        )
        for start in range(0, len(edits), batch_size):
            saved = await research.edit_train_code_batch(edits[start : start + batch_size])
            if saved.get("rejected"):
                raise RuntimeError(f"random edits rejected: {saved['rejected']}")
            await research.run_experiment_batch([s["title"] for s in saved["saved"]])
    return json.dumps([json.loads(json.dumps(r.to_dict(), default=str)) for r in await ledger.leaderboard()])


def run_planner(n: int, batch_size: int, max_steps: int) -> tuple[list[dict[str, Any]], str, float]:
    """The research driver with the built-in planner; its leaderboard rows, summary and wall seconds."""
    started = time.perf_counter()
    run = flyte.with_runcontext(disable_run_cache=True, **ledger_mod.run_context_kwargs()).run(
        pa.parallelized_autoresearch,
        n_experiments=n,
        batch_size=batch_size,
        concurrency=CONCURRENCY,
        max_turns=2 * (n // batch_size + 3),
        memory_key=f"bench-planner-{uuid.uuid4().hex[:8]}",
        model=llm.BUILTIN,
        planner_seed=SEED,
        time_budget=TIME_BUDGET_S,
        max_steps=max_steps,
        base_config=BASE,
        **DATA,
    )
    out = run.outputs()[0]
    if out.error:
        raise RuntimeError(f"the planner's run failed: {out.error}")
    return out.leaderboard, out.summary, time.perf_counter() - started


def run_random(n: int, batch_size: int, max_steps: int) -> tuple[list[dict[str, Any]], float]:
    """Random search (n = 0: the baseline alone); its leaderboard rows and wall seconds."""
    started = time.perf_counter()
    run = flyte.with_runcontext(disable_run_cache=True, **ledger_mod.run_context_kwargs()).run(
        random_search, n=n, batch_size=batch_size, max_steps=max_steps, seed=SEED
    )
    return json.loads(run.outputs()[0]), time.perf_counter() - started


def best_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The best successful row; raises if nothing succeeded (the benchmark then has no figure to report)."""
    best = next((r for r in rows if r.get("rank") == 1), None)
    if best is None:
        raise RuntimeError("no experiment succeeded")
    return best


def ran(rows: list[dict[str, Any]]) -> int:
    """Experiments with a result, the baseline included."""
    return sum(1 for r in rows if r.get("outcome"))


def main() -> None:
    """Run the three strategies, print a table and the planner's summary, then the figures."""
    args = parse_args(__doc__)
    sizes = QUICK if args.quick else FULL
    n, batch, steps = sizes["experiments"], sizes["batch_size"], sizes["max_steps"]
    ledger_mod.init_local(project="autoresearch-bench", log_level=logging.CRITICAL)
    planner_rows, summary, planner_wall = run_planner(n, batch, steps)
    random_rows, random_wall = run_random(n, batch, steps)
    base_rows, base_wall = run_random(0, batch, steps)
    strategies = {"planner": (planner_rows, planner_wall), "random": (random_rows, random_wall)}
    strategies["baseline"] = (base_rows, base_wall)
    print(f"\n{n} experiments per strategy (plus the baseline), {steps} steps each, batches of {batch}, seed {SEED}")
    print(f"{'strategy':<10}{'best val_bpb':>14}{'ran':>6}{'wall s':>9}  best experiment")
    for name, (rows, wall) in strategies.items():
        best = best_of(rows)
        print(f"{name:<10}{best['val_bpb']:>14.4f}{ran(rows):>6}{wall:>9.1f}  {best['title']}")
    print(f"\nplanner summary: {summary}\n")
    baseline = best_of(base_rows)["val_bpb"]
    figures = {
        "baseline_val_bpb": round(baseline, 4),
        "planner_best_val_bpb": round(best_of(planner_rows)["val_bpb"], 4),
        "random_best_val_bpb": round(best_of(random_rows)["val_bpb"], 4),
        "experiments": n,
        "planner_ran": ran(planner_rows),
        "random_ran": ran(random_rows),
        "max_steps": steps,
        "planner_wall_s": round(planner_wall, 1),
        "random_wall_s": round(random_wall, 1),
        "baseline_wall_s": round(base_wall, 1),
    }
    report(figures, args.json, {"planner_best_val_bpb": "< random best", "random_best_val_bpb": "< baseline"})
    ok = figures["planner_best_val_bpb"] < figures["random_best_val_bpb"] < figures["baseline_val_bpb"]
    print(f"target planner < random < baseline: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
