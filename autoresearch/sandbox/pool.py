"""Sandboxed `harness.py` processes: launched (possibly ahead of time), handed one job, waited on, measured.

Most of a short experiment's overhead is interpreter start-up and `import torch` (about 1 s here,
more when several start at once) plus the `torch._dynamo` import the first AdamW triggers (about
0.8 s) and `torch.export`'s first call. `launch` starts `python harness.py serve train` in a sandbox:
our own `bwrap` launcher for backend `bubblewrap` (`bwrap.py`: PID namespace, private `/tmp`), a
`unionai-sandbox` session for `userns` and `none`. Each launch gets its own cgroup (`cgroups.py`): bubblewrap
joins it before its first instruction, a userns process is moved in before its job is handed over. The harness
does those imports, then waits for `job.json`. `finish` waits for the process under the run's own deadline,
kills everything in its cgroup (and, as a belt, whatever carries its marker: `processes.reap`) and says how much
wall and CPU time the job used, measured from outside: the cgroup's CPU (every process the run started, daemons
included); where no cgroup can be made, `os.wait4` on `bwrap` and samples of `/proc` otherwise.

`WarmPool` keeps up to `size` launched processes per `LaunchKey`, started before they are needed
(while other experiments train, or while the agent thinks). Each is handed out once and ends with
its one phase: a process never sees a second experiment, and before its job it has run only the
trusted harness. The job lowers the process's memory and CPU-seconds limits to the experiment's
own, so a warm process is limited exactly like a cold one. A pool belongs to the runner that made it
(`runner.ExperimentRunner`), which closes it when the run ends; without a pool (as on a cluster, where
each experiment runs in its own pod) every process starts cold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import sys
import time
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prepare
from autoresearch.sandbox import bwrap as sandbox_bwrap
from autoresearch.sandbox import cgroups, gpu, workdirs
from autoresearch.sandbox.interpreter import SandboxPython, sandbox_python
from autoresearch.sandbox.processes import MARKER_ENV, CpuMeter, marked_pids, read_untrusted_tail, reap
from autoresearch.sandbox.trust import STAGED

NATIVE_GRACE_S = 5.0
"""The library's own timeout sits this far past ours: a backstop, never the deadline itself."""
WARM_IDLE_S = 300.0
"""How long a warm process waits for its job before it exits on its own."""
MIB = 1 << 20
CPU_SAMPLE_S = 0.25
"""How often the CPU time of a run's processes is sampled where the kernel's exit accounting is not ours."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchKey:
    """What a sandboxed process is fixed to at launch: its role, backend, threads and extra read-only paths.

    The one role is `train` (phase 1, which also exports the graph); scoring runs no sandboxed process.
    """

    phase: str
    backend: str
    cpu: int
    read_only: tuple[str, ...] = ()
    gpu: bool = False
    """A GPU run: the NVIDIA device nodes and the driver's libraries are bound in (`gpu.py`); else no device."""


@dataclass
class PhaseRun:
    """What one sandboxed process did, as the orchestrator measured it (from outside the sandbox).

    `job_wall_s` and `job_cpu_s` cover the job only: from its hand-off to the end of the process
    tree (a warm process's imports before the job are not counted).
    """

    returncode: int
    stderr: str
    wall_s: float
    hit_deadline: bool
    job_wall_s: float = 0.0
    job_cpu_s: float = 0.0
    oom_kills: int = 0
    """Processes the kernel killed at the cgroup's memory limit (0 where no cgroup meters memory)."""


