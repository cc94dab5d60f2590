"""One cgroup per sandboxed process: its whole tree's CPU and memory metered, memory limited, and all of it killed.

A run can hide compute and outlive itself by leaving its process tree: a double-forked daemon with an empty
environment and a cwd outside the work dir escapes the marker scan (`processes.reap`), and its CPU time never
reaches `wait4`. A cgroup holds every process a sandbox starts, whatever it re-parents to, so:

- **metering**: the run's CPU is the cgroup's (`cpuacct.usage` on v1, `cpu.stat` on v2), daemons included;
- **memory**: a real limit on the memory the whole tree holds (`memory.limit_in_bytes` with swap on v1,
  `memory.max` on v2), tmpfs pages included; an OOM kill is counted (`oom_kill`);
- **ending**: `kill` stops everything in it (v2's atomic `cgroup.kill` where any v2 hierarchy is mounted, else
  freeze, SIGKILL each member through a pidfd, thaw); nothing a run starts outlives it.

Layouts (`detect`, probed once per process, never raising): `v2` (cpu and memory enabled below our parent),
`v1` (memory and cpuacct writable; pids and freezer used when present, plus a controller-less v2 cgroup on a hybrid
host for `cgroup.kill`), `v2-core` (a writable v2 hierarchy without controllers: kill-all and CPU, no memory
limit) and `none` (nothing writable: an unprivileged user, a pod without write access to its cgroupfs). In `none`
`create` gives a `NullCgroup` and the launcher keeps what it had: the PID namespace and `wait4` under bubblewrap,
the marker scan and sampled `/proc` CPU under userns, and `RLIMIT_AS` per process.

Getting in before the first untrusted instruction: a launch we spawn (bubblewrap) runs through a trusted `/bin/sh`
that writes its own pid into every `cgroup.procs` and then execs the launcher (`attach_argv`); a process a library
spawns (userns) is moved in from outside (`adopt`) while it still runs only the trusted harness, before its job is
handed over. Cgroups are created under `autoresearch/` at the top of each hierarchy, named with their owner's tag
(`workdirs.owner_tag`), so `sweep_stale` kills and removes what a dead orchestrator left without touching a live
one's. The sandbox never gets write access to cgroupfs: bubblewrap mounts none, and userns denies `/sys`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.sandbox import workdirs

PARENT = "autoresearch"
V1_USED = ("memory", "cpuacct", "pids", "freezer")
V2_WANTED = ("cpu", "memory", "pids")
ATTACH = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; n=$((n-1)); shift; done; exec "$@"'
"""`sh -c ATTACH cgroup-attach N procs_1 .. procs_N argv...`: join every cgroup, then exec; exit 125 if one fails."""
ATTACH_FAILED = 125
PIDS_MAX = 4096
KILL_WAIT_S = 5.0


def _read(path: Path) -> str:
    with open(path) as fh:
        return fh.read()


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _number(path: Path) -> int | None:
    try:
        text = _read(path).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _keyed(path: Path) -> dict[str, int]:
    """A `key value` file (`cpu.stat`, `memory.events`, `memory.oom_control`) as integers."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in _read(path).splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                out[key] = int(value)
    return out


# ---------------------------------------------------------------- the host's layout


@dataclass(frozen=True)
class Layout:
    """What this host lets us do, and where our parent cgroups are."""

    mode: str
    v1: dict[str, Path] = field(default_factory=dict)
    unified: Path | None = None
    v2_controllers: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()

    @property
    def limits_memory(self) -> bool:
        return self.mode == "v1" or (self.mode == "v2" and "memory" in self.v2_controllers)

    def describe(self) -> str:
        """One line for logs and the guarantees: the mode, what it limits, and why anything was refused."""
        parts = [f"cgroups: {self.mode}", f"memory limit {'yes' if self.limits_memory else 'no'}"]
        return ", ".join(parts) + (f" ({'; '.join(self.notes)})" if self.notes else "")


