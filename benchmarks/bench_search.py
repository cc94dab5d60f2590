"""Search quality and its cost: the built-in planner against random search, with and without pruning, batch
against asynchronous slots, several seeds, the same budget of runs.

    python benchmarks/bench_search.py [--quick] [--json PATH]

Every strategy starts from the same baseline `train.py` and base config (the product's defaults: 2 layers,
width 64, vocabulary 2048, at 300 steps), gets the same budget of runs (the baseline's 3 seeds and every
confirmation run included) and goes through the product's whole path (driver task, Agent in code mode,
tools, ledger, gate, runner, sized and sandboxed `run_experiment`):
- planner: `model="builtin"`, planner seed s, every slot kept busy (`--scheduling async`);
- pruned: the same with learning-curve pruning (`--prune median`);
- batch: the same planning batch by batch (`--scheduling batch`);
- random: a scripted LLM behind litellm whose batches are random points of the planner's own config search
  space (`policy.search_space`: learning rate, depth, width, batch size, dropout), drawn from seed s.
Each runs with seeds 0, 1, 2 (0 only with --quick, at tiny sizes). The figure that counts is the confirmed
best: the incumbent after the run (the baseline when nothing was confirmed). Random search's own best is
taken over its configs only, never the baseline row. Compute is the training CPU-seconds measured outside the
sandbox. Flyte's cache is off, so nothing is reused (with --quick it is on, so the strategies share the baseline's
seeds: quick figures check the wiring, not the targets).
Targets: the planner's confirmed best below random search's; pruning saves at least 30% of the compute at
an equal or better confirmed best; and the time to the first confirmed gain, batch against async.
"""

from __future__ import annotations

import logging
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm's import: never fetch prices

import flyte  # noqa: E402
import litellm  # noqa: E402

import parallelized_autoresearch as pa  # noqa: E402
from autoresearch import llm  # noqa: E402
from autoresearch.ledger import ledger as ledger_mod  # noqa: E402
from autoresearch.planner.policy import AXES, search_space  # noqa: E402
from autoresearch_types import ExperimentConfig, WorkshopBounds  # noqa: E402
from benchmarks.common import parse_args, report, scripted_llm  # noqa: E402

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "batch_size": 4, "eval_tokens": 2048}
FULL = {"runs": 12, "batch_size": 4, "max_steps": 300, "vocab_size": 2048, "base": None, "seeds": [0, 1, 2]}
"""The product's base config at half its steps and 12 runs per session: 12 sessions (4 strategies x 3 seeds) in
about 40 minutes on 2 cores."""
QUICK = {"runs": 7, "batch_size": 2, "max_steps": 30, "vocab_size": 512, "base": TINY, "seeds": [0], "cache": True}
CONCURRENCY = 2


def random_edits(base: dict[str, Any], space: dict[str, list[Any]], n: int, rng: random.Random) -> list[dict]:
    """`n` distinct random points of the search space (every axis drawn at once), as config-only edits."""
    edits, seen = [], {tuple(base.get(k) for k in AXES)}
    while len(edits) < n and len(seen) < 10_000:
        point = {k: rng.choice(space[k]) for k in AXES}
        if tuple(point.values()) in seen:
            continue
        seen.add(tuple(point.values()))
        p = point
        title = f"random LR {p['learning_rate']:g} L{p['n_layer']} W{p['n_embd']} B{p['batch_size']} D{p['dropout']:g}"
        overrides = {k: v for k, v in point.items() if v != base.get(k)}
        edits.append({"title": title, "overrides": overrides, "change_summary": "a random point of the search space"})
    return edits


def random_planner(size: dict[str, Any], seed: int) -> Any:
    """A scripted LLM that runs batches of random configs until the budget is spent, or until the ledger closes
    config-only edits (`ledger.CONFIG_ONLY_AFTER` saved experiments): random search gets the product's rules."""
    base = ExperimentConfig().with_overrides(size["base"] or {}).to_dict()
    edits = random_edits(base, search_space(base, WorkshopBounds().describe()), 4 * size["runs"], random.Random(seed))
    batch = size["batch_size"]

    def reply(turn: int, messages: list[dict[str, Any]]) -> str:
        last = str(messages[-1].get("content", "")) if messages else ""
        if turn > 1 and ("'remaining': 0" in last or '"remaining": 0' in last):
            return "The budget is spent."
        chunk = edits[(turn - 1) * batch : turn * batch]
        return (
            "```python\n"
            f"saved = edit_train_code_batch({chunk!r})\n"
            "titles = [s['title'] for s in saved['saved']]\n"
            "ran = run_experiment_batch(titles) if titles else {'budget': {'remaining': 0}}\n"
            "{'budget': ran['budget'], 'rejected': saved['rejected']}\n```"
        )

    return scripted_llm(reply)


STRATEGIES = {
    "planner": {"model": llm.BUILTIN, "scheduling": "async", "prune": "off"},
    "pruned": {"model": llm.BUILTIN, "scheduling": "async", "prune": "median"},
    "batch": {"model": llm.BUILTIN, "scheduling": "batch", "prune": "off"},
    "random": {"model": "randomsearch/random", "scheduling": "batch", "prune": "off"},
}
"""The built-in planner keeping slots busy; the same with learning-curve pruning; the same planning batch by
batch; and random search. Every one gets the same budget of runs."""