@dataclass
class Launched:
    """A running `harness.py serve` process, its session and work dir; used for exactly one job."""

    key: LaunchKey
    memory_mb: int
    workdir: Path
    token: str
    session: Any
    proc: Any
    loop: asyncio.AbstractEventLoop
    lifetime_s: float
    idle_s: float
    started: float = field(default_factory=time.monotonic)
    finished: bool = False
    meter: CpuMeter = field(default_factory=CpuMeter)
    job_at: float = 0.0
    cpu_at_job: float = 0.0
    cgroup: cgroups.SandboxCgroup | cgroups.NullCgroup = field(default_factory=cgroups.NullCgroup)
    final: cgroups.Usage | None = None
    """The cgroup's usage once everything in it is dead (read by `end`, before the cgroup is removed)."""

    def fresh(self) -> bool:
        """Still waiting, on this event loop, with time left before it gives up on its job."""
        running = _running_loop()
        age = time.monotonic() - self.started
        return self.proc.returncode is None and self.loop is running and age + 2.0 < self.idle_s

    def warmed_up(self) -> bool:
        """The harness has done its imports and is waiting (it touches `ready` in its work dir)."""
        return (self.workdir / "ready").exists()

    def fits(self, memory_mb: int, need_s: float) -> bool:
        """Launched with at least `memory_mb` and a native timeout that outlasts `need_s` more seconds."""
        age = time.monotonic() - self.started
        return self.memory_mb >= memory_mb and age + need_s + NATIVE_GRACE_S <= self.lifetime_s

    def job_handed(self) -> None:
        """Note when the job was handed over and the CPU time used before it (the trusted imports)."""
        self.sample_cpu()
        metered = self.cgroup.usage().cpu_s
        self.job_at, self.cpu_at_job = time.monotonic(), metered if metered is not None else self.meter.total()

    def sample_cpu(self) -> None:
        """Sample the CPU time of this run's live processes (only where no cgroup meters them)."""
        if not self.cgroup.enforced:
            self.meter.sample(self.token, self.workdir)

    def job_cpu_s(self) -> float:
        """CPU seconds the job's whole process tree used: the cgroup's (every process it ever held); without a
        cgroup, `wait4`'s for `bwrap` (exact when the run exits by itself), sampled (a lower bound) otherwise."""
        if self.final is not None and self.final.cpu_s is not None:
            total = self.final.cpu_s
        elif isinstance(self.proc, sandbox_bwrap.BwrapProcess):
            total = self.proc.cpu_s
        else:
            total = self.meter.total()
        return max(0.0, total - self.cpu_at_job)

    def kill_all(self) -> None:
        """Kill every process of the run now: its cgroup, and whatever carries its marker (the belt, and the only
        way where no cgroup exists)."""
        with contextlib.suppress(OSError, TimeoutError):
            self.cgroup.kill()
        reap(self.token, self.workdir)

    def end(self) -> None:
        """Kill everything, keep the cgroup's final usage, and remove the cgroup."""
        self.kill_all()
        try:
            self.final = self.cgroup.destroy()
        except (OSError, TimeoutError) as exc:  # left for `cgroups.sweep_stale` at the next start
            log.warning("sandbox cgroup %s not removed: %s", self.cgroup.name, exc)


def _limit_to(warm: Launched, memory_mb: int) -> bool:
    """Lower a warm process's cgroup memory limit to the job's own (the harness lowers `RLIMIT_AS` itself); False
    when the kernel cannot reclaim down to it."""
    return not warm.cgroup.limits_memory or warm.cgroup.set_memory_limit(memory_mb * MIB)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# ---------------------------------------------------------------- one process


def runs_root() -> Path:
    """Where work dirs live: under the state dir, never `/tmp`."""
    return prepare.state_dir() / "runs"


def new_workdir(phase: str) -> Path:
    """A fresh work dir holding only the fixed harness files (no experiment yet)."""
    workdir = runs_root() / f"{phase}-{workdirs.owner_tag()}-{uuid.uuid4().hex[:12]}"  # see `workdirs`
    (workdir / "out").mkdir(parents=True)
    for name, source in STAGED.items():
        shutil.copyfile(source, workdir / name)
    return workdir


def python_for_sandbox() -> SandboxPython:
    """The interpreter a sandbox runs, its home (the view: stdlib, torch, numpy) and every path it may read."""
    return sandbox_python(prepare.state_dir() / "sandbox-python")


SHARED_HOST_DIRS = ("/tmp", "/dev/shm")
"""What `userns` leaves shared and writable: a read-only path under them is writable by the run there."""


