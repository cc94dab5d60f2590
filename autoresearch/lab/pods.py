"""How one experiment runs as a Flyte action on a cluster: its pod's memory limit, timeout, retries, scheduling
options and name, and which failures are final.

- **Memory.** A pod holds a whole process tree (the task process and every sandboxed process it starts), so its
  limit is sized from the tree's peak measured in a memory cgroup (`benchmarks/bench_sizing.py`), not from the
  per-process `RLIMIT_AS` that stays the sandbox's belt. The limit is set as a limit, not only a request.
- **Retries.** Flyte retries an action whose pod was lost (eviction, preemption, node failure). A deterministic
  failure (the edited code crashed, ran out of its memory, was tampered with) is raised as non-recoverable, so
  it is never retried: the driver's OOM ladder asks for more memory instead, and the run is recorded once.
- **Timeout.** The training cap plus scoring and start-up slack, and a bound on time spent queued, so a pod
  stuck Pending does not hold a slot forever.
- **Reuse.** With `reuse`, experiments run in warm pods (`flyte.ReusePolicy`); such a pod keeps the environment's
  size, so a call that needs more memory runs with reuse off.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from autoresearch.lab import sizing
from autoresearch_types import ExperimentConfig

TREE_BASE_MB = 680
"""The config-independent part of a pod's peak: the task process, torch in each sandboxed process, the page cache
of the libraries. Fitted to the peaks `bench_sizing` measures in a memory cgroup around the whole emulated pod
(789, 788 and 1717 MiB for its tiny, default and wide configs, with a trainer and two model servers)."""
TREE_MODEL_FACTOR = 1.25
"""The tree's peak per MiB of one process's modelled model state (`model_mb`), from the same fit."""
HEADROOM = 1.3
"""Limit over the modelled peak: the limit lands between 1x and 2x of what the tree really used."""
STARTUP_S = 120.0
"""Pod start, bundle download, interpreter and torch imports: slack on top of the run's own deadline."""
QUEUE_S = 3600.0
"""How long an experiment may wait for a node before it fails instead of holding a slot."""


@dataclass(frozen=True)
class PodSettings:
    """Per-run cluster options for experiment actions (ignored locally, where experiments are subprocesses)."""

    retries: int = 2
    """Retries of infrastructure failures only (a deterministic failure is final)."""
    interruptible: bool = False
    """Allow spot/preemptible nodes: cheaper, and a preempted experiment is retried."""
    reuse: int = 0
    """Warm pods kept for experiments (`flyte.ReusePolicy` replicas); 0 starts a pod per experiment."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_mb(config: ExperimentConfig) -> float:
    """The config-dependent part of one process's memory (weights, optimiser, activations, logits), in MiB."""
    parts = sizing.estimate_parts_mb(config, config.threads)
    return sum(v for k, v in parts.items() if k not in ("runtime", "threads"))


def pod_memory_mb(config: ExperimentConfig) -> int:
    """The pod's memory limit for `config`: the tree's modelled peak with head-room, rounded up to 64 MiB."""
    peak = TREE_BASE_MB + TREE_MODEL_FACTOR * model_mb(config) + sizing.VM_PER_THREAD_MB * (config.threads - 1)
    return int(math.ceil(peak * HEADROOM / 64) * 64)


def timeout(config: ExperimentConfig) -> Any:
    """The action's timeout: the run's own deadline (training cap and scoring) plus start-up, and a queue bound."""
    import flyte

    from autoresearch.sandbox import experiment

    run_s = experiment.default_deadline_s(config)
    return flyte.Timeout(max_runtime=timedelta(seconds=run_s + STARTUP_S), max_queued_time=timedelta(seconds=QUEUE_S))


def short_name(title: str, seed: int) -> str:
    """The action's name in the UI: the experiment's slug and seed, short."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "experiment"
    return f"{slug}-s{seed}"


def group_name(batch_id: str) -> str:
    """The UI group of an experiment's actions: its batch (the baseline's seeds and owed runs have none)."""
    return f"batch-{batch_id}" if batch_id else "baseline"


def memory_of(resources: Any) -> int:
    """A `flyte.Resources`' memory limit (or request) in MiB; 0 when none is set."""
    memory = getattr(resources, "memory", None)
    value = memory[-1] if isinstance(memory, tuple) else memory
    mb = sizing.parse_memory_mb(value) if value else None
    return int(mb or 0)


def overrides(
    task: Any, config: ExperimentConfig, size: sizing.Size, settings: PodSettings, name: str, attempt: int = 0
) -> dict:
    """`task.override(...)` keywords for one experiment call: resources (request = limit, doubled with each OOM
    retry as the sandbox's memory is), timeout, retries, interruptible, name, and reuse where the warm pod's size
    is enough (a bigger call turns reuse off)."""
    import flyte

    pod_mb = pod_memory_mb(config) * 2**attempt
    kwargs: dict[str, Any] = {
        "short_name": name,
        "timeout": timeout(config),
        "retries": settings.retries,
        "interruptible": settings.interruptible,
    }
    fits = pod_mb <= memory_of(task.resources) and size.cpu <= float(getattr(task.resources, "cpu", 1) or 1)
    if settings.reuse and fits and not attempt:
        kwargs["reusable"] = flyte.ReusePolicy(replicas=(1, settings.reuse), idle_ttl=300, scope="run")
        return kwargs
    memory = f"{pod_mb}Mi"
    kwargs["resources"] = flyte.Resources(cpu=size.cpu, memory=(memory, memory))
    kwargs["reusable"] = "off"
    return kwargs


def shape(settings: PodSettings, name: str) -> Any:
    """The sizing handler's shape for one experiment on a cluster: `overrides` with these settings and name."""

    def configure(task: Any, config: ExperimentConfig, size: sizing.Size, attempt: int) -> dict[str, Any]:
        return overrides(task, config, size, settings, name, attempt)

    return configure


def final(exc: BaseException) -> BaseException:
    """The error to raise for a failed experiment: a deterministic failure (one that carries its result) becomes
    non-recoverable with the same code and message, so Flyte never retries it; anything else is left as it is."""
    import flyte.errors

    from autoresearch.sandbox import experiment

    if experiment.result_from_error(exc) is None or isinstance(exc, flyte.errors.NonRecoverableError):
        return exc
    code = getattr(exc, "code", "") or type(exc).__name__
    return flyte.errors.NonRecoverableError(str(exc), code=code)
