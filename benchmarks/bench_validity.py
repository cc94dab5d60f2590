"""Research validity: seed noise against effect sizes, false discoveries, load invariance, the default first run.

    python benchmarks/bench_validity.py [--quick] [--json PATH] [--parts noise,null,load,first_run,campaign]

Side by side, through the product's own paths:
1. noise: the baseline on 5 seeds at the default settings (sigma), next to the mean |effect| of every recipe
   of the library applied alone (seed 0), each run in the real sandbox;
2. false discoveries: a "null" planner (a scripted LLM behind litellm, driving the real Agent, tools, ledger
   and sandbox) whose edits only offset the initialisation seed inside train.py by a new constant each time,
   so every edit is a fresh draw of seed noise that dedup lets through. Counts the experiments the gate
   confirms (target 0) and those the old rule (lower than every earlier result) would have called gains;
3. load invariance: one config alone, then beside three others at concurrency 4 (target: |diff| < sigma/10);
4. the README's first command on a fresh machine (its own HOME and state dir, so no cache), planner seeds
   0, 1 and 2: wall time (target about 10 min or less) and whether a confirmed gain was found (target 2 of 3);
5. the gate's reach and error control: `mde_at_defaults`, the minimum detectable effect of a new key's first
   candidate against the baseline's first `--replicates` (default 5) measured seeds (target < 0.10), and `campaign_false_confirmations_30`,
   the mean false confirmations per key over simulated keys of 30 null candidates through the real fold, at the
   measured spread (target <= 0.05).
`--quick` runs every part at tiny sizes (one first run, tiny too, started beside the other parts so the
whole benchmark stays near a minute): its figures check the wiring, not the targets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flyte  # noqa: E402

import parallelized_autoresearch as pa  # noqa: E402
import prepare  # noqa: E402
from autoresearch.ledger import ledger as ledger_mod  # noqa: E402
from autoresearch.planner import recipes  # noqa: E402
from autoresearch.sandbox import experiment as sandbox  # noqa: E402
from autoresearch.sandbox import pool as sandbox_pool  # noqa: E402
from autoresearch_types import ExperimentConfig, ExperimentResult  # noqa: E402
from benchmarks.common import BENCH_STATE, parse_args, report, scripted_llm  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASELINE = (ROOT / "train.py").read_text()
SEED_LINE = "    torch.manual_seed(config.seed)\n"
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "batch_size": 4, "eval_tokens": 2048}
FULL = {"vocab": 2048, "base": {}, "steps": 600, "seeds": 5, "recipes": len(recipes.RECIPES), "null_runs": 24}
FULL["campaign_keys"] = 400
QUICK = {"vocab": 512, "base": TINY, "steps": 30, "seeds": 3, "recipes": 1, "null_runs": 4, "campaign_keys": 20}


def config_for(size: dict[str, Any], **changes: Any) -> ExperimentConfig:
    """The benchmark's base config: the product's defaults (or tiny ones), its steps and vocabulary."""
    base = ExperimentConfig(vocab_size=size["vocab"]).with_overrides(size["base"])
    return dataclasses.replace(base.with_overrides({"token_budget": size["steps"] * base.tokens_per_step}), **changes)


def bundle_for(vocab: int) -> Path:
    """A shakespeare bundle at `vocab`, built once under the benchmark's state dir."""
    root = BENCH_STATE / "validity-bundles" / f"shakespeare-v{vocab}"
    if not (root / "data" / "profile.json").exists():
        prepare.prepare_bundle("shakespeare", 1, vocab, root)
    return root


async def sandboxed(
    runs: list[tuple[str, ExperimentConfig]], bundle: Path, concurrency: int, pool: bool = True
) -> list[ExperimentResult]:
    """Each (train.py, config) in the real sandbox, one thread each, `concurrency` at a time."""
    slots = asyncio.Semaphore(concurrency)
    warm = sandbox_pool.WarmPool(concurrency if pool else 0, launch_memory_mb=4096)

    async def one(source: str, config: ExperimentConfig) -> ExperimentResult:
        async with slots:
            where = (str(bundle / "data"), str(bundle / "tokenizer"))
            spec = sandbox.SandboxSpec(source, config, *where, cpu=1, digests=prepare.bundle_digests(bundle))
            return await sandbox.run_sandboxed(spec, warm)

    try:
        return await asyncio.gather(*(one(s, c) for s, c in runs))
    finally:
        await warm.close()