def userns_problem() -> str | None:
    """Why `userns` cannot isolate on this install, or None: it shares the host's /tmp and /dev/shm read-write,
    so an interpreter or virtualenv under them would be writable by the run, and the trusted scorer imports
    from it. (The state dir is never under /tmp: `prepare.state_dir` refuses that.)"""
    ours = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), *python_for_sandbox().read_only}
    exposed = sorted(p for p in ours if any(Path(p).is_relative_to(d) for d in SHARED_HOST_DIRS))
    if not exposed:
        return None
    return (
        f"backend userns shares the host's {' and '.join(SHARED_HOST_DIRS)} read-write, and {exposed[0]} lies under "
        "them, so a run could write into it; install the project's virtualenv elsewhere, or use bubblewrap"
    )


def sandbox_env(cpu: int, workdir: Path, token: str, python: SandboxPython, gpu: bool = False) -> dict[str, str]:
    """The run's whole environment, from an allowlist: no secret of the parent ever gets in. A CPU run is told there
    is no CUDA device; a GPU run keeps the devices this task was given (`CUDA_VISIBLE_DEVICES`, when set)."""
    threads = str(max(1, cpu))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if gpu else ""
    return {
        **({} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}),
        "PATH": f"{Path(python.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        **python.env(),
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONHASHSEED": "0",
        MARKER_ENV: token,
    }


EXECUTOR_THREADS = 256
_ROOMY_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def ensure_roomy_executor(loop: asyncio.AbstractEventLoop) -> None:
    """Give `loop` a default executor with room for every live sandboxed process.

    The sandbox library waits for each process in a thread of the loop's default executor, which
    has min(32, cores + 4) threads (6 on 2 cores). With more live processes than that (concurrency
    4 is 8 processes, plus warm ones), new spawns queue until some process exits. Threads are
    created only when needed, so a large cap costs nothing.
    """
    if loop not in _ROOMY_LOOPS:
        loop.set_default_executor(ThreadPoolExecutor(max_workers=EXECUTOR_THREADS, thread_name_prefix="sandbox"))
        _ROOMY_LOOPS.add(loop)


def _session_class() -> type:
    """`OnDeviceSession` without its per-session uv virtualenv.

    The library builds (or tries to build, probing the interpreter in a subprocess) a venv in the
    work dir at every session open. We always pass the interpreter ourselves, so that venv is
    pure overhead, and it would be writable by the run.
    """
    from union.sandbox.on_device import OnDeviceSession

    class PlainSession(OnDeviceSession):
        async def _ensure_session_venv(self) -> None:
            return None

    return PlainSession


def address_space_mb(memory_mb: int, gpu: bool = False) -> int:
    """The per-process `RLIMIT_AS` belt a harness applies (0: none). It stays wherever it breaks nothing. A GPU run
    has none, because CUDA reserves far more address space than it uses and fails under it: its host memory is the
    cgroup's to bound (where the host has none, `backends.missing_guarantees` says so). Where a memory cgroup limits
    the whole tree and CUDA is present, a CPU run drops it too (a CUDA-capable torch may still map the driver)."""
    cuda = os.path.exists("/dev/nvidiactl")
    return 0 if gpu or (cuda and cgroups.host().limits_memory) else memory_mb


def harness_command(python: str, key: LaunchKey, memory_mb: int, lifetime_s: float, idle_s: float) -> list[str]:
    """`python harness.py serve <role> <idle_s> <memory_mb> <cpu_s>`: the harness applies the limits itself first."""
    cpu_s = math.ceil(max(1, key.cpu) * lifetime_s)
    limit = address_space_mb(memory_mb, key.gpu)
    return [python, "harness.py", "serve", key.phase, f"{idle_s:.0f}", str(limit), str(cpu_s)]


