"""Run one experiment (an agent-edited `train.py`) in isolation and say honestly what happened.

The orchestrator side of the trust boundary. `run_sandboxed(spec)` does, in order:

1. **Pre-flight** (`preflight`): `ast.parse` and the entry points `build_model(config)` and
   `run_training(config, data_dir)`. A failure is `invalid` and nothing is launched.
2. **Two sandboxed processes** (`sandbox_pool`): `harness.py serve train` and `harness.py serve eval`,
   each in a fresh work dir under `prepare.state_dir()/runs/` (never `/tmp`) holding only copies
   of the fixed `harness.py`, `prepare.py` and `autoresearch_types.py`. Each does its slow imports
   and waits for its `job.json`. They come from the warm pool when the driver keeps one (started
   earlier, while other work ran), else they are launched now; the eval process's imports overlap
   training either way.
3. **Phase 1, train**: the edited `train.py`, `data/` (`meta.json` plus a link to the bundle's
   `train.npy`, which alone is allow-listed read-only) and then the job arrive. Validation data is
   not in this sandbox's filesystem.
   **Phase 2, eval**: sees only code until every phase-1 process is dead; then the checkpoint, the
   held-out tokens the evaluation needs, the token byte table and its job arrive. The trusted
   harness reads them into memory and deletes their files *before* importing the edited module,
   rebuilds the model with its `build_model(config)`, computes `val_bpb` from its logits and runs a
   causality probe. Each job lowers its process's memory and CPU-seconds limits to this
   experiment's own; a process serves one phase of one experiment, then exits.
4. **Classification** (pure functions: `classify_exit`, `classify_metrics`): success, oom,
   timeout, crash, invalid, leak or implausible. Metrics come only from the harness's files
   under `out/`; stdout is discarded, so a printed "val_bpb" is never parsed.

Isolation is `unionai-sandbox` on-device: backend `userns` by default (`bubblewrap` when installed
and chosen), `network_mode="blocked"`, the interpreter and virtualenv read-only, `RLIMIT_AS` from
`memory_mb`, a thread count from `cpu`, and an environment built from an allowlist (never a copy
of `os.environ`, so no API key or credential reaches the run). Backend `none` (no isolation)
needs `allow_unsandboxed=True` and prints a loud warning.

**Deadline and clean-up.** The library's own timeout is only a backstop (bubblewrap does not
enforce it). This module enforces one wall-clock deadline across both phases itself. The harness
writes stderr to a file, not the sandbox's pipe, so a daemon holding the pipe cannot keep us waiting. Under
`userns` a sandboxed process is in its own process group but there is no PID namespace, and a
`setsid` double-fork escapes the group, so killing the group is not enough. Every run therefore
carries a unique marker variable (`AUTORESEARCH_SANDBOX_RUN=<token>`); after each phase (and at the
deadline) `reap` scans `/proc` and freezes (SIGSTOP) then kills (SIGKILL) every process whose
initial environment carries the marker or whose cwd is inside the work dir, repeating until a
scan finds none, so a fork bomb cannot outrun it.

**Residual risks, stated honestly.**
- Phase 2 runs untrusted model code in the same interpreter as the harness. The held-out files are
  gone before that code is imported, but the tokens are in process memory, and the code could
  tamper with the harness's output files. The causality probe and the `implausible` floor catch
  the crude cheats, not a careful one; a split-process evaluation (the model sees only inputs,
  a separate trusted process scores logits) would close this.
- Under `userns` the run can write anywhere in the host `/tmp`, read world-readable host files
  such as `/etc`, see host processes and signal same-uid processes (it could kill the
  orchestrator). Keep state out of `/tmp` and prefer `bubblewrap`, which adds PID and mount
  namespaces and a private `/tmp`.
- A warm process waits (up to `sandbox_pool.WARM_IDLE_S`) before its job, visible to other runs'
  processes as any sandboxed process is; before its job it has run only the trusted harness.
- The marker scan misses a process that both clears its environment (exec with a new one) and
  leaves the work dir; the process-group kill and the library's own kill still apply to it.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
import shutil
import sys
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import prepare
from autoresearch_types import SCORED_OUTCOMES, ExperimentConfig, ExperimentResult
from sandbox_pool import (
    NATIVE_GRACE_S,
    POOL,
    Launched,
    LaunchKey,
    PhaseRun,
    discard,
    finish,
    launch,
    runs_root,
)
from sandbox_proc import read_untrusted_json, regular_file

BACKENDS = ("userns", "bubblewrap", "none")
DEFAULT_BACKEND = "userns"
OOM_MARKERS = (
    "MemoryError",
    "Cannot allocate memory",
    "can't allocate memory",
    "DefaultCPUAllocator",
    "std::bad_alloc",
    "CUDA out of memory",
    "OutOfMemoryError",
    "Thread creation failed",
    "can't start new thread",
    "failed to map segment from shared object",
)
"""`failed to map segment` is how a shared library fails to load once `RLIMIT_AS` is reached."""
KILL_CODES = (137, -9)
CPU_CAP_CODES = (152, -24)
BPB_FLOOR = 0.1
"""Bits per byte below which no model of this size is believable (the best compressors reach ~0.9)."""
STDERR_TAIL_CHARS = 3000


@dataclass(frozen=True)
class SandboxSpec:
    """One experiment: the full edited source, the resolved config, the bundle, resources, budget."""

    train_py: str
    config: ExperimentConfig
    data_dir: str
    tokenizer_dir: str
    cpu: int = 1
    memory_mb: int = 3072
    backend: str = DEFAULT_BACKEND
    deadline_s: float | None = None
    allow_unsandboxed: bool = False
    keep_workdir: bool = False
    run_name: str | None = None


def default_deadline_s(config: ExperimentConfig) -> float:
    """Training budget plus room for start-up, evaluation and the probe."""
    return 1.25 * config.time_budget_s + 60.0


# ---------------------------------------------------------------- pre-flight


def _signature_problem(node: ast.FunctionDef | ast.AsyncFunctionDef, required: int) -> str | None:
    """Why `node` cannot be called with `required` positional arguments, or None."""
    if isinstance(node, ast.AsyncFunctionDef):
        return f"line {node.lineno}: {node.name} must be a plain def, not async"
    args = node.args
    positional = len(args.posonlyargs) + len(args.args)
    no_default = positional - len(args.defaults)
    kw_required = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    if (positional < required and args.vararg is None) or no_default > required or kw_required:
        return f"line {node.lineno}: {node.name} must accept exactly {required} positional argument(s)"
    return None


ENTRY_POINTS = {"build_model": ("config",), "run_training": ("config", "data_dir")}


def preflight(source: str) -> str | None:
    """None if `source` parses and defines the entry points with usable signatures; else why not.

    The last top-level definition of each name wins, as it does at import time.
    """
    try:
        tree = ast.parse(source, filename="train.py")
    except SyntaxError as exc:
        return f"line {exc.lineno}: SyntaxError: {exc.msg}"
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in ENTRY_POINTS:
            found[node.name] = node
    for name, params in ENTRY_POINTS.items():
        if name not in found:
            return f"line 0: train.py defines no top-level `def {name}({', '.join(params)})`"
        problem = _signature_problem(found[name], len(params))
        if problem:
            return problem
    return None


# ---------------------------------------------------------------- classification (pure)


def stderr_tail(stderr: str, limit: int = STDERR_TAIL_CHARS) -> str:
    """The last `limit` characters of stderr."""
    return stderr[-limit:]


def has_oom_marker(stderr: str) -> bool:
    """True when stderr shows an allocation failure under rlimits."""
    return any(marker in stderr for marker in OOM_MARKERS)


def last_error_line(stderr: str) -> str:
    """The last non-empty stderr line (usually the exception), for a one-line message."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def bounded_int(value: Any, low: int, high: int) -> int:
    """An integer field read from the sandbox, forced into `[low, high]` (anything else reads as `low`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return low
    return int(min(max(value, low), high))


def classify_exit(returncode: int, stderr: str, hit_deadline: bool) -> tuple[str, str] | None:
    """(outcome, message) for a phase that failed, or None when it exited cleanly.

    A kill at the deadline is a timeout; a kill before it is the memory limit (kernel/cgroup OOM).
    """
    if hit_deadline:
        return "timeout", "killed at the wall-clock deadline"
    if returncode == 0:
        return None
    if has_oom_marker(stderr):
        return "oom", f"out of memory: {last_error_line(stderr)}"
    if returncode in KILL_CODES:
        return "oom", f"killed (exit {returncode}) before the deadline: memory limit"
    if returncode in CPU_CAP_CODES:
        return "crash", f"exceeded the CPU-seconds cap (exit {returncode}): more threads than CPUs granted?"
    return "crash", f"exit {returncode}: {last_error_line(stderr) or 'no stderr'}"


def classify_metrics(metrics: dict[str, Any], floor: float = BPB_FLOOR) -> tuple[str, str]:
    """(outcome, message) from the harness's eval metrics: success, leak or implausible."""
    bpb = metrics.get("val_bpb")
    finite = isinstance(bpb, (int, float)) and math.isfinite(bpb)
    if not finite or not metrics.get("logits_finite", False):
        return "implausible", f"non-finite result: val_bpb={bpb!r}, finite logits={metrics.get('logits_finite')}"
    if not metrics.get("probe_ok", False):
        diff = metrics.get("probe_max_diff")
        return "leak", f"causality probe failed: changing future tokens moved earlier logits by {diff}"
    if bpb < floor:
        return "implausible", f"val_bpb={bpb:.4f} is below the physical floor {floor}"
    return "success", f"val_bpb={bpb:.4f}"


