"""Our own bubblewrap launcher: exit status, whole-tree CPU time, PID namespace, and a wait that survives cancellation."""

from __future__ import annotations

import asyncio
import shutil
import threading
import uuid
from pathlib import Path

import pytest

from autoresearch.sandbox import bwrap as sandbox_bwrap
from autoresearch.sandbox import pool as sandbox_pool

pytestmark = pytest.mark.skipif(not sandbox_bwrap.works(), reason="bwrap cannot create its namespaces here")
PYTHON = "/usr/bin/python3"


def sandboxed_argv(workdir: Path, code: str, read_only: tuple[str, ...] = (), env: dict | None = None) -> list[str]:
    """The launcher's command line for `python -c code` with the sandbox's own Python (its view, its libraries)."""
    python = sandbox_pool.python_for_sandbox()
    mounts = [*python.read_only, *read_only]
    env = {**python.env(), **(env or {})}
    return sandbox_bwrap.bwrap_argv(
        sandbox_bwrap.bwrap_binary(), workdir, mounts, env, [python.executable, "-c", code], python.system
    )


@pytest.fixture
def workdir(state_root: Path):
    path = state_root / "bwrap-tests" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path)


def start(workdir: Path, code: str) -> sandbox_bwrap.BwrapProcess:
    return sandbox_bwrap.spawn(sandboxed_argv(workdir, code, env={"X": "1"}), workdir / "stderr.log")


def finish(process: sandbox_bwrap.BwrapProcess) -> int:
    return asyncio.run(process.wait())


def test_the_command_line_isolates_everything() -> None:
    argv = sandbox_bwrap.bwrap_argv("/usr/bin/bwrap", Path("/w"), ["/venv"], {"A": "b"}, [PYTHON, "x.py"])
    for flag in ("--unshare-all", "--die-with-parent", "--new-session", "--as-pid-1", "--clearenv"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("/venv") - 1 : argv.index("/venv") + 2] == ["--ro-bind", "/venv", "/venv"]
    assert argv[argv.index("--bind") : argv.index("--bind") + 5] == ["--bind", "/w", "/w", "--remount-ro", "/"]
    tail = argv[argv.index("--") + 1 :]
    assert tail[:5] == [PYTHON, "-S", "-s", "-P", "-c"] and tail[6:] == [PYTHON, "x.py"]
    binds = {argv[i + 1] for i, arg in enumerate(argv) if arg == "--ro-bind"}
    assert "/usr" not in binds and "/usr/share/doc" not in binds, "only what a run needs of the system is there"
    assert "/usr/bin" in binds or not Path("/usr/bin").is_dir()
    masks = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--tmpfs" and argv[i + 1].startswith("/usr")]
    assert masks == sorted(sandbox_bwrap.package_masks()[1::2]), "system Python package dirs are covered"
    assert all(argv.index(m) < argv.index("/venv") for m in masks), "covered first, so allowed paths bind on top"


def test_exit_status_is_the_commands(workdir: Path) -> None:
    assert finish(start(workdir, "import sys; sys.exit(3)")) == 3
    assert finish(start(workdir, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")) == 137


def test_cpu_time_includes_orphans_killed_at_the_end_and_nothing_survives(workdir: Path) -> None:
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        t = time.process_time()\n"
        "        while time.process_time() - t < 0.5: pass\n"
        "        open('burned', 'w').close()\n"
        "        time.sleep(600)\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "while not os.path.exists('burned'): time.sleep(0.01)\n"
        "print(len([p for p in os.listdir('/proc') if p.isdigit()]), flush=True)\n"
    )
    process = start(workdir, code)
    assert finish(process) == 0
    assert process.cpu_s >= 0.5, "the orphan's CPU time reaches us through the reaper"


def test_the_run_sees_only_its_own_processes_and_cannot_kill_its_reaper(workdir: Path) -> None:
    code = (
        "import os\n"
        "open('pids', 'w').write(' '.join(sorted(p for p in os.listdir('/proc') if p.isdigit())))\n"
        "os.kill(1, 9)\n"
    )
    assert finish(start(workdir, code)) == 0, "signals from inside never reach PID 1"
    assert (workdir / "pids").read_text() == "1 2"


def test_a_cancelled_wait_leaves_the_exit_status_intact(workdir: Path) -> None:
    errors: list[BaseException] = []
    hook, threading.excepthook = threading.excepthook, lambda args: errors.append(args.exc_value)
    try:
        process = start(workdir, "import time; time.sleep(0.5)")

        async def impatient_then_patient() -> int:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(process.wait(), 0.01)
            return await process.wait()

        assert asyncio.run(impatient_then_patient()) == 0
    finally:
        threading.excepthook = hook
    assert errors == []


def test_read_only_paths_under_tmp_stay_visible_and_tmp_stays_private(workdir: Path) -> None:
    """A checkout or state dir under the host's /tmp is bound read-only over the run's private /tmp; the rest of
    the host's /tmp stays out of sight, and a bind that would cover a private mount is refused."""
    shared = Path("/tmp") / f"bwrap-ro-{uuid.uuid4().hex[:8]}"
    shared.mkdir()
    secret = Path("/tmp") / f"bwrap-secret-{uuid.uuid4().hex[:8]}"
    try:
        (shared / "data.txt").write_text("visible")
        secret.write_text("host")
        code = (
            f"import os, pathlib\n"
            f"p = pathlib.Path({str(shared / 'data.txt')!r})\n"
            f"assert p.read_text() == 'visible'\n"
            f"try:\n    p.write_text('x')\n    raise SystemExit(4)\nexcept OSError:\n    pass\n"
            f"assert not os.path.exists({str(secret)!r})\n"
            f"open('/tmp/scratch', 'w').write('private tmp is writable')\n"
        )
        argv = sandboxed_argv(workdir, code, (str(shared),))
        assert finish(sandbox_bwrap.spawn(argv, workdir / "stderr.log")) == 0, (workdir / "stderr.log").read_text()
        assert (shared / "data.txt").read_text() == "visible"
    finally:
        shutil.rmtree(shared)
        secret.unlink(missing_ok=True)
    for covering in ("/", "/tmp", "/dev"):
        with pytest.raises(ValueError, match="would cover"):
            sandbox_bwrap.bwrap_argv("/usr/bin/bwrap", Path("/w"), [covering], {}, [PYTHON, "x.py"])