def _mounts() -> list[tuple[str, set[str], Path, str]]:
    """(fs type, options, mount point, root) of every cgroup mount of this process's mount namespace."""
    found = []
    for line in _read(Path("/proc/self/mountinfo")).splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            found.append((tail[0], set(tail[2].split(",")), Path(fields[4].replace("\\040", " ")), fields[3]))
    return found


def _usable(parent: Path) -> str | None:
    """None if cgroups can be created and removed under `parent` (created if missing), else why not."""
    try:
        parent.mkdir(exist_ok=True)
        probe = parent / f"probe-{uuid.uuid4().hex[:8]}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        return f"{parent}: {exc.strerror}"
    return None


def _enable_v2(directory: Path) -> set[str]:
    """Enable the wanted controllers for `directory`'s children, one write each; the ones that are on."""
    control = directory / "cgroup.subtree_control"
    available = set(_read(directory / "cgroup.controllers").split())
    for name in V2_WANTED:
        if name in available:
            with contextlib.suppress(OSError):  # EBUSY: processes in a non-root cgroup (v2's no-internal-process rule)
                _write(control, f"+{name}")
    return set(_read(control).split())


def detect(name: str = PARENT) -> Layout:
    """Find a writable layout and make our parent cgroup(s) at the top of each hierarchy. Never raises."""
    try:
        mounts = _mounts()
    except OSError as exc:
        return Layout("none", notes=(f"cannot read the mounts: {exc.strerror}",))
    notes: list[str] = []
    unified, enabled = None, frozenset()
    for kind, _, point, _ in mounts:
        if kind == "cgroup2" and unified is None:
            problem = _usable(point / name)
            if problem:
                notes.append(f"v2 not writable ({problem})")
                continue
            unified = point / name
            with contextlib.suppress(OSError):
                _enable_v2(point)
                enabled = frozenset(_enable_v2(unified))
    if unified is not None and {"cpu", "memory"} <= enabled:
        return Layout("v2", unified=unified, v2_controllers=enabled, notes=tuple(notes))
    v1: dict[str, Path] = {}
    for kind, options, point, _ in mounts:
        for controller in (options & set(V1_USED)) if kind == "cgroup" else ():
            problem = _usable(point / name)
            if problem:
                notes.append(f"v1 {controller} not writable ({problem})")
            else:
                v1[controller] = point / name
    if {"memory", "cpuacct"} <= set(v1):
        return Layout("v1", v1=v1, unified=unified, v2_controllers=enabled, notes=tuple(notes))
    if unified is not None:
        return Layout("v2-core", unified=unified, v2_controllers=enabled, notes=(*notes, "no memory controller"))
    return Layout("none", notes=tuple(notes) or ("no cgroup hierarchy is mounted",))


@functools.cache
def host() -> Layout:
    """This host's layout, probed once per process (a property of the machine, like the bwrap probe)."""
    return detect()


# ---------------------------------------------------------------- one sandbox's cgroup


@dataclass
class Usage:
    """What a cgroup measured over its whole life (every process that was ever in it); None where it cannot say."""

    cpu_s: float | None = None
    memory_peak: int | None = None
    oom_kills: int = 0


class NullCgroup:
    """Layout `none`: nothing is metered, limited or killed here; the launcher's own fallbacks apply."""

    enforced = False
    limits_memory = False
    name = ""

    def attach_argv(self, argv: list[str]) -> list[str]:
        return list(argv)

    def adopt(self, pids_now) -> None:
        return None

    def members(self) -> set[int]:
        return set()

    def usage(self) -> Usage:
        return Usage()

    def set_memory_limit(self, limit_bytes: int) -> bool:
        return False

    def kill(self) -> int:
        return 0

    def destroy(self) -> Usage:
        return Usage()


