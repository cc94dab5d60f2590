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

import tools
from autoresearch.ledger.source import check_source
from autoresearch.planner import builtin as planner
from autoresearch.planner import recipes
from autoresearch.planner.policy import AXES, Policy, evidence, search_space, stale_experiments
from autoresearch_types import WorkshopBounds

BASELINE = (Path(__file__).resolve().parent.parent / "train.py").read_text()
BASE = {"n_layer": 2, "n_head": 4, "n_embd": 64, "batch_size": 8, "learning_rate": 0.003, "dropout": 0.0}
BOUNDS = WorkshopBounds().describe()
DIRECTIVE = {"role": "user", "content": "# Goal ..."}


def obs(data: dict[str, Any]) -> dict[str, str]:
    """A code-mode observation message as the Agent writes it."""
    return {"role": "user", "content": f"Execution result:\n{json.dumps(data)}"}


def hist(
    title: str,
    batch: str,
    parent: str | None = None,
    tags: str = "",
    bpb: float | None = 3.0,
    verdict: str = "within_noise",
    gain: float | None = None,
) -> dict:
    """One history row with the gate's verdict; `bpb=None` is a crashed experiment."""
    result = {"outcome": "success", "val_bpb": bpb} if bpb is not None else {"outcome": "crash", "val_bpb": None}
    verdict = verdict if bpb is not None else "failed"
    standing = {"verdict": "baseline" if title == "baseline" else verdict, "mean_val_bpb": bpb, "gain": gain}
    row = {"title": title, "batch_id": batch, "parent": parent, "change_summary": f"{tags} change", "result": result}
    return {**row, "standing": standing}


def with_recipes(*names: str) -> str:
    """The baseline with `names` applied in order."""
    source = BASELINE
    for name in names:
        source = recipes.BY_NAME[name].apply(source) or ""
    return source


def snapshot(
    history: list[dict],
    best: str,
    source: str = BASELINE,
    remaining: int = 10,
    size: int = 5,
    overrides: dict | None = None,
    step: str = "survey",
    **extra: Any,
) -> dict:
    """What a survey (or batch) observation holds: info, board, history and the best's code."""
    by = {h["title"]: h["result"]["val_bpb"] for h in history}
    rows = [{"title": best, "rank": 1, "val_bpb": by[best], "se": 0.01, "n_seeds": 3, "incumbent": True}]
    rows += [{"title": t, "rank": 2, "val_bpb": v, "n_seeds": 1} for t, v in by.items() if t != best and v is not None]
    budget = {"remaining": remaining, "batch_size": size, "confirm_runs": 0}
    return {
        "step": step,
        "info": {"base_config": BASE, "bounds": BOUNDS, "budget": budget},
        "board": {"rows": rows, "budget": budget, "sigma": 0.02},
        "history": {"experiments": history},
        "best": {"candidates": [{"title": best, "overrides": overrides or {}, "train_py": source}]},
        **extra,
    }


FRESH = [hist("baseline", "baseline", bpb=3.0)]
SWEPT = FRESH + [
    hist("LR 0.006", "batch-001", tags="[learning_rate:up]", bpb=3.2, verdict="regression", gain=-0.2),
    hist("Depth 3L", "batch-001", tags="[n_layer:up]", bpb=2.95),
    hist("Width 96", "batch-001", tags="[n_embd:up]", bpb=None),
    hist("Batch 16", "batch-001", tags="[batch_size:up]", bpb=2.9, verdict="confirmed", gain=0.1),
    hist("Dropout 0.1", "batch-001", tags="[dropout:up]", bpb=3.01),
]


def plan_of(reply: str) -> str:
    code = extract_python_code(reply)
    assert code is not None, reply
    return code


def edits_of(reply: str) -> list[dict[str, Any]]:
    """The edits literal of a batch plan."""
    line = next(line for line in plan_of(reply).splitlines() if line.startswith("edits = "))
    return ast.literal_eval(line.removeprefix("edits = "))


def decide(*observations: dict, policy: Policy | None = None) -> str:
    """The batch planner's next reply (the async one has its own tests)."""
    return planner.decide([DIRECTIVE, *(obs(o) for o in observations)], policy or Policy(scheduling="batch"))


