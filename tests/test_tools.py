"""The agent's tools: pure helpers, and every tool on a real ledger with real sandboxed runs (tiny sizes)."""

from __future__ import annotations

import asyncio
import dataclasses
import http.server
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flyte
import pytest

import bundle
import parallelized_autoresearch as pa
import tools
from autoresearch import llm
from autoresearch.agent import arxiv
from autoresearch.lab.budget import Budget
from autoresearch.lab.loop import ResearchLoop
from autoresearch.lab.runner import ExperimentRunner, task_call
from autoresearch.ledger import ledger as ledger_mod
from autoresearch.ledger.verdicts import GateRule
from autoresearch.sandbox import backends
from autoresearch.sandbox import experiment as sandbox
from autoresearch_types import ExperimentConfig

BASELINE = (Path(__file__).resolve().parent.parent / "train.py").read_text()
FEED = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <entry><id>http://arxiv.org/abs/1608.03983v5</id><published>2016-08-13T00:00:00Z</published>
    <title>SGDR: Stochastic Gradient Descent with
      Warm Restarts</title><summary>Restart techniques are common.</summary>
    <author><name>Ilya Loshchilov</name></author><author><name>Frank Hutter</name></author></entry>
</feed>"""


def test_apply_patches_replaces_unique_snippets_and_explains_failures() -> None:
    out = tools.apply_patches("a = 1\nb = 2\n", [{"old": "b = 2", "new": "b = 3"}])
    assert out == "a = 1\nb = 3\n"
    with pytest.raises(ValueError, match="does not occur"):
        tools.apply_patches("a = 1\n", [{"old": "zzz", "new": "y"}])
    with pytest.raises(ValueError, match="occurs 2 times"):
        tools.apply_patches("x\nx\n", [{"old": "x", "new": "y"}])
    with pytest.raises(ValueError, match="non-empty list"):
        tools.apply_patches("x", [])
    with pytest.raises(ValueError, match="patch 0 must be"):
        tools.apply_patches("x", ["x->y"])


def test_parse_arxiv_reads_atom_entries() -> None:
    (paper,) = arxiv.parse_arxiv(FEED)
    assert paper["title"] == "SGDR: Stochastic Gradient Descent with Warm Restarts"
    assert paper["authors"] == ["Ilya Loshchilov", "Frank Hutter"] and paper["year"] == "2016"


@pytest.fixture
def feed_server() -> Iterator[str]:
    """A local HTTP server answering like the arXiv API."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = FEED.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/api/query"
    server.shutdown()


def test_search_arxiv_over_http_and_a_note_when_unreachable(feed_server: str) -> None:
    found = asyncio.run(arxiv.search_arxiv("cosine schedule", 3, url=feed_server))
    assert [p["year"] for p in found["papers"]] == ["2016"]
    offline = asyncio.run(arxiv.search_arxiv("cosine schedule", 3, url="http://127.0.0.1:1/api", timeout_s=2))
    assert offline["papers"] == [] and "not reachable" in offline["note"]


env = flyte.TaskEnvironment("tools_tests", depends_on=[bundle.experiment_env])
TINY = ExperimentConfig(
    n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=4, token_budget=3 * 4 * 32, vocab_size=512
)
THREE_SEEDS = GateRule(replicates=3)
"""These check the tools' mechanics at small counts; the default's own count is checked in test_cli."""


@env.task
async def exercise_tools(data: bundle.Bundle, key: str) -> str:
    """Call every tool the way the agent does, on a real ledger; return what each said (JSON)."""
    ledger = await ledger_mod.Ledger.open(key, TINY, rule=THREE_SEEDS)
    tool_obj = dataclasses.replace(pa.run_experiment, model=llm.BUILTIN)
    async with ExperimentRunner(task_call(tool_obj, ledger, data, backends.default_backend()), 2) as runner:
        budget = Budget(n_experiments=2, batch_size=2, concurrency=2, confirm_runs=2, max_runs=7)  # 3 seeds, 2 ideas
        loop = ResearchLoop(ledger, runner, budget)
        research = tools.ResearchTools(loop, profile={"dataset": "shakespeare"})
        return await exercise(ledger, research)


