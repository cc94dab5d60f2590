"""Where experiments run: on the CPU, or on a GPU with their device memory sized and several packed on one GPU.

A GPU run is asked for with `--gpu`. Locally it needs an NVIDIA GPU on this machine (refused otherwise, before any
work); on a cluster each experiment pod asks for one GPU (`AUTORESEARCH_IMAGE=gpu`, see `bundle.py`) and the
device's memory is `AUTORESEARCH_GPU_MEMORY_MB` (default an H100's 80 GiB), since the driver's own pod has none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from autoresearch.lab.sizing import SizingPolicy
from autoresearch.sandbox import gpu
from autoresearch_types import ExperimentConfig

CLUSTER_GPU_MB = 81_559
"""An H100's memory as `nvidia-smi` reports it: the default device size for a cluster run."""
GPU_MEMORY_ENV = "AUTORESEARCH_GPU_MEMORY_MB"


class NoGpu(ValueError):
    """`--gpu` on a machine without an NVIDIA GPU (bad input: exit 2)."""


@dataclass(frozen=True)
class Placement:
    """How the runner places experiments: its sizing policy (None: the runner's CPU default) and how many run at
    once."""

    policy: SizingPolicy | None
    concurrency: int


def device_mb(local: bool, smi_output: str | None = None) -> int:
    """The memory of the GPU experiments run on: this machine's first GPU, or the cluster's configured size."""
    if not local:
        return int(os.environ.get(GPU_MEMORY_ENV) or CLUSTER_GPU_MB)
    found = gpu.device_memory_mb(smi_output)
    if found is None or not gpu.device_nodes():
        raise NoGpu("--gpu needs an NVIDIA GPU on this machine: nvidia-smi found none (leave out --gpu for the CPU)")
    return found


def place(use_gpu: bool, local: bool, concurrency: int, config: ExperimentConfig, device: int = 0) -> Placement:
    """CPU: the given concurrency and the runner's own policy. GPU: a policy whose ceiling is the device, and, when
    `concurrency` is 0 (not given), as many experiments at once as `gpu.pack_count` fits on one GPU locally."""
    if not use_gpu:
        return Placement(None, concurrency)
    device = device or device_mb(local)
    cpus = os.cpu_count() or 1
    need = gpu.estimate_gpu_memory_mb(gpu.shape_of(config))
    packed = gpu.pack_count(need, device, cpus) if local else 1
    slots = concurrency or packed
    base = SizingPolicy.for_machine(slots) if local else SizingPolicy()
    return Placement(replace(base, gpu_device_mb=device), slots)
