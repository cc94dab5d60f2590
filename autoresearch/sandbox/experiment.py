"""Run one experiment (an agent-edited `train.py`) in isolation and say honestly what happened.

The orchestrator side of the trust boundary. `run_sandboxed(spec)` does, in order:

1. **Pre-flight** (`preflight`): `ast.parse` and the entry points `build_model(config)` and
   `run_training(config, data_dir)`. A failure is `invalid` and nothing is launched.
2. **Phase 1, train, in the sandbox** (`pool.py`): one `harness.py serve train` process in a fresh
   work dir under `prepare.state_dir()/runs/` (never `/tmp`) holding only copies of the trusted
   harness files (`trust.STAGED`); from the warm pool when the driver keeps one, else launched now.
   The edited `train.py`, `data/` (`meta.json` and exactly this run's batches, drawn here) and then
   the job arrive. No held-out token exists in this sandbox. The harness trains, then exports the
   model's forward pass with `torch.export` as `out/model.graph` (no pickle: `graph_export.py`). Wall
   and CPU time are measured from outside (`PhaseRun`); the phase's files are read only after every
   process of the phase is dead, through `processes.py`'s careful readers, and every field is
   bounded (`steps` to `[0, max_steps]`, memory to the launch cap, `device` to a known name).
3. **Phase 2, score, outside every sandbox** (`scorer.py`, in this process): the graph file's bytes
   are read once into memory (and, with `keep_checkpoint`, kept under `checkpoints/` for the audit),
   checked as hostile input, dry-run on the meta device under caps, and evaluated by trusted kernels
   one held-out window per row with exact causality probes. **No code written by the agent runs while
   a score is computed**: the score is a pure function of the graph's weights, its ops and one window.
4. **Classification** (pure, `classify.py`): success, truncated, oom, timeout, crash, invalid, leak,
   tampered, implausible or unexportable. The only number that becomes `val_bpb` is the scorer's, and
   the graph's size (`n_params`) and forward cost (`flops_per_token`) are counted by the scorer from
   the graph itself, never taken from the declared config or from what the sandbox reported.

Isolation (`missing_guarantees` lists what each backend cannot give): backend `bubblewrap` is our
own `bwrap` launcher (`bwrap.py`: PID, mount, network, IPC and user namespaces, read-only
system and virtualenv, private `/tmp`); `userns` is `unionai-sandbox`'s (no PID namespace, shared
host `/tmp`). `DEFAULT_BACKEND` is the strongest one that works on this machine. Every backend gets
a cgroup per process where the host allows one (`cgroups.py`: the whole tree's CPU and memory, a
memory limit from `memory_mb`), `RLIMIT_AS` as a per-process belt, a CPU-seconds cap, a thread count
from `cpu` and an environment built from an allowlist (never a copy of `os.environ`). Before phase 1,
the held-out windows and the byte table are loaded and checked against the bundle's hashes
(`heldout.py`); a mismatch, then or after the run, is `tampered`. Backend `none` (no isolation) needs
`allow_unsandboxed=True` and prints a loud warning.

**Deadline and clean-up.** One wall-clock deadline covers training and scoring. After the process
(and at the deadline) everything in its cgroup is killed, and `reap` freezes and kills every process
carrying the run's marker variable or sitting in its work dir, so a `setsid` double fork or a fork
bomb does not outlive it; under `bubblewrap` the PID namespace guarantees that too.

**Residual risks, stated honestly.** Under `userns` (see `missing_guarantees`) the run shares the
host `/tmp`, sees host processes and can signal same-user ones; a process that clears its environment
and leaves its work dir escapes the marker scan, and its CPU is not counted. Under every backend the
cut probes catch a look-ahead at very few positions only with a stated probability (`scorer`), and a
graph may memorise text the agent knows (see the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import secrets
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import prepare
from autoresearch.sandbox import curve as curves
from autoresearch.sandbox import heldout
from autoresearch.sandbox.backends import check_backend, default_backend
from autoresearch.sandbox.classify import (  # noqa: F401 - re-exported: callers use sandbox.<name>
    BPB_FLOOR,
    CPU_CAP_CODES,
    FAILURES,
    KILL_CODES,
    OOM_MARKERS,
    RESULT_TAG,
    ExperimentCrash,
    ExperimentFailed,
    ExperimentImplausible,
    ExperimentInvalid,
    ExperimentLeak,
    ExperimentOverBudget,
    ExperimentPruned,
    ExperimentTampered,
    ExperimentTimeout,
    ExperimentTruncated,
    ExperimentUnexportable,
    classify_exit,
    classify_metrics,
    has_oom_marker,
    last_error_line,
    preflight,
    raise_for_outcome,
    result_from_error,
    stderr_tail,
)
from autoresearch.sandbox.pool import (
    NATIVE_GRACE_S,
    Launched,
    LaunchKey,
    WarmPool,
    address_space_mb,
    discard,
    finish,
    launch,
    runs_root,
    until_ready,
)
from autoresearch.sandbox.processes import (
    bounded_choice,
    bounded_float,
    bounded_int,
    read_untrusted_bytes,
    read_untrusted_json,
    read_untrusted_tail,
)
from autoresearch_types import SCORED_OUTCOMES, ExperimentConfig, ExperimentResult

SPLITS = ("val", "test")
DEVICES = ("cpu", "cuda")
MIB = 1024 * 1024
MAX_MESSAGE = 2000
"""Characters of a reason the sandbox wrote (an export refusal) that reach the agent."""
GRAPH_SUFFIX = ".graph"
LEGACY_SUFFIX = ".pt"
LEGACY_MESSAGE = (
    "kept as a state_dict by a version that scored through model servers: scoring it would run the edited code, "
    "which no score may do; re-run the experiment to get an exported graph"
)


# ---------------------------------------------------------------- the experiment


@dataclass(frozen=True)
class SandboxSpec:
    """One experiment: the full edited source, the resolved config, the bundle, resources, budget.

    `keep_checkpoint` keeps the exported graph (weights and forward pass) under `prepare.state_dir()/checkpoints/`
    (a directory no sandbox can write) and names it in `ExperimentResult.checkpoint`, for `score_checkpoint`.
    """

    train_py: str
    config: ExperimentConfig
    data_dir: str
    tokenizer_dir: str
    cpu: int = 1
    memory_mb: int = 3072
    backend: str = field(default_factory=default_backend)
    deadline_s: float | None = None
    allow_unsandboxed: bool = False
    keep_workdir: bool = False
    run_name: str | None = None
    keep_checkpoint: bool = False
    prune: tuple[tuple[float, float], ...] = ()
    """(fraction of the token budget, training-loss threshold) rungs: training stops, `pruned`, if its reported
    loss is above a threshold once it passes that rung (see `curve.py`; the lab sets the limits). Empty: never pruned."""
    digests: dict[str, str] = field(default_factory=dict)
    gpu_memory_mb: int = 0
    """Device memory granted on a GPU (0: a CPU run, which sees no device). The run gets the NVIDIA nodes and its
    allocator is capped at this share of the device by the harness (`gpu.py` says what that does not stop)."""
    """sha256 of the bundle's held-out files (`prepare.HELD_OUT_FILES`), recorded when it was built (`Bundle.digests`):
    what is scored is loaded and checked against them before anything untrusted runs."""


def default_deadline_s(config: ExperimentConfig) -> float:
    """Training budget plus room for start-up, the export, evaluation and the probes."""
    return 1.25 * config.time_budget_s + 60.0


@dataclass(frozen=True)
class Clock:
    """The experiment's one wall-clock deadline, shared by training and scoring."""

    start: float
    deadline_s: float

    def left(self) -> float:
        return self.deadline_s - (time.perf_counter() - self.start)


