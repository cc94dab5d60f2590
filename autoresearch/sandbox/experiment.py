"""Run one experiment (an agent-edited `train.py`) in isolation and say honestly what happened.

The orchestrator side of the trust boundary. `run_sandboxed(spec)` does, in order:

1. **Pre-flight** (`preflight`): `ast.parse` and the entry points `build_model(config)` and
   `run_training(config, data_dir)`. A failure is `invalid` and nothing is launched.
2. **Three sandboxed processes** (`pool.py`): `harness.py serve train`, `... serve serve` (the
   model server) and `... serve check` (a second, fresh model server), each in a fresh work dir
   under `prepare.state_dir()/runs/` (never `/tmp`) holding only copies of the fixed `harness.py`,
   `prepare.py` and `autoresearch_types.py`. Each does its slow imports and waits for its
   `job.json`: from the warm pool when the driver keeps one, else launched now, so the servers'
   imports overlap training either way.
3. **Phase 1, train**: the edited `train.py`, `data/` (`meta.json` and exactly this run's batches,
   drawn here) and then the job arrive. No held-out token exists in this sandbox. The phase's wall
   and CPU time are measured from outside (`PhaseRun`); its summary file is read only after every
   process of the phase is dead, through `processes.py`'s careful readers, and every field is
   bounded (`steps` to `[0, max_steps]`, memory to the launch cap, `device` to a known name).
4. **Phase 2, score**: the trusted scorer (`scorer.py`, in this process) holds the held-out windows
   and the byte table. The checkpoint (copied once, safely, from phase 1's dead work dir) goes to
   both model servers, which import the edited module, build the model, load the weights with
   `weights_only=True` and answer token rows with logits. The scorer checks each answer (a regular
   `.npy` file of float32 logits of exactly the shape asked, all finite), computes `val_bpb` with
   `prepare.score_logits` from the main server's logits, and mixes in blind probes (see `scorer`):
   a causality violation is `leak`, inconsistent answers are `tampered`.
5. **Classification** (pure, `classify.py`): success, truncated, oom, timeout, crash, invalid,
   leak, tampered or implausible. The only number that becomes `val_bpb` is the scorer's; what the
   sandbox writes is at most informational (`n_params`, memory), and bounded.

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

**Deadline and clean-up.** One wall-clock deadline covers both phases. After each process (and
at the deadline) everything in its cgroup is killed, and `reap` freezes and kills every process
carrying the run's marker variable or sitting in its work dir, so a `setsid` double fork or a fork
bomb does not outlive it; under `bubblewrap` the PID namespace guarantees that too.

**Residual risks, stated honestly.** Under `userns` (see `missing_guarantees`) the run shares the
host `/tmp`, sees host processes and can signal same-user ones; two of its sandboxes can talk
through `/tmp`, which defeats the fresh-server check; a process that clears its environment and
leaves its work dir escapes the marker scan. Under every backend the blind probes catch sparse
cheating only with a stated probability (`scorer.ProbeCounts`).
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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import prepare
from autoresearch.sandbox import curve as curves
from autoresearch.sandbox import heldout, scorer
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
    classify_exit,
    classify_metrics,
    has_oom_marker,
    last_error_line,
    preflight,
    raise_for_outcome,
    result_from_error,
    stderr_tail,
)
from autoresearch.sandbox.exchange import Exchange, ExchangeError, Malformed, NonFinite, OutOfTime, ServerGone
from autoresearch.sandbox.pool import (
    NATIVE_GRACE_S,
    Launched,
    LaunchKey,
    PhaseRun,
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
    copy_untrusted,
    read_untrusted_json,
    read_untrusted_tail,
)
from autoresearch_types import SCORED_OUTCOMES, ExperimentConfig, ExperimentResult

SPLITS = ("val", "test")
DEVICES = ("cpu", "cuda")
MAX_PARAMS = 10**12
MIB = 1024 * 1024


# ---------------------------------------------------------------- backends


# ---------------------------------------------------------------- the experiment


@dataclass(frozen=True)
class SandboxSpec:
    """One experiment: the full edited source, the resolved config, the bundle, resources, budget.

    `keep_checkpoint` copies the trained weights to `prepare.state_dir()/checkpoints/` (a directory
    no sandbox can write) and names the copy in `ExperimentResult.checkpoint`, for `score_checkpoint`.
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
    """sha256 of the bundle's held-out files (`prepare.HELD_OUT_FILES`), recorded when it was built (`Bundle.digests`):
    what is scored is loaded and checked against them before anything untrusted runs."""


def default_deadline_s(config: ExperimentConfig) -> float:
    """Training budget plus room for start-up, evaluation and the probes."""
    return 1.25 * config.time_budget_s + 60.0


@dataclass(frozen=True)
class Clock:
    """The experiment's one wall-clock deadline, shared by both phases."""

    start: float
    deadline_s: float

    def left(self) -> float:
        return self.deadline_s - (time.perf_counter() - self.start)


# ---------------------------------------------------------------- staging


