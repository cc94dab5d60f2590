"""The research workflow: step types, the hybrid judge, human and judge decisions in the gate, and the goal.

Pure rules on plain data first; then the same rules on a real keyed `MemoryStore` ledger (the scenarios run in
a Flyte local task, see `test_ledger.run`). The only mocked edge is the hosted LLM (litellm's `mock_response`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from test_ledger import BASELINE, WARMUP, ledger_state, ok, run, scenario  # noqa: F401  (ledger_state: fixture)

import tools
from autoresearch import llm
from autoresearch.lab.budget import Budget
from autoresearch.lab.goal import Goal, goal_met
from autoresearch.lab.judge import Case, Judge, borderline, builtin_decision, case_for, parse_reply
from autoresearch.lab.loop import ResearchLoop
from autoresearch.lab.pruning import PruneRule
from autoresearch.lab.runner import ExperimentRunner
from autoresearch.ledger import ledger
from autoresearch.ledger.records import ExperimentRecord, ExperimentSpec, LeaderboardRow, SeedRun, infer_step
from autoresearch.ledger.verdicts import Arrival, Decision, GateRule, Verdict, judge
from autoresearch.planner.policy import Fork, Move, Policy, code_batch, preferred_step, search_space, step_of
from autoresearch.planner.recipes import BY_NAME
from autoresearch_types import ExperimentResult

RULE = GateRule(replicates=3)
SIGMA_ARRIVALS = [Arrival(i, "baseline", i, "success", v) for i, v in enumerate((2.70, 2.72, 2.68))]


def arrivals(*extra: tuple[str, int, float]) -> list[Arrival]:
    """The baseline's three seeds, then (title, seed, val_bpb) runs in arrival order."""
    return SIGMA_ARRIVALS + [Arrival(3 + i, t, s, "success", v) for i, (t, s, v) in enumerate(extra)]


# ---------------------------------------------------------------- step types (pure)


@pytest.mark.parametrize(
    ("keys", "code", "step"),
    [({"learning_rate"}, False, "small"), ({"n_layer"}, False, "medium"), (set(), True, "medium"),
     ({"learning_rate", "dropout"}, False, "medium")],
)  # fmt: skip
def test_an_unlabelled_edit_gets_a_step_but_never_radical(keys: set[str], code: bool, step: str) -> None:
    assert infer_step(keys, code) == step


def test_the_planner_prefers_small_steps_on_a_paying_line_then_medium_then_radical() -> None:
    assert [preferred_step(s, 8) for s in (0, 3, 4, 7, 8, 20)] == ["small"] * 2 + ["medium"] * 2 + ["radical"] * 2
    assert step_of([]) == "small"
    assert step_of([Move("axis", "learning_rate", 0.003, "up"), Move("recipe", "qk-norm")]) == "radical"
    assert BY_NAME["grad-clip-1"].step == "small" and BY_NAME["warmup-cosine"].step == "medium"


def _history(stale: int) -> list[dict[str, Any]]:
    """A history whose last `stale` experiments came after the last confirmed gain (a fork of the baseline)."""
    gain = {"title": "LR up", "parent": None, "change_summary": "[learning_rate:up]", "batch_id": "b1",
            "result": {"outcome": "success", "val_bpb": 2.6}, "standing": {"verdict": "confirmed", "gain": 0.1}}  # fmt: skip
    flat = [
        {"title": f"flat {i}", "parent": "LR up", "change_summary": "[silu]", "batch_id": "b2",
         "result": {"outcome": "success", "val_bpb": 2.61}, "standing": {"verdict": "within_noise"}}
        for i in range(stale)
    ]  # fmt: skip
    return [gain, *flat]


@pytest.mark.parametrize(("stale", "want"), [(0, "small"), (5, "medium"), (9, "radical")])
def test_code_batches_lead_with_the_preferred_step_type(stale: int, want: str) -> None:
    base = {"learning_rate": 0.003, "n_layer": 2, "n_embd": 64, "batch_size": 8, "dropout": 0.0}
    fork = Fork("LR up", BASELINE, base)
    edits, rationale = code_batch(fork, _history(stale), [], Policy(patience=8), 3, search_space(base))
    assert edits and all(e["step"] in ("small", "medium", "radical") for e in edits)
    assert edits[0]["step"] == want, (rationale, [(e["title"], e["step"]) for e in edits])