# ---------------------------------------------------------------- staging


def run_dir(spec: SandboxSpec) -> Path:
    """Where a kept experiment's work dir ends up: `runs/<run_name>/train`."""
    name = spec.run_name or f"exp-{uuid.uuid4().hex[:12]}"
    return runs_root() / name


def checkpoints_root() -> Path:
    """Where kept graphs live: under the state dir, in no sandbox's work dir."""
    root = prepare.state_dir() / "checkpoints"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


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
        "memory_mb": address_space_mb(spec.memory_mb, spec.gpu_memory_mb > 0),
        "gpu_memory_mb": spec.gpu_memory_mb,
        "cpu_seconds": math.ceil(max(1, spec.cpu) * (remaining + NATIVE_GRACE_S)),
        "wait_s": max(1.0, remaining),
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


def keep_or_remove(spec: SandboxSpec, dirs: dict[str, Path]) -> None:
    """Remove the phases' work dirs, or with `keep_workdir` move them to `runs/<run_name>/<role>`."""
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


# ---------------------------------------------------------------- processes


def launch_keys(spec: SandboxSpec, roles: tuple[str, ...] = ("train",)) -> list[LaunchKey]:
    """The sandboxed processes an experiment needs: one trainer (scoring runs no sandboxed process)."""
    return [LaunchKey(role, spec.backend, spec.cpu, gpu=spec.gpu_memory_mb > 0) for role in roles]


