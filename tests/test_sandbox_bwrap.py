"""Our own bubblewrap launcher: exit status, whole-tree CPU time, PID namespace, and a wait that survives cancellation."""

from __future__ import annotations

import asyncio
import shutil
import threading
import uuid
from pathlib import Path

import pytest

import sandbox_bwrap

pytestmark = pytest.mark.skipif(not sandbox_bwrap.works(), reason="bwrap cannot create its namespaces here")
PYTHON = "/usr/bin/python3"


@pytest.fixture
def workdir(state_root: Path):
    path = state_root / "bwrap-tests" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path)


def start(workdir: Path, code: str) -> sandbox_bwrap.BwrapProcess:
    argv = sandbox_bwrap.bwrap_argv(sandbox_bwrap.bwrap_binary(), workdir, [], {"X": "1"}, [PYTHON, "-c", code])
    return sandbox_bwrap.spawn(argv, workdir / "stderr.log")


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
    assert tail[:4] == [PYTHON, "-I", "-S", "-c"] and tail[5:] == [PYTHON, "x.py"]


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
