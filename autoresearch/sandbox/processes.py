"""Process clean-up, CPU metering and careful reading of what a sandboxed run left behind.

`reap` ends every process a run started that carries its marker, even one that left its process
group with `setsid`: each run's environment carries a unique marker, and `/proc` is scanned for it
(and for a cwd inside the run's work dir). It is the belt beside the run's cgroup (`cgroups.py`),
which also holds a daemon that cleared its environment and left the work dir, and the only clean-up
where no cgroup can be made. `CpuMeter` samples the CPU time of marked processes for that case too
(the `unionai-sandbox` backends reap their process themselves, so `wait4` is not ours to read).

The readers never trust a path inside a work dir: the sandboxed code could have replaced any
component with a link (to another run's checkpoint, to the ledger), a FIFO (an `open` that would
block forever) or an oversized file. `open_output` walks the path one component at a time from the
work dir with `O_NOFOLLOW` and `O_NONBLOCK` and hands back a descriptor only for a regular file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER_ENV = "AUTORESEARCH_SANDBOX_RUN"
MAX_RESULT_BYTES = 1 << 20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _read_proc(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _cwd_inside(pid: int, workdir: str) -> bool:
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return cwd == workdir or cwd.startswith(workdir + os.sep)


def marked_pids(token: str, workdir: Path) -> set[int]:
    """Live processes that carry this run's marker in their environment or sit in its work dir."""
    needle = f"{MARKER_ENV}={token}".encode()
    me, found = os.getpid(), set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        if needle in _read_proc(pid, "environ").split(b"\0") or _cwd_inside(pid, str(workdir)):
            found.add(pid)
    return found


def _signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _stat_fields(pid: int) -> list[bytes]:
    """The fields of `/proc/<pid>/stat` after the command name (state is index 0), or [] if gone."""
    line = _read_proc(pid, "stat")
    return line.rsplit(b")", 1)[-1].split() if line else []


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a killed process takes a moment to exit)."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != b"Z"


def reap(token: str, workdir: Path, max_rounds: int = 200, exit_wait_s: float = 5.0) -> int:
    """Freeze then kill every process this run left behind, and wait for them to exit; return how many.

    Stopping first keeps a fork bomb from replacing its children faster than we kill them. Waiting
    matters: a hundred killed copies of a torch process take a while to release their memory.
    """
    seen: set[int] = set()
    for _ in range(max_rounds):
        new = marked_pids(token, workdir) - seen
        if not new:
            break
        _signal_all(new, signal.SIGSTOP)
        seen |= new
    _signal_all(seen, signal.SIGKILL)
    _signal_all(seen, signal.SIGCONT)
    give_up = time.monotonic() + exit_wait_s
    while time.monotonic() < give_up and any(_alive(pid) for pid in seen):
        time.sleep(0.01)
    return len(seen)


# ---------------------------------------------------------------- CPU time


def _parent(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[1]) if len(fields) > 1 else 0


def process_cpu_s(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of `pid` (user + system), or (0, 0) if it is gone."""
    fields = _stat_fields(pid)
    if len(fields) < 15:
        return 0.0, 0.0
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS


@dataclass
class CpuMeter:
    """Best-effort CPU seconds of a run's processes, from samples of `/proc/<pid>/stat`.

    Used where we cannot reap the sandbox's process ourselves (the `unionai-sandbox` backends do).
    Each sample records, per marked process, its own CPU time and the CPU time of the children it
    has reaped. `total` is the larger of the sum of every process's own time and the root's own
    plus reaped children's time: a lower bound that misses the last sampling interval before a
    process exits and processes that live and die between samples without being reaped by a marked
    parent.
    """

    root: int | None = None
    own: dict[int, float] = field(default_factory=dict)
    root_children: float = 0.0

    def sample(self, token: str, workdir: Path) -> None:
        """Record the current CPU time of every live process of the run (the root is our own child)."""
        for pid in marked_pids(token, workdir):
            if self.root is None and _parent(pid) == os.getpid():
                self.root = pid
            mine, children = process_cpu_s(pid)
            self.own[pid] = max(self.own.get(pid, 0.0), mine)
            if pid == self.root:
                self.root_children = max(self.root_children, children)

    def total(self) -> float:
        """CPU seconds used by the run's processes so far (a lower bound; see the class doc)."""
        rooted = self.own.get(self.root, 0.0) + self.root_children if self.root is not None else 0.0
        return max(sum(self.own.values()), rooted)


# ---------------------------------------------------------------- reading what the sandbox wrote


def _open_component(name: str, dir_fd: int | None, directory: bool) -> int:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_DIRECTORY if directory else 0)
    return os.open(name, flags, dir_fd=dir_fd)


