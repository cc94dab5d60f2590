"""The retired split-process scoring, rebuilt from git history for one purpose: timing it beside the graph scorer.

Until `LEGACY_COMMIT`, a score came from two sandboxed model servers (`harness.py serve serve|check`)
that imported the edited `train.py`, loaded its checkpoint and answered token rows through files, while
the trusted scorer (`scorer.py` + `exchange.py`) mixed in blind probes. That code is gone from the
product (the edited code computed the logits it was scored on). `bench_sandbox.py` still needs its
timing, so this module takes those three files from `git show LEGACY_COMMIT:...`, stages the old
harness in fresh `bwrap` work dirs and drives the old scorer exactly as the old `experiment._evaluate`
did. Benchmark use only; bubblewrap only.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

import prepare
from autoresearch.sandbox import bwrap as sandbox_bwrap
from autoresearch.sandbox import pool as sandbox_pool
from autoresearch.sandbox import trust
from autoresearch.sandbox.processes import marked_pids, process_cpu_s, reap
from autoresearch_types import ExperimentConfig

REPO = Path(__file__).resolve().parent.parent
LEGACY_COMMIT = "39aa1a8"
"""The last commit whose scoring ran the edited code in two sandboxed model servers."""
LEGACY_FILES = {
    "harness.py": "autoresearch/sandbox/harness.py",
    "legacy_scorer.py": "autoresearch/sandbox/scorer.py",
    "legacy_exchange.py": "autoresearch/sandbox/exchange.py",
}
ROLES = ("serve", "check")
READY_S = 120.0


def legacy_dir() -> Path:
    """The old harness, scorer and exchange as files under the state dir (fetched from git once)."""
    root = prepare.state_dir() / "bench-legacy" / LEGACY_COMMIT
    if not all((root / name).is_file() for name in LEGACY_FILES):
        root.mkdir(parents=True, exist_ok=True)
        for name, path in LEGACY_FILES.items():
            text = subprocess.run(
                ["git", "-C", str(REPO), "show", f"{LEGACY_COMMIT}:{path}"], capture_output=True, text=True, check=True
            ).stdout
            text = text.replace("from autoresearch.sandbox.exchange import", "from legacy_exchange import")
            (root / name).write_text(text)
    return root


def legacy_modules() -> tuple[Any, Any]:
    """The old scorer and exchange modules, imported from `legacy_dir()`."""
    root = str(legacy_dir())
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("legacy_scorer"), importlib.import_module("legacy_exchange")


class Server:
    """One old model server (`harness.py serve <role>`) in its own bwrap sandbox, warm and waiting for its job."""

    def __init__(self, role: str, memory_mb: int, lifetime_s: float) -> None:
        binary = sandbox_bwrap.bwrap_binary()
        if binary is None:
            raise RuntimeError("the split-process comparison needs bubblewrap")
        self.role = role
        self.workdir = sandbox_pool.runs_root() / f"legacy-{role}-{uuid.uuid4().hex[:12]}"
        (self.workdir / "out").mkdir(parents=True)
        shutil.copyfile(legacy_dir() / "harness.py", self.workdir / "harness.py")
        for name in ("prepare.py", "autoresearch_types.py"):  # the staged runtime, as a sandbox gets it today
            shutil.copyfile(trust.STAGED[name], self.workdir / name)
        python = sandbox_pool.python_for_sandbox()
        self.token = uuid.uuid4().hex
        env = sandbox_pool.sandbox_env(1, self.workdir, self.token, python)
        cpu_s = str(math.ceil(lifetime_s))
        command = [python.executable, "harness.py", "serve", role, f"{lifetime_s:.0f}", str(memory_mb), cpu_s]
        argv = sandbox_bwrap.bwrap_argv(binary, self.workdir, list(python.read_only), env, command, python.system)
        self.proc = sandbox_bwrap.spawn(argv, self.workdir / "stderr.log")

    async def ready(self) -> None:
        give_up = time.monotonic() + READY_S
        while not (self.workdir / "ready").exists():
            if self.proc.returncode is not None or time.monotonic() > give_up:
                raise RuntimeError(f"legacy {self.role} server did not start: {self.stderr()}")
            await asyncio.sleep(0.02)

    def stage(self, checkpoint: Path, config: ExperimentConfig, memory_mb: int) -> None:
        """The checkpoint and the source first, the job last (what the old experiment did)."""
        shutil.copyfile(checkpoint, self.workdir / "checkpoint.pt")
        (self.workdir / "train.py").write_text((REPO / "train.py").read_text())
        job = {"phase": self.role, "config": config.to_dict(), "threads": 1, "memory_mb": memory_mb,
               "cpu_seconds": 600, "wait_s": 300.0}  # fmt: skip
        tmp = self.workdir / ".job.json.part"
        tmp.write_text(json.dumps(job))
        os.replace(tmp, self.workdir / "job.json")

    def cpu_s(self) -> float:
        """CPU seconds the server's processes have used so far."""
        return sum(process_cpu_s(pid)[0] for pid in marked_pids(self.token, self.workdir))

    def stderr(self) -> str:
        path = self.workdir / "stderr.log"
        return path.read_text()[-800:] if path.exists() else ""

    def close(self) -> None:
        self.proc.kill()
        reap(self.token, self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)


async def split_score(checkpoint: Path, windows: np.ndarray, table: np.ndarray, config: ExperimentConfig,
                      memory_mb: int = 4096) -> tuple[float, float, float]:  # fmt: skip
    """(seconds, CPU seconds, val_bpb) of the old split-process scoring of `checkpoint`, timed as the old
    `eval_seconds`: from handing the checkpoint to two warm servers until every row is scored and every probe
    compared. The CPU counts both servers and this process (the old scorer's threads) over that time."""
    scorer, exchange = legacy_modules()
    rows = max(1, prepare.EVAL_BLOCK_ELEMENTS // (config.seq_len * config.vocab_size))
    plan = scorer.plan_scoring(windows, config.vocab_size, rows, secrets.SystemRandom())
    servers = {role: Server(role, memory_mb, 600.0) for role in ROLES}
    try:
        await asyncio.gather(*(s.ready() for s in servers.values()))
        cpu_before = time.process_time() + sum(s.cpu_s() for s in servers.values())
        start = time.perf_counter()
        exchanges = {}
        for role, server in servers.items():
            server.stage(checkpoint, config, memory_mb)
            alive = (lambda proc: lambda: proc.returncode is None)(server.proc)
            exchanges[role] = exchange.Exchange(role, server.workdir, alive, time.monotonic() + 300.0)
        try:
            report = await asyncio.to_thread(scorer.score, plan, windows, table, exchanges["serve"], exchanges["check"])
        finally:
            seconds = time.perf_counter() - start
            cpu = time.process_time() + sum(s.cpu_s() for s in servers.values()) - cpu_before
            for ex in exchanges.values():
                ex.stop()
                ex.close()
    finally:
        for server in servers.values():
            server.close()
    if report.error is not None or not report.metrics.get("probe_ok") or not report.metrics.get("consistent"):
        raise RuntimeError(f"legacy scoring failed: {report.error} {report.metrics}")
    return seconds, cpu, float(report.metrics["val_bpb"])
