"""A memory cgroup around a process tree, as a pod's container cgroup: a limit, the peak, the OOM kills.

cgroup v1 (what this host has): a child of this process's own memory cgroup, so nothing escapes the limits that
already apply. Used by the pod emulation (`podemu.py`) and the benchmarks.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path


class MemoryCgroup:
    """A child cgroup-v1 memory cgroup of this process's own, with a limit: the pod's container cgroup."""

    ROOT = Path("/sys/fs/cgroup/memory")

    def __init__(self, limit_mb: int, name: str = "") -> None:
        own = next(
            line.split(":", 2)[2]
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if "memory" in line.split(":", 2)[1].split(",")
        )
        self.path = self.ROOT / own.lstrip("/") / (name or f"podemu-{uuid.uuid4().hex[:8]}")
        self.path.mkdir()
        limit = str(limit_mb * 2**20)
        (self.path / "memory.limit_in_bytes").write_text(limit)
        if (self.path / "memory.memsw.limit_in_bytes").exists():
            (self.path / "memory.memsw.limit_in_bytes").write_text(limit)
        self.limit_mb = limit_mb

    @classmethod
    def available(cls) -> str | None:
        """Why a memory cgroup cannot be made here, or None."""
        if os.geteuid() != 0:
            return "memory cgroups need root"
        if not cls.ROOT.is_dir():
            return "no cgroup-v1 memory controller at /sys/fs/cgroup/memory"
        try:
            cls(64).close()
        except (OSError, StopIteration) as exc:
            return f"cannot create a memory cgroup: {exc}"
        return None

    def join(self) -> None:
        """Move the calling process into the cgroup (a `preexec_fn`)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def peak_mb(self) -> float:
        return int((self.path / "memory.max_usage_in_bytes").read_text()) / 2**20

    def oom_kills(self) -> int:
        lines = dict(line.split() for line in (self.path / "memory.oom_control").read_text().splitlines())
        return int(lines.get("oom_kill", 0))

    def close(self) -> None:
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.05)  # the last processes are still leaving; the cgroup is removed once empty
