"""Agent sessions for the LLM robustness checks: weak-model replies, the tutorial's sequence, and a harness.

A session drives the driver's own `run_agent` (the code-mode Agent, the loop guard, the real tools, a real
ledger and Monty) with a scripted model or a real one; only training is stubbed (a run takes no time and its
val_bpb is a fixed function of its title), so a session takes seconds. `tests/test_weak_model.py` and
`benchmarks/bench_llm_robustness.py` share the scripts here.

A script is a list of replies; a reply is a string, or a function of the messages the model sees (a weak
model that copies the example of a corrective message, or fixes its plan when the feedback says how).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from typing import Any

import flyte
from flyte.ai.agents import LLMMessage

import tools
import ui
from autoresearch import llm
from autoresearch.agent import program, prompts
from autoresearch.lab.budget import Budget  # noqa: E402
from autoresearch.lab.loop import ResearchLoop  # noqa: E402
from autoresearch.lab.runner import ExperimentRunner, Job
from autoresearch.ledger import ledger as ledger_mod
from autoresearch.ledger.records import BASELINE_TITLE
from autoresearch.session import driver
from autoresearch.session.activity import Activity
from autoresearch_types import DatasetProfile, ExperimentConfig, ExperimentResult, WorkshopBounds

Reply = str | Callable[[list[dict[str, Any]]], str]
env = flyte.TaskEnvironment("llm_sessions")
PROFILE = DatasetProfile("shakespeare", 1, 512, 400_000, 40_000, 900, 90, 4.1)


def fenced(code: str, before: str = "", after: str = "") -> str:
    """A reply with `code` in a ```python fence, and prose around it."""
    return f"{before}\n```python\n{code}\n```\n{after}".strip()


def last_user(messages: list[dict[str, Any]]) -> str:
    return next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")


def follows_example(fallback: str, fence: bool = True) -> Reply:
    """A weak model that copies the plan of the last corrective message (without its fence if `fence` is off)."""

    def reply(messages: list[dict[str, Any]]) -> str:
        found = re.search(r"```python\n(.*?)```", last_user(messages), re.DOTALL)
        if not found:
            return fallback
        return fenced(found.group(1).strip()) if fence else found.group(1).strip()

    return reply


def fixes_when_told(hint: str, fixed: str, fallback: str) -> Reply:
    """A model that sends `fixed` once the feedback contains `hint`, else `fallback` again."""
    return lambda messages: fixed if hint in last_user(messages) else fallback


SURVEY_MISSING_KEY = (
    'info = inspect_dataset()\nbase = get_baseline_train_code()\nbudget = info["budget"]\nsteps = budget["max_steps"]\n'
    "steps"
)
PASTED_DIRECTIVE = "Research train.py with parallel experiments.\nLower val_bpb of train.py by running experiments."
BATCH = (
    'saved = edit_train_code_batch([{"title": "LR 6e-3", "overrides": {"learning_rate": 0.006}}, '
    '{"title": "Depth 3L", "overrides": {"n_layer": 3}}])\n'
    'r = run_experiment_batch([s["title"] for s in saved["saved"]])\nr["verdicts"]'
)
FINAL = "Done: the confirmed best is reported above."

PRINT_MARK = "Remaining budget (printed):"
"""What the print patterns print: it must come back to the model, and never reach the terminal."""
PRINTS_BUDGET = f'info = inspect_dataset()\nprint("{PRINT_MARK}", info["budget"]["remaining"])\n# check the budget'
"""A plan that prints what it wants to see and ends with a comment (so it has no value), as small models write."""
NON_ANSWER = (
    "I'm sorry, but I don't see any output from your code. Could you please provide the output or error message "
    "you're seeing?"
)
"""A prose non-answer, as a small model wrote it when its prints did not come back."""
GUESSED_KEY = f'info = inspect_dataset()\nprint("{PRINT_MARK}", info["budget"]["remaining"])\ncode = info["baseline_train_code"]\ncode'
"""A plan that guesses a key of a tool's result (and prints before it fails: the replays must not print again)."""


def sees_prints(then: str, otherwise: str) -> Reply:
    """A model that goes on with `then` when its prints came back in the observation, else says `otherwise`."""
    return lambda messages: then if PRINT_MARK in last_user(messages) else otherwise


PATTERNS: dict[str, list[Reply]] = {
    "missing_key_fixed_from_feedback": [
        fenced(SURVEY_MISSING_KEY),
        fixes_when_told(
            "['base_config']['max_steps']",
            fenced('info = inspect_dataset()\nsteps = info["base_config"]["max_steps"]\n' + BATCH),
            fenced(SURVEY_MISSING_KEY),
        ),
        FINAL,
    ],
    "missing_key_repeated_then_follows_example": [
        fenced(SURVEY_MISSING_KEY, "Let me check the budget."),
        fenced(SURVEY_MISSING_KEY, "Let me check the budget."),
        follows_example(fenced(SURVEY_MISSING_KEY)),
        FINAL,
    ],
    "pasted_directive_then_follows_example": [
        fenced(PASTED_DIRECTIVE),
        fenced(PASTED_DIRECTIVE),
        follows_example(fenced(PASTED_DIRECTIVE)),
        FINAL,
    ],
    "prose_around_the_code": [fenced(BATCH, "I will try two ideas.", "Then I will evaluate them."), FINAL],
    "forgets_the_fence": ["Here is the plan.\n" + BATCH, FINAL],
    "describes_instead_of_coding": [
        "I will inspect the dataset first and then plan a batch of two edits.",
        fenced(BATCH),
        FINAL,
    ],
    "unknown_tool_then_fixed": [
        fenced('r = run_experiments(["LR 6e-3"])\nr'),
        fixes_when_told("Did you mean", fenced(BATCH), fenced('r = run_experiments(["LR 6e-3"])\nr')),
        FINAL,
    ],
    "stale_variable_then_fixed": [
        fenced('info = inspect_dataset()\ninfo["budget"]'),
        fenced('n = info["budget"]["remaining"]\nn'),
        fixes_when_told("fresh sandbox", fenced(BATCH), fenced('n = info["budget"]["remaining"]\nn')),
        FINAL,
    ],
    "silent_plan_then_shows_a_value": [
        fenced("info = inspect_dataset()\n# look at the budget"),
        fixes_when_told("print() it", fenced(BATCH), fenced("info = inspect_dataset()\n# look at the budget")),
        FINAL,
    ],
    "prints_expected_back": [fenced(PRINTS_BUDGET), sees_prints(fenced(BATCH), NON_ANSWER), FINAL],
    "prose_non_answer_then_follows_next_step": [
        fenced(PRINTS_BUDGET),
        NON_ANSWER,
        follows_example(NON_ANSWER),
        FINAL,
    ],
    "non_answer_after_experiments_gets_the_next_step": [
        fenced(BATCH),
        NON_ANSWER,
        follows_example(NON_ANSWER),
        FINAL,
    ],
    "guessed_key_on_a_tool_result": [
        fenced(GUESSED_KEY),
        fixes_when_told("its keys are", fenced(BATCH), fenced(GUESSED_KEY)),
        FINAL,
    ],
}
"""Weak-model failure patterns after which the run should recover to a valid plan."""
STUBBORN = [fenced(PASTED_DIRECTIVE)] * 12
"""A model that sends the same broken reply whatever it is told (the run must stop, not spin)."""
PROSE_ONLY = [NON_ANSWER] * 12
"""A model that only ever replies in prose (the run must end non-zero with the reason, and quote none of it)."""
STOP_AT_ONCE = [
    fenced('stop_research("the baseline already meets the goal I was given: nothing to try")'),
    "I stopped the research: the baseline already meets the goal.",
]
"""A model that stops research with a reason before any experiment (a clean exit that says why)."""
EXAMPLE = fenced(prompts.example_plan(ExperimentConfig(vocab_size=512), WorkshopBounds()))
WORKED_EXAMPLE = [EXAMPLE, FINAL]
"""A model that sends the compact prompt's worked turn as it is (the example must run with the real tools)."""
PATTERNS["repeats_the_worked_example_then_follows_example"] = [
    EXAMPLE,
    EXAMPLE,
    EXAMPLE,
    follows_example(EXAMPLE),
    FINAL,
]
"""A 0.5B model did this: it re-sent the worked turn, whose titles and configs now exist, so the corrective plan
must not propose the built-in planner's first choice when it collides with them ('LR 0.006' vs 'lr 0.006')."""
SCRIPTS: dict[str, list[Reply]] = {"stubborn": STUBBORN, "prose_only": PROSE_ONLY, "stop_at_once": STOP_AT_ONCE}
SCRIPTS["worked_example"] = WORKED_EXAMPLE

TUTORIAL_TURN_1 = "history = get_code_edit_history()\nbase = get_baseline_train_code()\ninfo = inspect_dataset()\n"
TUTORIAL_TURN_1 += '{"lines": base["lines"], "vocab": info["vocab_size"], "trials": len(history["experiments"])}'
TUTORIAL_TURN_2 = """plan = record_batch_plan(batch_id="batch-1-lr-depth", experiments=[
    {"title": "higher-lr", "hypothesis": "the baseline LR is too low for a short run"},
    {"title": "deeper-3L", "hypothesis": "one more layer adds capacity"}])
saved = edit_train_code_batch(edits=[
    {"title": "higher-lr", "config_overrides": {"learning_rate": 0.003}, "change_summary": "2x learning rate"},
    {"title": "deeper-3L", "config_overrides": {"n_layer": 3}, "change_summary": "3 layers"}])
hyps = record_batch_hypotheses(experiments=[
    {"title": "higher-lr", "hypothesis": "faster convergence", "expected_effect": "lower val_bpb"},
    {"title": "deeper-3L", "hypothesis": "more capacity", "expected_effect": "lower val_bpb"}])
r = run_experiment_batch(titles=saved["titles"], concurrency=3, batch_id="batch-1-lr-depth")
evaluate_batch_results(results=r["results"], batch_id="batch-1-lr-depth")"""
TUTORIAL_TURN_3 = """edit_train_code(title="lower-lr", config_overrides={"learning_rate": 0.00075}, change_summary="half the LR")
record_hypothesis("lower-lr", "a smaller step is more stable", "lower val_bpb")
titles = ["lower-lr"]
results = list(flyte_map("run_experiment", titles, [45], ["parallelized-autoresearch"], concurrency=3))
evaluate_batch_results(results, batch_id="batch-2")"""
TUTORIAL = [fenced(TUTORIAL_TURN_1), fenced(TUTORIAL_TURN_2), fenced(TUTORIAL_TURN_3), FINAL]
TUTORIAL_TITLES = ("higher-lr", "deeper-3L", "lower-lr")
"""The tutorial's documented sequence, verbatim in its calls, and the experiments it plans."""


class ScriptedModel:
    """A `call_llm` that answers agent turns from a script (the directive and feedback are in `messages`)."""

    def __init__(self, script: list[Reply]):
        self.script, self.calls, self.seen, self.system = list(script), 0, [], ""

    async def __call__(self, model: str, system: str, messages: list[dict[str, Any]], tools: Any) -> LLMMessage:
        self.calls += 1
        self.system = system
        self.seen.append(last_user(messages))
        reply = self.script.pop(0) if self.script else FINAL
        return LLMMessage(content=reply(messages) if callable(reply) else reply, tool_calls=[], raw=None)


async def fake_execute(job: Job, extras: dict[str, Any]) -> ExperimentResult:
    """A run that takes no time: val_bpb a fixed function of the title, a little seed noise."""
    base = 3.0 if job.title == BASELINE_TITLE else 2.8 + (zlib.crc32(job.title.encode()) % 41) / 100
    value = base + (job.seed % 3 - 1) * 0.01
    return ExperimentResult(outcome="success", val_bpb=value, seed=job.seed, steps=3, planned_steps=3)


async def run_session(
    key: str, call_llm: Any, model: str, max_turns: int, n_experiments: int, prompt_form: str = "full"
) -> dict[str, Any]:
    """One agent session over stubbed training; what it ran, how it ended, and what the guard counted."""
    ledger = await ledger_mod.Ledger.open(key, ExperimentConfig(vocab_size=512))
    budget = Budget(n_experiments, 2, 2, ledger.runs_used(), confirm_runs=ledger.rule.replicates - 1)
    loop = ResearchLoop(ledger, ExperimentRunner(fake_execute, 2, warm_pool=False), budget)
    research = tools.ResearchTools(loop, PROFILE.to_dict())
    session = driver.Session(key, model, ledger, None, PROFILE, call_llm, Activity(echo=False), budget, research)
    session.prompt_form, session.program = prompt_form, program.default_text()
    await research.loop.run_jobs(await research.loop.pending_jobs())
    directive = await driver.build_directive(session, max_turns)
    summary, error = await driver.run_agent(session, directive, max_turns)
    await research.runner.aclose()
    _, _, board = await ledger.view()
    ran = [r for r in board if r.title != BASELINE_TITLE and r.n_seeds]
    assert session.guard is not None
    status, error = ui.session_status(error, len(ran), session.guard.stuck, driver.no_experiment_reason(session))
    out = {"experiments": len(ran), "titles": [r.title for r in ran], "ranked": [r.title for r in board if r.rank]}
    out.update(status=status, error=error, summary=summary, **session.guard.totals())
    return out


@env.task
async def scripted_session(
    pattern: str, key: str, max_turns: int = 8, n_experiments: int = 12, prompt_form: str = "full"
) -> dict:
    """A session of one named script (a pattern, one of `SCRIPTS`, or `tutorial`)."""
    script = {**SCRIPTS, "tutorial": TUTORIAL}.get(pattern) or PATTERNS[pattern]
    model = ScriptedModel(script)
    out = await run_session(key, model, "scripted/weak", max_turns, n_experiments, prompt_form)
    return {**out, "model_calls": model.calls, "feedback": model.seen, "system": model.system}


@env.task
async def real_session(key: str, model: str, api_base: str, max_turns: int = 6, timeout_s: float = 0.0) -> dict:
    """A session with a real model behind an OpenAI-compatible server."""
    client = llm.LLMClient(api_base=api_base, timeout_s=llm.call_timeout(timeout_s, api_base))
    out = await run_session(key, client, model, max_turns, 12)
    return {**out, "model_calls": client.usage.calls, "usage": client.usage.to_dict()}


def run_local(task: Any, **inputs: Any) -> dict[str, Any]:
    """Run a session task in Flyte local mode, its state under the state dir."""
    return flyte.with_runcontext(**ledger_mod.run_context_kwargs()).run(task, **inputs).outputs()[0]


def main(argv: list[str]) -> None:
    """`python -m benchmarks.llm_sessions OUT.json PATTERN...`: run scripted sessions in this process and write their
    outputs (a test runs this as a child, so whatever the sessions print reaches a real pipe, as on a terminal)."""
    import json
    import logging
    import uuid
    from pathlib import Path

    ledger_mod.init_local(project="llm-sessions", log_level=logging.CRITICAL)
    outs = {p: run_local(scripted_session, pattern=p, key=f"child-{uuid.uuid4().hex[:8]}") for p in argv[1:]}
    Path(argv[0]).write_text(json.dumps(outs, default=str))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
