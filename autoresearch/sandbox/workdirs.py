"""What crashed runs leave behind, and its removal without touching a live run's files.

Every directory a run creates for itself under the state dir (ledger working copies, sandbox work dirs)
carries its owner's tag: the process id and the process's start time, `<pid>.<start>`. A directory
whose owner is no longer alive (no such process, or a later process that reused the id) is a leftover;
one whose owner is alive is never touched, whoever that owner is.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

TAG = re.compile(r"^(?:[a-z]+-)?p(\d+)\.(\d+)-")
"""The owner tag at the start of a directory name, after an optional word: `[train-]p<pid>.<ticks>-...`."""


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[19]) if len(fields) > 19 else None


def owner_tag(pid: int | None = None) -> str:
    """This process's tag (`p<pid>.<start ticks>`), to put in the names of directories it creates."""
    pid = os.getpid() if pid is None else pid
    return f"p{pid}.{_start_ticks(pid) or 0}"


def owner_alive(name: str) -> bool | None:
    """Whether the process that owns `name` still runs; None when the name carries no tag."""
    match = TAG.search(name)
    if not match:
        return None
    pid, ticks = int(match.group(1)), int(match.group(2))
    return _start_ticks(pid) == ticks


def clean(root: Path) -> list[Path]:
    """Remove the entries under `root` whose owner is dead; returns what was removed. Entries without a tag
    (an older version's) are left alone: nothing says whether their owner still runs."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for entry in sorted(root.iterdir()):
        if owner_alive(entry.name) is False:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