# ---------------------------------------------------------------- errors at the task boundary


RESULT_TAG = "RESULT_JSON: "


class ExperimentFailed(RuntimeError):
    """A terminal, non-OOM failure; the message carries the full result as JSON after `RESULT_TAG`."""

    def __init__(self, result: ExperimentResult):
        self.outcome = result.outcome
        self.result_json = json.dumps(result.to_dict())
        super().__init__(f"{result.outcome}: {result.message}\n{RESULT_TAG}{self.result_json}")


class ExperimentTimeout(ExperimentFailed):
    """The run passed its wall-clock deadline."""


class ExperimentCrash(ExperimentFailed):
    """The edited code raised or exited non-zero."""


class ExperimentInvalid(ExperimentFailed):
    """Pre-flight rejected the source: nothing ran."""


class ExperimentLeak(ExperimentFailed):
    """The model's earlier logits depend on future tokens."""


class ExperimentImplausible(ExperimentFailed):
    """A non-finite metric, or one below the physical floor."""


class ExperimentTruncated(ExperimentFailed):
    """Scored, but stopped at the time cap before its token budget: not comparable, and not cached."""


class ExperimentTampered(ExperimentFailed):
    """The model's answers were inconsistent in a way only tampering explains."""


class ExperimentOverBudget(ExperimentFailed):
    """Scored, but with far more compute than its config predicts."""


