"""Weak models in CI: scripted replies drive the real Agent, loop guard, tools, ledger and Monty (training stubbed).

Each failure pattern must end in a valid plan that ran experiments; a model that repeats a broken reply
whatever it is told must be stopped with the reason; the tutorial's documented sequence must record and rank
its experiments. `tests/test_agent_llm.py` runs the same kinds of scripts through the real driver.
"""

from __future__ import annotations

import logging
import uuid

import pytest

from autoresearch.ledger import ledger as ledger_mod
from benchmarks import llm_sessions as ls


@pytest.fixture(scope="module", autouse=True)
def local_flyte(state_root: object) -> None:
    ledger_mod.init_local(project="weak-model-tests", log_level=logging.CRITICAL)


def session(pattern: str, **inputs: object) -> dict:
    return ls.run_local(ls.scripted_session, pattern=pattern, key=f"weak-{uuid.uuid4().hex[:8]}", **inputs)


@pytest.mark.parametrize("pattern", sorted(ls.PATTERNS))
def test_every_weak_model_pattern_recovers_to_a_valid_plan(pattern: str) -> None:
    out = session(pattern)
    assert out["experiments"] >= 1 and out["error"] == "", out
    assert out["status"].startswith("done") and out["stop_reason"] == ""
    assert out["unrecovered"] == 0 and all(w <= 2 for w in out["turns_wasted"]), out["turns_wasted"]


def test_feedback_names_the_line_the_keys_and_then_a_working_plan() -> None:
    out = session("missing_key_repeated_then_follows_example")
    first, second = out["feedback"][1], out["feedback"][2]
    assert 'on line 4:\n    steps = budget["max_steps"]' in first and "KeyError: 'max_steps'" in first
    assert "its keys are: n_experiments, started, remaining" in first
    assert "This run is stuck: the same failing plan (KeyError: 'max_steps') 2 times in a row" in second
    assert "```python\nsaved = edit_train_code_batch([{" in second
    assert (out["agent_turns"], out["errored_turns"], out["corrections"], out["turns_wasted"]) == (3, 2, 1, [2])


def test_a_model_that_never_listens_is_stopped_with_the_reason() -> None:
    out = session("stubborn", max_turns=12)
    assert out["experiments"] == 0 and out["model_calls"] == 4, "stopped two turns after the correction"
    assert (out["agent_turns"], out["errored_turns"], out["corrections"]) == (4, 4, 1)
    assert "corrective example" in out["stop_reason"] and "--model builtin" in out["stop_reason"]
    assert out["status"] == "stopped: the model looped, 0 experiments" and out["error"] == out["stop_reason"]
    assert "prose, not Python" in out["feedback"][1] and "line 1" in out["feedback"][1]


def test_the_tutorials_documented_sequence_records_and_ranks_its_experiments() -> None:
    out = session("tutorial")
    assert set(out["titles"]) == set(ls.TUTORIAL_TITLES) and out["errored_turns"] == 0, out
    assert set(ls.TUTORIAL_TITLES) <= set(out["ranked"]) and out["status"] == "done: 3 experiments"


def test_a_model_that_describes_its_plan_instead_of_coding_it_is_asked_once_more() -> None:
    out = session("describes_instead_of_coding")
    assert out["nudges"] == 1 and out["experiments"] >= 1 and out["model_calls"] == 3
    assert out["repaired_replies"] == 0 and out["errored_turns"] == 0
