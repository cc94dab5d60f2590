"""Per-experiment sandbox overhead: wall time minus the in-sandbox train and eval time.

Runs the honest baseline with a tiny config several times per available backend and prints the
median overhead (staging, interpreter start-ups and `import torch`, checkpoint hand-off, process
clean-up), in two modes:

- `warm`: as a local driver run works, with the warm pool on and given time to fill before each
  experiment (as it has while the previous experiment trains or the agent plans);
- `cold`: pool off, every process launched when the experiment starts (a cluster pod).

Target: 1.5 s or less, under 5% of a 45 s experiment. `overhead_s_median` is the default
backend's warm figure; `overhead_s_median_cold` its cold one.

It also measures the evaluation at the DEFAULT settings (`ExperimentConfig()`: 2 layers, width 64,
seq 128, vocab 2048, 32768 eval tokens; 3 training steps, since the eval's cost does not depend on
the weights), side by side in one run:
- `eval_s_inprocess`: the old way, `build_model` + `load_state_dict` + `prepare.evaluate_bpb` in one
  process with the granted thread count (what the old harness did inside the sandbox);
- `eval_s_split`: the new way, the experiment's `eval_seconds`: from handing the checkpoint to
  both warm model servers until the trusted scorer has scored every row and checked every probe.
Target: `eval_split_over_inprocess` <= 1.25.

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
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import prepare  # noqa: E402
from autoresearch.sandbox import backends, cgroups  # noqa: E402
from autoresearch.sandbox import experiment as sandbox  # noqa: E402
from autoresearch.sandbox import pool as sandbox_pool  # noqa: E402
from autoresearch_types import ExperimentConfig  # noqa: E402

TINY = ExperimentConfig(
    n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=4, token_budget=3 * 4 * 32, vocab_size=512
)
TARGET_S = 1.5
EVAL_RATIO_TARGET = 1.25
DEFAULTS = ExperimentConfig(token_budget=3 * 8 * 128)
"""The default architecture and evaluation; 3 training steps (the eval's cost does not depend on the weights)."""


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


def eval_in_process(checkpoint: str, bundle: Path, config: ExperimentConfig, cpu: int) -> tuple[float, float]:
    """(seconds, val_bpb) of the old evaluation: rebuild, load and `prepare.evaluate_bpb` in this process."""
    import numpy as np
    import torch

    import train

    threads = torch.get_num_threads()
    torch.set_num_threads(cpu)
    try:
        val = prepare.load_tokens(bundle / "data", "val")
        token_bytes = np.load(bundle / "tokenizer" / "token_bytes.npy")
        start = time.perf_counter()
        model = train.build_model(config)
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        bpb = prepare.evaluate_bpb(model, val, token_bytes, config.seq_len, eval_tokens=config.eval_tokens)
        return time.perf_counter() - start, bpb
    finally:
        torch.set_num_threads(threads)


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


async def measure_eval(backend: str, runs: int, bundle: Path, cpu: int) -> list[dict[str, float]]:
    """`runs` default-size experiments (warm pool), each followed by the old in-process eval of its weights.

    The first pair (page cache, first scoring) is not counted. The split and in-process figures
    alternate, so load from anything else on the machine falls on both alike.
    """
    source = (Path(__file__).resolve().parent.parent / "train.py").read_text()
    pool = sandbox_pool.WarmPool(1)
    rows = []
    try:
        for _ in range(runs + 1):
            await pool.wait_ready()
            spec = baseline_spec(source, DEFAULTS, bundle, backend, cpu, memory_mb=4096, deadline_s=300.0, keep=True)
            result = await sandbox.run_sandboxed(spec, pool)
            if result.outcome != "success":
                raise RuntimeError(f"{backend}: default baseline ended {result.outcome}: {result.message}")
            old_s, old_bpb = eval_in_process(result.checkpoint, bundle, DEFAULTS, cpu)
            Path(result.checkpoint).unlink(missing_ok=True)
            if abs(old_bpb - result.val_bpb) > 1e-6:
                raise RuntimeError(f"split val_bpb {result.val_bpb} differs from in-process {old_bpb}")
            rows.append({"split": result.eval_seconds, "inprocess": old_s})
    finally:
        await pool.close()
    return rows[1:]


def report_eval(backend: str, runs: int, cpu: int, figures: dict[str, float]) -> None:
    """Measure and print the eval comparison at the default settings; add its figures."""
    rows = asyncio.run(measure_eval(backend, runs, default_bundle(), cpu))
    old = statistics.median(r["inprocess"] for r in rows)
    new = statistics.median(r["split"] for r in rows)
    ratio = statistics.median(r["split"] / r["inprocess"] for r in rows)
    figures.update(
        eval_s_inprocess=round(old, 4), eval_s_split=round(new, 4), eval_split_over_inprocess=round(ratio, 3)
    )
    verdict = "meets" if ratio <= EVAL_RATIO_TARGET else "MISSES"
    print(f"\neval at default settings ({backend}, {runs} runs, medians): in-process {old:.3f}s, split {new:.3f}s")
    print(f"split / in-process {ratio:.3f} {verdict} the {EVAL_RATIO_TARGET}x target")


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
        "--quick", action="store_true", help="3 runs per mode and 3 eval runs, default backend only (under a minute)"
    )
    p.add_argument("--runs", type=int, default=None, help="runs per backend (default 3 with --quick, else 10)")
    p.add_argument(
        "--backends",
        nargs="*",
        default=None,
        help="backends to measure (default: all available; --quick: the default one)",
    )
    p.add_argument("--cpu", type=int, default=1, help="CPUs granted per run (default 1)")
    p.add_argument("--json", default=None, help="write the figures as one flat JSON object to this path")
    args = p.parse_args(argv)
    runs = args.runs or (3 if args.quick else 10)
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
    report_eval(default, runs, args.cpu, figures)
    report_cgroups(default, runs, args.cpu, figures)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