FAILURES: dict[str, type[ExperimentFailed]] = {
    "timeout": ExperimentTimeout,
    "crash": ExperimentCrash,
    "invalid": ExperimentInvalid,
    "leak": ExperimentLeak,
    "implausible": ExperimentImplausible,
    "truncated": ExperimentTruncated,
    "tampered": ExperimentTampered,
    "over_budget": ExperimentOverBudget,
}


def raise_for_outcome(result: ExperimentResult) -> ExperimentResult:
    """Return a success; raise `flyte.errors.OOMError` for oom, a typed `ExperimentFailed` otherwise.

    Raising keeps failures out of Flyte's cache; a cluster reports them as `RuntimeUserError`
    with `code` set to the class name, and `result_from_error` recovers the result.
    """
    if result.outcome == "success":
        return result
    if result.outcome == "oom":
        import flyte.errors

        raise flyte.errors.OOMError("OOMKilled", f"{result.message}\n{RESULT_TAG}{json.dumps(result.to_dict())}")
    raise FAILURES.get(result.outcome, ExperimentFailed)(result)


def result_from_error(exc: BaseException) -> ExperimentResult | None:
    """The `ExperimentResult` carried in an error raised by `raise_for_outcome`, if any."""
    text = str(exc)
    if RESULT_TAG not in text:
        return None
    try:
        return ExperimentResult.from_dict(json.loads(text.split(RESULT_TAG, 1)[1].splitlines()[0]))
    except (ValueError, TypeError):
        return None


