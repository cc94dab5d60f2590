"""The trusted harness that runs INSIDE the sandbox, next to the agent's edited `train.py`.

`sandbox_pool.launch` starts `python harness.py serve <phase> <idle_s>` in a work dir holding this
file, `prepare.py` and `autoresearch_types.py`. The harness first does the heavy imports (torch,
and for training the `torch._dynamo` import the first AdamW would trigger), then waits for
`job.json`, which the orchestrator writes last, once the edited `train.py` and the phase's inputs
are in place. The job lowers this process's memory and CPU-seconds limits to the experiment's own,
then one phase runs and the process ends with `os._exit` (no slow interpreter teardown, and
nothing the edited code registered at exit runs).

- `train`: import the edited module, call `run_training(config, "data")` (the data dir holds only
  `train.npy` and `meta.json`), and save `out/checkpoint.pt` (the `state_dict`) and
  `out/train.json` (steps, seconds, peak memory, device).
- `eval`: read the held-out tokens into memory and delete their file *before* importing the edited
  module, rebuild the model with its `build_model(config)`, load the checkpoint, compute `val_bpb`
  with `prepare.evaluate_bpb` and run the causality probe; write `out/metrics.json`.

The orchestrator reads only those files, never stdout: a line the edited code prints is never a
metric. The edited code runs in this same interpreter, so these files are only as trustworthy as
the sandbox around them; `sandbox.py` documents that residual risk.
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

PROBE_ATOL = 1e-4
"""Largest change (fp32 logits) allowed at a position when only later tokens change."""


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


def load_held_out(job: dict[str, Any]):
    """Read the held-out tokens and byte table into memory, then delete their files."""
    import numpy as np

    tokens = np.array(np.load(job["val_file"]), dtype=np.int64)
    token_bytes = np.array(np.load(job["token_bytes_file"]))
    for name in (job["val_file"], job["token_bytes_file"]):
        Path(name).unlink()
    return tokens, token_bytes


def causality_probe(model, tokens, seq_len: int, vocab_size: int, seed: int = 0) -> dict[str, Any]:
    """Change every token after position t; the logits at positions <= t must not move.

    Two cuts (a quarter and a half of the window) over a two-row batch taken from held-out text.
    Returns the largest change seen and whether the logits were finite.
    """
    import torch

    from prepare import model_logits

    rows = min(2, max(1, (tokens.size - 1) // seq_len))
    base = torch.as_tensor(tokens[: rows * seq_len].reshape(rows, seq_len))
    gen = torch.Generator().manual_seed(seed)
    worst, finite = 0.0, True
    model.eval()
    with torch.no_grad():
        ref = model_logits(model, base).float()
        finite = bool(torch.isfinite(ref).all())
        for cut in sorted({max(0, seq_len // 4 - 1), max(0, seq_len // 2 - 1)}):
            if cut + 1 >= seq_len:
                continue
            changed = base.clone()
            changed[:, cut + 1 :] = torch.randint(0, vocab_size, (rows, seq_len - cut - 1), generator=gen)
            out = model_logits(model, changed).float()
            diff = (out[:, : cut + 1] - ref[:, : cut + 1]).abs().nan_to_num(nan=math.inf)
            worst = max(worst, float(diff.max()))
    return {"probe_max_diff": worst, "probe_ok": worst <= PROBE_ATOL, "logits_finite": finite}


def phase_eval(job: dict[str, Any]) -> None:
    """Rebuild the trained model and measure it on held-out tokens; probe its causality."""
    import torch

    import prepare

    set_threads(job)
    tokens, token_bytes = load_held_out(job)
    config = load_config(job)
    module = import_edited()
    start = time.perf_counter()
    model = module.build_model(config)
    state = torch.load("checkpoint.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    bpb = prepare.evaluate_bpb(model, tokens, token_bytes, config.seq_len, eval_tokens=int(job["eval_tokens"]))
    probe = causality_probe(model, tokens, config.seq_len, config.vocab_size, seed=config.seed)
    metrics = {
        "val_bpb": bpb if math.isfinite(bpb) else str(bpb),
        "eval_seconds": time.perf_counter() - start,
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "peak_memory_mb": peak_memory_mb(),
        "peak_virtual_mb": peak_virtual_mb(),
        "device": device_name(),
        **probe,
    }
    write_json("metrics.json", metrics)


PHASES = {"train": phase_train, "eval": phase_eval}
WARM_IMPORTS = {"train": ("numpy", "torch", "torch._dynamo", "prepare"), "eval": ("numpy", "torch", "prepare")}
"""What each phase imports before its job arrives. Trusted modules only: the edited code comes later."""
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
    if len(argv) != 4 or argv[1] != "serve" or argv[2] not in PHASES:
        print(f"usage: harness.py serve {{{'|'.join(PHASES)}}} IDLE_SECONDS", file=sys.stderr)
        return 2
    try:
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