# ---------------------------------------------------------------- decisions in the gate (pure)


def test_a_human_reject_keeps_a_confirmed_gain_out_of_the_incumbency() -> None:
    runs = arrivals(("B", 0, 2.40), ("B", 1, 2.41), ("B", 2, 2.39))
    plain = judge(runs, ["baseline", "B"], RULE)
    assert plain.incumbent == "B" and plain.verdicts["B"].label == "confirmed"
    human = {"B": Decision("B", "reject", "human", "the eval was cached")}
    out = judge(runs, ["baseline", "B"], RULE, 0, human)
    assert out.incumbent == "baseline"
    assert out.verdicts["B"].label == "rejected" and out.verdicts["B"].by == "human"
    assert "the eval was cached" in out.verdicts["B"].reason
    assert judge(runs, ["baseline", "B"], RULE, 0, human) == out, "the same runs and decisions, the same verdicts"


def test_a_human_accept_makes_the_incumbent_and_later_gains_are_measured_against_it() -> None:
    runs = arrivals(("A", 0, 2.69), ("C", 0, 2.30), ("C", 1, 2.31), ("C", 2, 2.29))
    out = judge(runs, ["baseline", "A", "C"], RULE, 0, {"A": Decision("A", "accept", "human", "I trust it")})
    assert out.verdicts["A"].label == "accepted" and out.verdicts["C"].versus == "A"
    assert out.incumbent == "C", "a confirmed gain over the accepted incumbent still takes over"
    only = judge(arrivals(("A", 0, 2.69)), ["baseline", "A"], RULE, 0, {"A": Decision("A", "accept", "human")})
    assert only.incumbent == "A"


def test_a_judge_can_ask_for_fresh_seeds_or_reject_but_never_confirm() -> None:
    runs = arrivals(("A", 0, 2.665))
    assert judge(runs, ["baseline", "A"], RULE).verdicts["A"].label == "within_noise"
    more = judge(runs, ["baseline", "A"], RULE, 0, {"A": Decision("A", "more_seeds", "judge", "near miss")})
    assert more.confirm_seeds["A"] == [1, 2] and more.verdicts["A"].by == "judge"
    accepted = judge(runs, ["baseline", "A"], RULE, 0, {"A": Decision("A", "accept", "judge", "looks fine")})
    assert accepted.verdicts["A"].label == "within_noise" and accepted.incumbent == "baseline"
    rejected = judge(runs, ["baseline", "A"], RULE, 0, {"A": Decision("A", "reject", "judge", "odd")})
    assert rejected.verdicts["A"].label == "rejected"
    settled = judge(runs + [Arrival(9, "A", 1, "success", 2.69), Arrival(10, "A", 2, "success", 2.70)],
                    ["baseline", "A"], RULE, 0, {"A": Decision("A", "more_seeds", "judge")})  # fmt: skip
    assert settled.verdicts["A"].by == "rule" and "A" not in settled.confirm_seeds, "the gate decides on the seeds"
    for outcome, label in (("pruned", "pruned"), ("crash", "failed")):
        spoiled = judge(runs + [Arrival(9, "A", 1, outcome, None)], ["baseline", "A"], RULE, 0,
                        {"A": Decision("A", "more_seeds", "judge")})  # fmt: skip
        assert spoiled.verdicts["A"].label == label and "A" not in spoiled.confirm_seeds, "one spoiled seed ends it"


# ---------------------------------------------------------------- the hybrid judge (pure, and its LLM call)


def verdict(label: str, gain: float | None = None, n_fresh: int = 0) -> Verdict:
    return Verdict("A", label, sigma=0.02, gain=gain, n_fresh=n_fresh, versus="baseline")


SMOOTH = [(0.25, 3.2), (0.5, 3.0), (0.75, 2.9), (1.0, 2.85)]
RISING = [(0.25, 3.2), (0.5, 2.9), (0.75, 3.1), (1.0, 3.3)]


