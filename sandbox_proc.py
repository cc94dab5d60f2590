"""Process clean-up and careful reading of what a sandboxed run left behind (used by `sandbox.py`).

`reap` ends every process a run started, even one that left its process group with `setsid`:
each run's environment carries a unique marker, and `/proc` is scanned for it (and for a cwd inside
the run's work dir). The readers refuse links, non-regular and oversized files, since the
sandboxed code could plant any of them in its work dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

MARKER_ENV = "AUTORESEARCH_SANDBOX_RUN"
MAX_RESULT_BYTES = 1 << 20


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


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a killed process takes a moment to exit)."""
    stat_line = _read_proc(pid, "stat")
    return bool(stat_line) and stat_line.rsplit(b")", 1)[-1].split()[:1] != [b"Z"]


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


def read_untrusted_json(path: Path) -> dict[str, Any] | None:
    """A small JSON object the sandbox wrote, refusing links, non-regular and oversized files."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RESULT_BYTES:
            return None
        try:
            data = json.loads(fh.read())
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


def read_untrusted_tail(path: Path, limit: int = 64 * 1024) -> str:
    """The last `limit` bytes of a log the sandbox wrote, refusing links and non-regular files."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            return ""
        fh.seek(max(0, info.st_size - limit))
        return fh.read(limit).decode("utf-8", errors="replace")


def regular_file(path: Path) -> bool:
    """True for a regular file that is not a link (the sandbox could plant one)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
