"""Per-experiment sandbox overhead, exported-graph scoring against the retired split-process scoring, and the recipes
that export.

Runs the honest baseline with a tiny config several times per available backend and prints the
median overhead (staging, interpreter start-ups and `import torch`, the graph export, process
clean-up), in two modes:

- `warm`: as a local driver run works, with the warm pool on and given time to fill before each
  experiment (as it has while the previous experiment trains or the agent plans);
- `cold`: pool off, every process launched when the experiment starts (a cluster pod).

Target: 1.5 s or less, under 5% of a 45 s experiment. `overhead_s_median` is the default
backend's warm figure; `overhead_s_median_cold` its cold one.

It then measures the evaluation at the DEFAULT settings (`ExperimentConfig()`: 2 layers, width 64,
seq 128, vocab 2048, 32768 eval tokens) of one trained graph (the eval's cost does not depend on the
weights), side by side in one run, alternating:
- `eval_s_export`: today's scoring, `scorer.evaluate` on the exported graph's bytes: load and check
  the file, dry-run it, score every window on one thread, one exact probe row per window, the repeat;
- `eval_s_split`: the retired split-process scoring (`legacy_split.py`, rebuilt from git history):
  from handing the checkpoint to two warm sandboxed model servers until the old scorer has scored
  every row and compared every blind probe (each server on one thread, the two in parallel);
- `eval_s_inprocess`: `build_model` + `load_state_dict` + `prepare.evaluate_bpb` in this process on
  one thread (the reference, with no probe at all).
Targets: `eval_export_over_split` <= 1.5; `eval_split_over_inprocess` (published before) <= 1.25.

Finally `recipes_exportable_frac`: the share of the recipe library (each recipe applied alone to the
baseline) whose model exports through the harness's own path and whose graph gives bitwise the eager
logits and exactly the eager `val_bpb` (target 1.0).

And the cost of metering each sandbox with a cgroup (`cgroups.py`), side by side in one run: the same cold
baseline experiment (three sandboxed processes, so three cgroups) alternately with cgroups on and off:
- `cgroup_overhead_s`: the median, over pairs, of (wall with cgroups - wall without), per experiment;
- `cgroup_overhead_cpu_s`: the same for this process's own CPU time (cgroupfs writes and reads, the
  adoption scans, the kill), which does not depend on what else the machine runs.

    python benchmarks/bench_sandbox.py --quick --json artifacts/bench_sandbox.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import prepare  # noqa: E402
from autoresearch.planner import recipes  # noqa: E402
from autoresearch.sandbox import backends, cgroups, graph, graph_export, heldout, scorer  # noqa: E402
from autoresearch.sandbox import experiment as sandbox  # noqa: E402
from autoresearch.sandbox import pool as sandbox_pool  # noqa: E402
from autoresearch_types import ExperimentConfig  # noqa: E402
from benchmarks import legacy_split  # noqa: E402

TINY = ExperimentConfig(
    n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=4, token_budget=3 * 4 * 32, vocab_size=512
)
TARGET_S = 1.5
EVAL_RATIO_TARGET = 1.25
EXPORT_RATIO_TARGET = 1.5
DEFAULTS = ExperimentConfig(token_budget=3 * 8 * 128)
"""The default architecture and evaluation; 3 training steps (the eval's cost does not depend on the weights)."""
REPO = Path(__file__).resolve().parent.parent
BASELINE = (REPO / "train.py").read_text()


def bench_bundle() -> Path:
    """A tiny Shakespeare bundle under the state dir, built on first use."""
    root = prepare.state_dir() / "bench-bundles" / "shakespeare-s1-v512"
    if not (root / "data" / "profile.json").exists():
        prepare.prepare_bundle("shakespeare", 1, 512, root)
    return root


def default_bundle() -> Path:
    """A vocab-2048 Shakespeare bundle (the default) under the state dir, built on first use."""
    root = prepare.state_dir() / "bench-bundles" / "shakespeare-s1-v2048"
    if not (root / "data" / "profile.json").exists():
        prepare.prepare_bundle("shakespeare", 1, 2048, root)
    return root


def eval_in_process(weights: dict, bundle: Path, config: ExperimentConfig) -> tuple[float, float]:
    """(seconds, val_bpb) of the in-process reference: build, load and `prepare.evaluate_bpb`, on one thread."""
    import numpy as np
    import torch

    import train

    torch.set_num_threads(1)
    val = prepare.load_tokens(bundle / "data", "val")
    token_bytes = np.load(bundle / "tokenizer" / "token_bytes.npy")
    start = time.perf_counter()
    model = train.build_model(config)
    model.load_state_dict(weights)
    bpb = prepare.evaluate_bpb(model, val, token_bytes, config.seq_len, eval_tokens=config.eval_tokens)
    return time.perf_counter() - start, bpb


def baseline_spec(
    source: str,
    config: ExperimentConfig,
    bundle: Path,
    backend: str,
    cpu: int,
    memory_mb: int,
    deadline_s: float,
    keep: bool = False,
) -> sandbox.SandboxSpec:
    """One baseline experiment of `config` on `backend` over the bundle's data (`keep`: keep its weights)."""
    data, tokenizer = str(bundle / "data"), str(bundle / "tokenizer")
    return sandbox.SandboxSpec(
        source, config, data, tokenizer, cpu=cpu, memory_mb=memory_mb, backend=backend, deadline_s=deadline_s,
        allow_unsandboxed=backend == "none", keep_checkpoint=keep, digests=prepare.bundle_digests(bundle),
    )  # fmt: skip


def val_windows(bundle: Path, config: ExperimentConfig) -> Any:
    """The validation windows a run of `config` is scored on, read and verified as the trusted side reads them."""
    where = (bundle / "data", bundle / "tokenizer")
    return heldout.load(*where, prepare.bundle_digests(bundle), "val", config).windows


def eval_export(blob: bytes, bundle: Path, config: ExperimentConfig) -> tuple[float, float, float]:
    """(seconds, CPU seconds, val_bpb) of today's scoring of a graph file's bytes (`scorer.evaluate`, as phase 2
    runs it; the CPU is this process's, which nothing else uses meanwhile)."""
    import secrets

    import numpy as np

    windows = val_windows(bundle, config)
    table = np.load(bundle / "tokenizer" / "token_bytes.npy")
    cpu = time.process_time()
    evaluation = scorer.evaluate(blob, windows, table, config, scorer.caps_for(config, 4096), secrets.SystemRandom())
    cpu = time.process_time() - cpu
    if evaluation.failure is not None or not evaluation.metrics["probe_ok"]:
        raise RuntimeError(f"graph scoring failed: {evaluation.failure} {evaluation.metrics}")
    return evaluation.seconds, cpu, float(evaluation.metrics["val_bpb"])


async def measure_eval(backend: str, runs: int, bundle: Path) -> list[dict[str, float]]:
    """One default-size baseline trained and exported in the sandbox, then `runs` + 1 rounds of the three
    evaluations of its weights, alternating (the first round, page cache and first calls, is not counted)."""
    import numpy as np
    import torch

    spec = baseline_spec(BASELINE, DEFAULTS, bundle, backend, 1, memory_mb=4096, deadline_s=300.0, keep=True)
    result = await sandbox.run_sandboxed(spec)
    if result.outcome != "success":
        raise RuntimeError(f"{backend}: default baseline ended {result.outcome}: {result.message}")
    kept = Path(result.checkpoint)
    blob = kept.read_bytes()
    kept.unlink()
    weights = graph.load_graph(blob).weights()
    checkpoint = prepare.state_dir() / "bench-legacy" / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(weights, checkpoint)
    windows = val_windows(bundle, DEFAULTS)
    table = np.load(bundle / "tokenizer" / "token_bytes.npy")
    rows = []
    for _ in range(runs + 1):
        split_s, split_cpu, split_bpb = await legacy_split.split_score(checkpoint, windows, table, DEFAULTS)
        export_s, export_cpu, export_bpb = eval_export(blob, bundle, DEFAULTS)
        inprocess_s, inprocess_bpb = eval_in_process(weights, bundle, DEFAULTS)
        if max(abs(split_bpb - inprocess_bpb), abs(export_bpb - inprocess_bpb)) > 1e-6:
            raise RuntimeError(f"val_bpb differs: split {split_bpb}, export {export_bpb}, in-process {inprocess_bpb}")
        if export_bpb != result.val_bpb:
            raise RuntimeError(f"the experiment's own score {result.val_bpb} differs from a rescore {export_bpb}")
        rows.append(
            {
                "split": split_s,
                "export": export_s,
                "inprocess": inprocess_s,
                "split_cpu": split_cpu,
                "export_cpu": export_cpu,
            }
        )
    return rows[1:]


def report_eval(backend: str, runs: int, figures: dict[str, float]) -> None:
    """Measure and print the eval comparison at the default settings; add its figures."""
    rows = asyncio.run(measure_eval(backend, runs, default_bundle()))
    med = {k: statistics.median(r[k] for r in rows) for k in ("split", "export", "inprocess")}
    export_over_split = statistics.median(r["export"] / r["split"] for r in rows)
    split_over_inprocess = statistics.median(r["split"] / r["inprocess"] for r in rows)
    figures.update(
        eval_s_inprocess=round(med["inprocess"], 4),
        eval_s_split=round(med["split"], 4),
        eval_s_export=round(med["export"], 4),
        eval_split_over_inprocess=round(split_over_inprocess, 3),
        eval_export_over_split=round(export_over_split, 3),
        eval_export_over_inprocess=round(statistics.median(r["export"] / r["inprocess"] for r in rows), 3),
        eval_cpu_s_split=round(statistics.median(r["split_cpu"] for r in rows), 4),
        eval_cpu_s_export=round(statistics.median(r["export_cpu"] for r in rows), 4),
        eval_cpu_export_over_split=round(statistics.median(r["export_cpu"] / r["split_cpu"] for r in rows), 3),
    )
    print(f"\neval at default settings ({backend}, {runs} rounds, medians, seconds)")
    print(f"{'path':<38}{'seconds':>9}")
    for name, key in (("exported graph (today)", "export"), ("split model servers (retired)", "split"),
                      ("in-process reference, no probes", "inprocess")):  # fmt: skip
        print(f"{name:<38}{med[key]:>9.3f}")
    verdict = "meets" if export_over_split <= EXPORT_RATIO_TARGET else "MISSES"
    print(f"export / split {export_over_split:.3f} (wall) {verdict} the {EXPORT_RATIO_TARGET}x target")
    print(
        f"CPU seconds: export {figures['eval_cpu_s_export']:.3f}, split {figures['eval_cpu_s_split']:.3f} "
        f"(both servers and the scorer), ratio {figures['eval_cpu_export_over_split']:.3f}"
    )


def recipe_exports_exactly(source: str, config: ExperimentConfig, bundle: Path, workdir: Path) -> bool:
    """Whether `source`'s model exports through the harness's path and its graph scores exactly as eager."""
    import importlib.util
    import uuid

    import numpy as np
    import torch

    name = f"bench_recipe_{uuid.uuid4().hex[:8]}"
    path = workdir / f"{name}.py"
    path.write_text(source)
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    torch.set_num_threads(1)
    model = module.build_model(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # away from the initialisation (zero-initialised layers included)
            p.add_(0.02 * torch.randn_like(p))
    try:
        graph_export.export_model(model, config.seq_len, str(workdir / f"{name}.graph"))
    except graph_export.ExportRefused as refused:
        print(f"  does not export: {refused}")
        return False
    blob = (workdir / f"{name}.graph").read_bytes()
    program = graph.load_graph(blob)
    program.analyse(config.vocab_size, scorer.caps_for(config, 4096))
    windows = val_windows(bundle, config)
    rows = torch.from_numpy(np.ascontiguousarray(windows[:16, :-1]))
    with torch.no_grad():
        same_logits = torch.equal(program.run_rows(rows), prepare.model_logits(model, rows))
    val = prepare.load_tokens(bundle / "data", "val")
    table = np.load(bundle / "tokenizer" / "token_bytes.npy")
    eager = prepare.evaluate_bpb(model, val, table, config.seq_len, eval_tokens=config.eval_tokens)
    scored = eval_export(blob, bundle, config)[2]
    return same_logits and abs(scored - eager) < 1e-6


def report_recipes(config: ExperimentConfig, bundle: Path, figures: dict[str, float]) -> None:
    """The share of the recipe library that exports and scores exactly as eager."""
    workdir = prepare.state_dir() / "bench-recipes"
    workdir.mkdir(parents=True, exist_ok=True)
    ok = []
    print(f"\nrecipes at {config.n_layer} x {config.n_embd}, seq {config.seq_len}, vocab {config.vocab_size}")
    for recipe in recipes.RECIPES:
        source = recipe.apply(BASELINE)
        good = source is not None and recipe_exports_exactly(source, config, bundle, workdir)
        print(f"  {recipe.name:<28}{'exports, scores as eager' if good else 'FAILS'}")
        ok.append(good)
    figures["recipes_exportable_frac"] = round(sum(ok) / len(ok), 3)
    verdict = "meets" if all(ok) else "MISSES"
    print(f"recipes_exportable_frac {figures['recipes_exportable_frac']} {verdict} the target 1.0")


async def measure(backend: str, runs: int, bundle: Path, cpu: int, warm: bool) -> list[dict[str, float]]:
    """`runs` sequential baseline experiments on `backend`: wall, train, eval and overhead seconds.

    The first run (which fills the page cache, and the pool when `warm`) is not counted.
    """
    source = (Path(__file__).resolve().parent.parent / "train.py").read_text()
    pool = sandbox_pool.WarmPool(1 if warm else 0)
    rows = []
    try:
        for _ in range(runs + 1):
            await pool.wait_ready()
            spec = baseline_spec(source, TINY, bundle, backend, cpu, memory_mb=3072, deadline_s=120.0)
            result = await sandbox.run_sandboxed(spec, pool)
            if result.outcome != "success":
                raise RuntimeError(
                    f"{backend}: baseline ended {result.outcome}: {result.message}\n{result.stderr_tail}"
                )
            overhead = result.wall_seconds - result.train_seconds - result.eval_seconds
            rows.append(
                {
                    "wall": result.wall_seconds,
                    "train": result.train_seconds,
                    "eval": result.eval_seconds,
                    "overhead": overhead,
                }
            )
    finally:
        await pool.close()
    return rows[1:]


async def paired_cgroup_runs(backend: str, runs: int, bundle: Path, cpu: int) -> list[dict[str, float]]:
    """`runs` pairs of cold baseline experiments, one with cgroups and one without (in alternating order), after a
    pair that is not counted: wall and this process's CPU seconds of each."""
    source = (Path(__file__).resolve().parent.parent / "train.py").read_text()
    off = cgroups.Layout("none", notes=("turned off for the comparison",))
    rows = []
    for i in range(runs + 1):
        row: dict[str, float] = {}
        for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
            spec = baseline_spec(source, TINY, bundle, backend, cpu, memory_mb=3072, deadline_s=120.0)
            with mock.patch.object(cgroups, "host", (lambda: off) if mode == "off" else cgroups.host):
                own = resource.getrusage(resource.RUSAGE_SELF)
                result = await sandbox.run_sandboxed(spec)
                after = resource.getrusage(resource.RUSAGE_SELF)
            if result.outcome != "success":
                raise RuntimeError(f"{backend} ({mode}): baseline ended {result.outcome}: {result.message}")
            row[f"wall_{mode}"] = result.wall_seconds
            row[f"cpu_{mode}"] = (after.ru_utime + after.ru_stime) - (own.ru_utime + own.ru_stime)
        rows.append(row)
    return rows[1:]


def report_cgroups(backend: str, runs: int, cpu: int, figures: dict[str, float]) -> None:
    """Measure and print the per-experiment cost of cgroup metering; add its figures."""
    layout = cgroups.host()
    if layout.mode == "none":
        print(f"\ncgroup metering: not measured, {layout.describe()}")
        return
    rows = asyncio.run(paired_cgroup_runs(backend, runs, bench_bundle(), cpu))
    wall = statistics.median(r["wall_on"] - r["wall_off"] for r in rows)
    own = statistics.median(r["cpu_on"] - r["cpu_off"] for r in rows)
    figures.update(cgroup_overhead_s=round(wall, 4), cgroup_overhead_cpu_s=round(own, 4))
    print(f"\ncgroup metering ({backend}, {layout.describe()}, {runs} pairs of cold experiments, medians):")
    print(f"  wall with - without {wall:+.3f}s per experiment; this process's CPU {own:+.4f}s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="2 runs per mode, 2 eval rounds, recipes at the tiny size, default backend only (under a minute)",
    )
    p.add_argument(
        "--runs", type=int, default=None, help="runs per backend and eval rounds (default 2 with --quick, else 10)"
    )
    p.add_argument(
        "--backends",
        nargs="*",
        default=None,
        help="backends to measure (default: all available; --quick: the default one)",
    )
    p.add_argument("--cpu", type=int, default=1, help="CPUs granted per run (default 1)")
    p.add_argument("--json", default=None, help="write the figures as one flat JSON object to this path")
    args = p.parse_args(argv)
    runs = args.runs or (2 if args.quick else 10)
    chosen = args.backends or ([backends.default_backend()] if args.quick else backends.available_backends())
    bundle = bench_bundle()
    figures: dict[str, float] = {"runs_per_backend": runs}
    print(
        f"{'backend':<12}{'mode':<6}{'runs':>6}{'wall':>9}{'train':>9}{'eval':>9}{'overhead':>10}   (medians, seconds)"
    )
    for backend in chosen:
        for mode in ("warm", "cold"):
            rows = asyncio.run(measure(backend, runs, bundle, args.cpu, warm=mode == "warm"))
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            print(
                f"{backend:<12}{mode:<6}{runs:>6}{med['wall']:>9.3f}{med['train']:>9.3f}"
                f"{med['eval']:>9.3f}{med['overhead']:>10.3f}"
            )
            suffix = backend if mode == "warm" else f"cold_{backend}"
            figures[f"overhead_s_median_{suffix}"] = round(med["overhead"], 4)
            figures[f"wall_s_median_{suffix}"] = round(med["wall"], 4)
    default = backends.default_backend()
    if f"overhead_s_median_{default}" in figures:
        figures["overhead_s_median"] = figures[f"overhead_s_median_{default}"]
        figures["overhead_s_median_cold"] = figures[f"overhead_s_median_cold_{default}"]
        for label, key in (("warm", "overhead_s_median"), ("cold", "overhead_s_median_cold")):
            verdict = "meets" if figures[key] <= TARGET_S else "MISSES"
            print(f"default backend ({default}) {label} overhead {figures[key]:.3f}s {verdict} the {TARGET_S}s target")
    if "bubblewrap" in backends.available_backends():
        report_eval("bubblewrap", runs, figures)
    else:
        print("\neval comparison skipped: the retired split-process scoring runs under bubblewrap only")
    report_cgroups(default, runs, args.cpu, figures)
    recipe_config = dataclasses.replace(TINY, eval_tokens=2048) if args.quick else DEFAULTS
    report_recipes(recipe_config, bundle if args.quick else default_bundle(), figures)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