@pytest.mark.parametrize(
    ("v", "curve", "parent", "beats", "why"),
    [
        (verdict("within_noise", gain=0.015), SMOOTH, SMOOTH, True, "near miss"),
        (verdict("within_noise", gain=0.005), SMOOTH, SMOOTH, True, None),
        (verdict("within_noise", gain=0.015, n_fresh=2), SMOOTH, SMOOTH, True, None),
        (verdict("regression", gain=-0.1), RISING, SMOOTH, False, None),
        (verdict("confirmed", gain=0.1, n_fresh=2), SMOOTH, SMOOTH, True, None),
        (verdict("confirmed", gain=0.1, n_fresh=2), RISING, SMOOTH, True, "rose"),
        (verdict("unconfirmed", gain=0.1), [(1.0, 3.0)], [(1.0, 2.8)], True, "above the parent"),
        (verdict("unconfirmed", gain=0.1), [(1.0, 3.0)], [(1.0, 2.8)], False, None),
    ],
)
def test_only_borderline_verdicts_go_to_the_judge(v: Verdict, curve: Any, parent: Any, beats: bool, why: Any) -> None:
    got = borderline(v, curve, parent, beats)
    assert (got is None) if why is None else (why in (got or "")), got


@pytest.mark.parametrize(
    ("reply", "parsed"),
    [
        ('{"decision": "reject", "reason": "the loss diverged"}', ("reject", "the loss diverged")),
        ('```json\n{"decision": "more_seeds", "reason": "close call"}\n```', ("more_seeds", "close call")),
        ('{"decision": "confirm", "reason": "x"}', None),
        ('{"decision": "accept"}', None),
        ('{"decision": "accept", "reason": "ok", "score": 3}', None),
        ("I think you should accept it.", None),
        (None, None),
    ],
)
def test_a_judge_reply_must_match_the_schema(reply: Any, parsed: Any) -> None:
    assert parse_reply(reply) == parsed


def near_miss_case(seeds_needed: int = 2) -> Case:
    return Case("A", "near miss: better by 0.6 sigma", verdict("within_noise", 0.012), seeds_needed=seeds_needed)


def test_the_builtin_judge_asks_for_seeds_while_the_budget_allows() -> None:
    assert builtin_decision(near_miss_case(), budget_left=5)[0] == "more_seeds"
    assert builtin_decision(near_miss_case(), budget_left=1)[0] == "reject"
    curve_case = Case("A", "suspicious learning curve: rose", verdict("confirmed", 0.1, 2))
    assert builtin_decision(curve_case, budget_left=5)[0] == "accept"


class Counting:
    """A `call_llm` that counts its calls and answers with a fixed text."""

    def __init__(self, text: str) -> None:
        self.text, self.calls = text, 0

    async def __call__(self, model: str, system: str, messages: list[dict], tools: Any) -> Any:
        self.calls += 1
        assert "borderline" in system and "near miss" in messages[0]["content"]
        return llm.LLMMessage(content=self.text, tool_calls=[], raw=None)


def record(title: str, parent: str | None, values: list[float], curve: Any, src: str = BASELINE) -> ExperimentRecord:
    runs = [
        SeedRun(i, i + 1, "screen", ExperimentResult("success", val_bpb=v, seed=i, curve=[list(p) for p in curve]))
        for i, v in enumerate(values)
    ]
    return ExperimentRecord(ExperimentSpec(title, title.lower(), parent), src, runs)


def test_a_clear_case_never_calls_the_llm_and_a_borderline_one_calls_it_once() -> None:
    base = record("baseline", None, [2.70, 2.72, 2.68], SMOOTH)
    clear = case_for(record("A", None, [2.60], SMOOTH), base, verdict("unconfirmed", 0.1), base_values(), 3)
    assert clear is None, "a screen that passed cleanly is the gate's to settle"
    near = case_for(record("B", None, [2.685], SMOOTH, WARMUP), base, verdict("within_noise", 0.015), base_values(), 3)
    assert near is not None and near.seeds_needed == 2 and "-    return config.learning_rate" in near.diff
    answer = Counting('{"decision": "reject", "reason": "near miss: not worth more seeds"}')
    decision, reason, who = asyncio.run(Judge(answer, "openai/gpt-4o-mini").decide(near, budget_left=9))
    assert (decision, answer.calls) == ("reject", 1) and "not worth" in reason and "LLM judge" in who
    garbled = Counting("accept, I guess")
    decision, reason, who = asyncio.run(Judge(garbled, "m").decide(near, budget_left=9))
    assert decision == "more_seeds" and "not the JSON" in reason and who == "built-in judge"


def base_values() -> list[float]:
    return [2.70, 2.72, 2.68]


