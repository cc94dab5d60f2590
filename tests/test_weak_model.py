"""Weak models in CI: scripted replies drive the real Agent, loop guard, tools, ledger and Monty (training stubbed).

Each failure pattern must end in a valid plan that ran experiments; a model that repeats a broken reply
whatever it is told must be stopped with the reason; the tutorial's documented sequence must record and rank
its experiments. `tests/test_agent_llm.py` runs the same kinds of scripts through the real driver.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from autoresearch.agent import ending
from autoresearch.ledger import ledger as ledger_mod
from benchmarks import llm_sessions as ls

ROOT = Path(__file__).resolve().parent.parent


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


def test_a_model_that_describes_its_plan_instead_of_coding_gets_the_next_step() -> None:
    out = session("describes_instead_of_coding")
    assert out["next_steps"] == 1 and out["experiments"] >= 1 and out["model_calls"] == 3
    assert out["repaired_replies"] == 0 and out["errored_turns"] == 0
    assert (
        "no experiment has run yet" in out["feedback"][1]
        and "```python\nsaved = edit_train_code_batch" in out["feedback"][1]
    )


@pytest.mark.timeout(600)
def test_a_plans_prints_reach_the_model_and_never_the_terminal(state_root: Path) -> None:
    """In a child process whose stdout and stderr are pipes, as a terminal would be: a plan's prints, and those of
    the replays of a failed plan, come back in the next observation and nowhere else."""
    result = state_root / f"prints-{uuid.uuid4().hex[:8]}.json"
    patterns = ["prints_expected_back", "guessed_key_on_a_tool_result"]
    child = [sys.executable, "-m", "benchmarks.llm_sessions", str(result), *patterns]
    proc = subprocess.run(child, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = json.loads(result.read_text())
    result.unlink()
    assert ls.PRINT_MARK not in proc.stdout + proc.stderr, "a plan's print leaked to the terminal"
    printed = outs["prints_expected_back"]
    seen = printed["feedback"][1]
    assert seen.startswith("Printed output:\n```\n" + ls.PRINT_MARK) and "Execution result: (no value)" in seen
    assert printed["experiments"] >= 1 and printed["next_steps"] == 0 and printed["error"] == "", printed
    guessed = outs["guessed_key_on_a_tool_result"]["feedback"][1]
    assert guessed.startswith("Your code raised an error") and f"the plan printed:\n```\n{ls.PRINT_MARK}" in guessed
    assert "has no key 'baseline_train_code'; its keys are: profile, base_config" in guessed
    assert outs["guessed_key_on_a_tool_result"]["experiments"] >= 1


def test_a_plan_with_no_value_and_no_print_is_told_how_to_see_one() -> None:
    out = session("silent_plan_then_shows_a_value")
    seen = out["feedback"][1]
    assert seen.startswith("Execution result: (no value).") and "end the plan with the value" in seen.lower()
    assert "print() it" in seen and out["experiments"] >= 1 and out["errored_turns"] == 0


def test_a_prose_non_answer_before_any_experiment_gets_the_next_step_and_the_run_goes_on() -> None:
    out = session("prose_non_answer_then_follows_next_step")
    step = out["feedback"][2]
    assert "not a final answer" in step and "Run this plan next" in step and "edit_train_code_batch" in step
    assert out["next_steps"] == 1 and out["experiments"] >= 1 and out["error"] == "" and out["stop_reason"] == ""
    assert out["status"].startswith("done") and ls.NON_ANSWER not in out["summary"]


def test_a_model_that_only_replies_in_prose_ends_non_zero_with_the_reason_and_no_summary() -> None:
    out = session("prose_only", max_turns=12)
    limit = ending.MAX_NEXT_STEPS
    assert out["model_calls"] == limit + 1 and out["next_steps"] == limit, "bounded: answered twice, then stopped"
    assert out["experiments"] == 0 and out["summary"] == "", "a non-answer is never the summary"
    assert out["status"] == "stopped: the model sent no plan, 0 experiments"
    assert out["error"] == out["stop_reason"] and f"without a plan {limit + 1} times" in out["error"]
    assert "I'm sorry" in out["error"] and "--model builtin" in out["error"]


def test_stop_research_with_a_reason_and_no_experiment_is_a_clean_exit_that_says_why() -> None:
    out = session("stop_at_once")
    assert out["experiments"] == 0 and out["error"] == "" and out["stop_reason"] == ""
    assert out["status"] == (
        "done: 0 experiments (research stopped: the baseline already meets the goal I was given: nothing to try)"
    )
    assert out["summary"].startswith("I stopped the research")


def test_the_compact_prompt_offers_only_the_core_tools_and_they_work() -> None:
    from autoresearch.agent import prompts

    out = ls.run_local(
        ls.scripted_session, pattern="worked_example", key=f"weak-{uuid.uuid4().hex[:8]}", prompt_form="compact"
    )
    assert out["experiments"] == 2 and out["error"] == "" and out["errored_turns"] == 0, out
    assert out["system"].startswith("You improve train.py") and "get_code_edit_history" not in out["system"]
    assert all(f"- {name}(" in out["system"] for name in prompts.COMPACT_TOOLS)
    seen = out["feedback"][1]
    assert seen.startswith("Printed output:\n```\nrejected: []") and '"left": ' in seen, seen


@pytest.mark.parametrize(
    ("has_code", "stopped", "budget_open", "ran", "report", "given", "expected"),
    [
        (True, False, True, False, False, 0, "run"),
        (False, False, True, False, True, 0, "next_step"),
        (False, False, True, False, True, 1, "next_step"),
        (False, False, True, False, True, 2, "stop"),
        (False, False, True, True, True, 0, "final"),
        (False, False, True, True, False, 0, "next_step"),
        (False, False, True, True, False, 2, "stop"),
        (False, False, False, False, False, 0, "final"),
        (True, True, True, False, True, 0, "stop"),
        (False, True, False, True, True, 0, "stop"),
    ],
)
def test_the_one_judgement_of_final(
    has_code: bool, stopped: bool, budget_open: bool, ran: bool, report: bool, given: int, expected: str
) -> None:
    assert ending.judge(has_code, stopped, budget_open, ran, report, given, ending.MAX_NEXT_STEPS) == expected


def test_what_reads_as_a_report() -> None:
    assert not ending.reads_as_report(ls.NON_ANSWER, ["baseline", "LR 6e-3"])
    assert ending.reads_as_report("LR 6e-3 helped the most.", ["baseline", "LR 6e-3"])
    assert ending.reads_as_report("No edit beat seed noise.", [])
    assert ending.reads_as_report("The best reached 2.61.", []) and ending.reads_as_report(ls.FINAL, [])


def test_a_non_answer_after_experiments_is_not_quoted_and_gets_the_next_step() -> None:
    out = session("non_answer_after_experiments_gets_the_next_step")
    assert "it is not a report of results" in out["feedback"][2] and "Run this plan next" in out["feedback"][2]
    assert out["experiments"] >= 3 and out["next_steps"] == 1 and out["error"] == "", out
    assert ls.NON_ANSWER not in out["summary"] and out["summary"] == ls.FINAL


def test_the_compact_first_prompt_is_under_its_token_target_with_a_real_tokenizer() -> None:
    from autoresearch import llm
    from benchmarks import bench_small_model as bench

    assert llm.count_tokens("val_bpb") == 3, "a real BPE tokenizer (cl100k_base), not a word count"
    prompts = bench.first_prompts()
    full, compact = (sum(llm.count_tokens(t) for t in prompts[form]) for form in ("full", "compact"))
    assert compact <= bench.TARGET_COMPACT, compact
    assert full > 4000 and compact < full / 3, (full, compact)
    system, directive = prompts["compact"]
    assert "print" in system and "A full turn" in system and "Budget: 10 runs" in directive


def test_which_prompt_a_model_gets() -> None:
    from autoresearch import llm
    from autoresearch.agent import prompts

    assert prompts.choose_form("auto", llm.is_local_server("http://127.0.0.1:8080/v1"), None)[0] == "compact"
    assert prompts.choose_form("auto", llm.is_local_server("http://10.0.0.7:11434/v1"), None)[0] == "compact"
    assert prompts.choose_form("auto", llm.is_local_server("https://api.openai.com/v1"), 128_000)[0] == "full"
    assert prompts.choose_form("auto", False, 8192) == ("compact", "the model's context window is 8,192 tokens")
    assert prompts.choose_form("full", True, 4096)[0] == "full" and prompts.choose_form("compact", False, None)[0] == (
        "compact"
    )
    assert llm.context_window("openai/gpt-4o-mini") == 128_000 and llm.context_window("openai/my-local") is None


def test_the_corrective_plan_never_collides_with_the_models_own_experiments() -> None:
    out = session("repeats_the_worked_example_then_follows_example")
    correction = out["feedback"][3]
    assert "This run is stuck" in correction and "```python\nsaved = edit_train_code_batch" in correction
    assert "'title': 'LR 0.006'" not in correction, "the model's 'lr 0.006' holds that slug and that config"
    assert out["experiments"] >= 3 and out["stop_reason"] == "" and out["unrecovered"] == 0, out