class SandboxCgroup:
    """The cgroup of one sandboxed process tree: one directory of the same name in each hierarchy used."""

    enforced = True

    def __init__(self, layout: Layout, name: str) -> None:
        self.layout, self.name = layout, name
        used = {c: parent / name for c, parent in layout.v1.items() if c != "freezer" or layout.unified is None}
        self.v1 = used if layout.mode == "v1" else {}
        self.unified = layout.unified / name if layout.unified is not None else None
        self.limits_memory = layout.limits_memory

    def dirs(self) -> list[Path]:
        """Each distinct directory (co-mounted v1 controllers share one)."""
        return list(dict.fromkeys([*self.v1.values(), *([self.unified] if self.unified else [])]))

    def _memory(self) -> Path | None:
        if "memory" in self.v1:
            return self.v1["memory"]
        return self.unified if self.unified is not None and "memory" in self.layout.v2_controllers else None

    def set_memory_limit(self, limit_bytes: int) -> bool:
        """Set the memory limit (swap included); False when the kernel refuses it (v1 cannot reclaim below the
        current use). v1 keeps `memsw >= limit`, so the order of the two writes depends on the direction."""
        memory = self._memory()
        if memory is None:
            return False
        value = str(int(limit_bytes))
        try:
            if memory == self.unified:
                _write(memory / "memory.max", value)
                if (memory / "memory.swap.max").exists():
                    _write(memory / "memory.swap.max", "0")
                return True
            plain, swap = memory / "memory.limit_in_bytes", memory / "memory.memsw.limit_in_bytes"
            order = [swap, plain] if int(value) > (_number(plain) or 0) else [plain, swap]
            for path in order:
                if path.exists():
                    _write(path, value)
        except OSError:
            return False
        return True

    def _pids_max(self, count: int) -> None:
        target = self.v1.get("pids") or (self.unified if "pids" in self.layout.v2_controllers else None)
        if target is not None:
            _write(target / "pids.max", str(count))

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs()]

    def attach_argv(self, argv: list[str]) -> list[str]:
        """`argv` run by a trusted `/bin/sh` that first joins this cgroup (and exits 125, running nothing, if it
        cannot). The pid stays the same through the `exec`, so the caller's `wait4` and pidfd keep working."""
        files = self.procs_files()
        return ["/bin/sh", "-c", ATTACH, "cgroup-attach", str(len(files)), *files, *argv]

    def adopt(self, pids_now, rounds: int = 20) -> None:
        """Move the processes `pids_now()` lists into this cgroup, repeating until all are in (a child forked during
        a move is caught by the next round). Only for processes that still run trusted code alone."""
        for _ in range(rounds):
            todo = set(pids_now()) - self.members()
            if not todo:
                return
            for pid in sorted(todo):
                with contextlib.suppress(ProcessLookupError):
                    for procs in self.procs_files():
                        try:
                            _write(Path(procs), str(pid))
                        except OSError as exc:
                            if exc.errno == errno.ESRCH:
                                raise ProcessLookupError from exc
                            raise

    def members(self) -> set[int]:
        """Every process in the cgroup (a process is in all of its directories at once)."""
        found: set[int] = set()
        for directory in self.dirs():
            with contextlib.suppress(OSError):
                found |= {int(p) for p in _read(directory / "cgroup.procs").split()}
        return found

    def usage(self) -> Usage:
        """CPU seconds, peak memory and OOM kills so far, for everything that was ever in the cgroup."""
        use = Usage()
        if "cpuacct" in self.v1:
            nanoseconds = _number(self.v1["cpuacct"] / "cpuacct.usage")
            use.cpu_s = None if nanoseconds is None else nanoseconds / 1e9
        elif self.unified is not None and "usage_usec" in (stat := _keyed(self.unified / "cpu.stat")):
            use.cpu_s = stat["usage_usec"] / 1e6
        memory = self._memory()
        if memory is not None and memory == self.unified:
            use.memory_peak = _number(memory / "memory.peak") or _number(memory / "memory.current")
            use.oom_kills = _keyed(memory / "memory.events").get("oom_kill", 0)
        elif memory is not None:
            use.memory_peak = _number(memory / "memory.max_usage_in_bytes")
            use.oom_kills = _keyed(memory / "memory.oom_control").get("oom_kill", 0)
        return use

    def _populated(self) -> bool:
        if self.unified is not None:
            return _keyed(self.unified / "cgroup.events").get("populated", 0) == 1
        return bool(self.members())

    def _signal_members(self, sig: int) -> None:
        """Signal each member through a pidfd, after checking that the pinned process is still one of ours."""
        mine = f"/{PARENT}/{self.name}"
        for pid in self.members():
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                lines = _read(Path(f"/proc/{pid}/cgroup")).splitlines()
                if any(line.rsplit(":", 1)[-1].endswith(mine) for line in lines):
                    signal.pidfd_send_signal(fd, sig)
            except OSError:
                pass
            finally:
                os.close(fd)

    def _freeze(self, state: str) -> None:
        with contextlib.suppress(OSError):
            _write(self.v1["freezer"] / "freezer.state", state)
        if state == "FROZEN":  # a task in uninterruptible sleep can stay FREEZING: proceed after a moment
            give_up = time.monotonic() + 1.0
            while time.monotonic() < give_up and _read(self.v1["freezer"] / "freezer.state").strip() != "FROZEN":
                time.sleep(0.001)

    def kill(self) -> int:
        """SIGKILL everything in the cgroup and wait until it is empty; how many processes were in it."""
        count = len(self.members())
        if count == 0:
            return 0
        if self.unified is not None and (self.unified / "cgroup.kill").exists():
            _write(self.unified / "cgroup.kill", "1")
        elif "freezer" in self.v1:
            self._freeze("FROZEN")  # a frozen fork bomb cannot fork
            self._signal_members(signal.SIGKILL)
            self._freeze("THAWED")
        give_up, pause = time.monotonic() + KILL_WAIT_S, 0.0005
        while self._populated():
            if time.monotonic() > give_up:
                raise TimeoutError(f"cgroup {self.name} still holds {sorted(self.members())}")
            self._signal_members(signal.SIGKILL)  # the kill loop without cgroup.kill or a freezer, and a backstop
            time.sleep(pause)
            pause = min(2 * pause, 0.02)
        return count

    def remove(self) -> None:
        """Remove every directory. A wrapper that joins after the last kill makes rmdir busy: kill again and retry
        (once the directory is gone, a late wrapper cannot join, exits 125 and runs nothing)."""
        give_up = time.monotonic() + KILL_WAIT_S
        for directory in self.dirs():
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > give_up:
                        raise
                    self.kill()
                    time.sleep(0.002)

    def destroy(self) -> Usage:
        """Kill everything, read the final usage, remove the cgroup; the usage."""
        try:
            self.kill()
        finally:
            use = self.usage()
            self.remove()
        return use