# ---------------------------------------------------------------- staging


def run_dir(spec: SandboxSpec) -> Path:
    """Where a kept experiment's work dirs end up: `runs/<run_name>/{train,eval}`."""
    name = spec.run_name or f"exp-{uuid.uuid4().hex[:12]}"
    return runs_root() / name


def write_job(workdir: Path, job: dict[str, Any]) -> None:
    """`job.json`, atomically and last: the waiting harness starts the phase as soon as it appears."""
    tmp = workdir / ".job.json.part"
    tmp.write_text(json.dumps(job))
    os.replace(tmp, workdir / "job.json")


def phase_job(phase: str, spec: SandboxSpec, config: ExperimentConfig, remaining: float) -> dict[str, Any]:
    """What every phase's job carries: the config, threads and this experiment's own limits."""
    return {
        "phase": phase,
        "config": config.to_dict(),
        "threads": spec.cpu,
        "memory_mb": spec.memory_mb,
        "cpu_seconds": math.ceil(max(1, spec.cpu) * (remaining + NATIVE_GRACE_S)),
    }


def run_batches(data_dir: str, config: ExperimentConfig) -> np.ndarray:
    """The batches this run trains on, drawn here (trusted) from the bundle: exactly its token budget."""
    meta = prepare.load_meta(data_dir)
    tokens = prepare.load_tokens(data_dir, "train")
    return prepare.make_batches(
        tokens, meta["bos_id"], config.batch_size, config.seq_len, config.max_steps, config.seed
    )


def stage_train(workdir: Path, spec: SandboxSpec, config: ExperimentConfig, remaining: float) -> None:
    """Hand phase 1 the edited source and `data/` (`meta.json` and this run's batches only), then its job."""
    (workdir / "train.py").write_text(spec.train_py)
    data = workdir / "data"
    data.mkdir()
    shutil.copyfile(Path(spec.data_dir) / "meta.json", data / "meta.json")
    np.save(data / prepare.BATCHES_FILE, run_batches(spec.data_dir, config))
    write_job(workdir, phase_job("train", spec, config, remaining))


def held_out_prefix(data_dir: str, seq_len: int, eval_tokens: int) -> np.ndarray:
    """Just the held-out tokens `prepare.evaluate_bpb` reads (a prefix), so nothing else is exposed."""
    tokens = prepare.load_tokens(data_dir, "val")
    return np.asarray(tokens[: prepare.eval_prefix_len(tokens.size, seq_len, eval_tokens)])


def stage_eval(workdir: Path, spec: SandboxSpec, config: ExperimentConfig, checkpoint: Path, remaining: float) -> None:
    """Hand phase 2 the source, checkpoint, held-out prefix and byte table, then its job, last."""
    (workdir / "train.py").write_text(spec.train_py)
    os.replace(checkpoint, workdir / "checkpoint.pt")
    np.save(workdir / "val.npy", held_out_prefix(spec.data_dir, config.seq_len, config.eval_tokens))
    shutil.copyfile(Path(spec.tokenizer_dir) / "token_bytes.npy", workdir / "token_bytes.npy")
    job = phase_job("eval", spec, config, remaining)
    job.update(eval_tokens=config.eval_tokens, val_file="val.npy", token_bytes_file="token_bytes.npy")
    write_job(workdir, job)