def test_first_turn_surveys_data_history_and_the_best_code() -> None:
    code = plan_of(decide())
    assert "inspect_dataset()" in code and "get_promising_code(1)" in code


def test_batch_one_sweeps_the_learning_rate_both_ways_then_each_axis_within_the_bounds() -> None:
    edits = edits_of(decide(snapshot(FRESH, "baseline")))
    assert [next(iter(e["overrides"])) for e in edits] == [
        "learning_rate",
        "learning_rate",
        "n_layer",
        "n_embd",
        "batch_size",
    ]
    assert [e["overrides"]["learning_rate"] for e in edits[:2]] == [0.0015, 0.006], "down first, then up"
    assert all(len(e["overrides"]) == 1 and "patches" not in e and "parent_title" not in e for e in edits)
    assert all(e["hypothesis"] and e["expected_effect"] for e in edits)
    tight = {**BOUNDS, "n_layer": [1, 2], "learning_rate": [1e-4, 0.004]}
    survey = snapshot(FRESH, "baseline", size=8)
    survey["info"]["bounds"] = tight
    edits = edits_of(decide(survey))
    for edit in edits:
        for key, value in edit["overrides"].items():
            assert tight[key][0] <= value <= tight[key][1] and value != BASE[key]
    assert {"n_layer": 1} in [e["overrides"] for e in edits], "depth can only go down: it is swept down"


def test_later_batches_fork_the_best_with_one_or_two_moves_that_apply_to_its_real_source() -> None:
    source = with_recipes("warmup-cosine", "relu2")
    history = SWEPT + [
        hist("warmup-cosine + relu2 on Batch 16", "batch-002", "Batch 16", "[warmup-cosine] [relu2]", 2.8),
    ]
    reply = decide(snapshot(history, "warmup-cosine + relu2 on Batch 16", source, overrides={"batch_size": 16}))
    edits = edits_of(reply)
    assert len(edits) == 5 and len({e["title"] for e in edits}) == 5
    assert edits[0]["step"] == "small" and "patches" not in edits[0], "a paying line gets a config nudge first"
    assert len(edits[0]["overrides"]) == 1 and sum("patches" in e for e in edits) == 4
    for edit in edits:
        assert edit["parent_title"] == "warmup-cosine + relu2 on Batch 16"
        assert edit["hypothesis"] and edit["expected_effect"] and edit["step"] in ("small", "medium", "radical")
        assert 1 <= edit["change_summary"].count("[") <= 2
        if "patches" not in edit:
            continue
        patched = tools.apply_patches(source, edit["patches"])
        assert check_source(patched) is None
        assert not any(f"[{name}]" in edit["change_summary"] for name in ("warmup-linear", "silu", "relu2"))


def test_identical_seed_and_history_give_the_identical_plan_and_seeds_matter_when_exploring() -> None:
    stale = SWEPT + [hist(f"x{i} on Batch 16", "batch-002", "Batch 16", "[grad-clip-1]", 2.95) for i in range(2)]
    survey = snapshot(stale, "Batch 16", overrides={"batch_size": 16})
    explore = Policy(seed=0, patience=1)
    assert decide(survey, policy=explore) == decide(json.loads(json.dumps(survey)), policy=explore)
    plans = {decide(survey, policy=Policy(seed=s, patience=1)) for s in range(6)}
    assert len(plans) > 1, "the seed orders the untried recipes"


def test_failures_rejections_and_duplicates_are_not_planned_again_on_the_same_parent() -> None:
    history = SWEPT + [hist("relu2 on Batch 16", "batch-002", "Batch 16", "[relu2]", None)]
    proposed = [
        {"title": "relu2 on Batch 16", "parent": "Batch 16", "tags": ["relu2"]},
        {"title": "warmup-cosine on Batch 16", "parent": "Batch 16", "tags": ["warmup-cosine"]},
        {"title": "tied-embeddings on Batch 16", "parent": "Batch 16", "tags": ["tied-embeddings"]},
    ]
    saved = {
        "batch_id": "batch-002",
        "saved": [{"title": "relu2 on Batch 16"}],
        "rejected": [
            {"title": "warmup-cosine on Batch 16", "error": "duplicate of 'x': the same code..."},
            {"title": "tied-embeddings on Batch 16", "error": "patch 0: old text does not occur"},
        ],
    }
    batch = snapshot(history, "Batch 16", overrides={"batch_size": 16}, step="batch", proposed=proposed, saved=saved)
    edits = edits_of(decide(snapshot(SWEPT, "Batch 16"), batch))
    planned = {t for e in edits for t in planner.tags_of(e["change_summary"])}
    assert edits and not planned & {"relu2", "warmup-cosine", "tied-embeddings"}
    state = planner.read_state(planner.observations([DIRECTIVE, obs(batch)]))
    assert {p["title"] for p in state.proposals if p.get("error")} == {
        "warmup-cosine on Batch 16",
        "tied-embeddings on Batch 16",
    }