def scored(result: ExperimentResult) -> float:
    if result.outcome != "success" or result.val_bpb is None:
        raise RuntimeError(f"a benchmark run ended {result.outcome}: {result.message}")
    return result.val_bpb


def noise_and_effects(size: dict[str, Any]) -> dict[str, float]:
    """sigma of the baseline over seeds, and the mean |effect| of single recipes at the same settings."""
    bundle = bundle_for(size["vocab"])
    seeds = [("baseline", BASELINE, config_for(size, seed=s)) for s in range(size["seeds"])]
    moves = [(r.name, r.apply(BASELINE), config_for(size)) for r in recipes.RECIPES[: size["recipes"]]]
    runs = [(src, cfg) for _, src, cfg in seeds + moves]
    results = asyncio.run(sandboxed(runs, bundle, 2, pool=len(runs) > 4))  # a warm pool pays off on longer lists
    base = [scored(r) for r in results[: len(seeds)]]
    sigma, mean = statistics.stdev(base), statistics.fmean(base)
    effects = {name: scored(r) - mean for (name, _, _), r in zip(moves, results[len(seeds) :], strict=True)}
    print(f"\nbaseline over {len(base)} seeds: " + ", ".join(f"{b:.4f}" for b in base) + f"  (sigma {sigma:.4f})")
    for name, effect in sorted(effects.items(), key=lambda kv: kv[1]):
        print(f"  {name:<24} {effect:+.4f}  ({effect / sigma:+.1f} sigma)")
    return {
        "seed_sigma": round(sigma, 4),
        "mean_abs_recipe_effect": round(statistics.fmean(map(abs, effects.values())), 4),
        "mde_at_defaults": round(mde_at_defaults(base), 4),
    }


def mde_at_defaults(base: list[float]) -> float:
    """The gate's minimum detectable effect for a new key at the defaults: the baseline incumbent on the key's
    seeds (the first `replicates` of those measured), the first candidate's campaign level, 80% chance."""
    from autoresearch.ledger import verdicts as v

    rule = v.GateRule()
    seeds = base[: rule.replicates]
    noise = v.Noise()
    noise.set("baseline", seeds)
    return v.min_effect(("baseline", seeds), noise, rule, v.level(1, rule.alpha_campaign, rule.horizon))


def campaign_errors(size: dict[str, Any], measured: dict[str, float]) -> dict[str, float]:
    """Keys of 30 candidates that do nothing, through the gate's real fold at the product's settings, with the
    measured baseline spread and the other configs' spreads scaled from VALIDITY.md: the mean number of false
    confirmations per key (the campaign bound is 0.04 for 30 ideas), and the old gate's per-edit rate for scale."""
    from autoresearch.ledger.verdicts import GateRule
    from benchmarks.common import SDS, false_confirmations

    sigma = measured["seed_sigma"]
    scale = sigma / 0.051
    rule = GateRule(horizon=30)
    mean, _ = false_confirmations(30, size["campaign_keys"], 30, rule, base_sd=sigma, sds=tuple(s * scale for s in SDS))
    print(
        f"\ncampaign: {size['campaign_keys']} simulated keys of 30 null candidates: {mean:.4f} false confirmations per key"
    )
    return {"campaign_false_confirmations_30": round(mean, 4), "campaign_keys_simulated": size["campaign_keys"]}


def load_invariance(size: dict[str, Any]) -> dict[str, float]:
    """The same config alone (concurrency 1) and beside three others (concurrency 4)."""
    bundle = bundle_for(size["vocab"])
    target = config_for(size)
    crowd = [(BASELINE, target)] + [(BASELINE, config_for(size, seed=s)) for s in (11, 12, 13)]

    async def both() -> tuple[ExperimentResult, ExperimentResult]:
        alone = (await sandboxed([(BASELINE, target)], bundle, 1, pool=False))[0]
        return alone, (await sandboxed(crowd, bundle, 4, pool=False))[0]

    alone, together = (scored(r) for r in asyncio.run(both()))
    print(f"\nload invariance: alone {alone:.6f}, beside three others {together:.6f}")
    return {"load_invariance_diff": abs(alone - together)}


# ---------------------------------------------------------------- false discoveries


