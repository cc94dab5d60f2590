"""A cgroup per sandboxed process: compute that cannot hide, memory that is really limited, and nothing that outlives
a run. The real sandbox runs hostile `train.py`s; processes are counted by cgroup membership and by a name each
hostile process gives itself, never by looking at the whole machine."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import prepare
from autoresearch.sandbox import backends, cgroups, workdirs
from autoresearch.sandbox import experiment as sandbox
from autoresearch.sandbox import pool as sandbox_pool
from autoresearch_types import ExperimentConfig

REPO = Path(__file__).resolve().parent.parent
BASELINE = (REPO / "train.py").read_text()
TINY = ExperimentConfig(
    n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=4, token_budget=3 * 4 * 32, vocab_size=512
)
ISOLATING = [b for b in ("bubblewrap", "userns") if b in backends.available_backends()]
LAYOUT = cgroups.host()
needs_cgroups = pytest.mark.skipif(LAYOUT.mode == "none", reason=f"no usable cgroup here ({LAYOUT.describe()})")
needs_memory = pytest.mark.skipif(not LAYOUT.limits_memory, reason=f"no memory cgroup here ({LAYOUT.describe()})")
DAEMON_CPU_S = 3.0


def my_cgroups() -> set[str]:
    """The sandbox cgroups this test process owns, in any hierarchy."""
    mine = workdirs.owner_tag() + "-"
    found: set[str] = set()
    for parent in [*LAYOUT.v1.values(), *([LAYOUT.unified] if LAYOUT.unified else [])]:
        if parent.is_dir():
            found |= {e.name for e in os.scandir(parent) if e.name.startswith(mine)}
    return found


def alive(pid: int) -> bool:
    """`pid` exists and is not a zombie (a killed process its parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def named(comm: str) -> list[int]:
    """Live processes that gave themselves the name `comm` (15 characters at most)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            if stat[stat.index("(") + 1 : stat.rindex(")")] == comm and stat.rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
    return found


def run_in_sandbox(bundle: Path, source: str, backend: str, **kw) -> sandbox.ExperimentResult:
    options = {"cpu": 1, "memory_mb": 3072, "deadline_s": 240.0, "backend": backend}
    spec = sandbox.SandboxSpec(
        source, TINY, str(bundle / "data"), str(bundle / "tokenizer"), digests=prepare.bundle_digests(bundle),
        **{**options, **kw},
    )  # fmt: skip
    return asyncio.run(sandbox.run_sandboxed(spec))


def with_attack(attack: str) -> str:
    """The baseline whose `run_training` runs `attack` first (inside the sandbox)."""
    body = textwrap.indent(textwrap.dedent(attack).strip(), "    ")
    return (
        BASELINE
        + "\n\n_baseline_run_training = run_training\n\n\n"
        + "def run_training(config, data_dir):\n"
        + "    import ctypes, os, sys, time\n"
        + body
        + "\n    return _baseline_run_training(config, data_dir)\n"
    )


def daemon_attack(comm: str, cpu_s: float) -> str:
    """Double-fork a daemon (new session, empty environment, cwd `/`, its own name) that burns `cpu_s` CPU-seconds,
    says so through a pipe, then sleeps for an hour; training goes on once it has burned."""
    return f"""
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.chdir("/")
            os.environ.clear()
            ctypes.CDLL(None).prctl(15, {comm.encode()!r}, 0, 0, 0)
            start = time.process_time()
            while time.process_time() - start < {cpu_s}:
                sum(range(10000))
            os.write(w, b"x")
            time.sleep(3600)
        os._exit(0)
    os.wait()
    os.close(w)
    assert os.read(r, 1) == b"x"
    """


@needs_cgroups
@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ISOLATING)
def test_a_double_forked_daemon_is_metered_and_killed_with_the_run(tiny_bundle: Path, backend: str) -> None:
    comm = f"d{uuid.uuid4().hex[:12]}"
    honest = run_in_sandbox(tiny_bundle, BASELINE, backend)
    result = run_in_sandbox(tiny_bundle, with_attack(daemon_attack(comm, DAEMON_CPU_S)), backend)
    assert honest.outcome == result.outcome == "success", (honest.message, result.message)
    assert result.train_cpu_s >= honest.train_cpu_s + 0.9 * DAEMON_CPU_S, (result.train_cpu_s, honest.train_cpu_s)
    assert named(comm) == [], "the daemon did not outlive its run"
    assert my_cgroups() == set(), "every cgroup of the run is gone"


def memory_hog(children: int, mib: int) -> str:
    """Fork children that each touch `mib` MiB (each under its own address-space limit, together far over the run's
    memory); if one is killed, the run fails."""
    return f"""
    pids = set()
    for _ in range({children}):
        pid = os.fork()
        if pid == 0:
            block = bytearray({mib} << 20)
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(30)
            os._exit(0)
        pids.add(pid)
    while pids:
        pid, status = os.wait()
        pids.discard(pid)
        if status:
            raise RuntimeError(f"a child ended with status {{status}}")
    """


@needs_memory
@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ISOLATING)
def test_a_forking_memory_hog_is_stopped_by_the_cgroup_and_is_oom(tiny_bundle: Path, backend: str) -> None:
    """Eight children of 400 MiB each stay under the per-process address-space belt but not under the run's 2 GiB."""
    result = run_in_sandbox(tiny_bundle, with_attack(memory_hog(8, 400)), backend, memory_mb=2048)
    assert result.outcome == "oom", (result.outcome, result.message, result.stderr_tail[-500:])
    assert "cgroup" in result.message and result.val_bpb is None
    assert my_cgroups() == set()


@needs_cgroups
@pytest.mark.timeout(300)
def test_a_closed_pool_leaves_no_process_and_no_cgroup(tiny_bundle: Path) -> None:
    async def scenario() -> tuple[set[int], set[str]]:
        pool = sandbox_pool.WarmPool(2)
        key = sandbox_pool.LaunchKey("train", backends.default_backend(), 1)
        pool.refill(key, 1024, 60.0, count=2)
        await pool.wait_ready()
        members = {pid for warm in pool._ready for pid in warm.cgroup.members()}
        groups = my_cgroups()
        await pool.close()
        return members, groups

    members, groups = asyncio.run(scenario())
    assert members and len(groups) == 2, "each warm process sits in its own cgroup"
    assert my_cgroups() == set() and not [pid for pid in members if alive(pid)]


SLEEPER = """
import os, subprocess, sys
from autoresearch.sandbox import cgroups
group = cgroups.create(cgroups.host(), 256 << 20)
quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
sleeper = subprocess.Popen(group.attach_argv(["sleep", "300"]), start_new_session=True, **quiet)
print(group.name, sleeper.pid, flush=True)
os._exit(0)
"""


@needs_cgroups
@pytest.mark.timeout(120)
def test_a_dead_owners_cgroup_is_swept_and_its_processes_killed_but_a_live_ones_is_not() -> None:
    mine = cgroups.create(LAYOUT, 256 << 20)
    try:
        done = subprocess.run([sys.executable, "-c", SLEEPER], capture_output=True, text=True, cwd=REPO, check=True)
        name, pid = done.stdout.split()
        deadline = time.monotonic() + 30
        while int(pid) not in cgroups.SandboxCgroup(LAYOUT, name).members():  # the wrapper joins, then execs sleep
            assert time.monotonic() < deadline, "the sleeper never joined its cgroup"
            time.sleep(0.01)
        swept = cgroups.sweep_stale(LAYOUT)
        assert name in swept and mine.name not in swept, "only the dead owner's cgroup is swept"
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
        assert not any((parent / name).exists() for parent in LAYOUT.v1.values())
    finally:
        mine.destroy()


def test_the_v2_files_are_read_and_written_in_their_formats(state_root: Path) -> None:
    """The v2 paths run for real only on a v2 host; here their file formats are checked on a directory."""
    parent = state_root / "fake-cgroup-v2" / uuid.uuid4().hex[:8]
    layout = cgroups.Layout("v2", unified=parent, v2_controllers=frozenset({"cpu", "memory", "pids"}))
    group = cgroups.SandboxCgroup(layout, "p1.2-abc")
    directory = parent / "p1.2-abc"
    directory.mkdir(parents=True)
    for name, text in {
        "cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
        "memory.peak": "1048576\n",
        "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        "memory.max": "",
        "memory.swap.max": "",
    }.items():
        (directory / name).write_text(text)
    use = group.usage()
    assert (use.cpu_s, use.memory_peak, use.oom_kills) == (2.5, 1 << 20, 1)
    assert group.set_memory_limit(512 << 20)
    assert (directory / "memory.max").read_text() == str(512 << 20) and (
        directory / "memory.swap.max"
    ).read_text() == "0"
    assert group.attach_argv(["x"])[-1] == "x" and group.procs_files() == [str(directory / "cgroup.procs")]


def test_without_any_cgroup_the_launcher_keeps_its_fallbacks() -> None:
    none = cgroups.Layout("none", notes=("nothing writable",))
    group = cgroups.create(none, 1 << 30)
    assert isinstance(group, cgroups.NullCgroup) and group.attach_argv(["a", "b"]) == ["a", "b"]
    assert group.usage().cpu_s is None and group.destroy().oom_kills == 0
    gaps = " ".join(backends.cgroup_gaps("userns", none))
    assert "RLIMIT_AS" in gaps and "outlive" in gaps
    assert backends.cgroup_gaps("bubblewrap", LAYOUT) == () or not LAYOUT.limits_memory


def test_the_cgroup_of_a_sandbox_is_its_own(tiny_bundle: Path) -> None:
    """Inside the bubblewrap sandbox the run sees no cgroupfs and its own cgroup as the root (a cgroup namespace):
    it can neither raise its limit nor move another process in."""
    if "bubblewrap" not in ISOLATING or LAYOUT.mode == "none":
        pytest.skip("needs bubblewrap and a cgroup")
    attack = """
    seen = {"cgroup": open("/proc/self/cgroup").read(), "sysfs": os.path.exists("/sys/fs/cgroup/memory")}
    with open("observed.json", "w") as fh:
        fh.write(__import__("json").dumps(seen))
    """
    name = f"cg-{uuid.uuid4().hex[:8]}"
    result = run_in_sandbox(tiny_bundle, with_attack(attack), "bubblewrap", keep_workdir=True, run_name=name)
    observed = json.loads((sandbox.runs_root() / name / "train" / "observed.json").read_text())
    shutil.rmtree(sandbox.runs_root() / name)
    assert result.outcome == "success", result.message
    assert not observed["sysfs"] and all(line.endswith(":/") for line in observed["cgroup"].splitlines())


@pytest.fixture(autouse=True)
def _nothing_left() -> None:
    """A test that fails half-way must not leave a sleeper or daemon of this process behind."""
    yield
    for name in my_cgroups():
        cgroups.SandboxCgroup(LAYOUT, name).destroy()
