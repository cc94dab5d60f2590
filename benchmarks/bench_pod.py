"""What the cluster path costs per experiment: the emulated pod (`tests/podemu.py`) against the local path.

    python benchmarks/bench_pod.py [--quick] [--json PATH]

The same experiment runs twice, side by side: as a local Flyte task (a cold sandbox, Flyte's cache off) and as a
pod (`a0` over the code bundle, the data bundle downloaded into the pod's state dir, cold interpreters), in the
`unmasked` posture so both use bubblewrap, and in a memory cgroup at the limit the driver would give that pod.
Figures: `pod_overhead_s` (what the pod path adds around the experiment: its wall minus the experiment's own,
measured inside the task, against the same for the local path: runtime start, code bundle, data download,
imports), `pod_over_local_wall`, `pod_peak_over_limit` (the pod's peak memory over its limit; target under 1,
which is what keeps it alive). The default config in the full run
(trained to 100 steps); `--quick` trains the tiny config. Needs root and bubblewrap (the pod's container) and a
cgroup-v1 memory controller for the peak.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.common import BENCH_STATE, parse_args, report  # noqa: E402


def main() -> None:
    args = parse_args(__doc__)
    import flyte
    import podemu

    import parallelized_autoresearch as app
    import prepare
    from autoresearch_types import ExperimentConfig

    if podemu.container_problem():
        sys.exit(f"bench_pod cannot run here: {podemu.container_problem()}")
    if args.quick:
        config, data = ExperimentConfig().with_overrides(podemu.TINY), podemu.tiny_data(BENCH_STATE)
    else:
        config = ExperimentConfig().with_overrides({"token_budget": 100 * ExperimentConfig().tokens_per_step})
        data = BENCH_STATE / "pod-bundle"
        if not (data / "data" / "profile.json").exists():
            prepare.prepare_bundle("shakespeare", 1, config.vocab_size, data)
    emu = podemu.Emulation.create(BENCH_STATE / "bench_pod", data)
    flyte.init(org="local", project="bench-pod", domain="development")
    local_task = app.run_experiment.target.override(cache="disable")
    inputs = podemu.experiment_inputs(data, config.to_dict()) | {"data": podemu.local_data(data)}
    start = time.perf_counter()
    local = flyte.run(local_task, **inputs).outputs()[0]
    local_s = time.perf_counter() - start
    cgroup = podemu.MemoryCgroup.available()
    pod = podemu.experiment_pod(emu, "bench", config, "unmasked", 0 if cgroup is None else None)
    result = pod["result"]
    if result is None:
        sys.exit(f"the pod failed: {pod['error']}")
    around_pod, around_local = pod["wall_s"] - result.wall_seconds, local_s - local.wall_seconds
    figures = {
        "pod_overhead_s": round(around_pod - around_local, 2),
        "pod_over_local_wall": round(pod["wall_s"] / local_s, 3),
        "pod_peak_over_limit": round(pod["peak_mb"] / pod["limit_mb"], 3) if pod["peak_mb"] else float("nan"),
        "pod_wall_s": round(pod["wall_s"], 2),
        "local_wall_s": round(local_s, 2),
        "pod_around_experiment_s": round(around_pod, 2),
        "local_around_experiment_s": round(around_local, 2),
        "pod_peak_mb": round(pod["peak_mb"] or 0),
        "pod_limit_mb": pod["limit_mb"],
        "same_val_bpb": int(abs(result.val_bpb - local.val_bpb) < 1e-6),
    }
    if cgroup:
        print(f"no memory cgroup ({cgroup}): pod_peak_over_limit not measured")
    report(figures, args.json, {"pod_peak_over_limit": "< 1", "same_val_bpb": "1"})


if __name__ == "__main__":
    main()
