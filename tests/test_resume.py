"""A session killed (kill -9) with experiments in flight: the resume runs them, within the key's budget.

The driver runs as the README's CLI in a child process, so the kill is real: no handler, no cleanup, sandboxes
ending with their parent. The store's files are the truth both sessions share.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from autoresearch.sandbox import pool as sandbox_pool
from autoresearch.sandbox import workdirs

ROOT = Path(__file__).resolve().parent.parent
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "batch_size": 4, "eval_tokens": 2048}
N_RUNS = 9
N_IDEAS = 6


def cli(key: str, state_root: Path, seed: int) -> list[str]:
    """The README's command at tiny sizes; the same flags on both sessions (a resume refuses different ones)."""
    config = json.dumps({**TINY, "seed": seed})
    return [
        sys.executable,
        str(ROOT / "parallelized_autoresearch.py"),
        *("--memory-key", key, "--n-experiments", str(N_IDEAS), "--max-runs", str(N_RUNS), "--batch-size", "2"),
        *("--replicates", "3"),  # a mechanics check at small counts; test_cli checks the default's own count
        "--concurrency",
        "2",
        *("--dataset", "shakespeare", "--vocab-size", "512", "--max-steps", "60", "--time-budget", "60"),
        *("--base-config", config, "--state-dir", str(state_root), "--scheduling", "async"),
    ]


def store_of(state_root: Path, key: str) -> Path | None:
    """The key's store on disk, once it exists."""
    found = list((state_root / "flyte" / "raw" / "agents" / "memory-store").glob(f"v0/*/*/*/{key}"))
    return found[0] if found else None


def experiments(store: Path | None) -> dict[str, list[dict[str, Any]]]:
    """title -> its run records, read straight from the store's files (unreadable mid-write files are skipped)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for spec_path in (store / "experiments").glob("*/spec.json") if store else []:
        try:
            title = json.loads(spec_path.read_text())["title"]
            out[title] = [json.loads(p.read_text()) for p in (spec_path.parent / "runs").glob("seed-*.json")]
        except (OSError, ValueError, KeyError):
            continue
    return out


def in_flight(state_root: Path, key: str) -> list[str]:
    """Experiments saved but without a run yet, once the baseline has its seeds (so the agent is planning)."""
    found = experiments(store_of(state_root, key))
    if len(found.get("baseline", [])) < 3:
        return []
    return sorted(t for t, runs in found.items() if t != "baseline" and not runs)


@pytest.mark.timeout(900)
def test_a_session_killed_with_experiments_in_flight_resumes_them(state_root: Path, tmp_path: Path) -> None:
    key = f"inflight-{uuid.uuid4().hex[:8]}"
    seed = random.randint(1, 2**30)  # the local cache outlives sessions: these runs must really train
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(cli(key, state_root, seed), stdout=log, stderr=subprocess.STDOUT, env=env)
        tag = workdirs.owner_tag(first.pid)
        give_up, flying = time.monotonic() + 600, []
        while first.poll() is None and time.monotonic() < give_up and not flying:
            flying = in_flight(state_root, key)
            time.sleep(0.05)  # polling the store for the state we need; no timing is assumed
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    assert flying, "the first session never had an experiment in flight:\n" + (tmp_path / "first.log").read_text()
    before = experiments(store_of(state_root, key))
    done_before = sum(len(r) for r in before.values())
    assert done_before < N_RUNS, "killed before the budget was spent"

    second = subprocess.run(cli(key, state_root, seed), capture_output=True, text=True, env=env, timeout=800)
    assert second.returncode == 0, second.stdout + second.stderr
    after = experiments(store_of(state_root, key))
    owed_line = next(line for line in second.stdout.splitlines() if line.startswith("running ") and "owed" in line)
    for title in flying:
        if before.get(title) == []:  # its run did not land between our look and the kill
            assert title in owed_line, (title, owed_line)
        assert after[title], f"{title!r} was in flight at the kill and never ran after the resume"
        assert all(run["result"]["outcome"] for run in after[title])
    total = sum(len(r) for r in after.values())
    assert N_RUNS - 2 <= total <= N_RUNS, f"the key's budget is {N_RUNS} runs, across both sessions; {total} recorded"
    for title, runs in before.items():
        seeds = {r["seed"]: r["seq"] for r in runs}
        assert {r["seed"]: r["seq"] for r in after[title] if r["seed"] in seeds} == seeds, "finished runs are kept"
    assert not [p for p in sandbox_pool.runs_root().iterdir() if tag in p.name], "the killed session's dirs are gone"
