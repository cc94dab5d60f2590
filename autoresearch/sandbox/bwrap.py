"""Our own bubblewrap launcher (backend `bubblewrap`): PID namespace, read-only system, private `/tmp`.

Why not `unionai-sandbox`'s bubblewrap backend: measured on this kind of machine it gives the run no
PID namespace (a sandboxed run saw and killed a host process) and lets it write the host `/tmp`.
`bwrap` itself does better, so for this backend we call it directly. A run sees:

- of the system, only what a run needs: the directories the dynamic loader resolves the interpreter's and the
  packages' shared libraries from (`interpreter.py` asks `ldd`), the tools and compilers with their headers
  (`SYSTEM_DIRS`: a shell, and what `torch.compile` calls), the C library's locale and time-zone data, and
  `/bin`, `/lib`, ... as the host has them (links or directories); any Python package directory among them is
  hidden by an empty tmpfs (`PACKAGE_DIRS`). Then the sandbox's Python (`interpreter.py`: a view holding the
  standard library, torch and numpy, plus exactly the files it links to) and any extra allow-listed path. All
  read-only; the rest of `/usr` (other programs' data, documentation, `/usr/local`) is not there;
- its own work dir read-write; a private `/tmp` and `/dev/shm` (tmpfs), a minimal `/dev`, and a
  `/proc` of its own PID namespace (it sees only its own processes and can signal nothing else);
  the rest of its root (the directories `bwrap` creates to mount things on) is read-only;
- no network (a network namespace with only loopback), its own IPC, UTS, cgroup and user
  namespaces, no capabilities, a new session, and exactly the environment we pass;
- nothing else: not `/etc`, not the project, not the state dir, no host Unix socket.

Lifetime: `bwrap` runs the command under an init of its own (PID 1 of the namespace). When the
command exits, that init exits and the kernel kills whatever the run left behind, so no process of
the run outlives it; `--die-with-parent` ends it if we die. We reap the outer `bwrap` ourselves with
`os.wait4`: its resource usage includes every process of the namespace (each one is reaped by its
parent or by the namespace's init, which `bwrap` reaps), so `cpu_s` is the run's whole CPU time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import glob
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

NAMESPACE_FLAGS = (
    "--unshare-all",
    "--die-with-parent",
    "--new-session",
    "--cap-drop",
    "ALL",
    "--clearenv",
    "--as-pid-1",
)
TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Recreated as links where the host merged them into `/usr`, else bound whole."""
SYSTEM_DIRS = (
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib64",
    "/usr/lib/gcc",
    "/usr/libexec/gcc",
    "/usr/include",
    "/usr/lib/locale",
    "/usr/share/zoneinfo",
)
"""Tools (a shell; the compilers, assembler and linker `torch.compile` calls, and their headers) and the C library's
data. The shared libraries' directories are added per interpreter (`SandboxPython.system`)."""
SYSTEM_FILES = ("/etc/ld.so.cache",)
"""The dynamic linker's cache: lets shared libraries load as fast as on the host, and says nothing secret."""
PRIVATE_MOUNTS = ("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm")
PACKAGE_DIRS = ("/usr/lib*/python3*/*-packages", "/usr/local/lib*/python3*/*-packages", "/usr/share/python*")
"""Where a system install keeps Python packages (a corpus package among them): each match is covered by an empty
tmpfs, so only what the sandbox's Python view links to (bound again on top) is readable."""
PROBE_TIMEOUT_S = 15.0
PROBE_LIBRARY_DIRS = ("/usr/lib", "/usr/lib64")
"""Where `true` finds its C library for the probe, whatever the distribution's layout (the probe runs nothing else)."""
REAPER = """
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
child = os.fork()
if child == 0:
    os.execv(sys.argv[1], sys.argv[1:])
status = 255 << 8
while True:
    try:
        pid, code = os.waitpid(-1, 0)
    except ChildProcessError:
        break
    if pid == child:
        status = code
        break
while True:
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        break
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"""
"""PID 1 of the namespace (see the module doc): `prctl(PR_SET_DUMPABLE, 0)`, run the command, reap all."""


def bwrap_binary() -> str | None:
    """The `bwrap` executable on PATH, if any."""
    return shutil.which("bwrap")