def test_the_llm_judge_goes_through_litellm_and_its_cost_is_counted() -> None:
    client = llm.LLMClient(retries=0, extra={"mock_response": '{"decision": "more_seeds", "reason": "close"}'})
    decision, _, who = asyncio.run(Judge(client, "openai/gpt-4o-mini").decide(near_miss_case(), budget_left=4))
    assert decision == "more_seeds" and client.usage.calls == 1 and "gpt-4o-mini" in who
    broken = llm.LLMClient(retries=0, extra={"mock_response": "not json at all"})
    decision, reason, _ = asyncio.run(Judge(broken, "openai/gpt-4o-mini").decide(near_miss_case(), budget_left=1))
    assert decision == "reject" and "not the JSON" in reason, "a malformed reply falls back to the built-in rule"


# ---------------------------------------------------------------- the goal (pure)


def row(title: str, val: float, label: str, incumbent: bool = False) -> LeaderboardRow:
    return LeaderboardRow(1, title, None, val, None, 3, 0.0, 0.0, label, "", None, incumbent, "success", 1, "", {})


@pytest.mark.parametrize(
    ("goal", "rows", "met"),
    [
        (Goal(), [row("baseline", 2.7, "baseline"), row("B", 2.5, "confirmed", True)], False),
        (Goal(val_bpb=2.6), [row("baseline", 2.7, "baseline", True)], False),
        (Goal(val_bpb=2.6), [row("baseline", 2.7, "baseline"), row("B", 2.5, "confirmed", True)], True),
        (Goal(val_bpb=2.4), [row("baseline", 2.7, "baseline"), row("B", 2.5, "confirmed", True)], False),
        (Goal(gain_pct=5), [row("baseline", 2.7, "baseline"), row("B", 2.5, "confirmed", True)], True),
        (Goal(gain_pct=10), [row("baseline", 2.7, "baseline"), row("B", 2.5, "confirmed", True)], False),
        (Goal(gain_pct=1), [row("baseline", 2.7, "baseline"), row("B", 2.5, "accepted", True)], True),
    ],
)
def test_the_goal_is_met_only_by_a_confirmed_or_accepted_incumbent(goal: Goal, rows: list, met: bool) -> None:
    assert (goal_met(goal, rows) is not None) == met


# ---------------------------------------------------------------- on a real ledger


@scenario
async def steps_and_decisions(key: str) -> Any:
    led = await ledger.Ledger.open(key)
    for seed, v in enumerate((2.70, 2.72, 2.68, 2.71, 2.69)):
        await led.record_result("baseline", ExperimentResult("success", val_bpb=v, seed=seed), "replicate")
    saved = await led.save_edits(
        [
            {"title": "Warmup", "train_py": WARMUP, "step": "Medium"},
            {"title": "Tiny LR", "overrides": {"learning_rate": 0.002}},
            {"title": "Wide", "overrides": {"n_embd": 96}, "step": "radical"},
            {"title": "Huge", "overrides": {"dropout": 0.1}, "step": "gigantic"},
        ]
    )
    await led.record_result("Warmup", ok(2.40), "screen")
    await led.record_result("Tiny LR", ok(2.69), "screen")
    await led.record_decision("Tiny LR", "more_seeds", "near miss")
    await led.record_human_verdict("Warmup", "reject", "leaks the schedule")
    fork = await led.save_edits([{"title": "On warmup", "parent_title": "Warmup", "overrides": {"dropout": 0.1}}])
    again = await ledger.Ledger.open(key)  # what a resume sees
    records, verdicts, board = await again.view()
    return {
        "saved": [s["title"] for s in saved["saved"]],
        "rejected": saved["rejected"],
        "steps": {r.title: r.spec.step for r in records},
        "fork": fork["rejected"],
        "labels": {r.title: (r.label, r.decided_by) for r in board},
        "incumbent": verdicts.incumbent,
        "confirm": verdicts.confirm_seeds,
        "history": await again.history_table(),
    }