def keep_or_remove(spec: SandboxSpec, dirs: dict[str, Path]) -> None:
    """Remove the phases' work dirs, or with `keep_workdir` move them to `runs/<run_name>/<phase>`."""
    if not spec.keep_workdir:
        for path in dirs.values():
            shutil.rmtree(path, ignore_errors=True)
        return
    root = run_dir(spec)
    root.mkdir(parents=True, exist_ok=True)
    for phase, path in dirs.items():
        if path.exists():
            shutil.rmtree(root / phase, ignore_errors=True)  # a kept run of the same name, replaced
            os.replace(path, root / phase)


# ---------------------------------------------------------------- running


def check_backend(spec: SandboxSpec) -> None:
    """Refuse an unknown backend, or `none` without the explicit opt-in; warn loudly on `none`."""
    if spec.backend not in BACKENDS:
        raise ValueError(f"unknown sandbox backend {spec.backend!r}; choose one of {BACKENDS}")
    if spec.backend == "none":
        if not spec.allow_unsandboxed:
            raise ValueError("backend='none' runs untrusted code with NO isolation; pass allow_unsandboxed=True")
        banner = "!" * 78
        print(
            f"{banner}\n!!! sandbox backend 'none': UNTRUSTED train.py RUNS WITH NO ISOLATION !!!\n{banner}",
            file=sys.stderr,
        )
        warnings.warn("sandbox backend 'none': no isolation", RuntimeWarning, stacklevel=3)


def available_backends() -> list[str]:
    """The isolation backends usable on this machine (`none` is always listed)."""
    from union import sandbox as sb

    return [name for name, ok in sb.on_device.available_backends() if ok and name in BACKENDS]


def launch_keys(spec: SandboxSpec) -> tuple[LaunchKey, LaunchKey]:
    """The train and eval processes an experiment needs (the train one may read the train tokens)."""
    return (
        LaunchKey("train", spec.backend, spec.cpu),
        LaunchKey("eval", spec.backend, spec.cpu),
    )


async def acquire(key: LaunchKey, memory_mb: int, remaining: float) -> Launched:
    """A warm process from the pool if one fits, else a fresh launch."""
    process = await POOL.take(key, memory_mb, remaining)
    if process is None:
        process = await launch(key, memory_mb, remaining + NATIVE_GRACE_S, remaining + NATIVE_GRACE_S)
    return process


def _base_result(spec: SandboxSpec, deadline: float) -> ExperimentResult:
    resources = {"cpu": spec.cpu, "memory_mb": spec.memory_mb, "backend": spec.backend, "deadline_s": deadline}
    return ExperimentResult(outcome="crash", resources=resources)


def _fail(result: ExperimentResult, outcome: str, message: str, stderr: str = "") -> ExperimentResult:
    return dataclasses.replace(result, outcome=outcome, message=message, stderr_tail=stderr_tail(stderr))


def resolve_config(spec: SandboxSpec) -> ExperimentConfig:
    """The spec's config with `vocab_size` taken from the bundle (a property of the data)."""
    vocab = int(prepare.load_meta(spec.data_dir)["vocab_size"])
    return spec.config if spec.config.vocab_size == vocab else spec.config.with_overrides({"vocab_size": vocab})


async def _train(
    spec: SandboxSpec, trainer: Launched, config: ExperimentConfig, result: ExperimentResult, clock: Clock
) -> tuple[ExperimentResult, Path | None]:
    """Phase 1; returns the updated result, and the checkpoint path when training succeeded."""
    stage_train(trainer.workdir, spec, config, clock.left())
    run = await finish(trainer, clock.left())
    failure = classify_exit(run.returncode, run.stderr, run.hit_deadline)
    if failure:
        return _fail(result, *failure, run.stderr), None
    info = read_untrusted_json(trainer.workdir / "out" / "train.json")
    checkpoint = trainer.workdir / "out" / "checkpoint.pt"
    if info is None or not regular_file(checkpoint):
        return _fail(result, "crash", "training exited without a checkpoint from the harness", run.stderr), None
    steps = bounded_int(info.get("steps"), 0, config.max_steps)
    result = dataclasses.replace(
        result,
        seed=config.seed,
        steps=steps,
        planned_steps=config.max_steps,
        tokens=steps * config.tokens_per_step,
        train_seconds=float(info.get("train_seconds", 0.0)),
        peak_memory_mb=float(info.get("peak_memory_mb", 0.0)),
        peak_virtual_mb=float(info.get("peak_virtual_mb", 0.0)),
        device=str(info.get("device", "cpu")),
    )
    return result, checkpoint