async def _open_session(key: LaunchKey, memory_mb: int, lifetime_s: float, workdir: Path, command: list[str], env):
    """A `unionai-sandbox` session (backends `userns` and `none`) running `command`; (session, process)."""
    import flyte

    if key.backend == "userns" and (problem := userns_problem()):
        raise RuntimeError(problem)
    session = _session_class()(
        backend=key.backend,
        host_work_dir=str(workdir),
        default_cwd=str(workdir),
        timeout_s=lifetime_s,
        network_mode="blocked",
        read_only_paths=list(python_for_sandbox().read_only) + list(key.read_only),  # its system dirs are granted
        resources=flyte.Resources(cpu=max(1, key.cpu), memory=f"{memory_mb}Mi"),
    )
    try:
        await session.open()
        proc = await session.run("", argv=command, env=env, cwd=str(workdir), stdout=False, stderr=False)
    except BaseException:
        with contextlib.suppress(Exception):
            await session.close()
        raise
    return session, proc


def _spawn_bwrap(key: LaunchKey, workdir: Path, command: list[str], env: dict[str, str], cgroup):
    """Our own `bwrap` sandbox running `command` in `cgroup` from its first instruction; (session, process), the
    same object for both."""
    binary = sandbox_bwrap.bwrap_binary()
    if binary is None:
        raise RuntimeError("backend 'bubblewrap' needs the bwrap binary (apt-get install bubblewrap)")
    python = python_for_sandbox()
    read_only = list(python.read_only) + list(key.read_only)
    devices = gpu.device_nodes() if key.gpu else []
    read_only += gpu.driver_library_dirs() if key.gpu else []
    argv = sandbox_bwrap.bwrap_argv(binary, workdir, read_only, env, command, python.system, devices)
    proc = sandbox_bwrap.spawn(cgroup.attach_argv(argv), workdir / "stderr.log")
    return proc, proc