@pytest.mark.usefixtures("ledger_state")
async def test_steps_and_decisions_persist_and_shape_forking_and_the_best() -> None:
    out = await run("steps_and_decisions")
    assert out["saved"] == ["Warmup", "Tiny LR", "Wide"]
    assert "step must be one of small, medium, radical" in out["rejected"][0]["error"]
    assert out["steps"] == {"baseline": "", "Warmup": "medium", "Tiny LR": "small", "Wide": "radical"}
    assert "was rejected (human: leaks the schedule)" in out["fork"][0]["error"], "a rejected experiment is not forked"
    assert out["labels"]["Warmup"] == ["rejected", "human"] and out["incumbent"] == "baseline"
    assert out["labels"]["Tiny LR"][1] == "judge" and out["confirm"] == {"Tiny LR": [1, 2, 3, 4]}
    assert "| radical |" in out["history"] and "rejected (human)" in out["history"]


@scenario
async def progress_never_goes_back(key: str) -> Any:
    """The baseline's seeds, then a batch of two screens where one earns four confirmation runs mid-batch (the case
    that once showed `0/2`, then `1/4`): every counter the terminal was shown, in order."""
    led = await ledger.Ledger.open(key)
    values = {"baseline": 2.70, "Warmup": 2.30, "Wide": 2.71}
    shown: list[tuple[str, int, int]] = []

    async def call(job: Any, extras: Any) -> ExperimentResult:
        await asyncio.sleep(0)  # yield so that the other slot starts: not a synchronisation
        return ExperimentResult("success", val_bpb=values[job.title] + 0.01 * (job.seed % 2), seed=job.seed)

    async with ExperimentRunner(call, 2, local=False) as runner:
        loop = ResearchLoop(
            led,
            runner,
            Budget(4, 2, 2, max_runs=13),
            on_start=lambda jobs, done, total: shown.append(("start", done, total)),
            on_result=lambda job, done, total, result, standing: shown.append((job.title, done, total)),
        )
        await loop.run_jobs(await loop.pending_jobs())
        await led.save_edits([{"title": "Warmup", "train_py": WARMUP}, {"title": "Wide", "overrides": {"n_embd": 96}}])
        recs = await led.specs(["Warmup", "Wide"])
        await loop.run_jobs([loop.job(r, "screen") for r in recs])
    return {"shown": shown, "runs": led.runs_used()}


@pytest.mark.usefixtures("ledger_state")
def test_the_progress_counter_never_goes_back_when_confirmations_join_a_batch() -> None:
    out = asyncio.run(run("progress_never_goes_back"))
    shown = out["shown"]
    assert out["runs"] == 11, "5 baseline seeds, 2 screens, 4 confirmations of Warmup"
    assert [s[0] for s in shown].count("Warmup") == 5 and len([s for s in shown if s[0] != "start"]) == 11
    assert {total for _, _, total in shown} == {13}, f"the denominator is the key's run budget: {shown}"
    dones = [done for _, done, _ in shown]
    assert dones == sorted(dones) and dones[-1] == 11, f"the counter never goes back: {shown}"


@scenario
async def goal_stops_research(key: str) -> Any:
    led = await ledger.Ledger.open(key)
    for seed, v in enumerate((2.70, 2.72, 2.68, 2.71, 2.69)):
        await led.record_result("baseline", ExperimentResult("success", val_bpb=v, seed=seed), "replicate")
    await led.save_edits([{"title": "Warmup", "train_py": WARMUP}])

    async def never(job: Any, extras: Any) -> ExperimentResult:
        raise AssertionError("nothing runs in this scenario")

    async with ExperimentRunner(never, 1, local=False) as runner:
        research = tools.ResearchTools(ResearchLoop(led, runner, Budget(20, 2, 1), goal=Goal(gain_pct=5.0)), {})
        (rec,) = await led.specs(["Warmup"])
        before = research.budget.remaining
        for seed, v in enumerate((2.40, 2.41, 2.39, 2.40, 2.41)):
            job = research.loop.job(rec, "screen" if seed == 0 else "confirm", seed)
            await research.loop.record_job(job, ExperimentResult("success", val_bpb=v, seed=seed))
        after = research.budget.to_dict()
        admitted = research.budget.admit(research.loop.job(rec, "screen", 7))
        stopped = await research.stop_research("")
    return {"before": before, "after": after, "admitted": admitted, "stops": await led.stops(), "bad": stopped}


@pytest.mark.usefixtures("ledger_state")
async def test_reaching_the_goal_stops_research_and_is_recorded() -> None:
    out = await run("goal_stops_research")
    assert out["before"] == 20 and out["after"]["remaining"] == 0
    assert (
        out["after"]["stopped"].startswith("goal reached: 'Warmup' (confirmed)")
        and "after 10 runs" in out["after"]["stopped"]
    )
    assert out["admitted"] is False, "nothing new starts once the goal is reached"
    assert [s["by"] for s in out["stops"]] == ["goal"]
    assert "non-empty string" in out["bad"]["error"]