def test_a_refused_tool_call_marks_the_whole_batch_and_the_next_plan_differs() -> None:
    first = snapshot(SWEPT, "Batch 16", overrides={"batch_size": 16})
    edits = edits_of(decide(first))
    proposed = [
        {"title": e["title"], "parent": "Batch 16", "tags": planner.tags_of(e["change_summary"])} for e in edits
    ]
    refused = {**first, "step": "batch", "proposed": proposed, "saved": {"error": "edits must be a list"}}
    again = edits_of(decide(first, refused))
    assert again and not {e["title"] for e in again} & {e["title"] for e in edits}


def test_credit_comes_from_confirmed_gains_and_pushes_an_axis_that_helped() -> None:
    history = SWEPT + [
        hist(
            "LR 0.0015 + silu on Batch 16",
            "batch-002",
            "Batch 16",
            "[learning_rate:down] [silu]",
            2.7,
            "confirmed",
            0.2,
        ),
        hist("qk-norm on Batch 16", "batch-002", "Batch 16", "[qk-norm]", 2.75, "confirmed", 0.15),
    ]
    source = with_recipes("silu")
    survey = snapshot(
        history, "LR 0.0015 + silu on Batch 16", source, overrides={"batch_size": 16, "learning_rate": 0.0015}
    )
    edits = edits_of(decide(survey))
    tags = [planner.tags_of(e["change_summary"]) for e in edits]
    assert any("qk-norm" in t for t in tags), "qk-norm helped on the old best: try it on the new one"
    assert any("learning_rate:down" in t for t in tags), "lowering the LR helped: one more step down"
    pushed = next(e for e in edits if "learning_rate:down" in e["change_summary"])
    assert pushed["overrides"] == {"learning_rate": 0.00075}


def test_within_noise_and_unconfirmed_results_earn_no_credit() -> None:
    lucky = SWEPT[:4] + [hist("Batch 16", "batch-001", tags="[batch_size:up]", bpb=2.6, verdict="unconfirmed")]
    lucky += [hist("qk-norm on Batch 16", "batch-002", "Batch 16", "[qk-norm]", 2.5, "within_noise", 0.0)]
    ev = evidence(lucky, [])
    assert ev.gains == {"learning_rate:up": [-0.2], "n_layer:up": [0.0], "qk-norm": [0.0]}
    assert ev.credit("batch_size:up") is None, "one lucky seed is not evidence"
    assert stale_experiments(lucky) == 4, "nothing settled since the start was a confirmed gain"


def test_patience_switches_to_recipes_never_tried() -> None:
    stale = SWEPT + [
        hist("warmup-cosine on Batch 16", "batch-002", "Batch 16", "[warmup-cosine]", 2.85),
        hist("adamw-beta2-0.95 on Batch 16", "batch-003", "Batch 16", "[adamw-beta2-0.95]", 2.89),
    ]
    survey = snapshot(stale, "Batch 16", overrides={"batch_size": 16})
    explore = decide(survey, policy=Policy(patience=3, scheduling="batch"))
    assert "3 experiments since the last confirmed gain: explore recipes never tried" in explore
    tried = {"warmup-cosine", "adamw-beta2-0.95"}
    assert not {t for e in edits_of(explore) for t in planner.tags_of(e["change_summary"])} & tried
    exploit = decide(survey, policy=Policy(patience=4, scheduling="batch"))
    assert "explore" not in exploit.split("```")[0]


