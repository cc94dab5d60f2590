"""The built-in planner's decisions on plain transcripts, and its plans run in the real Monty sandbox."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path
from typing import Any

import flyte.sandbox
import pytest
from flyte.ai.agents._code import extract_python_code

import planner
import tools
from ledger_views import check_source

BASELINE = (Path(__file__).resolve().parent.parent / "train.py").read_text()
BASE = {"n_layer": 3, "n_head": 4, "n_embd": 128, "batch_size": 8, "learning_rate": 0.003, "dropout": 0.0}


def obs(data: dict[str, Any]) -> dict[str, str]:
    """A code-mode observation message as the Agent writes it."""
    return {"role": "user", "content": f"Execution result:\n{json.dumps(data)}"}


def row(title: str, rank: int | None, bpb: float | None, label: str) -> dict[str, Any]:
    return {"title": title, "rank": rank, "val_bpb": bpb, "label": label}


def hist(title: str, batch: str, parent: str | None = None, summary: str = "", bpb: float | None = 4.0) -> dict:
    result = {"outcome": "success", "val_bpb": bpb} if bpb else None
    return {"title": title, "batch_id": batch, "parent": parent, "change_summary": summary, "result": result}


def survey(remaining: int = 4, history: list[dict] | None = None, rows: list[dict] | None = None) -> dict:
    return {
        "step": "survey",
        "info": {"base_config": BASE, "budget": {"remaining": remaining, "batch_size": 2}},
        "board": {"rows": rows or [row("baseline", 1, 4.4, "new_best")]},
        "history": {"experiments": history or [hist("baseline", "baseline")]},
    }


DIRECTIVE = {"role": "user", "content": "# Goal ..."}


def plan_of(reply: str) -> str:
    code = extract_python_code(reply)
    assert code is not None, reply
    return code


def test_first_turn_surveys() -> None:
    assert "inspect_dataset()" in plan_of(planner.decide([DIRECTIVE]))


def test_after_the_survey_a_config_sweep_of_distinct_axes_within_the_batch_size() -> None:
    code = plan_of(planner.decide([DIRECTIVE, obs(survey())]))
    edits = ast.literal_eval(code.split("\n", 1)[0].removeprefix("edits = "))
    assert len(edits) == 2 and len({e["title"] for e in edits}) == 2
    assert all(set(e["overrides"]) and "patches" not in e for e in edits)
    assert {k for e in edits for k in e["overrides"]} == {"learning_rate", "n_layer"}


def test_later_batches_fork_the_best_with_recipes_not_in_its_lineage() -> None:
    history = [
        hist("baseline", "baseline", bpb=4.4),
        hist("LR 0.006", "batch-001", bpb=4.3),
        hist("cosine-lr on LR 0.006", "batch-002", "LR 0.006", "[cosine-lr] warmup", bpb=4.2),
    ]
    rows = [row("cosine-lr on LR 0.006", 1, 4.2, "new_best"), row("baseline", 3, 4.4, "new_best")]
    state = planner.read_state(planner.observations([DIRECTIVE, obs(survey(2, history, rows))]))
    edits, _ = planner.next_edits(state)
    assert [e["parent_title"] for e in edits] == ["cosine-lr on LR 0.006"] * 2
    assert all("[cosine-lr]" not in e["change_summary"] for e in edits)


def test_tried_titles_and_rejections_are_not_planned_again() -> None:
    first = planner.read_state(planner.observations([DIRECTIVE, obs(survey())]))
    planned, _ = planner.next_edits(first)
    rejected = {"saved": {"saved": [], "rejected": [{"title": t["title"], "error": "dup"} for t in planned]}}
    state = planner.read_state(planner.observations([DIRECTIVE, obs(survey()), obs(rejected)]))
    again, _ = planner.next_edits(state)
    assert not {e["title"] for e in again} & {e["title"] for e in planned}


@pytest.mark.parametrize("recipe", planner.RECIPES, ids=lambda r: r.name)
def test_every_recipe_applies_to_the_baseline_and_keeps_a_valid_train_py(recipe: planner.Recipe) -> None:
    patched = tools.apply_patches(BASELINE, [{"old": o, "new": n} for o, n in recipe.patches])
    assert patched != BASELINE and check_source(patched) is None


def test_budget_spent_ends_with_a_plain_text_summary_naming_the_best() -> None:
    rows = [row("LR 0.006", 1, 4.0, "new_best"), row("baseline", 2, 4.4, "new_best")]
    reply = planner.decide([DIRECTIVE, obs(survey(0, rows=rows))])
    assert extract_python_code(reply) is None
    assert "'LR 0.006'" in reply and "9.09% better" in reply and "What helped: LR 0.006" in reply


def test_repeated_code_errors_stop_instead_of_looping() -> None:
    error = {"role": "user", "content": "Your code raised an error:\n\nboom"}
    reply = planner.decide([DIRECTIVE, error, error, error])
    assert extract_python_code(reply) is None and "3 plans failed" in reply


def test_same_transcript_gives_the_same_plan() -> None:
    messages = [DIRECTIVE, obs(survey())]
    assert planner.decide(messages) == planner.decide(list(messages))


def test_plans_run_in_the_real_monty_sandbox() -> None:
    calls: list[str] = []

    def fake(name: str, result: Any) -> Any:
        async def tool(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return result

        tool.__name__ = name
        return tool

    saved = {"batch_id": "batch-001", "saved": [{"title": "LR 0.006"}], "rejected": []}
    fakes = [
        fake("inspect_dataset", {"base_config": BASE}),
        fake("get_leaderboard", {"rows": []}),
        fake("get_code_edit_history", {"experiments": []}),
        fake("edit_train_code_batch", saved),
        fake("record_batch_plan", {}),
        fake("record_batch_hypotheses", {}),
        fake("run_experiment_batch", {"results": [], "budget": {"remaining": 0}}),
        fake("evaluate_batch_results", {}),
    ]
    for messages in ([DIRECTIVE], [DIRECTIVE, obs(survey())]):
        code = plan_of(planner.decide(messages))
        out = asyncio.run(flyte.sandbox.orchestrate_local(code, inputs={"_unused": 0}, tasks=fakes))
        assert out["step"] in ("survey", "batch")
    assert calls[-7:] == [
        "edit_train_code_batch",
        "record_batch_plan",
        "record_batch_hypotheses",
        "run_experiment_batch",
        "evaluate_batch_results",
        "get_leaderboard",
        "get_code_edit_history",
    ]


def test_builtin_planner_speaks_the_call_llm_protocol() -> None:
    p = planner.BuiltinPlanner()
    msg = asyncio.run(p("builtin", "system", [DIRECTIVE], None))
    assert "inspect_dataset" in msg.content and msg.tool_calls == [] and p.calls == 1