def null_plan(turn: int, size: int) -> str:
    """A code-mode plan of `size` edits that only move the initialisation seed, each by a new constant."""
    edits = []
    for i in range(size):
        k = 1000 * turn + i
        new = f"    torch.manual_seed(config.seed + {k})\n"
        edits.append({"title": f"Null {k}", "patches": [{"old": SEED_LINE, "new": new}], "change_summary": "reseed"})
    return (
        "```python\n"
        f"saved = edit_train_code_batch({edits!r})\n"
        "ran = run_experiment_batch([s['title'] for s in saved['saved']])\n"
        "{'budget': ran['budget'], 'rejected': saved['rejected']}\n```"
    )


def null_replies(batch: int) -> Any:
    """The null planner: a batch of reseeding edits per turn, then a plain answer once the budget is spent."""

    def reply(turn: int, messages: list[dict[str, Any]]) -> str:
        last = str(messages[-1].get("content", "")) if messages else ""
        if turn > 1 and re.search(r"'remaining': 0\b|\"remaining\": 0\b", last):
            return "The budget is spent."
        return null_plan(turn, batch)

    return reply


def old_rule_gains(leaderboard: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> int:
    """Experiments the old rule would have kept: a first run lower than every earlier first run (baseline seed 0
    included), in arrival order."""
    firsts = sorted((min(r["seq"] for r in rs), title, rs) for title, rs in runs.items() if rs)
    best, kept = None, 0
    for _, title, rs in firsts:
        first = min(rs, key=lambda r: r["seq"])
        bpb = first["val_bpb"]
        if bpb is None:
            continue
        if best is not None and bpb < best and title != "baseline":
            kept += 1
        best = bpb if best is None else min(best, bpb)
    return kept


def false_discoveries(size: dict[str, Any]) -> dict[str, float]:
    """Run the null planner through the driver; count confirmed gains under the gate and under the old rule."""
    import litellm

    handler = scripted_llm(null_replies(4))
    litellm.custom_provider_map = [{"provider": "nullplanner", "custom_handler": handler}]
    ledger_mod.init_local(project="autoresearch-bench", log_level=logging.CRITICAL)
    key = f"bench-null-{uuid.uuid4().hex[:8]}"
    run = flyte.with_runcontext(disable_run_cache=True, **ledger_mod.run_context_kwargs()).run(
        pa.parallelized_autoresearch,
        n_experiments=size["null_runs"],
        batch_size=4,
        concurrency=2,
        max_turns=2 * size["null_runs"],
        memory_key=key,
        model="nullplanner/null",
        vocab_size=size["vocab"],
        max_steps=size["steps"],
        base_config=size["base"] or None,
    )
    out = run.outputs()[0]
    if out.error:
        raise RuntimeError(f"the null run failed: {out.error}")
    runs = asyncio.run(stored_runs(key))
    nulls = [r for r in out.leaderboard if r["title"] != "baseline"]
    confirmed = sum(r["label"] == "confirmed" for r in nulls)
    old = old_rule_gains(out.leaderboard, runs)
    labels = statistics.multimode([r["label"] for r in nulls]) if nulls else []
    print(
        f"\nnull planner: {len(nulls)} reseeding edits, {sum(len(v) for v in runs.values())} runs, sigma {out.totals['sigma']:.4f}"
    )
    print(f"  confirmed by the gate: {confirmed}; kept by the old rule: {old}; most common verdict: {labels}")
    return {"null_experiments": len(nulls), "null_false_discoveries": confirmed, "null_false_discoveries_old_rule": old}


async def stored_runs(key: str) -> dict[str, list[dict[str, Any]]]:
    """Every run of the key, read back from the ledger: title -> [{seq, seed, val_bpb}]."""
    result = await flyte.with_runcontext(**ledger_mod.run_context_kwargs()).run.aio(read_runs, key=key)
    outputs = result.outputs()
    if asyncio.iscoroutine(outputs):
        outputs = await outputs
    return json.loads(outputs[0])


read_env = flyte.TaskEnvironment("bench_validity_reader")


@read_env.task
async def read_runs(key: str) -> str:
    led = await ledger_mod.Ledger.open(key, start=False)
    records = await led.records()
    runs = {r.title: [{"seq": x.seq, "seed": x.seed, "val_bpb": x.val_bpb} for x in r.runs] for r in records}
    return json.dumps(runs)


# ---------------------------------------------------------------- the default first run


def start_first_run(seed: int, quick: bool) -> tuple[subprocess.Popen, float]:
    """Start the README's first command in a fresh HOME and state dir (no cache of any kind)."""
    home = BENCH_STATE / "first-runs" / f"home-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    cmd = [sys.executable, str(ROOT / "parallelized_autoresearch.py"), "--planner-seed", str(seed)]
    cmd += ["--state-dir", str(home / "state")]
    if quick:
        cmd += ["--n-experiments", "3", "--vocab-size", "512", "--max-steps", "30", "--base-config", json.dumps(TINY)]
    env = {k: v for k, v in os.environ.items() if k != prepare.STATE_DIR_ENV} | {"HOME": str(home)}
    out = subprocess.PIPE
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out, text=True), time.perf_counter()


