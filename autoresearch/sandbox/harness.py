"""The trusted harness that runs INSIDE the sandbox, next to the agent's edited `train.py`.

`sandbox_pool.launch` starts `python harness.py serve <role> <idle_s> <memory_mb> <cpu_s>` in a work
dir holding this file, `prepare.py` and `autoresearch_types.py`. The harness first lowers its own
memory and CPU-seconds limits to the launch values, does the heavy imports (torch, and for
training the `torch._dynamo` import the first AdamW would trigger), then waits for `job.json`,
which the orchestrator writes last, once the edited `train.py` and the role's inputs are in place.
The job lowers the limits to the experiment's own, then one role runs and the process ends with
`os._exit` (no slow interpreter teardown, and nothing the edited code registered at exit runs).

- `train`: import the edited module, call `run_training(config, "data")` (the data dir holds only
  `meta.json` and this run's batches), and save `out/checkpoint.pt` (the `state_dict`) and
  `out/train.json` (steps, peak memory, device: informational, bounded by the orchestrator).
- `serve` and `check` (a model server): import the edited module, `build_model(config)`, load
  `checkpoint.pt` with `weights_only=True`, `model.eval()`, then answer token batches with logits:
  for i = 0, 1, ... wait for `req-<i>.npy` (int64 `(rows, seq_len)`), write `resp-<i>.npy`
  (float32 `(rows, seq_len, vocab)`), until `stop` appears. This process never sees a target it is
  scored on, the held-out files or the byte table: the trusted scorer (`scorer.py`, outside the
  sandbox) holds those, checks every answer and computes the metric.

Nothing this process writes is a metric: the edited code runs in this same interpreter and could
patch anything here, so the orchestrator treats every file of this work dir as untrusted input.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
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


def device_name() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def phase_train(job: dict[str, Any]) -> None:
    """Train with the edited code and save the weights; no validation data exists here."""
    import torch

    set_threads(job)
    config = load_config(job)
    module = import_edited()
    start = time.perf_counter()
    model, summary = module.run_training(config, "data")
    train_seconds = time.perf_counter() - start
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"run_training returned {type(model).__name__}, not a torch.nn.Module")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    Path("out").mkdir(exist_ok=True)
    torch.save(state, "out/checkpoint.pt")
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


def wait_for_file(names: tuple[str, ...], wait_s: float, poll_s: float = 0.001) -> str | None:
    """The first of `names` to exist in the work dir, or None after `wait_s` seconds."""
    give_up = time.monotonic() + wait_s
    while True:
        for name in names:
            if os.path.exists(name):
                return name
        if time.monotonic() > give_up:
            return None
        time.sleep(poll_s)


def write_array(name: str, array) -> None:
    """Write one `.npy` answer atomically (a reader never sees it half written)."""
    import numpy as np

    tmp = f".{name}.part"
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    os.replace(tmp, name)


def load_model(job: dict[str, Any]):
    """The edited module's `build_model(config)` with the trained weights (`weights_only`), in eval mode."""
    import torch

    config = load_config(job)
    model = import_edited().build_model(config)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"build_model returned {type(model).__name__}, not a torch.nn.Module")
    state = torch.load("checkpoint.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval(), config


def answer(model, tokens, vocab_size: int):
    """The float32 logits of one request, checked for shape before they leave."""
    import torch

    from prepare import model_logits

    with torch.no_grad():
        logits = model_logits(model, torch.from_numpy(tokens)).float().contiguous()
    if logits.shape[-1] != vocab_size:
        raise ValueError(f"model returned {logits.shape[-1]} logits per position, expected vocab_size={vocab_size}")
    return logits.numpy()


def phase_serve(job: dict[str, Any]) -> None:
    """Answer token batches with the trained model's logits until told to stop."""
    import numpy as np

    set_threads(job)
    model, config = load_model(job)
    wait_s = float(job.get("wait_s", 600.0))
    for i in itertools.count():
        request = f"req-{i:06d}.npy"
        found = wait_for_file((request, "stop"), wait_s)
        if found != request:
            break
        tokens = np.load(request, allow_pickle=False)
        write_array(f"resp-{i:06d}.npy", answer(model, tokens, config.vocab_size))
    write_json(
        "server.json",
        {
            "n_params": int(sum(p.numel() for p in model.parameters())),
            "peak_memory_mb": peak_memory_mb(),
            "peak_virtual_mb": peak_virtual_mb(),
            "device": "cpu",
        },
    )


PHASES = {"train": phase_train, "serve": phase_serve, "check": phase_serve}
"""Each role's phase: `check` is a second, fresh model server, so it runs the same code as `serve`."""
WARM_IMPORTS = {
    "train": ("numpy", "torch", "torch._dynamo", "prepare"),
    "serve": ("numpy", "torch", "prepare"),
    "check": ("numpy", "torch", "prepare"),
}
"""What each role imports before its job arrives. Trusted modules only: the edited code comes later."""
STDERR_FILE = "stderr.log"
READY_FILE = "ready"
MIB = 1024 * 1024


def warm_up(phase: str) -> None:
    """Do the slow imports now, while the process waits for its job."""
    for name in WARM_IMPORTS[phase]:
        importlib.import_module(name)


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