async def exercise(ledger: Any, research: tools.ResearchTools) -> str:
    """Every tool, called the way the agent calls them."""
    t = {f.__name__: f for f in research.as_tools()}
    owed = await research.loop.pending_jobs()
    out: dict[str, Any] = {"owed": [(j.title, j.seed, j.role) for j in owed]}
    await research.loop.run_jobs(owed)
    out["baseline"] = await t["get_baseline_train_code"]()
    out["info"] = await t["inspect_dataset"]()
    out["budget_key"] = await t["edit_train_code_batch"]([{"title": "More steps", "overrides": {"max_steps": 999}}])
    out["seed_key"] = await t["edit_train_code_batch"]([{"title": "Seed", "overrides": {"seed": 7}}])
    out["bad_patch"] = await t["edit_train_code_batch"]([{"title": "P", "patches": [{"old": "nope", "new": "x"}]}])
    out["both"] = await t["edit_train_code_batch"]([{"title": "Q", "patches": [], "train_py": BASELINE}])
    edits = [
        {"title": "LR up", "overrides": {"learning_rate": 0.006}, "hypothesis": "faster", "expected_effect": "-0.01"},
        {"title": "Wd zero", "overrides": {"weight_decay": 0.0}},
        {"title": "Third", "overrides": {"dropout": 0.1}},
    ]
    out["saved"] = await t["edit_train_code_batch"](edits)
    out["plan"] = await t["record_batch_plan"](["LR up", "Wd zero"], "sweep")
    out["hyps"] = await t["record_batch_hypotheses"]("", {"LR up": "converges faster"})
    out["get_plan"] = await t["get_batch_plan"]()
    out["unknown_run"] = await t["run_experiment_batch"](["LR up", "Nope"])
    out["ran"] = await t["run_experiment_batch"](["LR up", "Wd zero"])
    out["again"] = await t["run_experiment_batch"](["LR up"])
    out["evaluate"] = await t["evaluate_batch_results"]()
    out["compare"] = await t["compare_experiments"]("baseline", "LR up")
    out["read_unknown"] = await t["read_train_code"]("LR upp")
    out["promising"] = await t["get_promising_code"](1)
    out["board"] = await t["get_leaderboard"](5)
    out["history"] = await t["get_code_edit_history"]()
    out["bad_args"] = await t["get_leaderboard"](1, 2, 3)
    return json.dumps(out, default=str)


@env.task
async def exercise_async(data: bundle.Bundle, key: str) -> str:
    """submit_experiments returns at once; wait_for_results hands back runs as they finish, already recorded."""
    ledger = await ledger_mod.Ledger.open(key, TINY, rule=THREE_SEEDS)
    tool_obj = dataclasses.replace(pa.run_experiment, model=llm.BUILTIN)
    async with ExperimentRunner(task_call(tool_obj, ledger, data, backends.default_backend()), 2) as runner:
        budget = Budget(3, 3, 2, confirm_runs=2, max_runs=9)  # three ideas, room to confirm one
        research = tools.ResearchTools(ResearchLoop(ledger, runner, budget), {"dataset": "shakespeare"})
        t = {f.__name__: f for f in research.as_tools()}
        await research.loop.run_jobs(await research.loop.pending_jobs())
        edits = [{"title": f"Width {w}", "overrides": {"n_embd": w}} for w in (40, 48, 64)]
        await t["edit_train_code_batch"](edits)
        out: dict[str, Any] = {"submitted": await t["submit_experiments"]([e["title"] for e in edits])}
        out["again"] = await t["submit_experiments"](["Width 40"])
        first = await t["wait_for_results"](1)
        recorded = {r.title: len(r.runs) for r in await ledger.records()}
        out["first"], out["recorded"] = first, recorded
        out["rest"] = await t["wait_for_results"](10, 300)
        out["after"] = research.loop.slot_state()
        out["bad"] = await t["wait_for_results"]("many")
    return json.dumps(out, default=str)


@pytest.mark.timeout(300)
def test_submit_returns_at_once_and_wait_hands_back_recorded_results(state_root: Path) -> None:
    ledger_mod.init_local(project="tools-tests", log_level=logging.CRITICAL)
    data = flyte.run(bundle.build_bundle, dataset="shakespeare", num_shards=1, vocab_size=512, split_seed=0).outputs()[
        0
    ]
    run = flyte.with_runcontext(**ledger_mod.run_context_kwargs()).run(
        exercise_async, data=data, key=f"tools-async-{uuid.uuid4().hex[:8]}"
    )
    out = json.loads(run.outputs()[0])
    submitted = out["submitted"]
    assert "queued" in submitted, submitted
    assert submitted["queued"] == ["Width 40", "Width 48", "Width 64"]
    assert submitted["slots"]["running"] + submitted["slots"]["queued"] >= 2, "they run in the background"
    assert out["again"]["queued"] == [] and "already queued or running" in out["again"]["skipped"][0]["reason"]
    firsts = [r["title"] for r in out["first"]["results"]]
    assert firsts and all(out["recorded"][t] >= 1 for t in firsts), "a result is in the ledger when it is handed back"
    everything = firsts + [r["title"] for r in out["rest"]["results"]]
    spent = [s["title"] for s in out["first"]["skipped"] + out["rest"]["skipped"]]
    assert sorted(set(everything) | set(spent)) == ["Width 40", "Width 48", "Width 64"]
    assert len(everything) + len(spent) >= 3 and out["rest"]["budget"]["remaining"] == 0
    assert out["after"] == {"concurrency": 2, "running": 0, "queued": 0, "free": 2}
    assert "min_results must be a whole number" in out["bad"]["error"]