def create(layout: Layout, memory_bytes: int | None, pids_max: int = PIDS_MAX) -> SandboxCgroup | NullCgroup:
    """A new cgroup with these limits, named with this process's owner tag (`NullCgroup` in layout `none`)."""
    if layout.mode == "none":
        return NullCgroup()
    cgroup = SandboxCgroup(layout, f"{workdirs.owner_tag()}-{uuid.uuid4().hex[:12]}")
    made: list[Path] = []
    try:
        for directory in cgroup.dirs():
            directory.mkdir()
            made.append(directory)
        if memory_bytes is not None and cgroup.limits_memory and not cgroup.set_memory_limit(memory_bytes):
            raise OSError(f"cannot set the memory limit of cgroup {cgroup.name}")
        cgroup._pids_max(pids_max)
    except BaseException:
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    return cgroup


def sweep_stale(layout: Layout) -> list[str]:
    """Kill and remove every sandbox cgroup whose owner process is dead (a live owner's are never touched)."""
    names: set[str] = set()
    for parent in [*layout.v1.values(), *([layout.unified] if layout.unified else [])]:
        with contextlib.suppress(OSError):
            names |= {e.name for e in os.scandir(parent) if e.is_dir() and workdirs.owner_alive(e.name) is False}
    for name in sorted(names):
        SandboxCgroup(layout, name).destroy()
    return sorted(names)
