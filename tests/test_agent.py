"""The research agent end to end in Flyte local mode: real bundle, sandbox, ledger and Agent, tiny sizes.

The built-in planner drives the main scenario; a scripted litellm provider (the one mocked edge: a
hosted LLM) drives the recovery scenario through the real `LLMClient`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import flyte
import litellm
import pytest

import parallelized_autoresearch as pa
import ui
from autoresearch.ledger import ledger as ledger_mod
from autoresearch_types import AutoresearchOutput
from benchmarks.common import side_answer

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "agent-tests"
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "batch_size": 4, "eval_tokens": 2048}
TINY["seed"] = random.randint(1, 2**30)
"""A fresh seed per session: Flyte's local cache outlives a session, and these runs must really train."""


@pytest.fixture(scope="module", autouse=True)
def local_flyte(state_root: Path) -> None:
    ledger_mod.init_local(project=PROJECT, log_level=logging.CRITICAL)


def run_driver(**overrides: Any) -> AutoresearchOutput:
    """One research run of the real driver task, in local mode, on the tiny bundle."""
    inputs: dict[str, Any] = dict(
        n_experiments=4,
        batch_size=2,
        concurrency=2,
        max_turns=8,
        dataset="shakespeare",
        num_shards=1,
        vocab_size=512,
        max_steps=4,
        time_budget=20.0,
        base_config=TINY,
        replicates=3,  # these check mechanics at small counts; the default's own count is checked in test_cli
    )
    inputs.update(overrides)
    run = flyte.with_runcontext(**ledger_mod.run_context_kwargs()).run(pa.parallelized_autoresearch, **inputs)
    return run.outputs()[0]


def store_dir(state_root: Path, key: str) -> Path:
    """The keyed store's files on disk (the persisted truth the output must match)."""
    (found,) = (state_root / "flyte" / "raw" / "agents" / "memory-store").glob(f"v0/*/{PROJECT}/*/{key}")
    return found


def stored(state_root: Path, key: str) -> dict[str, dict[str, Any]]:
    """title -> {"spec", "train_py", "runs": {seed: run record}} read straight from the store's files."""
    out = {}
    for spec_path in (store_dir(state_root, key) / "experiments").glob("*/spec.json"):
        spec = json.loads(spec_path.read_text())
        runs = {}
        for run_path in (spec_path.parent / "runs").glob("seed-*.json"):
            run = json.loads(run_path.read_text())
            runs[run["seed"]] = run
        out[spec["title"]] = {"spec": spec, "train_py": (spec_path.parent / "train.py").read_text(), "runs": runs}
    return out


def run_count(records: dict[str, dict[str, Any]]) -> int:
    return sum(len(r["runs"]) for r in records.values())