async def acquire(key: LaunchKey, memory_mb: int, remaining: float, pool: WarmPool | None) -> Launched:
    """A warm process from `pool` if one fits, else a fresh launch."""
    process = await pool.take(key, memory_mb, remaining) if pool is not None else None
    if process is None:
        process = await launch(key, memory_mb, remaining + NATIVE_GRACE_S, remaining + NATIVE_GRACE_S)
    return process


@contextlib.asynccontextmanager
async def processes(
    spec: SandboxSpec, roles: tuple[str, ...], clock: Clock, dirs: dict[str, Path], pool: WarmPool | None = None
) -> AsyncIterator[dict[str, Launched]]:
    """One process per role (work dirs recorded in `dirs`); whatever has not finished is killed on exit."""
    launched: dict[str, Launched] = {}
    try:
        for key in launch_keys(spec, roles):
            launched[key.phase] = await acquire(key, spec.memory_mb, clock.left(), pool)
            dirs[key.phase] = launched[key.phase].workdir
        yield launched
    finally:
        for process in launched.values():
            if not process.finished:
                await discard(process)


def _base_result(spec: SandboxSpec, deadline: float) -> ExperimentResult:
    resources = {"cpu": spec.cpu, "memory_mb": spec.memory_mb, "backend": spec.backend, "deadline_s": deadline}
    return ExperimentResult(outcome="crash", resources=resources)


def _fail(result: ExperimentResult, outcome: str, message: str, stderr: str = "") -> ExperimentResult:
    return dataclasses.replace(result, outcome=outcome, message=message, stderr_tail=stderr_tail(stderr))


def resolve_config(spec: SandboxSpec) -> ExperimentConfig:
    """The spec's config with `vocab_size` taken from the bundle (a property of the data)."""
    vocab = int(prepare.load_meta(spec.data_dir)["vocab_size"])
    return spec.config if spec.config.vocab_size == vocab else spec.config.with_overrides({"vocab_size": vocab})


# ---------------------------------------------------------------- phase 1


def _memory_fields(info: dict[str, Any], launched: Launched, result: ExperimentResult) -> dict[str, float]:
    """Peak memory the harness reported, bounded by the process's own address-space cap (informational)."""
    cap = float(launched.memory_mb)
    return {
        "peak_memory_mb": max(result.peak_memory_mb, bounded_float(info.get("peak_memory_mb"), 0.0, cap)),
        "peak_virtual_mb": max(result.peak_virtual_mb, bounded_float(info.get("peak_virtual_mb"), 0.0, cap)),
    }