def _score(run: PhaseRun, workdir: Path, result: ExperimentResult) -> ExperimentResult:
    """Classify phase 2 from its exit and the harness's metrics file."""
    failure = classify_exit(run.returncode, run.stderr, run.hit_deadline)
    if failure:
        return _fail(result, *failure, run.stderr)
    metrics = read_untrusted_json(workdir / "out" / "metrics.json")
    if metrics is None:
        return _fail(result, "crash", "evaluation exited without metrics from the harness", run.stderr)
    outcome, message = classify_metrics(metrics)
    if outcome == "success" and result.steps < result.planned_steps:
        outcome = "truncated"
        message = (
            f"{message}; stopped at the time cap after {result.steps} of {result.planned_steps} steps, "
            "so it is not ranked against runs that used their whole token budget"
        )
    return dataclasses.replace(
        result,
        outcome=outcome,
        message=message,
        val_bpb=float(metrics["val_bpb"]) if outcome in SCORED_OUTCOMES else None,
        eval_seconds=float(metrics.get("eval_seconds", 0.0)),
        n_params=int(metrics.get("n_params", 0)),
        peak_memory_mb=max(result.peak_memory_mb, float(metrics.get("peak_memory_mb", 0.0))),
        peak_virtual_mb=max(result.peak_virtual_mb, float(metrics.get("peak_virtual_mb", 0.0))),
    )


@dataclass(frozen=True)
class Clock:
    """The experiment's one wall-clock deadline, shared by both phases."""

    start: float
    deadline_s: float

    def left(self) -> float:
        return self.deadline_s - (time.perf_counter() - self.start)


async def _train_then_evaluate(
    spec: SandboxSpec, config: ExperimentConfig, result: ExperimentResult, clock: Clock, dirs: dict[str, Path]
) -> ExperimentResult:
    """Phase 2's process is acquired (already importing torch, or warm) before phase 1 trains.

    It sees nothing of the experiment until phase 1 is over and reaped: only then are the checkpoint,
    the held-out prefix and `job.json` put in its work dir. This hides one interpreter start-up.
    """
    launched: list[Launched] = []
    try:
        for key in launch_keys(spec):
            launched.append(await acquire(key, spec.memory_mb, clock.left()))
            dirs[key.phase] = launched[-1].workdir
        trainer, evaluator = launched
        result, checkpoint = await _train(spec, trainer, config, result, clock)
        if checkpoint is None:
            return result
        stage_eval(evaluator.workdir, spec, config, checkpoint, clock.left())
        return _score(await finish(evaluator, clock.left()), evaluator.workdir, result)
    finally:
        for process in launched:
            if not process.finished:
                await discard(process)


async def run_sandboxed(spec: SandboxSpec) -> ExperimentResult:
    """Pre-flight, train, evaluate and classify one experiment; always returns a typed result.

    Raises only for misuse (unknown backend, `none` without opt-in, an unavailable backend).
    """
    start = time.perf_counter()
    deadline = spec.deadline_s if spec.deadline_s is not None else default_deadline_s(spec.config)
    result = _base_result(spec, deadline)
    problem = preflight(spec.train_py)
    if problem:
        return dataclasses.replace(_fail(result, "invalid", problem), wall_seconds=time.perf_counter() - start)
    check_backend(spec)
    config = resolve_config(spec)
    dirs: dict[str, Path] = {}
    try:
        result = await _train_then_evaluate(spec, config, result, Clock(start, deadline), dirs)
    finally:
        keep_or_remove(spec, dirs)
        for key in launch_keys(spec):  # warm up in the gap before the next experiment, not during this one
            POOL.refill(key, spec.memory_mb, deadline)
    return dataclasses.replace(result, wall_seconds=time.perf_counter() - start)