async def launch(key: LaunchKey, memory_mb: int, lifetime_s: float, idle_s: float) -> Launched:
    """Start `harness.py serve <role>` in a fresh work dir under the sandbox; it waits for its job.

    `lifetime_s` bounds the process's CPU seconds (and is the library's own timeout, a backstop);
    `idle_s` is how long it waits for a job.
    """
    workdir, token = new_workdir(key.phase), uuid.uuid4().hex
    python = python_for_sandbox()
    command = harness_command(python.executable, key, memory_mb, lifetime_s, idle_s)
    env = sandbox_env(key.cpu, workdir, token, python, key.gpu)
    cgroup = cgroups.create(cgroups.host(), memory_mb * MIB)
    try:
        if key.backend == "bubblewrap":
            session, proc = _spawn_bwrap(key, workdir, command, env, cgroup)
        else:
            session, proc = await _open_session(key, memory_mb, lifetime_s, workdir, command, env)
    except BaseException:
        with contextlib.suppress(OSError, TimeoutError):
            cgroup.destroy()
        reap(token, workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    loop = asyncio.get_running_loop()
    return Launched(key, memory_mb, workdir, token, session, proc, loop, lifetime_s, idle_s, cgroup=cgroup)


async def _settle(proc: Any) -> None:
    """Wait for exit; an abnormal end (spawn failure, cancellation) shows up as the return code."""
    from union.sandbox.errors import ExecutionError

    with contextlib.suppress(ExecutionError):
        await proc.wait()


async def _wait(launched: Launched, remaining: float) -> bool:
    """Wait up to `remaining` s for the process, sampling its CPU time; at the deadline kill all it started.

    True if it was killed at the deadline.
    """
    waiter = asyncio.ensure_future(_settle(launched.proc))
    give_up = time.monotonic() + max(0.01, remaining)
    sampled = not launched.cgroup.enforced and not isinstance(launched.proc, sandbox_bwrap.BwrapProcess)
    while (left := give_up - time.monotonic()) > 0:
        if sampled:
            launched.sample_cpu()
        done, _ = await asyncio.wait({waiter}, timeout=min(CPU_SAMPLE_S, left) if sampled else left)
        if done:
            return False
    launched.kill_all()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(waiter, NATIVE_GRACE_S)
    return True


async def finish(launched: Launched, remaining: float) -> PhaseRun:
    """Wait for the process's one job to end within `remaining` s, then kill all it left behind.

    Once this returns, no process of the run is alive (its cgroup is empty and gone; without one, the
    namespace is gone under `bwrap` and the marker scan has killed every marked process otherwise), so its
    files can no longer change.
    """
    start = time.perf_counter()
    try:
        hit_deadline = await _wait(launched, remaining)
        code = launched.proc.returncode if launched.proc.returncode is not None else -9
    finally:
        launched.finished = True
        launched.end()
        with contextlib.suppress(Exception):
            await launched.session.close()
    wall = time.perf_counter() - start
    err = read_untrusted_tail(launched.workdir, "stderr.log")
    job_wall = time.monotonic() - launched.job_at if launched.job_at else wall
    oom = launched.final.oom_kills if launched.final else 0
    return PhaseRun(code, err, wall, hit_deadline or wall >= remaining, job_wall, launched.job_cpu_s(), oom)


async def until_ready(launched: Launched, remaining: float, poll_s: float = 0.01) -> None:
    """Wait (at most `remaining` s) until the harness has done its imports, or its process has ended.

    The job is handed over only then, so the job's measured wall and CPU time leave out start-up. A process a
    library spawned (userns) joins its cgroup here, while it has run only the trusted harness.
    """
    give_up = time.monotonic() + remaining
    while not launched.warmed_up() and launched.proc.returncode is None and time.monotonic() < give_up:
        await asyncio.sleep(poll_s)
    if launched.cgroup.enforced and not isinstance(launched.proc, sandbox_bwrap.BwrapProcess):
        launched.cgroup.adopt(lambda: marked_pids(launched.token, launched.workdir))


async def discard(launched: Launched) -> None:
    """End a process that will not get (or finish) its job, and remove its work dir."""
    _kill_now(launched)
    if launched.loop is _running_loop():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(launched.session.close(), NATIVE_GRACE_S)


def _kill_now(launched: Launched) -> None:
    """Kill the process and all it started, and remove its work dir (no session clean-up: any loop will do)."""
    launched.finished = True
    if isinstance(launched.proc, sandbox_bwrap.BwrapProcess):
        launched.proc.kill()  # also a bwrap still setting up, before any marked process exists
    launched.end()
    shutil.rmtree(launched.workdir, ignore_errors=True)


# ---------------------------------------------------------------- the pool


class WarmPool:
    """Up to `size` launched processes per key, waiting for a job; each handed out once."""

    def __init__(self, size: int = 0, idle_s: float = WARM_IDLE_S, launch_memory_mb: int = 0) -> None:
        self.size = max(0, int(size))
        self.idle_s = idle_s
        self.launch_memory_mb = max(0, int(launch_memory_mb))
        self._ready: list[Launched] = []
        self._pending: dict[asyncio.Task, LaunchKey] = {}
        self.hits = 0
        self.misses = 0

    def configure(self, size: int, idle_s: float | None = None, launch_memory_mb: int = 0) -> None:
        """Keep `size` warm processes per key from now on (0 turns pooling off).

        `launch_memory_mb` (the sizing ceiling) is the least memory cap a warm process starts with,
        so it fits any experiment's size; each job lowers the cap to the experiment's own.
        """
        self.size = max(0, int(size))
        self.idle_s = self.idle_s if idle_s is None else idle_s
        self.launch_memory_mb = max(0, int(launch_memory_mb))

    async def take(self, key: LaunchKey, memory_mb: int, need_s: float) -> Launched | None:
        """A warm process for `key` with at least `memory_mb` and time for `need_s` more seconds, or None.

        A launch still in progress is awaited rather than duplicated: it is further along than a
        cold start would be, and a second import of torch would only slow both down.
        """
        while True:
            self._drop_stale()
            for i, warm in enumerate(self._ready):
                if warm.key == key and warm.fits(memory_mb, need_s):
                    self._ready.pop(i)
                    if warm.memory_mb > memory_mb and not _limit_to(warm, memory_mb):
                        _kill_now(warm)  # holds more than the job may: a cold start instead
                        break
                    self.hits += 1
                    return warm
            coming = self._coming(key)
            if not coming:
                self.misses += 1
                return None
            await asyncio.wait(coming, return_when=asyncio.FIRST_COMPLETED)

    async def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Wait until every launch in progress on this event loop is up and done importing (benchmarks, tests)."""
        give_up = time.monotonic() + timeout_s
        coming = self._coming()
        if coming:
            await asyncio.wait(coming, timeout=timeout_s)
        while time.monotonic() < give_up and not all(w.warmed_up() or not w.fresh() for w in self._ready):
            await asyncio.sleep(0.05)

    def _coming(self, key: LaunchKey | None = None) -> list[asyncio.Task]:
        """Launches (for `key`, or any) still in progress on this event loop; those of a closed loop are forgotten."""
        loop = _running_loop()
        for task in [t for t in self._pending if t.get_loop().is_closed()]:
            self._pending.pop(task, None)
        return [t for t, k in self._pending.items() if key in (None, k) and t.get_loop() is loop and not t.done()]

    def refill(self, key: LaunchKey, memory_mb: int, deadline_s: float, count: int = 1) -> None:
        """Start up to `count` launches for `key` in the background, never past `size` ready or coming.

        One per finished experiment: the pool grows to `size` over the first batch without starting
        a burst of imports that would slow down the experiments still running.
        """
        ready = sum(1 for w in self._ready if w.key == key)
        memory_mb = max(memory_mb, self.launch_memory_mb)
        for _ in range(min(count, self.size - ready - len(self._coming(key)))):
            task = asyncio.ensure_future(self._launch_one(key, memory_mb, deadline_s))
            self._pending[task] = key
            task.add_done_callback(lambda t: self._pending.pop(t, None))

    async def _launch_one(self, key: LaunchKey, memory_mb: int, deadline_s: float) -> None:
        try:
            warm = await launch(key, memory_mb, self.idle_s + deadline_s + NATIVE_GRACE_S, self.idle_s)
        except Exception as exc:  # a warm start is an optimisation: the cold path still works
            log.warning("warm sandbox launch failed: %s", exc)
            return
        if self.size:
            self._ready.append(warm)
        else:
            await discard(warm)

    def _drop_stale(self) -> None:
        """Forget processes that exited, expired or belong to another event loop (and end them)."""
        keep: list[Launched] = []
        stale: list[Launched] = []
        for warm in self._ready:
            (keep if warm.fresh() else stale).append(warm)
        self._ready = keep
        for warm in stale:
            _kill_now(warm)

    async def close(self) -> None:
        """End every warm process and pending launch of this event loop; turn pooling off."""
        self.size = 0
        loop = _running_loop()
        for task in [t for t in self._pending if t.get_loop() is loop]:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        ready, self._ready = self._ready, []
        for warm in ready:
            await discard(warm)

    def close_now(self) -> None:
        """Synchronous last resort (at interpreter exit): kill every warm process and remove its dir."""
        ready, self._ready = self._ready, []
        for warm in ready:
            _kill_now(warm)

    def __len__(self) -> int:
        return len(self._ready)


_HANDLES: weakref.WeakValueDictionary[str, WarmPool] = weakref.WeakValueDictionary()
"""Live pools by handle. A pool is owned (and closed) by the runner that made it; this weak index only lets a
task that runs in the same process find it by the handle passed as one of its inputs, because Flyte pickles
task inputs and a pool of live processes cannot travel that way."""


def register(pool: WarmPool) -> str:
    """A handle for `pool`, valid while its owner keeps it alive."""
    handle = f"pool-{uuid.uuid4().hex}"
    _HANDLES[handle] = pool
    return handle


def lookup(handle: str) -> WarmPool | None:
    """The live pool behind `handle`, or None (no handle, another process, or a closed pool)."""
    return _HANDLES.get(handle) if handle else None