def system_mounts(library_dirs: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Read-only binds of what a run needs of the system (recreating links such as `/bin -> usr/bin`): the top-level
    directories, `SYSTEM_DIRS` and the shared libraries' directories."""
    args: list[str] = []
    for path in TOP_LEVEL:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in sorted({*SYSTEM_DIRS, *library_dirs}):
        if os.path.isdir(path) and not any(Path(path).is_relative_to(top) for top in TOP_LEVEL):
            args += ["--ro-bind", path, path]
    for path in SYSTEM_FILES:
        if os.path.isfile(path):
            args += ["--ro-bind", path, path]
    return args


def package_masks() -> list[str]:
    """`--tmpfs` over every system Python package directory (`PACKAGE_DIRS`) this host has."""
    found = sorted({path for pattern in PACKAGE_DIRS for path in glob.glob(pattern) if os.path.isdir(path)})
    return [arg for path in found for arg in ("--tmpfs", path)]


def bwrap_argv(
    binary: str,
    workdir: Path,
    read_only: list[str],
    env: dict[str, str],
    command: list[str],
    library_dirs: tuple[str, ...] | list[str] = (),
    devices: tuple[str, ...] | list[str] = (),
) -> list[str]:
    """The full `bwrap` command line that runs `command` (an absolute interpreter path first) in `workdir`.

    `devices` are host device nodes bound into the minimal `/dev` (a GPU run's NVIDIA nodes: `gpu.device_nodes`);
    none by default, so a CPU run sees no device of the host.

    The interpreter `command[0]` also runs the reaper, without `site`, the user's site or the current directory on
    its path (fast, and nothing of the work dir is imported before it); it finds its standard library through
    the `PYTHONHOME` in `env`.
    """
    argv = [binary, *NAMESPACE_FLAGS, *system_mounts(library_dirs), *package_masks(), *PRIVATE_MOUNTS]
    for node in devices:
        if Path(node).parent != Path("/dev"):
            raise ValueError(f"{node} is not a node directly under /dev")
        argv += ["--dev-bind", node, node]
    for path in read_only:  # after the private mounts, so a checkout or state dir under /tmp stays visible
        if any(Path(path) in (Path(private), *Path(private).parents) for private in PRIVATE_MOUNTS[1::2]):
            raise ValueError(f"{path} would cover the sandbox's private {', '.join(PRIVATE_MOUNTS[1::2])}")
        argv += ["--ro-bind", path, path]
    argv += ["--bind", str(workdir), str(workdir), "--remount-ro", "/", "--chdir", str(workdir)]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return [*argv, "--", command[0], "-S", "-s", "-P", "-c", REAPER, *command]


def works() -> bool:
    """True when `bwrap` exists and can create every namespace we ask for here (runs `true` once).

    Never raises: a missing binary, a kernel without unprivileged user namespaces or a container
    that forbids them all read as False, and the caller falls back to another backend.
    """
    binary = bwrap_binary()
    if binary is None:
        return False
    argv = [binary, *NAMESPACE_FLAGS, *system_mounts(PROBE_LIBRARY_DIRS), *PRIVATE_MOUNTS, "--", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _close_inherited_fds() -> list[tuple]:
    """`posix_spawn` actions closing every inheritable descriptor above 2 (libraries may leave some)."""
    actions: list[tuple] = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        with contextlib.suppress(OSError):
            if fd > 2 and os.get_inheritable(fd):
                actions.append((os.POSIX_SPAWN_CLOSE, fd))
    return actions


class BwrapProcess:
    """One `bwrap` process we started: its exit status and CPU time, read by a thread that reaps it.

    Shaped like what `unionai-sandbox` returns where `pool.py` needs it: `returncode` (None
    while running), `await wait()`, and `await close()` (kill if still running, then wait).
    A `pidfd` addresses the process, so a signal can never reach a recycled PID.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.cpu_s = 0.0
        self._lock = threading.Lock()
        self._pidfd: int | None = os.pidfd_open(pid)
        self._done: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._done.set_running_or_notify_cancel()  # a cancelled waiter must not cancel the exit status itself
        threading.Thread(target=self._reap, name=f"bwrap-{pid}", daemon=True).start()

    def _reap(self) -> None:
        _, status, usage = os.wait4(self.pid, 0)
        self.cpu_s = usage.ru_utime + usage.ru_stime
        self.returncode = os.waitstatus_to_exitcode(status)
        with self._lock:
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        self._done.set_result(self.returncode)

    def kill(self) -> None:
        """SIGKILL the outer `bwrap`; `--die-with-parent` then takes the whole namespace down."""
        with self._lock:
            if self._pidfd is not None:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    async def wait(self) -> int:
        """The exit status: the command's own code, 128 + N if a signal N ended it, or -N for bwrap itself."""
        return await asyncio.wrap_future(self._done)

    async def close(self) -> None:
        """Kill if still running and wait for the exit (the run's whole tree is gone after it)."""
        self.kill()
        await self.wait()


def spawn(argv: list[str], stderr_path: Path) -> BwrapProcess:
    """Start `argv` (a `bwrap_argv` line) in a new session; stdin and stdout are /dev/null, stderr appends to a file."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, str(stderr_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        *_close_inherited_fds(),
    ]
    pid = os.posix_spawn(argv[0], argv, {"PATH": "/usr/bin:/bin"}, file_actions=actions, setsid=True)
    return BwrapProcess(pid)