async def _train(
    spec: SandboxSpec, trainer: Launched, config: ExperimentConfig, result: ExperimentResult, clock: Clock
) -> tuple[ExperimentResult, bool]:
    """Phase 1, measured from outside: the result so far, and whether training ended cleanly."""
    await until_ready(trainer, clock.left())
    stage_train(trainer.workdir, spec, config, clock.left())
    trainer.job_handed()
    pruned: dict[str, str] = {}
    watch = asyncio.ensure_future(_watch_curve(trainer, spec.prune, config.max_steps, pruned)) if spec.prune else None
    try:
        run = await finish(trainer, clock.left())
    finally:
        if watch is not None:
            watch.cancel()
    curve = curves.parse_curve(read_untrusted_tail(trainer.workdir, prepare.PROGRESS_FILE), config.max_steps)
    result = dataclasses.replace(
        result,
        seed=config.seed,
        planned_steps=config.max_steps,
        train_seconds=run.job_wall_s,
        train_cpu_s=run.job_cpu_s,
        curve=[[round(f, 6), loss] for f, loss in curve],
    )
    if pruned:
        return _fail(result, "pruned", pruned["why"]), False
    failure = classify_exit(run.returncode, run.stderr, run.hit_deadline, run.oom_kills > 0)
    if failure:
        return _fail(result, *failure, run.stderr), False
    info = read_untrusted_json(trainer.workdir, "out/train.json")
    if info is None:
        message = "training exited 0 without the harness's summary as a small regular file"
        return _fail(result, "tampered", message, run.stderr), False
    steps = bounded_int(info.get("steps"), 0, config.max_steps)
    return dataclasses.replace(
        result,
        steps=steps,
        tokens=steps * config.tokens_per_step,
        tokens_handed=config.max_steps * config.tokens_per_step,
        device=bounded_choice(info.get("device"), DEVICES, "cpu"),
        **_memory_fields(info, trainer, result),
    ), True


PROGRESS_POLL_S = 0.5
"""How often phase 1's learning curve is read while it trains (only when the run may be pruned)."""


async def _watch_curve(trainer: Launched, limits: tuple[tuple[float, float], ...], steps: int, out: dict) -> None:
    """Read the training curve as it grows; once it is clearly losing, record why and kill the phase."""
    while not trainer.finished:
        await asyncio.sleep(PROGRESS_POLL_S)  # the run's own pace: a poll of its file, not a synchronisation
        curve = curves.parse_curve(read_untrusted_tail(trainer.workdir, prepare.PROGRESS_FILE), steps)
        why = curves.verdict(curve, list(limits))
        if why:
            out["why"] = why
            trainer.kill_all()
            return


def _take_graph(trainer: Launched, name: str, cap: int) -> tuple[bytes | None, tuple[str, str] | None]:
    """Phase 1's graph file, read once into memory (its process tree is dead): (bytes, None), or (None, why not).

    No graph but the harness's reason is `unexportable` with that reason (the agent reads how to fix it);
    no graph and no reason, or anything but a regular file of at most `cap` bytes, is `tampered`.
    """
    data = read_untrusted_bytes(trainer.workdir, f"out/{name}", cap)
    if data is not None:
        return data, None
    why = (read_untrusted_json(trainer.workdir, "out/export.json") or {}).get("error")
    if isinstance(why, str) and why.strip():
        return None, ("unexportable", f"the trained model cannot be scored: {why[:MAX_MESSAGE]}")
    return None, ("tampered", f"training exited 0 without an exported graph as a regular file of at most {cap:,} bytes")


def keep_graph(spec: SandboxSpec, data: bytes) -> str:
    """With `keep_checkpoint`, the graph's bytes (the very ones scored) as a new file under `checkpoints/`."""
    if not spec.keep_checkpoint:
        return ""
    kept = checkpoints_root() / f"{spec.run_name or 'exp'}-{uuid.uuid4().hex[:12]}{GRAPH_SUFFIX}"
    with open(kept, "xb") as fh:
        fh.write(data)
    return str(kept)


# ---------------------------------------------------------------- phase 2


