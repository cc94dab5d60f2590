"""What a GPU experiment needs from the sandbox, as pure rules: the NVIDIA device nodes to bind (and nothing else of
the host's `/dev`), the driver's library directories, the per-process GPU memory fraction, and the sizing arithmetic
that decides how many experiments share one GPU.

Why a fraction and not a hard limit: CUDA has no per-process memory cgroup. The trusted harness calls
`torch.cuda.set_per_process_memory_fraction` before the edited code is imported, so PyTorch's caching allocator
raises `torch.cuda.OutOfMemoryError` (an `oom` for the retry ladder) past the experiment's share. An edited
`train.py` runs in the same process and can raise its own fraction again, or allocate outside PyTorch's allocator;
it can then starve the experiments packed beside it on that GPU (they fail `oom` and are retried with more memory),
but it cannot read their memory: CUDA contexts of different processes are isolated by the driver. A hard bound
needs MIG or MPS limits set by the cluster.
"""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
"""The driver's control nodes a CUDA process opens besides its GPU's own node."""
GPU_NODE = re.compile(r"^nvidia\d+$")
DRIVER_LIBRARIES = ("libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so")
"""The driver's user-space libraries (loaded with `dlopen`, so `ldd` of the interpreter never names them)."""
CONTEXT_MB = 600
"""What a CUDA context and PyTorch's kernels take on the device before the first tensor (measured on H100s: 500-600)."""
ADAM_BYTES_PER_PARAM = 16
"""fp32 weights, gradients and AdamW's two moments."""
ACTIVATION_FACTOR = 34
"""Bytes of saved activations per token, per layer, per unit of width under bf16 autocast (attention and MLP)."""


@dataclass(frozen=True)
class GpuShape:
    """The parts of a config that decide its GPU memory."""

    n_layer: int
    n_embd: int
    vocab_size: int
    seq_len: int
    batch_size: int


def shape_of(config: Any) -> GpuShape:
    """The GPU-relevant parts of an `ExperimentConfig`."""
    return GpuShape(config.n_layer, config.n_embd, config.vocab_size, config.seq_len, config.batch_size)


def device_nodes(dev: Path = Path("/dev")) -> list[str]:
    """The NVIDIA nodes present under `dev` that a GPU experiment binds: the control nodes and every numbered GPU
    node this machine (or pod) was given. Nothing else of `dev`; empty where there is no NVIDIA driver."""
    if not dev.is_dir():
        return []
    names = sorted(p.name for p in dev.iterdir() if p.name in CONTROL_NODES or GPU_NODE.match(p.name))
    return [str(dev / name) for name in names]


def driver_library_dirs(ldconfig_output: str | None = None) -> list[str]:
    """The directories holding the NVIDIA driver's libraries, from `ldconfig -p` (read-only binds for a GPU run)."""
    text = ldconfig_output if ldconfig_output is not None else _ldconfig()
    dirs = set()
    for line in text.splitlines():
        name, _, path = line.strip().partition(" => ")
        if path and any(name.startswith(lib) for lib in DRIVER_LIBRARIES):
            dirs.add(str(Path(path).parent))
    return sorted(dirs)


def device_memory_mb(smi_output: str | None = None) -> int | None:
    """The first GPU's memory in MiB, from `nvidia-smi` (None where there is no NVIDIA GPU or driver)."""
    text = smi_output if smi_output is not None else _smi()
    for line in text.splitlines():
        if line.strip().isdigit():
            return int(line.strip())
    return None


def _smi() -> str:
    try:
        args = ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
        return subprocess.run(args, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.cache
def _ldconfig() -> str:
    """`ldconfig -p`, read once per process: every GPU launch binds the same driver directories."""
    try:
        return subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def estimate_gpu_memory_mb(shape: GpuShape) -> int:
    """Device memory one experiment needs: the context, weights with AdamW state, logits and saved activations."""
    params = shape.vocab_size * shape.n_embd * 2 + shape.n_layer * 12 * shape.n_embd**2
    tokens = shape.batch_size * shape.seq_len
    activations = ACTIVATION_FACTOR * tokens * shape.n_layer * shape.n_embd
    logits = 3 * 4 * tokens * shape.vocab_size  # fp32 logits, their gradient and the softmax
    return CONTEXT_MB + int((ADAM_BYTES_PER_PARAM * params + activations + logits) / 2**20) + 1


def memory_fraction(need_mb: int, device_mb: int) -> float:
    """The share of the device an experiment's allocator may use: its need over the device's memory, at most 1."""
    if device_mb <= 0:
        raise ValueError(f"device memory must be positive, got {device_mb}")
    return min(1.0, max(need_mb, 1) / device_mb)


def pack_count(need_mb: int, device_mb: int, cpus: int, reserve_mb: int = 1024) -> int:
    """How many experiments share one GPU: as many as their sized memory fits beside a reserve, never more than
    the CPU cores that feed them, at least one (a lone experiment that does not fit fails `oom` and is retried)."""
    usable = max(0, device_mb - reserve_mb)
    return max(1, min(usable // max(need_mb, 1), max(1, cpus)))