def test_the_batch_shrinks_to_the_ideas_that_may_start_and_stops_when_they_are_spent() -> None:
    assert len(edits_of(decide(snapshot(FRESH, "baseline", remaining=2)))) == 2
    survey = snapshot(FRESH, "baseline", remaining=3)
    survey["info"]["budget"]["confirm_runs"] = 2
    assert len(edits_of(decide(survey))) == 3, "the budget's remaining already keeps the confirmation's runs"
    assert planner.batch_room({"remaining": 2, "batch_size": 5, "confirm_runs": 2}) == 2
    reply = decide(snapshot(SWEPT, "Batch 16", remaining=0))
    assert extract_python_code(reply) is None and "experiment budget spent" in reply


def test_the_summary_names_the_confirmed_best_its_gain_and_what_helped() -> None:
    history = SWEPT + [hist("relu2 on Batch 16", "batch-002", "Batch 16", "[relu2]", 2.7, "confirmed", 0.2)]
    reply = decide(snapshot(history, "relu2 on Batch 16", remaining=0))
    assert extract_python_code(reply) is None
    assert (
        "'relu2 on Batch 16' at val_bpb 2.7000 ± 0.0100 (3 seeds), confirmed against seed noise (sigma = 0.0200)"
        in reply
    )
    assert "gain over the baseline's 3.0000: +0.3000" in reply and "(10.00%, from all 3 seed(s)" in reply
    assert "confirmed step by step from the baseline: raise batch_size (-0.1000), relu2 (-0.2000)" in reply
    assert "raise learning_rate" in reply.split("Tried without a lasting gain:")[1]


def test_the_summary_says_when_nothing_beat_seed_noise() -> None:
    survey = snapshot(FRESH + SWEPT[1:3], "baseline", remaining=0)
    reply = decide(survey)
    assert "No edit beat seed noise (sigma = 0.0200)" in reply and "nothing was confirmed" in reply


def test_a_failed_plan_is_followed_by_a_fresh_survey_and_repeated_failures_stop() -> None:
    error = {"role": "user", "content": "Your code raised an error:\n\nboom"}
    assert "inspect_dataset()" in plan_of(planner.decide([DIRECTIVE, obs(snapshot(SWEPT, "Batch 16")), error]))
    reply = planner.decide([DIRECTIVE, error, error, error])
    assert extract_python_code(reply) is None and "3 plans failed" in reply


def test_the_search_space_stays_in_the_bounds_and_keeps_widths_divisible_by_heads() -> None:
    space = search_space(BASE, BOUNDS)
    assert set(space) == set(AXES)
    assert all(v % BASE["n_head"] == 0 for v in space["n_embd"])
    for key, values in space.items():
        assert BASE[key] in values and all(BOUNDS[key][0] <= v <= BOUNDS[key][1] for v in values)


