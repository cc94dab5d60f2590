"""The upstream tutorial's calls, as written, on a real ledger (runs stubbed: this checks the API, not training)."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import flyte
import pytest

import tools
from autoresearch.agent import tutorial as tools_tutorial
from autoresearch.lab.budget import Budget
from autoresearch.lab.loop import ResearchLoop
from autoresearch.lab.runner import ExperimentRunner, Job
from autoresearch.ledger import ledger as ledger_mod
from autoresearch_types import ExperimentConfig, ExperimentResult

env = flyte.TaskEnvironment("tutorial_tools_tests")
SCORES = {"baseline": 3.0, "higher-lr": 2.4, "deeper-2L": 3.3, "lower-lr": 3.05, "wider": 2.95}


async def fake_execute(job: Job, extras: dict[str, Any]) -> ExperimentResult:
    """A run that takes no time: val_bpb by title, a little seed noise."""
    noise = (job.seed % 3 - 1) * 0.01
    return ExperimentResult(
        outcome="success", val_bpb=SCORES[job.title] + noise, seed=job.seed, steps=3, planned_steps=3
    )


@env.task
async def tutorial_calls(key: str) -> str:
    """The tutorial's documented sequence, verbatim, then its single-edit and flyte_map-style calls."""
    ledger = await ledger_mod.Ledger.open(key, ExperimentConfig(vocab_size=512))
    runner = ExperimentRunner(fake_execute, 2, warm_pool=False)
    loop = ResearchLoop(ledger, runner, Budget(n_experiments=16, batch_size=3, concurrency=2))
    research = tools.ResearchTools(loop, profile={"dataset": "shakespeare", "vocab_size": 512})
    t = {f.__name__: f for f in research.as_tools()}
    await research.loop.run_jobs(await research.loop.pending_jobs())
    out: dict[str, Any] = {"names": sorted(t)}
    plan = [{"title": "higher-lr", "hypothesis": "faster"}, {"title": "deeper-2L", "hypothesis": "capacity"}]
    out["plan"] = await t["record_batch_plan"](batch_id="batch-1-sweep", experiments=plan)
    edits = [
        {"title": "higher-lr", "config_overrides": {"learning_rate": 0.003, "max_steps": 9}, "change_summary": "2x LR"},
        {"title": "deeper-2L", "config_overrides": {"n_layer": 3}, "change_summary": "one more layer"},
    ]
    out["saved"] = await t["edit_train_code_batch"](edits=edits, memory_key="parallelized-autoresearch")
    hyps = [{"title": e["title"], "hypothesis": "h", "expected_effect": "lower val_bpb"} for e in edits]
    out["hyps"] = await t["record_batch_hypotheses"](experiments=hyps)
    r = await t["run_experiment_batch"](titles=out["saved"]["titles"], concurrency=3, batch_id="batch-1-sweep")
    out["ran"] = r
    out["evaluated"] = await t["evaluate_batch_results"](results=r["results"], batch_id="batch-1-sweep")
    out["positional"] = await t["evaluate_batch_results"](r["results"], batch_id="batch-1-sweep")
    out["get_plan"] = await t["get_batch_plan"]("batch-1-sweep")
    out["hypothesis"] = await t["record_hypothesis"]("lower-lr", "the step is too big", "-0.01")
    out["single"] = await t["edit_train_code"](title="lower-lr", config_overrides={"learning_rate": 0.00075})
    out["mapped"] = [await t["run_experiment"]("lower-lr", 45, "parallelized-autoresearch")]
    out["mapped_eval"] = await t["evaluate_batch_results"](out["mapped"], batch_id="batch-2")
    out["seed"] = await t["get_seed_train_code"]()
    out["compare"] = await t["compare_experiments"](title_a="higher-lr", title_b="baseline")
    out["board"] = await t["get_leaderboard"](memory_key="parallelized-autoresearch")
    out["unknown_kw"] = await t["run_experiment_batch"](titles=["higher-lr"], workers=4)
    out["late_plan"] = await t["get_batch_plan"](ledger.memory.list_paths("batches")[-1].split("/")[-1][:-5])
    await research.runner.aclose()
    return json.dumps(out, default=str)