@pytest.mark.timeout(900)
def test_builtin_planner_replicates_batches_then_resumes_within_the_total_budget(state_root: Path) -> None:
    key = f"agent-e2e-{uuid.uuid4().hex[:8]}"
    out = run_driver(memory_key=key, n_experiments=4, max_runs=8)
    assert out.error == "", out.error
    assert out.totals["warm_starts"] > 0, "later experiments should start on warm sandboxed interpreters"
    assert 0 < out.totals["slot_utilization"] <= 1
    records = stored(state_root, key)
    seed = TINY["seed"]
    assert set(records["baseline"]["runs"]) == {seed, seed + 1, seed + 2}, "the baseline runs on 3 seeds"
    assert all(r["role"] == "replicate" for r in records["baseline"]["runs"].values())
    assert run_count(records) <= 8, "every run, replicates and confirmations included, counts against --max-runs"
    assert len(records) - 1 <= 4, "--n-experiments counts ideas beyond the baseline"
    assert out.totals["max_runs"] == 8 and out.totals["n_experiments"] == 4 and out.totals["ideas_in_ledger"] <= 4
    assert out.totals["runs_in_ledger"] == run_count(records) == out.totals["runs_this_session"]
    assert out.totals["sigma"] is not None and "seed noise: sigma = " in out.directive
    agent = {t: r for t, r in records.items() if t != "baseline"}
    assert {r["spec"]["batch_id"] for r in agent.values()} >= {"batch-001"}
    for title, rec in agent.items():
        screen = [r for r in rec["runs"].values() if r["role"] == "screen"]
        assert [r["seed"] for r in screen] == [seed], f"{title} is screened on the run's seed"
        confirm = sorted(r["seed"] for r in rec["runs"].values() if r["role"] == "confirm")
        assert set(confirm) <= {seed + 1, seed + 2}, "confirmations use the baseline's other seeds"
    rows = {r["title"]: r for r in out.leaderboard}
    for title, row in rows.items():
        assert row["n_seeds"] == sum(1 for r in records[title]["runs"].values() if r["result"]["outcome"] == "success")
        if row["label"] == "confirmed":
            assert row["n_seeds"] == 3, "a confirmed gain has its re-runs"
    assert out.best["incumbent"] and out.best_train_py == records[out.best["title"]]["train_py"]
    report = Path(out.report_path)
    assert report.exists() and all(tab in report.read_text() for tab in ui.REPORT_TABS)
    assert "Prior research" in out.directive and "None yet" in out.directive

    # A crash after the last run finished but before the ledger saved it: drop that run's file. (A run is judged
    # where it arrives in the ledger, so the last one comes back at the same place and every verdict must match.)
    lost_title, lost_seed = max(
        ((t, s) for t, r in agent.items() for s in r["runs"]), key=lambda ts: agent[ts[0]]["runs"][ts[1]]["seq"]
    )
    lost_path = (
        store_dir(state_root, key)
        / "experiments"
        / agent[lost_title]["spec"]["slug"]
        / "runs"
        / f"seed-{lost_seed}.json"
    )
    lost_result = json.loads(lost_path.read_text())["result"]
    lost_path.unlink()
    before = {t: r["runs"] for t, r in stored(state_root, key).items()}

    ideas = sum(1 for t, r in records.items() if t != "baseline" and r["runs"])
    same = run_driver(memory_key=key, n_experiments=ideas, max_runs=run_count(records))
    assert same.error == "", same.error
    after = stored(state_root, key)
    assert after[lost_title]["runs"][lost_seed]["result"] == lost_result, "recovered from Flyte's cache, not retrained"
    assert same.totals["runs_this_session"] == 1, "only the lost run is owed: the total budget is already spent"
    assert run_count(after) == run_count(records)
    assert same.totals["sigma"] == out.totals["sigma"], "resume keeps the noise floor"
    assert [(r["title"], r["label"]) for r in same.leaderboard] == [(r["title"], r["label"]) for r in out.leaderboard]

    again = run_driver(memory_key=key, n_experiments=ideas + 3, max_runs=run_count(records) + 3)
    assert again.error == "", again.error
    assert "Prior research under this memory key" in again.directive
    final = stored(state_root, key)
    for title, runs in before.items():
        for s, run in runs.items():
            assert final[title]["runs"][s] == run, f"{title} seed {s} was rerun or rewritten on resume"
    assert run_count(final) <= run_count(records) + 3
    assert again.totals["runs_this_session"] == run_count(final) - run_count(records) > 0


class ScriptedLLM(litellm.CustomLLM):
    """A stand-in hosted LLM: answers agent turns from a script and sizing questions with a fixed size."""

    def __init__(self, replies: list[str]):
        super().__init__()
        self.replies = list(replies)
        self.turns: list[list[dict[str, Any]]] = []
        self.sizing_calls = 0
        self.checks = 0

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
        side = side_answer(messages, memory="2Gi")
        self.checks += side is not None and side[0] == "check"
        self.sizing_calls += side is not None and side[0] == "sizing"
        if side:
            text = side[1]
        else:
            self.turns.append(list(messages))
            text = self.replies.pop(0) if self.replies else "Stopping: the script is over."
        return litellm.mock_completion(model="openai/scripted", messages=messages, mock_response=text)


