"""The trusted harness that runs INSIDE the sandbox, next to the agent's edited `train.py`.

`pool.launch` starts `python harness.py serve train <idle_s> <memory_mb> <cpu_s>` in a work dir
holding this file, `graph_export.py`, `prepare.py` and `autoresearch_types.py`. The harness first
lowers its own memory and CPU-seconds limits to the launch values, does the heavy imports (torch,
the `torch._dynamo` import the first AdamW would trigger, and `torch.export`, warmed up on a tiny
module), then waits for `job.json`, which the orchestrator writes last, once the edited `train.py`
and `data/` are in place. The job lowers the limits to the experiment's own, then the phase runs and
the process ends with `os._exit` (no slow interpreter teardown, and nothing the edited code
registered at exit runs).

The one phase, `train`: import the edited module, call `run_training(config, "data")` (the data dir
holds only `meta.json` and this run's batches), then export the trained model's eval-mode forward
pass at one `(1, seq_len)` window with `torch.export` and write it as `out/model.graph`
(`graph_export.py`: a JSON graph of ATen ops and raw tensor bytes, no pickle). A model that cannot be
exported gets `out/export.json` with the reason instead. `out/train.json` holds steps, peak memory and
device (informational, bounded by the orchestrator).

No model runs here after training: the trusted scorer, outside the sandbox, loads the graph as
hostile input and evaluates it itself. Nothing this process writes is a metric: the edited code runs
in this same interpreter and could patch anything here (torch.export included), so every file of
this work dir is untrusted input to the orchestrator.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def write_json(name: str, payload: dict[str, Any]) -> None:
    """Write one result file under `out/` atomically."""
    out = Path("out")
    out.mkdir(exist_ok=True)
    tmp = out / f".{name}.part"
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, out / name)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_virtual_mb() -> float:
    """Peak virtual memory of this process so far: what `RLIMIT_AS` limits, so what sizing must cover."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def set_threads(job: dict[str, Any]) -> None:
    """Use exactly the CPU threads granted."""
    import torch

    torch.set_num_threads(max(1, int(job["threads"])))


def load_config(job: dict[str, Any]):
    """The experiment's config, as the orchestrator resolved it."""
    from autoresearch_types import ExperimentConfig

    return ExperimentConfig.from_dict(job["config"])


def import_edited():
    """Import the agent's `train.py` (staged as `train.py` in the work dir)."""
    sys.path.insert(0, os.getcwd())
    return importlib.import_module("train")


def cap_gpu_memory(job: dict[str, Any]) -> None:
    """A GPU run's share of the device, set before the edited code is imported: past it PyTorch's allocator raises
    `torch.cuda.OutOfMemoryError`. A CPU run is told of no device at all (its environment hides them)."""
    need_mb = int(job.get("gpu_memory_mb") or 0)
    if need_mb <= 0:
        return
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("a GPU run found no CUDA device in its sandbox")
    total_mb = torch.cuda.get_device_properties(0).total_memory / MIB
    torch.cuda.set_per_process_memory_fraction(min(1.0, need_mb / total_mb), 0)


def device_name() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def phase_train(job: dict[str, Any]) -> None:
    """Train with the edited code, then export the trained model's forward pass; no held-out data exists here."""
    import torch

    set_threads(job)
    cap_gpu_memory(job)
    config = load_config(job)
    module = import_edited()
    start = time.perf_counter()
    model, summary = module.run_training(config, "data")
    train_seconds = time.perf_counter() - start
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"run_training returned {type(model).__name__}, not a torch.nn.Module")
    export_graph(model, config.seq_len)
    write_json(
        "train.json",
        {
            "steps": getattr(summary, "steps", 0),
            "train_seconds": train_seconds,
            "peak_memory_mb": peak_memory_mb(),
            "peak_virtual_mb": peak_virtual_mb(),
            "device": device_name(),
        },
    )


def export_graph(model: Any, seq_len: int) -> None:
    """Write `out/model.graph`, or `out/export.json` with the reason the model cannot be exported."""
    import graph_export

    Path("out").mkdir(exist_ok=True)
    try:
        graph_export.export_model(model, seq_len, f"out/{graph_export.GRAPH_FILE}")
    except MemoryError:
        raise
    except graph_export.ExportRefused as refused:
        write_json("export.json", {"error": str(refused)})
    except Exception as error:  # noqa: BLE001 - whatever stops the export, the agent needs to read it
        write_json("export.json", {"error": str(graph_export.ExportRefused(graph_export.first_line(error)))})