@pytest.mark.timeout(300)
def test_every_tool_on_a_real_ledger_with_real_runs(state_root: Path) -> None:
    ledger_mod.init_local(project="tools-tests", log_level=logging.CRITICAL)
    data = flyte.run(bundle.build_bundle, dataset="shakespeare", num_shards=1, vocab_size=512, split_seed=0).outputs()[
        0
    ]
    run = flyte.with_runcontext(**ledger_mod.run_context_kwargs()).run(
        exercise_tools, data=data, key=f"tools-{uuid.uuid4().hex[:8]}"
    )
    out = json.loads(run.outputs()[0])
    assert out["owed"] == [["baseline", 0, "replicate"], ["baseline", 1, "replicate"], ["baseline", 2, "replicate"]]
    assert out["baseline"]["train_py"] == BASELINE and out["baseline"]["standing"]["n_seeds"] == 3
    assert out["info"]["sigma"] is not None and "Welch" in out["info"]["gate"] and "seed" in out["info"]["fixed"]
    for refused in ("budget_key", "seed_key"):
        (rejected,) = out[refused]["rejected"]
        assert "belongs to the run" in rejected["error"] and not out[refused]["saved"]
    assert "does not occur" in out["bad_patch"]["rejected"][0]["error"] and not out["bad_patch"]["saved"]
    assert "not both" in out["both"]["rejected"][0]["error"]
    assert [s["title"] for s in out["saved"]["saved"]] == ["LR up", "Wd zero"]
    assert out["saved"]["rejected"] == [{"title": "Third", "error": "over batch_size; plan it later"}]
    assert out["get_plan"]["hypotheses"]["LR up"]["hypothesis"] == "converges faster"
    assert out["get_plan"]["rationale"] == "sweep" and out["get_plan"]["titles"] == ["LR up", "Wd zero"]
    assert "Nope" in out["unknown_run"]["error"]
    screens = [r for r in out["ran"]["results"] if r["role"] == "screen"]
    assert {r["title"]: r["outcome"] for r in screens} == {"LR up": "success", "Wd zero": "success"}
    assert all(r["seed"] == 0 for r in screens), "the first run of every experiment is on the run's seed"
    assert out["ran"]["budget"]["remaining"] == 0 and "final summary" in out["ran"]["budget"]["note"]
    labels = {t: v["verdict"] for t, v in out["ran"]["verdicts"].items()}
    assert set(labels) == {"LR up", "Wd zero"}
    assert set(labels.values()) <= {"unconfirmed", "within_noise", "regression"}
    owed_confirms = [s for s in out["ran"]["skipped"] if "budget" in s["reason"]]
    ran_confirms = [r for r in out["ran"]["results"] if r["role"] == "confirm"]
    assert len(ran_confirms) <= 2, "the run budget (7) holds the baseline's 3 seeds, 2 screens and one confirmation"
    assert len(ran_confirms) + len(owed_confirms) in (0, 2, 4), "a confirmation the run budget cannot hold is skipped"
    assert out["info"]["mde"] > 0 and "expected false confirmations" in out["info"]["campaign"]
    assert out["again"]["results"] == [] and "already ran" in out["again"]["skipped"][0]["reason"]
    verdicts = {e["title"]: e for e in out["evaluate"]["experiments"]}
    assert set(verdicts) == {"LR up", "Wd zero"} and verdicts["LR up"]["parent"] == "baseline"
    reruns = {t: sum(r["title"] == t for r in ran_confirms) for t in verdicts}
    assert all(v["verdict"] == labels[t] and v["n_seeds"] == 1 + reruns[t] for t, v in verdicts.items())
    if "confirmed" not in labels.values():
        assert out["evaluate"]["best"]["title"] == "baseline", "nothing is confirmed without its re-runs"
        assert "seed noise" in out["evaluate"]["advice"]
    assert out["compare"]["delta"] is not None and out["compare"]["diff"] == ""
    assert "Close titles" in out["read_unknown"]["error"] and "'LR up'" in out["read_unknown"]["error"]
    best = out["board"]["best"]
    assert best["incumbent"] and best["title"] in ("baseline", *[t for t, lab in labels.items() if lab == "confirmed"])
    assert out["promising"]["candidates"][0]["title"] == best["title"] and out["promising"]["candidates"][0]["train_py"]
    assert [e["title"] for e in out["history"]["experiments"]] == ["baseline", "LR up", "Wd zero"]
    assert "bad arguments for get_leaderboard" in out["bad_args"]["error"]


def test_handled_experiment_failures_log_no_traceback() -> None:
    import sys

    from autoresearch.session import activity as monitor
    from autoresearch_types import ExperimentResult

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            info = sys.exc_info()
        return logging.LogRecord("flyte", logging.ERROR, __file__, 1, "Task failed with error", None, info)

    keep = monitor.HandledFailureFilter()
    assert not keep.filter(record(sandbox.ExperimentCrash(ExperimentResult(outcome="crash", message="boom"))))
    assert keep.filter(record(ValueError("a real bug still shows its traceback")))