BROKEN_PATCH = [{"old": "    elapsed = time.perf_counter() - start\n", "new": "    raise RuntimeError('boom')\n"}]
SCRIPT = [
    "Let me start.\n```python\nx = = 1\n```",
    "```python\nfrobnicate(3)\n```",
    "```python\nedit_train_code_batch('not a list of edits')\n```",
    "```python\n"
    "saved = edit_train_code_batch(["
    "{'title': 'LR up', 'overrides': {'learning_rate': 0.006}, 'hypothesis': 'faster'},"
    "{'title': 'LR up again', 'overrides': {'learning_rate': 0.006}},"
    f"{{'title': 'Broken', 'patches': {BROKEN_PATCH!r}, 'change_summary': 'raises'}}])\n"
    "titles = [s['title'] for s in saved['saved']]\n"
    "ran = run_experiment_batch(titles)\n"
    "{'saved': saved, 'ran': ran}\n```",
    "All done: 'LR up' is the best experiment.",
]


@pytest.mark.timeout(600)
def test_scripted_llm_recovers_from_bad_plans_duplicates_and_a_failing_experiment(state_root: Path) -> None:
    handler = ScriptedLLM(SCRIPT)
    litellm.custom_provider_map = [{"provider": "scripted", "custom_handler": handler}]
    key = f"agent-scripted-{uuid.uuid4().hex[:8]}"
    out = run_driver(memory_key=key, model="scripted/agent", n_experiments=6, batch_size=3)
    assert out.error == "", out.error
    trusted, agent_text = out.summary.split("\n\nThe agent's summary: ")
    assert agent_text.startswith("All done"), out.summary
    assert trusted.startswith(("No edit beat seed noise", "Best: 'LR up'")), "the trusted verdict comes first"
    observations = [m["content"] for m in handler.turns[-1] if m["role"] == "user"]
    assert "raised an error" in observations[1] and "frobnicate" in observations[2]
    assert '"error"' in observations[3] and "edits must be" in observations[3]
    batch = json.loads(observations[4].removeprefix("Execution result:"))
    rejected = batch["saved"]["rejected"]
    assert [r["title"] for r in rejected] == ["LR up again"] and "duplicate of 'LR up'" in rejected[0]["error"]
    outcomes = {r["title"]: r["outcome"] for r in batch["ran"]["results"]}
    assert outcomes == {"LR up": "success", "Broken": "crash"}
    records = stored(state_root, key)
    assert "LR up again" not in records
    assert [r["result"]["outcome"] for r in records["Broken"]["runs"].values()] == ["crash"]
    assert 1 <= handler.sizing_calls <= out.totals["runs_this_session"], (
        "the hosted model sizes each run Flyte's cache will not answer ('Broken' at least; runs the builtin test "
        "already made are cache hits)"
    )
    assert handler.checks == 1, "one small call checks the model answers before any work"
    assert out.totals["llm"]["calls"] == len(SCRIPT) + handler.sizing_calls + handler.checks


def test_cluster_readiness_every_task_serialises_without_a_backend(tmp_path: Path) -> None:
    config = tmp_path / "unreachable.yaml"
    config.write_text(
        "admin:\n  endpoint: dns:///127.0.0.1:1\n  insecure: true\nimage:\n  builder: local\n"
        "task:\n  org: testorg\n  project: autoresearch\n  domain: development\n"
    )
    flyte_cli = Path(sys.executable).parent / "flyte"
    cmd = [str(flyte_cli), "--config", str(config), "deploy", "--dry-run", "--image", "ghcr.io/example/ar:dev"]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "400", "TERM": "dumb"}
    proc = subprocess.run(
        [*cmd, "--all", "parallelized_autoresearch.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    for task in (
        "autoresearch_agent.parallelized_autoresearch",
        "autoresearch_experiment.run_experiment",
        "autoresearch_bundle.build_bundle",
        "autoresearch_bundle.profile_bundle",
    ):
        assert task in output, f"{task} missing from the dry-run deployment:\n{output[-3000:]}"