def fake(name: str, result: Any, calls: list[str]) -> Any:
    """A tool that records its call and returns `result` (the Monty sandbox needs real async callables)."""

    async def tool(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return result

    tool.__name__ = name
    return tool


@pytest.mark.parametrize("saved", [{"batch_id": "batch-001", "saved": [{"title": "LR 0.006"}]}, {"error": "bad"}])
def test_plans_run_in_the_real_monty_sandbox_even_when_a_tool_refuses(saved: dict) -> None:
    calls: list[str] = []
    fakes = [
        fake("inspect_dataset", {"base_config": BASE}, calls),
        fake("get_leaderboard", {"rows": []}, calls),
        fake("get_code_edit_history", {"experiments": []}, calls),
        fake("get_promising_code", {"candidates": []}, calls),
        fake("edit_train_code_batch", saved, calls),
        fake("record_batch_plan", {}, calls),
        fake("record_batch_hypotheses", {}, calls),
        fake("run_experiment_batch", {"results": [], "budget": {"remaining": 0}}, calls),
        fake("evaluate_batch_results", {}, calls),
    ]
    history = SWEPT + [hist("relu2 on Batch 16", "batch-002", "Batch 16", "[relu2]", 2.7)]
    for observations in ([], [snapshot(FRESH, "baseline")], [snapshot(history, "relu2 on Batch 16")]):
        code = plan_of(decide(*observations))
        out = asyncio.run(flyte.sandbox.orchestrate_local(code, inputs={"_unused": 0}, tasks=fakes))
        assert out["step"] == ("batch" if observations else "survey")
    ran = [c for c in calls if c in ("record_batch_plan", "run_experiment_batch")]
    assert ran == (["record_batch_plan", "run_experiment_batch"] * 2 if "saved" in saved else [])
    assert calls[-3:] == ["get_leaderboard", "get_code_edit_history", "get_promising_code"]


def test_builtin_planner_speaks_the_call_llm_protocol_with_its_policy() -> None:
    p = planner.BuiltinPlanner(seed=3, patience=4, scheduling="batch")
    msg = asyncio.run(p("builtin", "system", [DIRECTIVE], None))
    assert "inspect_dataset" in msg.content and msg.tool_calls == [] and p.calls == 1
    assert p.policy == Policy(seed=3, patience=4, scheduling="batch")


ASYNC = Policy(scheduling="async")


def with_slots(observation: dict, free: int, running: int = 0, queued: int = 0) -> dict:
    """The observation after a submit or a wait, with the runner's slots."""
    slots = {"concurrency": free + running + queued, "running": running, "queued": queued, "free": free}
    return {**observation, "done": {"slots": slots, "budget": observation["board"]["budget"]}}


def test_async_fills_exactly_the_free_slots_then_waits_for_the_next_result() -> None:
    survey = snapshot(FRESH, "baseline", remaining=10, size=4)
    reply = planner.decide([DIRECTIVE, obs(with_slots(survey, free=2))], ASYNC)
    code = plan_of(reply)
    assert "submit_experiments(titles)" in code and "wait_for_results(1)" in code and "run_experiment_batch" not in code
    assert [next(iter(e["overrides"])) for e in edits_of(reply)] == ["learning_rate", "learning_rate"]
    busy = planner.decide([DIRECTIVE, obs(with_slots(survey, free=0, running=2))], ASYNC)
    assert plan_of(busy).startswith("done = wait_for_results(1)") and "edit_train_code_batch" not in plan_of(busy)


def test_async_sweeps_one_batch_worth_then_forks_the_confirmed_best_and_stops_when_all_is_done() -> None:
    history = SWEPT + [hist("LR 0.0015", "batch-002", tags="[learning_rate:down]", bpb=3.1)]
    survey = snapshot(history, "Batch 16", overrides={"batch_size": 16}, remaining=6, size=4)
    reply = planner.decide([DIRECTIVE, obs(with_slots(survey, free=1, running=1))], ASYNC)
    (edit,) = edits_of(reply)
    assert edit["parent_title"] == "Batch 16" and edit.get("patches"), "past the sweep: a code edit on the best"
    spent = snapshot(history, "Batch 16", remaining=0)
    assert "wait_for_results" in plan_of(planner.decide([DIRECTIVE, obs(with_slots(spent, free=1, running=1))], ASYNC))
    final = planner.decide([DIRECTIVE, obs(with_slots(spent, free=2))], ASYNC)
    assert extract_python_code(final) is None and "experiment budget spent" in final


def test_async_plans_run_in_the_real_monty_sandbox() -> None:
    calls: list[str] = []
    slots = {"concurrency": 2, "running": 1, "queued": 0, "free": 1}
    fakes = [
        fake("edit_train_code_batch", {"batch_id": "batch-002", "saved": [{"title": "LR 0.0015"}]}, calls),
        fake("record_batch_plan", {}, calls),
        fake("record_batch_hypotheses", {}, calls),
        fake("submit_experiments", {"queued": ["LR 0.0015"], "slots": slots}, calls),
        fake("wait_for_results", {"results": [], "slots": slots, "budget": {"remaining": 3}}, calls),
        fake("get_leaderboard", {"rows": []}, calls),
        fake("get_code_edit_history", {"experiments": []}, calls),
        fake("get_promising_code", {"candidates": []}, calls),
    ]
    survey = with_slots(snapshot(FRESH, "baseline", remaining=10, size=4), free=1)
    for reply in (planner.decide([DIRECTIVE, obs(survey)], ASYNC), f"```python\n{planner.WAIT_PLAN}\n```"):
        out = asyncio.run(flyte.sandbox.orchestrate_local(plan_of(reply), inputs={"_unused": 0}, tasks=fakes))
        assert out["done"]["slots"] == slots
    assert calls.count("submit_experiments") == 1 and calls.count("wait_for_results") == 2
