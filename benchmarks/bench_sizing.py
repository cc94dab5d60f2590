"""How good is the memory estimate? Run a grid of configs in the real sandbox and compare it with their need.

    python benchmarks/bench_sizing.py [--quick] [--json PATH]

Each config runs once under the policy's ceiling, so no limit near the estimate shapes what it uses: its
measured peak virtual memory (what `RLIMIT_AS` limits) is what it needs, and estimate / need can fall on
either side of 1.0. The OOM retries `right_size` would take are the steps of its retry ladder from the
estimate up to that need. Targets: at least 90% of configs estimated within 1.0x-2.0x of their need; 0.1 or
fewer OOM retries each.

Pods: a few configs also run as an emulated cluster pod (`tests/podemu.py`: `a0`, the whole process tree) in a
memory cgroup with room to spare; its peak (whatever processes the tree holds) is compared with the limit
`autoresearch/lab/pods.py` gives that pod. Target: limit / peak within 1.0x-2.0x. Needs root, bubblewrap and a
cgroup-v1 memory controller; without them the pod figures are left out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import prepare  # noqa: E402
from autoresearch.lab import sizing  # noqa: E402
from autoresearch.sandbox import experiment as sandbox  # noqa: E402
from autoresearch_types import ExperimentConfig  # noqa: E402
from benchmarks.common import parse_args, report  # noqa: E402

TRAIN_PY = (Path(__file__).resolve().parent.parent / "train.py").read_text()


def grid(quick: bool) -> list[ExperimentConfig]:
    """Configs spread over the workshop bounds, each trained for two steps."""
    base = ExperimentConfig(token_budget=1, time_budget_s=60.0, eval_tokens=4096, vocab_size=8192)
    layers, widths, batches, seqs = (
        ([1, 6], [64, 256], [4, 16], [128, 512]) if not quick else ([1, 4], [64, 192], [8], [256])
    )
    return [
        dataclasses.replace(base, n_layer=n, n_embd=d, n_head=4, batch_size=b, seq_len=t, token_budget=2 * b * t)
        for n, d, b, t in itertools.product(layers, widths, batches, seqs)
    ]


def ladder_retries(estimate: sizing.Size, need_mb: float, policy: sizing.SizingPolicy) -> int:
    """OOM retries `right_size` takes from the estimate to a size that holds `need_mb` (the ladder's length if none)."""
    size, retries = estimate, 0
    while size.memory_mb < need_mb:
        bigger = sizing.next_size(size, policy)
        if bigger is None or retries >= policy.max_retries:
            return retries + 1
        size, retries = bigger, retries + 1
    return retries


async def run_sized(config: ExperimentConfig, data: Path, policy: sizing.SizingPolicy) -> dict:
    """One config run under the ceiling: what it needed, the estimate's ratio to it, the retries it would take."""
    estimate = sizing.initial_size(config, policy)
    spec = sandbox.SandboxSpec(
        train_py=TRAIN_PY,
        config=config,
        data_dir=str(data / "data"),
        tokenizer_dir=str(data / "tokenizer"),
        cpu=estimate.cpu,
        memory_mb=policy.ceiling_mb,
        digests=prepare.bundle_digests(data),
    )
    result = await sandbox.run_sandboxed(spec)
    needed = result.peak_virtual_mb
    return {
        "config": f"L{config.n_layer} d{config.n_embd} b{config.batch_size} t{config.seq_len}",
        "outcome": result.outcome,
        "estimate_mb": estimate.memory_mb,
        "virtual_mb": round(needed),
        "resident_mb": round(result.peak_memory_mb),
        "ratio": round(estimate.memory_mb / needed, 2) if needed else float("nan"),
        "retries": ladder_retries(estimate, needed, policy) if needed else 0,
    }


async def main_async(quick: bool) -> tuple[list[dict], dict]:
    root = prepare.state_dir() / "bench" / "bundle"
    if not (root / "data" / "profile.json").exists():
        prepare.prepare_bundle(prepare.DEFAULT_DATASET, 1, 8192, root)
    policy = sizing.SizingPolicy.for_machine(concurrency=1)
    rows = []
    for config in grid(quick):
        rows.append(await run_sized(config, root, policy))
        print("  ran", rows[-1]["config"], rows[-1]["outcome"], flush=True)
    ok = [r for r in rows if r["outcome"] == "success"]
    within = sum(1 for r in ok if 1.0 <= r["ratio"] <= 2.0)
    figures = {
        "within_1x_2x_fraction": round(within / max(1, len(rows)), 3),
        "oom_retries_per_experiment": round(sum(r["retries"] for r in rows) / max(1, len(rows)), 3),
        "configs": len(rows),
    }
    return rows, figures


POD_CONFIGS = {
    "tiny": {"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "batch_size": 4},
    "default": {},
    "wide": {"n_layer": 4, "n_embd": 256, "seq_len": 256, "batch_size": 32},
}
"""Pod sizes measured: the smallest model, the default, and a wide one (each trained for 10 steps)."""


def pod_rows(quick: bool) -> list[dict]:
    """Each pod config run in a roomy memory cgroup: its measured peak against the limit its pod would get."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import podemu

    from autoresearch.lab import pods

    problem = podemu.container_problem() or podemu.MemoryCgroup.available()
    if problem:
        print(f"pods not measured: {problem}")
        return []
    emu = podemu.Emulation.create(prepare.state_dir() / "bench" / "pods", podemu.tiny_data(prepare.state_dir()))
    rows = []
    for name in ["tiny"] if quick else list(POD_CONFIGS):
        config = ExperimentConfig(vocab_size=512).with_overrides(POD_CONFIGS[name])
        config = config.with_overrides({"token_budget": 10 * config.tokens_per_step})
        done = podemu.experiment_pod(emu, f"size-{name}", config, "unmasked", limit=16384)
        peak = done["peak_mb"] or 0.0
        limit = pods.pod_memory_mb(config)
        outcome = done["result"].outcome if done["result"] else "failed"
        rows.append(
            {
                "config": name,
                "outcome": outcome,
                "limit_mb": limit,
                "peak_mb": round(peak),
                "ratio": round(limit / peak, 2) if peak else float("nan"),
            }
        )
        print("  pod", rows[-1], flush=True)
    return rows


def main() -> None:
    args = parse_args(__doc__)
    rows, figures = asyncio.run(main_async(args.quick))
    measured = [r for r in pod_rows(args.quick) if r["outcome"] == "success"]
    if measured:
        figures["pod_limit_over_peak_min"] = min(r["ratio"] for r in measured)
        figures["pod_limit_over_peak_max"] = max(r["ratio"] for r in measured)
        figures["pod_within_1x_2x_fraction"] = round(sum(1 <= r["ratio"] <= 2 for r in measured) / len(measured), 3)
        for r in measured:
            print(
                f"pod {r['config']:<8} limit {r['limit_mb']:>6} MiB  peak {r['peak_mb']:>6} MiB  limit/peak {r['ratio']}"
            )
    header = f"{'config':<22}{'outcome':<9}{'estimate':>9}{'virtual':>9}{'resident':>9}{'ratio':>7}{'retries':>8}"
    print(header)
    for r in rows:
        print(
            f"{r['config']:<22}{r['outcome']:<9}{r['estimate_mb']:>9}{r['virtual_mb']:>9}"
            f"{r['resident_mb']:>9}{r['ratio']:>7}{r['retries']:>8}"
        )
    targets = {"within_1x_2x_fraction": ">= 0.9", "oom_retries_per_experiment": "<= 0.1"}
    report(figures, args.json, targets | {"pod_limit_over_peak_min": ">= 1", "pod_limit_over_peak_max": "<= 2"})


if __name__ == "__main__":
    main()