@pytest.mark.timeout(120)
def test_the_tutorials_documented_calls_record_and_rank_their_experiments(state_root: Any) -> None:
    ledger_mod.init_local(project="tutorial-tools-tests", log_level=logging.CRITICAL)
    run = flyte.with_runcontext(**ledger_mod.run_context_kwargs()).run(
        tutorial_calls, key=f"tut-{uuid.uuid4().hex[:8]}"
    )
    out = json.loads(run.outputs()[0])
    assert set(tools_tutorial.TUTORIAL_TOOLS) <= set(out["names"])
    assert out["plan"]["status"] == "planned" and "attached to its batch" in out["plan"]["note"]
    saved = out["saved"]
    assert saved["titles"] == ["higher-lr", "deeper-2L"] and saved["count"] == 2 and saved["errors"] == []
    assert saved["edits"][0]["config_overrides"] == {"learning_rate": 0.003}
    assert "max_steps belong to the run" in saved["note"] and "memory_key is the run's own" in saved["note"]
    assert out["hyps"]["recorded"] == 2
    ran = out["ran"]
    assert {r["title"] for r in ran["results"] if r["role"] == "screen"} == {"higher-lr", "deeper-2L"}
    assert all(r["success"] for r in ran["results"]) and ran["concurrency"] == 2 and "was not applied" in ran["note"]
    evaluated = out["evaluated"]
    assert [r["title"] for r in evaluated["ranked"]] == ["higher-lr", "deeper-2L"], "ranked by val_bpb"
    assert evaluated["batch_best"]["title"] == "higher-lr" and evaluated["n_success"] == 2
    assert evaluated["best"]["title"] == "higher-lr" and evaluated["ranked"][0]["verdict"] == "confirmed"
    assert out["positional"]["ranked"] == evaluated["ranked"]
    plan = out["get_plan"]
    assert plan["found"] and plan["titles"] == ["higher-lr", "deeper-2L"] and plan["batch_id"] == saved["batch_id"]
    assert plan["hypotheses"]["higher-lr"]["expected_effect"] == "lower val_bpb"
    assert "not saved yet" in out["hypothesis"]["note"]
    assert out["single"]["saved"] is True and out["single"]["title"] == "lower-lr"
    (mapped,) = out["mapped"]
    assert mapped["title"] == "lower-lr" and mapped["success"] and mapped["val_bpb"] == pytest.approx(3.05 - 0.01)
    assert [r["title"] for r in out["mapped_eval"]["ranked"]] == ["lower-lr"]
    assert out["late_plan"]["hypotheses"]["lower-lr"]["hypothesis"] == "the step is too big", "attached when saved"
    assert out["seed"]["title"] == "higher-lr" and out["seed"]["lines"] > 10
    assert out["compare"]["delta_val_bpb"] < 0, "a minus b: higher-lr is better than the baseline"
    assert out["board"]["count"] == out["board"]["total"] >= 4 and "memory_key" in out["board"]["note"]
    assert "bad arguments for run_experiment_batch" in out["unknown_kw"]["error"]
    assert "concurrency" in out["unknown_kw"]["error"] and "batch_id" in out["unknown_kw"]["error"], "the signature"


def test_a_tutorial_edit_becomes_this_projects_edit() -> None:
    edit, notes = tools_tutorial.from_tutorial_edit(
        {"title": "t", "train_py": "", "config_overrides": {"device_batch_size": 16, "time_budget_sec": 45}}
    )
    assert edit == {"title": "t", "overrides": {"batch_size": 16}} and "time_budget_sec" in notes[0]
    code = "def run_training(config):\n    return 1.0\n"
    assert tools_tutorial.RUN_TRAINING_NOTE in tools_tutorial.from_tutorial_edit({"title": "t", "train_py": code})[1]


def test_every_tool_documents_its_result_keys_and_builds_without_warnings(caplog: pytest.LogCaptureFixture) -> None:
    from flyte.ai.agents import Agent

    runner = ExperimentRunner(fake_execute, 1, warm_pool=False)
    research = tools.ResearchTools(ResearchLoop(None, runner, Budget(4, 2, 2)), profile={})  # type: ignore[arg-type]
    registered = research.as_tools()
    for tool in registered:
        doc = tool.__doc__ or ""
        assert "Returns" in doc and "Example" in doc, f"{tool.__name__} must show its result's keys and an example"
    with caplog.at_level(logging.WARNING):
        agent = Agent(name="t", tools=registered, code_mode=True)
        for tool in agent._registry.values():
            tool.to_openai_format()
    assert not [r for r in caplog.records if "Unsupported Type" in r.getMessage()], "no Flyte noise in the terminal"
    assert "experiments: list[dict] | None = None" in agent.system_prompt, "the tutorial's arguments are documented"
