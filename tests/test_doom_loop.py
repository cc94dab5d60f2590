"""Loop detection as pure functions: which runs of turns are loops, what counts as progress, the corrective plan."""

from __future__ import annotations

import ast

import pytest

from autoresearch.agent import feedback as pf
from autoresearch.agent import loop_guard as dl

A, B, C = "a = inspect_dataset()\na", "b = get_leaderboard()\nb", "c = get_code_edit_history()\nc"


@pytest.mark.parametrize(
    ("turns", "reason"),
    [
        ([dl.Turn(A, "KeyError: 'x'"), dl.Turn(A, "KeyError: 'x'")], "the same failing plan (KeyError: 'x') 2 times"),
        ([dl.Turn(A), dl.Turn(A)], "the same plan with no progress 2 times"),
        ([dl.Turn(A, "E: 1"), dl.Turn(B, "E: 1"), dl.Turn(C, "E: 1")], "the same error (E: 1) 3 times"),
        ([dl.Turn(A, "E1"), dl.Turn(B, "E2"), dl.Turn(C, "E3"), dl.Turn(A + "1", "E4")], "4 failed plans in a row"),
        ([dl.Turn(A), dl.Turn(B), dl.Turn(A), dl.Turn(B)], "a cycle of 2 plans"),
        ([dl.Turn(A), dl.Turn(B), dl.Turn(C), dl.Turn(A), dl.Turn(B), dl.Turn(C)], "a cycle of 3 plans"),
    ],
)
def test_loops_are_named(turns: list[dl.Turn], reason: str) -> None:
    assert dl.loop_reason(turns).startswith(reason)


@pytest.mark.parametrize(
    "turns",
    [
        [dl.Turn(A, "E")],
        [dl.Turn(A, progress=True), dl.Turn(A, progress=True)],
        [dl.Turn(A, "E1"), dl.Turn(B, "E2")],
        [dl.Turn(A), dl.Turn(B), dl.Turn(A), dl.Turn(B, progress=True)],
        [dl.Turn(""), dl.Turn("")],
    ],
)
def test_progress_and_variety_are_not_loops(turns: list[dl.Turn]) -> None:
    assert dl.loop_reason(turns) == ""


def test_progress_means_an_experiment_was_saved_or_ran() -> None:
    saved = pf.ToolCall("edit_train_code_batch", (), {}, {"saved": [{"title": "x"}], "rejected": []})
    refused = pf.ToolCall("edit_train_code_batch", (), {}, {"saved": [], "rejected": [{"title": "x"}]})
    ran = pf.ToolCall("run_experiment", ("x",), {}, {"outcome": "success"})
    looked = pf.ToolCall("get_leaderboard", (), {}, {"rows": [1]})
    assert dl.made_progress([looked, saved]) and dl.made_progress([ran])
    assert not dl.made_progress([looked, refused])


def test_the_corrective_plans_are_valid_python_that_call_real_tools() -> None:
    edit = {"title": "LR 0.0015", "overrides": {"learning_rate": 0.0015}, "change_summary": "a 'quoted' one"}
    for plan in (dl.plan_text(edit, []), dl.plan_text(None, ["LR 6e-3", "Depth 3L"])):
        ast.parse(plan)
        assert pf.calls_a_tool(plan, ["edit_train_code_batch", "run_experiment_batch"])