@scenario
async def pruned_roles(key: str) -> Any:
    from autoresearch.lab.pruning import PruneRule
    from autoresearch.lab.runner import Job, _limits

    led = await ledger.Ledger.open(key)
    for seed, v in enumerate((2.70, 2.72, 2.68, 2.71, 2.69)):
        curve = [[f / 10, 2 * v + 0.5 * (10 - f) / 10] for f in range(1, 11)]  # ends at twice its val_bpb
        result = ExperimentResult("success", val_bpb=v, seed=seed, curve=curve)
        await led.record_result("baseline", result, "replicate")
    await led.save_edits([{"title": "Warmup", "train_py": WARMUP}])
    base, edit = await led.specs(["baseline", "Warmup"])
    out = {}
    for role, rec in (("screen", edit), ("confirm", edit), ("replicate", base), ("transfer", base)):
        out[role] = await _limits(led, Job(rec, 1, role), PruneRule(mode="incumbent"))
    out["off"] = await _limits(led, Job(edit, 1, "confirm"), PruneRule())
    return out


@pytest.mark.usefixtures("ledger_state")
def test_pruning_holds_screens_and_confirmations_to_the_thresholds_and_never_the_yardsticks() -> None:
    """On a real ledger: an experiment's screen and its confirmation re-runs get the same thresholds from the
    baseline's trusted curves; the baseline's seeds and the transfer check get none, nor does anything when off."""
    out = asyncio.run(run("pruned_roles"))
    assert out["screen"] and out["confirm"] == out["screen"], out
    assert out["replicate"] == [] and out["transfer"] == [] and out["off"] == []


@scenario
async def spoiled_confirmation_skips_the_rest(key: str) -> Any:
    """One slot: a candidate passes its screen and earns four confirmation runs; the first of them is pruned, so the
    gate owes it no more, and the three still queued must not train."""
    led = await ledger.Ledger.open(key)
    trained: list[tuple[str, int, str]] = []

    async def call(job: Any, extras: Any) -> ExperimentResult:
        trained.append((job.title, job.seed, job.role))
        if job.role == "confirm":
            return ExperimentResult("pruned", val_bpb=None, seed=job.seed, message="pruned at 25% of its budget")
        return ExperimentResult("success", val_bpb={"baseline": 2.70, "Warmup": 2.30}[job.title], seed=job.seed)

    async with ExperimentRunner(call, 1, local=False) as runner:
        loop = ResearchLoop(led, runner, Budget(4, 1, 1))
        await loop.run_jobs(await loop.pending_jobs())
        await led.save_edits([{"title": "Warmup", "train_py": WARMUP}])
        (rec,) = await led.specs(["Warmup"])
        outcome = await loop.run_jobs([loop.job(rec, "screen")])
    _, verdicts, _ = await led.view()
    return {
        "trained": trained,
        "skipped": [(j.title, j.seed, loop.skip_reason(j)) for j in outcome.skipped],
        "label": verdicts.verdicts["Warmup"].label,
        "owed": verdicts.confirm_seeds,
        "runs": led.runs_used(),
    }


@pytest.mark.usefixtures("ledger_state")
def test_a_confirmation_the_gate_no_longer_owes_is_skipped_not_trained() -> None:
    out = asyncio.run(run("spoiled_confirmation_skips_the_rest"))
    confirms = [t for t in out["trained"] if t[2] == "confirm"]
    assert len(confirms) == 1 and out["label"] == "pruned" and out["owed"] == {}, out
    assert len(out["skipped"]) == GateRule().replicates - 2, "the other fresh seeds were reported skipped"
    assert all("confirmation already ended" in why for _, _, why in out["skipped"]), out["skipped"]
    assert out["runs"] == GateRule().replicates + 2, "the baseline's seeds, the screen and the one pruned seed"