def first_run(seed: int, quick: bool, started: tuple[subprocess.Popen, float] | None = None) -> tuple[float, bool, int]:
    """The README's first command (started now, or earlier by `start_first_run`): wall s, confirmed gain?, exit."""
    proc, begun = started or start_first_run(seed, quick)
    stdout, stderr = proc.communicate(timeout=3600)
    wall = time.perf_counter() - begun
    proc.stdout, proc.stderr = stdout, stderr
    confirmed = "confirmed against seed noise" in proc.stdout
    verdict = next((line for line in proc.stdout.splitlines() if line.startswith(("Best:", "No edit"))), "?")
    print(f"  planner seed {seed}: exit {proc.returncode}, {wall:.0f} s; {verdict[:150]}")
    if proc.returncode != 0:
        print(proc.stderr[-2000:])
    return wall, confirmed, proc.returncode


def default_runs(quick: bool, started: tuple[subprocess.Popen, float] | None = None) -> dict[str, float]:
    """The first command with planner seeds 0, 1, 2 (one tiny run with --quick, started beside the other parts)."""
    print("\nthe README's first command on a fresh machine:")
    outcomes = [first_run(0, quick, started)] if quick else [first_run(seed, quick) for seed in (0, 1, 2)]
    return {
        "default_runs": len(outcomes),
        "default_run_wall_s": round(statistics.fmean(w for w, _, _ in outcomes), 1),
        "default_run_wall_s_max": round(max(w for w, _, _ in outcomes), 1),
        "default_runs_with_confirmed_gain": sum(c for _, c, _ in outcomes),
        "default_runs_failed": sum(code != 0 for _, _, code in outcomes),
    }


PARTS = ("noise", "null", "load", "first_run", "campaign")


def main() -> None:
    def extra(parser: Any) -> None:
        parser.add_argument(
            "--parts",
            default=",".join(PARTS),
            help=f"the parts to run, comma-separated (default all: {','.join(PARTS)}; load and campaign need noise)",
        )

    args = parse_args(__doc__, extra)
    wanted = [p for p in args.parts.split(",") if p]
    if unknown := set(wanted) - set(PARTS):
        sys.exit(f"bench_validity: unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    if {"load", "campaign"} & set(wanted) and "noise" not in wanted:
        sys.exit("bench_validity: the load and campaign parts are scaled by the noise part's sigma: add noise")
    size = QUICK if args.quick else FULL
    started = time.perf_counter()
    figures: dict[str, float] = {}
    quick_first = args.quick and "first_run" in wanted  # quick: beside the rest, to stay under a minute
    early = start_first_run(0, quick=True) if quick_first else None
    parts = {
        "noise": lambda: noise_and_effects(size),
        "null": lambda: false_discoveries(size),
        "load": lambda: load_invariance(size),
        "first_run": lambda: default_runs(args.quick, early),
        "campaign": lambda: campaign_errors(size, figures),
    }
    for name in (p for p in PARTS if p in wanted):
        begun = time.perf_counter()
        figures |= parts[name]()
        figures[f"part_{name}_s"] = round(time.perf_counter() - begun, 1)
    if "load" in wanted:
        figures["load_invariance_diff_over_sigma"] = round(figures["load_invariance_diff"] / figures["seed_sigma"], 6)
    figures["bench_wall_s"] = round(time.perf_counter() - started, 1)
    print()
    report(
        figures,
        args.json,
        {
            "null_false_discoveries": "0",
            "load_invariance_diff_over_sigma": "< 0.1",
            "default_run_wall_s_max": "about 600 or less",
            "default_runs_with_confirmed_gain": ">= 2 of 3",
            "mde_at_defaults": "< 0.10",
            "campaign_false_confirmations_30": "<= 0.05",
        },
    )


if __name__ == "__main__":
    main()