def load_held_out(spec: SandboxSpec, split: str, config: ExperimentConfig) -> heldout.HeldOut:
    """The windows of `split` and the byte table, read once in the orchestrator and checked against the bundle's
    recorded hashes (`spec.digests`); raises `prepare.HeldOutMismatch` when a file differs."""
    if not spec.digests:
        raise ValueError("SandboxSpec.digests is empty: pass the bundle's recorded hashes (Bundle.digests)")
    return heldout.load(spec.data_dir, spec.tokenizer_dir, spec.digests, split, config)


def load_scorer() -> Any:
    """The scorer module. Importing it imports torch (a second or more), so it is done off the event loop, in a
    thread, while phase 1 trains; the orchestrator's other paths (the CLI, the driver) never pay for it."""
    from autoresearch.sandbox import scorer

    return scorer


async def score_graph(
    spec: SandboxSpec,
    config: ExperimentConfig,
    data: bytes,
    held: heldout.HeldOut,
    result: ExperimentResult,
    clock: Clock,
) -> ExperimentResult:
    """Phase 2: the trusted scorer loads, checks and evaluates the graph on the verified held-out windows (in a
    worker thread); classified here."""
    scorer = await asyncio.to_thread(load_scorer)
    windows, byte_table = held.windows, held.byte_table
    caps = scorer.caps_for(config, spec.memory_mb)
    deadline = time.monotonic() + clock.left()
    evaluation = await asyncio.to_thread(
        scorer.evaluate, data, windows, byte_table, config, caps, secrets.SystemRandom(), deadline
    )
    return scored(result, evaluation)


def scored(result: ExperimentResult, evaluation: Any) -> ExperimentResult:
    """The result with the scorer's verdict (a `scorer.Evaluation`): a refused graph's outcome, else
    `classify_metrics`'."""
    result = dataclasses.replace(result, eval_seconds=evaluation.seconds)
    if evaluation.analysis is not None:
        result = dataclasses.replace(
            result, n_params=evaluation.analysis.params, flops_per_token=evaluation.analysis.flops_per_token
        )
    if evaluation.failure is not None:
        return _fail(result, *evaluation.failure)
    outcome, message = classify_metrics(evaluation.metrics)
    bpb = float(evaluation.metrics["val_bpb"]) if outcome in SCORED_OUTCOMES else None
    return dataclasses.replace(result, outcome=outcome, message=message, val_bpb=bpb)


def truncated(result: ExperimentResult) -> ExperimentResult:
    """A success that stopped at the time cap before its token budget is `truncated` (shown, not ranked)."""
    if result.outcome != "success" or result.steps >= result.planned_steps:
        return result
    return dataclasses.replace(
        result,
        outcome="truncated",
        message=f"{result.message}; stopped at the time cap after {result.steps} of {result.planned_steps} "
        "steps, so it is not ranked against runs that used their whole token budget",
    )


async def _train_then_score(
    spec: SandboxSpec,
    config: ExperimentConfig,
    result: ExperimentResult,
    clock: Clock,
    dirs: dict[str, Path],
    pool: WarmPool | None,
    held: heldout.HeldOut,
) -> ExperimentResult:
    """Phase 1 in the sandbox; once its processes are gone, phase 2 on the graph it left."""
    scorer_ready = asyncio.ensure_future(asyncio.to_thread(load_scorer))  # overlaps training
    try:
        async with processes(spec, ("train",), clock, dirs, pool) as launched:
            trainer = launched["train"]
            result, trained = await _train(spec, trainer, config, result, clock)
        if not trained:
            return result
        scorer = await scorer_ready
        cap = scorer.caps_for(config, spec.memory_mb).max_file_bytes
        data, failure = _take_graph(trainer, scorer.GRAPH_FILE, cap)
        if data is None:
            return _fail(result, *failure)
        result = dataclasses.replace(result, checkpoint=keep_graph(spec, data))
        return truncated(await score_graph(spec, config, data, held, result, clock))
    finally:
        await asyncio.gather(scorer_ready, return_exceptions=True)