async def confirmation_under(
    key: str, mode: str, fresh_bpb: float | list[float], screen_bpb: float = 2.60, judge: Judge | None = None
) -> Any:
    """Two slots: a candidate passes its screen (2.60 against a baseline near 2.70), then its fresh seeds come in at
    `fresh_bpb` (one value for all, or one per seed in start order). Each confirmation run notes how many jobs were
    queued or running as it started: with pruning on the candidate's fresh seeds go one at a time, so a futile
    confirmation stops before the next one starts. The second fresh seed ends only once the third has started, so
    seeds that start together are both in flight when one of them ends. `screen_bpb` and `judge`: another screen,
    and the judge that may give it a second chance."""
    led = await ledger.Ledger.open(key)
    trained: list[tuple[str, int, str]] = []
    load: list[int] = []
    values = iter((2.70, 2.72, 2.68, 2.71, 2.69))
    fresh = iter(fresh_bpb if isinstance(fresh_bpb, list) else [fresh_bpb] * GateRule().replicates)
    third_started, events = asyncio.Event(), []

    async def call(job: Any, extras: Any) -> ExperimentResult:
        trained.append((job.title, job.seed, job.role))
        if job.role != "confirm":
            bpb = next(values) if job.title == "baseline" else screen_bpb
            return ExperimentResult("success", val_bpb=bpb, seed=job.seed)
        load.append(runner.in_flight + runner.queued)
        bpb, nth = next(fresh), len(load)
        if nth == 3:
            third_started.set()
        elif nth == 2 and runner.queued + runner.in_flight > 1:  # others were started with it: wait for one
            await third_started.wait()
        return ExperimentResult("success", val_bpb=bpb, seed=job.seed)

    async with ExperimentRunner(call, 2, local=False) as runner:
        loop = ResearchLoop(led, runner, Budget(4, 1, 2), emit=events.append, judge=judge, prune=PruneRule(mode=mode))
        await loop.run_jobs(await loop.pending_jobs())
        await led.save_edits([{"title": "Warmup", "train_py": WARMUP}])
        (rec,) = await led.specs(["Warmup"])
        outcome = await loop.run_jobs([loop.job(rec, "screen")])
    _, verdicts, _ = await led.view()
    decision = (await led.decisions()).get("Warmup")
    return {
        "confirms": [t for t in trained if t[2] == "confirm"],
        "load": load,
        "skipped": [(j.title, j.seed, loop.skip_reason(j)) for j in outcome.skipped],
        "label": verdicts.verdicts["Warmup"].label,
        "reason": verdicts.verdicts["Warmup"].reason,
        "owed": verdicts.confirm_seeds,
        "decision": dataclasses.asdict(decision) if decision else None,
        "futile_events": [e for e in events if e.get("kind") == "futile"],
    }


@scenario
async def futile_confirmation_pruned(key: str) -> Any:
    return await confirmation_under(key, "incumbent", 2.80)


@scenario
async def good_confirmation_pruned(key: str) -> Any:
    return await confirmation_under(key, "incumbent", 2.40)


@scenario
async def turned_futile_together(key: str) -> Any:
    return await confirmation_under(key, "incumbent", [2.40, 3.50, 3.50, 3.50])


@scenario
async def near_miss_futile_from_its_screen(key: str) -> Any:
    return await confirmation_under(key, "incumbent", 2.69, screen_bpb=2.69, judge=Judge())


@scenario
async def near_miss_unpruned(key: str) -> Any:
    return await confirmation_under(key, "off", 2.69, screen_bpb=2.69, judge=Judge())


@scenario
async def futile_confirmation_unpruned(key: str) -> Any:
    return await confirmation_under(key, "off", 2.80)


@pytest.mark.usefixtures("ledger_state")
def test_a_futile_confirmation_stops_with_pruning_and_runs_in_full_without() -> None:
    """Pruning on: the first fresh seed, far worse than the baseline, leaves no chance, so pruning records `FUTILE`
    once and no other seed trains (none was started beside it). Off: all the fresh seeds are queued together."""
    fresh = GateRule().replicates - 1
    on = asyncio.run(run("futile_confirmation_pruned"))
    assert len(on["confirms"]) == 1 and on["load"] == [1] and on["skipped"] == [], on
    assert on["label"] == "pruned" and on["owed"] == {} and "futility" in on["reason"], on
    assert on["decision"]["decision"] == "futile" and on["decision"]["by"] == "pruning", on["decision"]
    assert len(on["futile_events"]) == 1, on["futile_events"]
    off = asyncio.run(run("futile_confirmation_unpruned"))
    assert len(off["confirms"]) == fresh and off["skipped"] == [] and off["decision"] is None, off
    assert off["label"] == "regression" and max(off["load"]) == fresh, off