def open_output(workdir: Path, relpath: str, max_bytes: int = MAX_RESULT_BYTES) -> int | None:
    """A read-only descriptor on `workdir/relpath` if every component is a real directory or file.

    `workdir` itself is trusted (we created it, outside anything the sandbox can write); each
    component below it is opened without following links and without blocking (a FIFO), and the
    last must be a regular file of at most `max_bytes`. None otherwise. The caller closes the fd.
    """
    parts = [p for p in Path(relpath).parts if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"not a relative path inside the work dir: {relpath!r}")
    fd: int | None = None
    try:
        fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        for i, name in enumerate(parts):
            nxt = _open_component(name, fd, directory=i < len(parts) - 1)
            os.close(fd)
            fd = nxt
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_size <= max_bytes:
            ready, fd = fd, None
            return ready
        return None
    except OSError:
        return None
    finally:
        if fd is not None:
            os.close(fd)


def read_untrusted_bytes(workdir: Path, relpath: str, max_bytes: int = MAX_RESULT_BYTES) -> bytes | None:
    """The whole of a small regular file the sandbox wrote (see `open_output`), or None."""
    fd = open_output(workdir, relpath, max_bytes)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(max_bytes + 1)
    return data if len(data) <= max_bytes else None


def read_untrusted_json(workdir: Path, relpath: str) -> dict[str, Any] | None:
    """A small JSON object the sandbox wrote, refusing links, FIFOs, oversized and malformed files."""
    data = read_untrusted_bytes(workdir, relpath)
    if data is None:
        return None
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def read_untrusted_tail(workdir: Path, relpath: str, limit: int = 64 * 1024) -> str:
    """The last `limit` bytes of a log the sandbox wrote, refusing links and non-regular files."""
    fd = open_output(workdir, relpath, max_bytes=1 << 62)
    if fd is None:
        return ""
    with os.fdopen(fd, "rb") as fh:
        fh.seek(max(0, os.fstat(fh.fileno()).st_size - limit))
        return fh.read(limit).decode("utf-8", errors="replace")


def copy_untrusted(workdir: Path, relpath: str, dests: list[Path], max_bytes: int) -> int:
    """Copy a regular file the sandbox wrote to each of `dests` (new files we own); the bytes copied, or -1.

    The source is read once, through one descriptor, so every copy holds the same bytes even if
    something is still writing to it.
    """
    fd = open_output(workdir, relpath, max_bytes)
    if fd is None:
        return -1
    outs = [open(dest, "xb") for dest in dests]  # noqa: SIM115 - closed below, all together
    copied = 0
    try:
        with os.fdopen(fd, "rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                copied += len(chunk)
                if copied > max_bytes:
                    break
                for out in outs:
                    out.write(chunk)
    finally:
        for out in outs:
            out.close()
    if copied > max_bytes:
        for dest in dests:
            dest.unlink(missing_ok=True)
        return -1
    return copied


# ---------------------------------------------------------------- bounding what the sandbox reported


def bounded_int(value: Any, low: int, high: int) -> int:
    """An integer field read from the sandbox, forced into `[low, high]` (anything else reads as `low`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return low
    return int(min(max(value, low), high))


def bounded_float(value: Any, low: float, high: float) -> float:
    """A number read from the sandbox, forced into `[low, high]` (a non-finite or non-number reads as `low`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return low
    return float(min(max(value, low), high))


def bounded_choice(value: Any, choices: tuple[str, ...], default: str) -> str:
    """A string read from the sandbox if it is one of `choices`, else `default` (so nothing else gets through)."""
    return value if isinstance(value, str) and value in choices else default
