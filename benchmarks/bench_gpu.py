"""GPU experiments: a baseline trained on the GPU against the CPU, what a hostile run sees of the devices, packed
against one-at-a-time experiments per GPU-hour, and the OOM ladder on the device.

Runs whole in under 8 minutes on one GPU and builds nothing from the network (the Shakespeare bundle comes from the
installed corpus package). On a machine with no GPU it says so, writes `{"gpu_available": 0}` with `--json`, and
exits 0.

    .venv/bin/python benchmarks/bench_gpu.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import prepare  # noqa: E402
from autoresearch.lab import sizing  # noqa: E402
from autoresearch.sandbox import backends, gpu  # noqa: E402
from autoresearch.sandbox import experiment as sandbox  # noqa: E402
from autoresearch_types import ExperimentConfig, ExperimentResult  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HOSTILE = """
import glob, os
seen = sorted(glob.glob("/dev/*"))
opened = []
for node in glob.glob("/dev/nvidia*"):
    try:
        os.close(os.open(node, os.O_RDWR))
        opened.append(node)
    except OSError:
        pass
proc = os.path.exists("/proc/driver/nvidia")
raise RuntimeError(f"SEEN={seen} OPENED={opened} PROC_DRIVER={proc} VISIBLE={os.environ.get('CUDA_VISIBLE_DEVICES')}")
"""


def spec_for(bundle: Path, config: ExperimentConfig, gpu_mb: int, train_py: str | None = None) -> sandbox.SandboxSpec:
    """One experiment of `config` on the bundle: on the GPU with `gpu_mb` of its memory, or on the CPU (0)."""
    return sandbox.SandboxSpec(
        train_py or (REPO / "train.py").read_text(),
        config,
        str(bundle / "data"),
        str(bundle / "tokenizer"),
        backend=backends.default_backend(),
        deadline_s=600,
        digests=prepare.bundle_digests(bundle),
        gpu_memory_mb=gpu_mb,
    )


async def timed(specs: list[sandbox.SandboxSpec], together: bool) -> tuple[list[ExperimentResult], float]:
    """Run `specs` all at once or one after another; their results and the wall time."""
    start = time.perf_counter()
    if together:
        results = list(await asyncio.gather(*(sandbox.run_sandboxed(s) for s in specs)))
    else:
        results = [await sandbox.run_sandboxed(s) for s in specs]
    return results, time.perf_counter() - start


async def ladder(bundle: Path, config: ExperimentConfig, device_mb: int) -> tuple[int, str]:
    """A config started far below its need on the device: retries on the ladder until it fits; (retries, outcome)."""
    policy = sizing.SizingPolicy(ceiling_mb=16_384, gpu_device_mb=device_mb)
    size = dataclasses.replace(sizing.initial_size(config, policy), gpu_memory_mb=700)
    retries = 0
    while True:
        result = await sandbox.run_sandboxed(spec_for(bundle, config, size.gpu_memory_mb))
        bigger = sizing.next_size(size, policy) if result.outcome == "oom" else None
        if bigger is None:
            return retries, result.outcome
        size, retries = bigger, retries + 1


def measure(quick: bool, device_mb: int) -> dict[str, float | int | str]:
    """Every figure, on this machine's first GPU."""
    bundle = prepare.state_dir() / "bench-gpu-bundle"
    if not (bundle / "data" / "profile.json").exists():
        prepare.prepare_bundle("shakespeare", 1, 2048, bundle)
    config = ExperimentConfig().with_overrides({"max_steps": 100 if quick else 600, "vocab_size": 2048})
    need = gpu.estimate_gpu_memory_mb(gpu.shape_of(config))
    (on_gpu, on_cpu), _ = asyncio.run(timed([spec_for(bundle, config, need), spec_for(bundle, config, 0)], False))
    hostile = asyncio.run(sandbox.run_sandboxed(spec_for(bundle, config, need, HOSTILE)))
    k = gpu.pack_count(need, device_mb, cpus=os.cpu_count() or 1)
    seeds = [dataclasses.replace(config, seed=config.seed + i) for i in range(k)]
    packed, packed_s = asyncio.run(timed([spec_for(bundle, c, need) for c in seeds], True))
    single, single_s = asyncio.run(timed([spec_for(bundle, c, need) for c in seeds], False))
    big = config.with_overrides({"n_layer": 8, "n_head": 8, "n_embd": 512, "batch_size": 64, "max_steps": 20})
    retries, final = asyncio.run(ladder(bundle, big, device_mb))
    ok = [r for r in packed + single if r.outcome == "success"]
    return {
        "gpu_available": 1,
        "device_mb": device_mb,
        "gpu_outcome": on_gpu.outcome,
        "gpu_val_bpb": on_gpu.val_bpb or 0.0,
        "cpu_val_bpb": on_cpu.val_bpb or 0.0,
        "gpu_val_bpb_vs_cpu_abs_diff": abs((on_gpu.val_bpb or 0.0) - (on_cpu.val_bpb or 0.0)),
        "hostile_report": (hostile.message + hostile.stderr_tail)[-600:],
        "packed_experiments": k,
        "packed_successes": len(ok),
        "experiments_per_gpu_hour_packed": round(k / packed_s * 3600, 1),
        "experiments_per_gpu_hour_single": round(k / single_s * 3600, 1),
        "packing_speedup": round(single_s / packed_s, 2),
        "gpu_oom_retries_per_experiment": retries,
        "gpu_oom_ladder_outcome": final,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="100 steps instead of 600 (under a minute on a GPU)")
    p.add_argument("--json", default=None, help="write the figures as one flat JSON object to this path")
    args = p.parse_args(argv)
    device_mb = gpu.device_memory_mb()
    if device_mb is None or not gpu.device_nodes():
        print("bench_gpu: no NVIDIA GPU on this machine (nvidia-smi found none): nothing measured")
        figures: dict[str, float | int | str] = {"gpu_available": 0}
    else:
        figures = measure(args.quick, device_mb)
        print(f"{'figure':<36} value")
        for name, value in figures.items():
            print(f"{name:<36} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