async def _run(spec: SandboxSpec, body, pool: WarmPool | None) -> ExperimentResult:
    """Pre-flight, the held-out `val` data loaded and verified, then `body(config, result, clock, dirs, held)`; work
    dirs cleaned and the pool refilled however it ends. A held-out file that differs from its recorded hash, before
    or after the untrusted process ran, makes the run `tampered` and unscored."""
    start = time.perf_counter()
    deadline = spec.deadline_s if spec.deadline_s is not None else default_deadline_s(spec.config)
    result = _base_result(spec, deadline)
    problem = preflight(spec.train_py)
    if problem:
        return dataclasses.replace(_fail(result, "invalid", problem), wall_seconds=time.perf_counter() - start)
    check_backend(spec.backend, spec.allow_unsandboxed)
    config = resolve_config(spec)
    try:
        held = load_held_out(spec, "val", config)
    except prepare.HeldOutMismatch as exc:
        result = _fail(result, "tampered", f"{exc}; nothing was run or scored")
        return dataclasses.replace(result, wall_seconds=time.perf_counter() - start)
    dirs: dict[str, Path] = {}
    try:
        result = await body(config, result, Clock(start, deadline), dirs, held)
        if not heldout.unchanged(spec.data_dir, spec.tokenizer_dir, spec.digests, "val"):
            message = "a held-out file changed while the run's sandboxed process ran; its score is discarded"
            result = dataclasses.replace(_fail(result, "tampered", message), val_bpb=None)
    finally:
        keep_or_remove(spec, dirs)
        for key in launch_keys(spec) if pool is not None else ():  # warm up between experiments, not during
            pool.refill(key, spec.memory_mb, deadline)
    return dataclasses.replace(result, wall_seconds=time.perf_counter() - start)


async def run_sandboxed(spec: SandboxSpec, pool: WarmPool | None = None) -> ExperimentResult:
    """Pre-flight, train, export, score and classify one experiment; always returns a typed result.

    Its training process comes from `pool` when one is given (warm, launched earlier), else it starts cold.
    Raises only for misuse (unknown backend, `none` without opt-in, an unavailable backend).
    """

    async def body(config, result, clock, dirs, held):
        return await _train_then_score(spec, config, result, clock, dirs, pool, held)

    return await _run(spec, body, pool)


async def score_checkpoint(spec: SandboxSpec, checkpoint: str, split: str) -> ExperimentResult:
    """Score a kept graph file (see `SandboxSpec.keep_checkpoint`) on `split`: `val` or `test`.

    No sandboxed process runs: the same trusted scorer loads, checks and evaluates the same file the
    experiment kept, with the same probes and classification. This is the one path that reads the held-out
    `test` split. Raises for misuse: an unknown split or a path that is not a regular file.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    source = Path(checkpoint)
    if source.is_symlink() or not source.is_file():
        raise ValueError(f"no kept graph (checkpoint) file at {checkpoint}")
    start = time.perf_counter()
    deadline = spec.deadline_s if spec.deadline_s is not None else default_deadline_s(spec.config)
    config = resolve_config(spec)
    result = dataclasses.replace(_base_result(spec, deadline), seed=config.seed, checkpoint=str(source))
    if source.suffix == LEGACY_SUFFIX:
        return _fail(result, "unexportable", LEGACY_MESSAGE)
    cap = (await asyncio.to_thread(load_scorer)).caps_for(config, spec.memory_mb).max_file_bytes
    if source.stat().st_size > cap:
        return _fail(result, "tampered", f"the kept graph is larger than the cap of {cap:,} bytes")
    try:
        held = load_held_out(spec, split, config)
    except prepare.HeldOutMismatch as exc:
        return _fail(result, "tampered", f"{exc}; nothing was scored")
    result = await score_graph(spec, config, source.read_bytes(), held, result, Clock(start, deadline))
    return dataclasses.replace(result, wall_seconds=time.perf_counter() - start)