@pytest.mark.usefixtures("ledger_state")
def test_with_pruning_a_clear_gain_runs_its_first_fresh_seed_alone_then_the_rest_together() -> None:
    """Far better than the baseline, its first fresh seed lifts the chance to pass over `PruneRule.together`: the
    other fresh seeds then start at once (three queued or running), and it is confirmed on all of them."""
    out = asyncio.run(run("good_confirmation_pruned"))
    fresh = GateRule().replicates - 1
    assert len(out["confirms"]) == fresh and out["load"][0] == 1 and max(out["load"][1:]) == fresh - 1, out
    assert out["label"] == "confirmed" and out["decision"] is None and out["futile_events"] == [], out


@pytest.mark.usefixtures("ledger_state")
def test_a_judges_second_chance_that_its_screen_leaves_no_hope_runs_no_fresh_seed_with_pruning() -> None:
    """A near miss (0.01 better than the baseline's mean, about 0.6 sigma): the built-in judge asks for fresh seeds.
    With pruning on, the screen seed alone already predicts under a 10% chance to pass (optimistically: it was
    selected for looking good), so pruning records `FUTILE` at once and no fresh seed trains. Off: all four run."""
    on = asyncio.run(run("near_miss_futile_from_its_screen"))
    assert on["confirms"] == [] and on["owed"] == {} and on["label"] == "within_noise", on
    assert on["decision"]["decision"] == "futile" and "before any fresh seed" in on["decision"]["reason"], on
    assert len(on["futile_events"]) == 1 and on["futile_events"][0]["chance"] < 0.1, on["futile_events"]
    off = asyncio.run(run("near_miss_unpruned"))
    assert len(off["confirms"]) == GateRule().replicates - 1 and off["decision"]["decision"] == "more_seeds", off


@scenario
async def agent_ends_mid_confirmation(key: str) -> Any:
    """The agent submits a screen and ends at once (its turns or ideas are spent) while the runs are in flight: the
    session still lets them finish and runs the confirmations the screen earned."""
    led = await ledger.Ledger.open(key)

    async def call(job: Any, extras: Any) -> ExperimentResult:
        value = {"baseline": 2.70, "Warmup": 2.30}[job.title] + 0.01 * (job.seed % 2)
        return ExperimentResult("success", val_bpb=value, seed=job.seed)

    async with ExperimentRunner(call, 2, local=False) as runner:
        loop = ResearchLoop(led, runner, Budget(1, 1, 2))
        await loop.run_jobs(await loop.pending_jobs())
        await led.save_edits([{"title": "Warmup", "train_py": WARMUP}])
        (rec,) = await led.specs(["Warmup"])
        await loop.start_jobs([loop.job(rec, "screen")])  # returns at once: the agent's last act
        await loop.finish_confirmations()
    _, verdicts, _ = await led.view()
    return {"label": verdicts.verdicts["Warmup"].label, "owed": verdicts.confirm_seeds, "runs": led.runs_used()}


@pytest.mark.usefixtures("ledger_state")
def test_a_session_never_ends_with_a_candidate_half_confirmed() -> None:
    out = asyncio.run(run("agent_ends_mid_confirmation"))
    assert out["label"] == "confirmed" and out["owed"] == {}, out
    assert out["runs"] == 2 * GateRule().replicates, "the baseline's seeds, the screen and every fresh seed"


@pytest.mark.usefixtures("ledger_state")
def test_seeds_started_together_that_end_together_stop_a_confirmation_once() -> None:
    """A first fresh seed far better than the baseline starts the other three together; the next two (both in
    flight) come in far worse. The first to end stops the confirmation for futility; the second, ending beside it,
    must not stop it again, and the fourth, still queued, is skipped."""
    out = asyncio.run(run("turned_futile_together"))
    fresh = GateRule().replicates - 1
    assert out["load"][0] == 1 and max(out["load"][1:]) == fresh - 1, out
    assert len(out["confirms"]) == 3 and len(out["skipped"]) == 1, out
    assert "confirmation already ended" in out["skipped"][0][2], out["skipped"]
    assert len(out["futile_events"]) == 1 and out["label"] == "pruned", out