def warm_export() -> None:
    """Export a tiny module once, so the run's own export does not pay torch.export's first-call set-up."""
    import graph_export
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(4, 4)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.emb(idx)

    program = torch.export.export(Tiny().eval(), (torch.zeros(1, 2, dtype=torch.int64),), strict=False)
    graph_export.graph_header(program.run_decompositions(decomp_table={}))


PHASES = {"train": phase_train}
"""The one role a sandboxed process has: training (scoring happens outside, on the exported graph)."""
WARM_IMPORTS = {"train": ("numpy", "torch", "torch._dynamo", "torch.export", "prepare", "graph_export")}
"""What each role imports before its job arrives. Trusted modules only: the edited code comes later."""
STDERR_FILE = "stderr.log"
READY_FILE = "ready"
MIB = 1024 * 1024


def warm_up(phase: str) -> None:
    """Do the slow imports (and torch.export's first call) now, while the process waits for its job."""
    for name in WARM_IMPORTS[phase]:
        importlib.import_module(name)
    warm_export()


def wait_for_job(idle_s: float, poll_s: float = 0.005) -> dict[str, Any] | None:
    """The orchestrator's job (renamed into place, never partial), or None after `idle_s` without one."""
    give_up = time.monotonic() + idle_s
    while not Path("job.json").exists():
        if time.monotonic() > give_up:
            return None
        time.sleep(poll_s)
    return json.loads(Path("job.json").read_text())


def _lower(limit: int, value: int) -> None:
    """Lower an rlimit (soft and hard) to `value`; never raise it."""
    _, hard = resource.getrlimit(limit)
    if hard == resource.RLIM_INFINITY or value < hard:
        resource.setrlimit(limit, (value, value))


def apply_limits(job: dict[str, Any]) -> None:
    """This experiment's own memory (address space) and CPU-seconds caps, as a cold start would have."""
    if job.get("memory_mb"):
        _lower(resource.RLIMIT_AS, int(job["memory_mb"]) * MIB)
    if job.get("cpu_seconds"):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        _lower(resource.RLIMIT_CPU, math.ceil(usage.ru_utime + usage.ru_stime) + int(job["cpu_seconds"]))


def redirect_stderr() -> None:
    """Send fd 2 to a file in the work dir instead of the sandbox's pipe.

    A pipe stays open as long as any process holding it lives, so a daemon left behind would keep
    the orchestrator waiting for EOF until the deadline; a file does not.
    """
    fd = os.open(STDERR_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


def apply_launch_limits(memory_mb: int, cpu_seconds: int) -> None:
    """The limits this process was launched with (our own `bwrap` launcher sets none itself)."""
    apply_limits({"memory_mb": memory_mb, "cpu_seconds": cpu_seconds})


def serve(phase: str, idle_s: float) -> int:
    """Warm up, wait for the job, run its phase; the exit status (1 if the phase raised)."""
    warm_up(phase)
    Path(READY_FILE).touch()
    job = wait_for_job(idle_s)
    if job is None:
        return 0
    if job.get("phase") != phase:
        raise ValueError(f"job for phase {job.get('phase')!r} sent to a {phase!r} process")
    apply_limits(job)
    PHASES[phase](job)
    return 0


def main(argv: list[str]) -> int:
    redirect_stderr()
    if len(argv) not in (4, 6) or argv[1] != "serve" or argv[2] not in PHASES:
        print(f"usage: harness.py serve {{{'|'.join(PHASES)}}} IDLE_SECONDS [MEMORY_MB CPU_SECONDS]", file=sys.stderr)
        return 2
    try:
        if len(argv) == 6:
            apply_launch_limits(int(argv[4]), int(argv[5]))
        return serve(argv[2], float(argv[3]))
    except BaseException:  # the edited code may raise anything, SystemExit included
        traceback.print_exc()
        return 1


def exit_now(code: int) -> None:
    """Flush and leave without interpreter teardown (about 0.4 s with torch loaded)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream must not change the status
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main(sys.argv))
