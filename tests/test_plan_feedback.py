"""Feedback after a failed plan names the line, the exception and what to do instead (replayed in Monty)."""

from __future__ import annotations

from typing import Any

import pytest

from autoresearch.agent import feedback as pf

TOOLS = ["inspect_dataset", "get_baseline_train_code", "get_leaderboard", "run_experiment_batch"]
INFO = {
    "profile": {"vocab_size": 2048},
    "base_config": {"n_layer": 2, "max_steps": 600},
    "budget": {"n_experiments": 16, "started": 3, "remaining": 13, "batch_size": 4},
}


def log(*calls: tuple[str, Any]) -> list[pf.ToolCall]:
    return [pf.ToolCall(name, (), {}, result) for name, result in calls]


async def explained(code: str, calls: list[pf.ToolCall], aliases: dict[str, str] | None = None) -> str:
    failure = await pf.replay(code, calls, TOOLS)
    return pf.explain(failure, "", calls, TOOLS, aliases or {})


async def test_a_key_error_names_the_line_the_dict_its_keys_and_where_the_key_is() -> None:
    code = 'info = inspect_dataset()\nbase = get_baseline_train_code()\nbudget = info["budget"]\nbudget["max_steps"]'
    calls = log(("inspect_dataset", INFO), ("get_baseline_train_code", {"train_py": "x = 1\n"}))
    text = await explained(code, calls)
    assert 'on line 4:\n    budget["max_steps"]' in text and "KeyError: 'max_steps'" in text
    assert "`budget` (inspect_dataset()['budget']) has no key 'max_steps'" in text
    assert "n_experiments, started, remaining, batch_size" in text
    assert "'max_steps' is at inspect_dataset()['base_config']['max_steps']" in text


async def test_a_key_error_inside_a_loop_and_a_nested_index_finds_the_right_dict() -> None:
    code = 'lb = get_leaderboard()\nfor row in lb["rows"]:\n    x = row["score"]\nx'
    calls = log(("get_leaderboard", {"rows": [{"title": "a", "val_bpb": 2.0}], "best": None}))
    text = await explained(code, calls)
    assert "line 3" in text and "`row` (get_leaderboard()['rows'][0]) has no key 'score'" in text
    assert "title, val_bpb" in text


async def test_a_tutorial_key_is_mapped_to_this_projects_name() -> None:
    calls = log(("get_leaderboard", {"rows": [], "best": None}))
    text = await explained('lb = get_leaderboard()\nlb["entries"]', calls, {"entries": "rows"})
    assert "This project calls it 'rows': use lb['rows']" in text


async def test_indexing_a_failed_calls_result_says_the_call_failed() -> None:
    calls = log(("run_experiment_batch", {"error": "titles must be a non-empty list."}))
    text = await explained('r = run_experiment_batch([])\nr["results"]', calls)
    assert "is an error result, not data: titles must be a non-empty list." in text
    assert "Tool calls in this plan that returned an error:\n- run_experiment_batch()" in text


async def test_a_pasted_directive_is_a_syntax_error_on_its_prose_line() -> None:
    code = "Research train.py.\nLower val_bpb of train.py by running experiments in batches.\ninspect_dataset()"
    text = await explained(code, [])
    assert "on line 1:\n    Research train.py." in text or "on line 2:\n    Lower val_bpb" in text
    assert "SyntaxError" in text and "prose, not Python" in text and "outside the ``` fence" in text


async def test_an_unknown_function_and_a_stale_variable_say_what_exists() -> None:
    text = await explained("x = 1\ninspect_datasets()", [])
    assert "on line 2" in text and "inspect_datasets is not a tool here. Did you mean inspect_dataset?" in text
    text = await explained("info = inspect_dataset()\nsaved['titles']", log(("inspect_dataset", INFO)))
    assert "NameError" in text and "fresh sandbox" in text


async def test_a_replay_that_asks_for_more_than_was_recorded_gives_up() -> None:
    assert await pf.replay("inspect_dataset()\ninspect_dataset()", log(("inspect_dataset", INFO)), TOOLS) is None
    assert "read the error above" in pf.explain(None, "boom", [], TOOLS, {})


def test_errors_a_successful_plan_did_not_show_are_listed() -> None:
    calls = [
        pf.ToolCall("run_experiment_batch", (["A"],), {}, {"error": 'no experiment titled "A"'}),
        pf.ToolCall("inspect_dataset", (), {}, INFO),
    ]
    assert "run_experiment_batch(['A'])" in pf.unseen_tool_errors(calls, "Execution result: 3")
    assert pf.unseen_tool_errors(calls, 'Execution result: {"error": "no experiment titled \\"A\\""}') == ""


@pytest.mark.parametrize(
    ("reply", "fixed"),
    [
        ("info = inspect_dataset()\ninfo['budget']", "```python\ninfo = inspect_dataset()\ninfo['budget']\n```"),
        (
            "Let me look first.\ninfo = inspect_dataset()\ninfo\nThen I will plan.",
            "```python\ninfo = inspect_dataset()\ninfo\n```",
        ),
        ("```tool_code\nget_leaderboard()\n```", "```python\nget_leaderboard()\n```"),
        ("Plan:\n```python\nget_leaderboard()\n```\nDone.", None),
        ("The best experiment is LR 6e-3 at 2.71 val_bpb.", None),
        ("I would call get_leaderboard() next.", None),
    ],
)
def test_a_plan_without_its_fence_is_fenced_and_prose_is_left_alone(reply: str, fixed: str | None) -> None:
    assert pf.repair_reply(reply, TOOLS) == fixed