def run_dir(spec: SandboxSpec) -> Path:
    """Where a kept experiment's work dirs end up: `runs/<run_name>/{train,serve,check}`."""
    name = spec.run_name or f"exp-{uuid.uuid4().hex[:12]}"
    return runs_root() / name


def checkpoints_root() -> Path:
    """Where kept checkpoints live: under the state dir, in no sandbox's work dir."""
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
        "memory_mb": address_space_mb(spec.memory_mb),
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


def eval_batch_rows(config: ExperimentConfig) -> int:
    """Rows per request at most: the same block size `prepare.evaluate_bpb` uses."""
    return max(1, prepare.EVAL_BLOCK_ELEMENTS // (config.seq_len * config.vocab_size))


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


def launch_keys(spec: SandboxSpec, roles: tuple[str, ...] = ("train", "serve", "check")) -> list[LaunchKey]:
    """The sandboxed processes an experiment needs: a trainer and two model servers."""
    return [LaunchKey(role, spec.backend, spec.cpu) for role in roles]


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


def _hand_checkpoint(spec: SandboxSpec, trainer: Launched, servers: dict[str, Launched]) -> str | None:
    """Copy phase 1's checkpoint (its process tree is dead) to both servers and, if asked, to a kept file.

    Returns the kept path ("" if not kept), or None when there was no regular checkpoint within bounds.
    """
    kept = checkpoints_root() / f"{spec.run_name or 'exp'}-{uuid.uuid4().hex[:12]}.pt" if spec.keep_checkpoint else None
    dests = [server.workdir / "checkpoint.pt" for server in servers.values()] + ([kept] if kept else [])
    copied = copy_untrusted(trainer.workdir, "out/checkpoint.pt", dests, spec.memory_mb * MIB)
    if copied < 0:
        return None
    return str(kept) if kept else ""


# ---------------------------------------------------------------- phase 2


ERROR_OUTCOMES: dict[type[ExchangeError], str] = {
    Malformed: "tampered",
    NonFinite: "implausible",
    ServerGone: "crash",
    OutOfTime: "timeout",
}


def _scored(
    result: ExperimentResult, report: scorer.ScoreReport, runs: dict[str, PhaseRun], main: Launched
) -> ExperimentResult:
    """Classify phase 2: a server's own failure first, then a bad answer, then the scorer's verdicts."""
    for role, run in runs.items():
        failure = classify_exit(run.returncode, run.stderr, run.hit_deadline, run.oom_kills > 0)
        if failure:
            return _fail(result, failure[0], f"model server ({role}): {failure[1]}", run.stderr)
    if report.error is not None:
        outcome = ERROR_OUTCOMES.get(type(report.error), "crash")
        return _fail(result, outcome, str(report.error), runs[report.error.role].stderr)
    outcome, message = classify_metrics(report.metrics)
    info = read_untrusted_json(main.workdir, "out/server.json") or {}
    return dataclasses.replace(
        result,
        outcome=outcome,
        message=message,
        val_bpb=float(report.metrics["val_bpb"]) if outcome in SCORED_OUTCOMES else None,
        n_params=bounded_int(info.get("n_params"), 0, MAX_PARAMS),
        **_memory_fields(info, main, result),
    )


def _stage_server(server: Launched, spec: SandboxSpec, config: ExperimentConfig, remaining: float) -> Exchange:
    """Hand a server (whose checkpoint is in place) the edited source and its job; our end of its exchange."""
    (server.workdir / "train.py").write_text(spec.train_py)
    write_job(server.workdir, phase_job(server.key.phase, spec, config, remaining))
    server.job_handed()
    return Exchange(server.key.phase, server.workdir, _running(server.proc), time.monotonic() + remaining)


def _running(proc: Any) -> Callable[[], bool]:
    """A check, safe to call from the scorer's threads, that `proc` has not exited yet."""
    return lambda: proc.returncode is None


async def _evaluate(
    spec: SandboxSpec,
    config: ExperimentConfig,
    servers: dict[str, Launched],
    held: heldout.HeldOut,
    result: ExperimentResult,
    clock: Clock,
) -> ExperimentResult:
    """Phase 2: both servers answer, the scorer scores and compares; then both are finished and classified."""
    windows, byte_table = held.windows, held.byte_table
    plan = scorer.plan_scoring(windows, config.vocab_size, eval_batch_rows(config), secrets.SystemRandom())
    await asyncio.gather(*(until_ready(server, clock.left()) for server in servers.values()))
    start = time.perf_counter()
    exchanges = {role: _stage_server(server, spec, config, clock.left()) for role, server in servers.items()}
    try:
        report = await asyncio.to_thread(
            scorer.score, plan, windows, byte_table, exchanges["serve"], exchanges["check"]
        )
    finally:
        for exchange in exchanges.values():
            exchange.stop()
            exchange.close()
    eval_seconds = time.perf_counter() - start
    finished = await asyncio.gather(*(finish(server, clock.left()) for server in servers.values()))
    result = dataclasses.replace(result, eval_seconds=eval_seconds)
    return _scored(result, report, dict(zip(servers, finished, strict=True)), servers["serve"])


async def _train_then_evaluate(
    spec: SandboxSpec,
    config: ExperimentConfig,
    result: ExperimentResult,
    clock: Clock,
    dirs: dict[str, Path],
    pool: WarmPool | None,
    held: heldout.HeldOut,
) -> ExperimentResult:
    """Both model servers are acquired (importing torch, or warm) before phase 1 trains.

    They see nothing of the experiment until phase 1 is over and its processes are gone: only then
    are the checkpoint, the edited source and their jobs put in their work dirs.
    """
    scorer_ready = asyncio.ensure_future(asyncio.to_thread(scorer.warm_up))  # overlaps training
    try:
        async with processes(spec, ("train", "serve", "check"), clock, dirs, pool) as launched:
            trainer, servers = launched["train"], {role: launched[role] for role in ("serve", "check")}
            result, trained = await _train(spec, trainer, config, result, clock)
            if not trained:
                return result
            kept = _hand_checkpoint(spec, trainer, servers)
            if kept is None:
                return _fail(result, "tampered", "training exited 0 without a regular checkpoint file within bounds")
            await scorer_ready
            result = dataclasses.replace(result, checkpoint=kept)
            result = await _evaluate(spec, config, servers, held, result, clock)
    finally:
        await scorer_ready
    if result.outcome == "success" and result.steps < result.planned_steps:
        result = dataclasses.replace(
            result,
            outcome="truncated",
            message=f"{result.message}; stopped at the time cap after {result.steps} of {result.planned_steps} "
            "steps, so it is not ranked against runs that used their whole token budget",
        )
    return result


async def _run(spec: SandboxSpec, roles: tuple[str, ...], body, pool: WarmPool | None, split: str) -> ExperimentResult:
    """Pre-flight, the held-out data of `split` loaded and verified, then `body(config, result, clock, dirs, held)`;
    work dirs cleaned and the pool refilled however it ends. A held-out file that differs from its recorded hash,
    before or after the untrusted processes ran, makes the run `tampered` and unscored."""
    start = time.perf_counter()
    deadline = spec.deadline_s if spec.deadline_s is not None else default_deadline_s(spec.config)
    result = _base_result(spec, deadline)
    problem = preflight(spec.train_py)
    if problem:
        return dataclasses.replace(_fail(result, "invalid", problem), wall_seconds=time.perf_counter() - start)
    check_backend(spec.backend, spec.allow_unsandboxed)
    config = resolve_config(spec)
    if not spec.digests:
        raise ValueError("SandboxSpec.digests is empty: pass the bundle's recorded hashes (Bundle.digests)")
    try:
        held = heldout.load(spec.data_dir, spec.tokenizer_dir, spec.digests, split, config)
    except prepare.HeldOutMismatch as exc:
        result = _fail(result, "tampered", f"{exc}; nothing was run or scored")
        return dataclasses.replace(result, wall_seconds=time.perf_counter() - start)
    dirs: dict[str, Path] = {}
    try:
        result = await body(config, result, Clock(start, deadline), dirs, held)
        if not heldout.unchanged(spec.data_dir, spec.tokenizer_dir, spec.digests, split):
            message = "a held-out file changed while the run's sandboxed processes ran; its score is discarded"
            result = dataclasses.replace(_fail(result, "tampered", message), val_bpb=None)
    finally:
        keep_or_remove(spec, dirs)
        for key in launch_keys(spec, roles) if pool is not None else ():  # warm up between experiments, not during
            pool.refill(key, spec.memory_mb, deadline)
    return dataclasses.replace(result, wall_seconds=time.perf_counter() - start)


async def run_sandboxed(spec: SandboxSpec, pool: WarmPool | None = None) -> ExperimentResult:
    """Pre-flight, train, score and classify one experiment; always returns a typed result.

    Its processes come from `pool` when one is given (warm, launched earlier), else they start cold.
    Raises only for misuse (unknown backend, `none` without opt-in, an unavailable backend).
    """

    async def body(config, result, clock, dirs, held):
        return await _train_then_evaluate(spec, config, result, clock, dirs, pool, held)

    return await _run(spec, ("train", "serve", "check"), body, pool, "val")


async def score_checkpoint(
    spec: SandboxSpec, checkpoint: str, split: str, pool: WarmPool | None = None
) -> ExperimentResult:
    """Score an existing checkpoint (a kept one, see `SandboxSpec.keep_checkpoint`) on `split`: `val` or `test`.

    Only the model servers and the scorer run, with the same probes and classification as an
    experiment. This is the one path that reads the held-out `test` split. Raises for misuse: an
    unknown split or a checkpoint that is not a regular file.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    source = Path(checkpoint)
    if source.is_symlink() or not source.is_file():
        raise ValueError(f"no checkpoint file at {checkpoint}")

    async def body(config, result, clock, dirs, held):
        result = dataclasses.replace(result, seed=config.seed, checkpoint=str(source))
        async with processes(spec, ("serve", "check"), clock, dirs, pool) as servers:
            for server in servers.values():
                shutil.copyfile(source, server.workdir / "checkpoint.pt")
            return await _evaluate(spec, config, servers, held, result, clock)

    return await _run(spec, ("serve", "check"), body, pool, split)