def research(size: dict[str, Any], strategy: dict[str, str], seed: int) -> tuple[Any, float]:
    """One research run through the driver; its output and wall seconds."""
    started = time.perf_counter()
    cache_off = not size.get("cache")
    run = flyte.with_runcontext(disable_run_cache=cache_off, **ledger_mod.run_context_kwargs()).run(
        pa.parallelized_autoresearch,
        n_experiments=size["runs"],
        batch_size=size["batch_size"],
        concurrency=CONCURRENCY,
        memory_key=f"bench-search-{uuid.uuid4().hex[:8]}",
        planner_seed=seed,
        max_steps=size["max_steps"],
        vocab_size=size["vocab_size"],
        base_config=size["base"],
        **strategy,
    )
    out = run.outputs()[0]
    if out.error:
        raise RuntimeError(f"{strategy} (seed {seed}) failed: {out.error}")
    return out, time.perf_counter() - started


def standing(out: Any, wall: float) -> dict[str, Any]:
    """The confirmed best, the baseline's mean, the best mean among the strategy's own experiments, and what
    it cost: training CPU-seconds, wall, and the time to the first confirmed gain."""
    rows = out.leaderboard
    best = next(r for r in rows if r.get("incumbent"))
    base = next(r for r in rows if r["title"] == "baseline")
    own = [r["val_bpb"] for r in rows if r["title"] != "baseline" and r.get("rank") is not None]
    confirmed = [r for r in rows if r.get("label") == "confirmed"]
    return {
        "confirmed_best": best["val_bpb"],
        "baseline": base["val_bpb"],
        "own_best": min(own) if own else None,
        "confirmed": len(confirmed),
        "gain": best["title"] != "baseline",
        "best_title": best["title"],
        "cpu_s": out.totals.get("compute_cpu_s_this_session", 0.0),
        "wall": wall,
        "first_gain_s": out.totals.get("first_confirmed_gain_s"),
        "pruned": sum(r.get("label") == "pruned" for r in rows),
    }


def mean(values: list[float | None]) -> float:
    """The mean of the values that exist (nan when none does)."""
    present = [v for v in values if v is not None]
    return round(statistics.fmean(present), 4) if present else float("nan")


def main() -> None:
    args = parse_args(__doc__)
    size = QUICK if args.quick else FULL
    ledger_mod.init_local(project="autoresearch-bench", log_level=logging.CRITICAL)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in STRATEGIES}
    for seed in size["seeds"]:
        litellm.custom_provider_map = [{"provider": "randomsearch", "custom_handler": random_planner(size, seed)}]
        for name, strategy in STRATEGIES.items():
            results[name].append(standing(*research(size, strategy, seed)))
    print(f"\n{size['runs']} runs per strategy and seed, {size['max_steps']} steps, batches of {size['batch_size']}")
    print(
        f"{'strategy':<9}{'seed':>5}{'confirmed best':>16}{'baseline':>10}{'own best':>10}{'CPU s':>8}{'1st gain s':>11}  best"
    )
    for name, rows in results.items():
        for seed, r in zip(size["seeds"], rows, strict=True):
            own = "-" if r["own_best"] is None else f"{r['own_best']:.4f}"
            first = "-" if r["first_gain_s"] is None else f"{r['first_gain_s']:.0f}"
            print(
                f"{name:<9}{seed:>5}{r['confirmed_best']:>16.4f}{r['baseline']:>10.4f}{own:>10}{r['cpu_s']:>8.0f}{first:>11}  {r['best_title']}"
            )
    figures: dict[str, float] = {"seeds": len(size["seeds"]), "runs_per_strategy": size["runs"]}
    for name, rows in results.items():
        figures[f"{name}_confirmed_best_val_bpb"] = mean([r["confirmed_best"] for r in rows])
        figures[f"{name}_runs_with_confirmed_gain"] = sum(r["gain"] for r in rows)
        figures[f"{name}_own_best_val_bpb"] = mean([r["own_best"] for r in rows])
        figures[f"{name}_cpu_s"] = mean([r["cpu_s"] for r in rows])
        figures[f"{name}_wall_s"] = mean([r["wall"] for r in rows])
    figures["baseline_val_bpb"] = mean([r["baseline"] for r in results["planner"]])
    figures["pruned_runs"] = sum(r["pruned"] for r in results["pruned"])
    figures["prune_compute_saved_frac"] = round(1 - figures["pruned_cpu_s"] / figures["planner_cpu_s"], 3)
    figures["prune_best_delta"] = round(
        figures["pruned_confirmed_best_val_bpb"] - figures["planner_confirmed_best_val_bpb"], 4
    )
    figures["time_to_first_confirmed_gain_batch_s"] = mean([r["first_gain_s"] for r in results["batch"]])
    figures["time_to_first_confirmed_gain_async_s"] = mean([r["first_gain_s"] for r in results["planner"]])
    print()
    targets = {
        "planner_confirmed_best_val_bpb": "< random_confirmed_best_val_bpb",
        "prune_compute_saved_frac": ">= 0.3",
        "prune_best_delta": "<= 0 (equal or better)",
    }
    report(figures, args.json, targets)
    ok = figures["planner_confirmed_best_val_bpb"] < figures["random_confirmed_best_val_bpb"]
    print(f"target planner < random on confirmed bests: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
