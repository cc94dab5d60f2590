"""The research subagent: its pure rules, and the `research` tool on a real ledger with a scripted sub-LLM.

The sub-LLM is the one mocked edge: a litellm `CustomLLM` answers through the real `LLMClient` from a script per
scenario (tool calls or text), with litellm's `mock_completion` giving real usage and prices. The ledger is real
(a keyed `MemoryStore` in a Flyte local task); its results are recorded directly, nothing is trained.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import flyte
import litellm
import pytest

import tools
from autoresearch import llm
from autoresearch.agent import subagent as ra
from autoresearch.lab.budget import Budget
from autoresearch.lab.loop import ResearchLoop
from autoresearch.lab.runner import ExperimentRunner
from autoresearch.ledger import ledger as ledger_mod
from autoresearch.planner.recipes import BY_NAME, FAMILY_STEP, RECIPES
from autoresearch_types import ExperimentConfig, ExperimentResult

MARKER = "AGENT-TRANSCRIPT-ONLY-7f3a"
"""Written into the agent's transcript; the sub-LLM must never see it."""
TINY = ExperimentConfig(n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=4, token_budget=384, vocab_size=512)
CAP = 4e-5
"""A cost cap a little under three calls of the scripted model (gpt-4o-mini prices, 10 + 20 tokens a call)."""
GOOD = {
    "ideas": [
        {
            "idea": "warmup-linear: linear warmup then linear decay",
            "evidence": ['ledger: "Warmup cosine" (regression)', "arXiv:1608.03983 SGDR"],
            "expected_effect": "-0.02 val_bpb",
            "step": "Medium",
        },
        {
            "idea": "AdamW beta2 0.95",
            "evidence": "ledger: baseline",
            "expected_effect": "-0.01 val_bpb",
            "step": "small",
        },
    ]
}
GOOD_TEXT = "Here is the table:\n```json\n" + json.dumps(GOOD) + "\n```"


def history_row(title: str, tags: str, verdict: str, gain: float | None) -> dict[str, Any]:
    """A `get_code_edit_history` row with a finished result and the gate's verdict."""
    result = {"outcome": "success", "val_bpb": 2.0 - (gain or 0.0)}
    standing = {"verdict": verdict, "gain": gain}
    return {"title": title, "parent": "baseline", "change_summary": tags, "result": result, "standing": standing}


# ---------------------------------------------------------------- pure rules


def test_every_recipe_family_has_a_step_type() -> None:
    assert {r.family for r in RECIPES} <= set(FAMILY_STEP), "a new family needs its step type"
    assert set(FAMILY_STEP.values()) == set(ra.STEP_TYPES), "the one table of recipe families covers every step type"
    assert BY_NAME["grad-clip-1"].step == "small" and BY_NAME["relu2"].step == "medium"
    assert BY_NAME["tied-embeddings"].step == "radical" and BY_NAME["embedding-lr-3x"].step == "medium"


def test_budget_warns_near_the_end_and_stops_past_it() -> None:
    assert ra.budget_status(100, 100, 1000) == "ok"
    assert ra.budget_status(800, 10, 1000) == "warn", "80% of the budget"
    assert ra.budget_status(600, 450, 1000) == "warn", "one more call like the last would pass it"
    assert ra.budget_status(1000, 10, 1000) == "over"
    assert ra.clamp_tokens("20000") == 20000 and ra.clamp_tokens(10) == ra.MIN_MAX_TOKENS
    assert ra.clamp_tokens(10**9) == ra.MAX_MAX_TOKENS and ra.clamp_tokens("lots") is None
    assert ra.clamp_tokens(True) is None


def test_loops_are_three_repeats_of_a_call_or_a_cycle() -> None:
    a, b, c = ra.call_key("get_leaderboard", {"top_n": 5}), ra.call_key("history", {}), ra.call_key("x", {"k": 1})
    assert ra.call_key("f", {"b": 1, "a": 2}) == ra.call_key("f", {"a": 2, "b": 1}), "argument order is irrelevant"
    assert ra.detect_loop([a, a]) is None and ra.detect_loop([a, a, b]) is None
    assert "same call" in (ra.detect_loop([b, a, a, a]) or "")
    assert ra.detect_loop([a, b, a, b]) is None, "two rounds are not yet a loop"
    assert "cycle" in (ra.detect_loop([a, b, a, b, a, b]) or "")
    assert "cycle" in (ra.detect_loop([c, a, b, c, a, b, c, a, b]) or "")
    assert ra.detect_loop([a, b, c, b, a, c, a, b]) is None


def test_the_answer_schema_normalises_good_tables_and_names_what_is_wrong() -> None:
    rows, problem = ra.check_answer(GOOD_TEXT)
    assert problem == "" and [r["step"] for r in rows] == ["medium", "small"]
    assert rows[1]["evidence"] == ["ledger: baseline"], "a single evidence string becomes a list"
    assert set(rows[0]) == {"idea", "evidence", "expected_effect", "step"}
    assert ra.check_answer(json.dumps(GOOD["ideas"]))[0] == rows, "a bare list is accepted"
    assert "no JSON" in ra.check_answer("warmup helps, I think")[1]
    bad_step = {"ideas": [{**GOOD["ideas"][0], "step": "huge"}]}
    assert "step" in ra.check_answer(json.dumps(bad_step))[1]
    no_evidence = {"ideas": [{**GOOD["ideas"][0], "evidence": []}]}
    assert "evidence" in ra.check_answer(json.dumps(no_evidence))[1]
    assert "at least one idea" in ra.check_answer('{"ideas": []}')[1]


def test_offline_ranking_is_deterministic_and_uses_the_verdicts() -> None:
    prior_only = ra.rank_recipes([])
    names = [row["idea"].split(":")[0] for row in prior_only["ideas"]]
    assert names == [r.name for r in sorted(RECIPES, key=lambda r: -r.prior)], "no evidence: by prior"
    history = [history_row("Cosine", "[warmup-cosine] warmup then cosine", "regression", -0.4)]
    ranked = ra.rank_recipes(history)
    assert ranked == ra.rank_recipes(history), "same history, same table"
    order = [row["idea"].split(":")[0] for row in ranked["ideas"]]
    assert order.index("warmup-cosine") > names.index("warmup-cosine"), "a regression lowers it"
    cosine = ranked["ideas"][order.index("warmup-cosine")]
    assert cosine["evidence"][0] == 'ledger: "Cosine" (regression, gain -0.4000)' and cosine["step"] == "medium"
    linear = ranked["ideas"][order.index("warmup-linear")]
    assert "same family" in linear["evidence"][0]
    best_source = BY_NAME["relu2"].apply((Path(__file__).parent.parent / "train.py").read_text()) or ""
    without = ra.rank_recipes([], best_source, "ReLU2")
    kept = {row["idea"].split(":")[0] for row in without["ideas"]}
    assert not kept & {"relu2", "silu"} and "ReLU2" in without["note"], "ideas already in the best are left out"


# ---------------------------------------------------------------- the tool on a real ledger


class ScriptedSubLLM(litellm.CustomLLM):
    """A stand-in hosted model: each scenario (the model name) answers from its own script and is recorded."""

    def __init__(self, scripts: dict[str, list[Any]], prompt_tokens: dict[str, int]):
        super().__init__()
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.prompt_tokens = prompt_tokens
        self.seen: dict[str, list[dict[str, Any]]] = {}

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
        name = model.split("/")[-1]
        offered = [t["function"]["name"] for t in (kwargs.get("optional_params") or {}).get("tools") or []]
        self.seen.setdefault(name, []).append({"messages": json.loads(json.dumps(messages)), "tools": offered})
        reply = self.scripts[name].pop(0) if self.scripts[name] else "out of script"
        extra: dict[str, Any] = {"prompt_tokens": self.prompt_tokens.get(name, 10)}
        if isinstance(reply, list):
            calls = [
                {
                    "id": f"c{uuid.uuid4().hex[:8]}",
                    "type": "function",
                    "function": {"name": n, "arguments": json.dumps(a)},
                }
                for n, a in reply
            ]
            extra["mock_tool_calls"], reply = calls, ""
        return litellm.mock_completion(model="openai/gpt-4o-mini", messages=messages, mock_response=reply, **extra)


LEADERBOARD = ("get_leaderboard", {"top_n": 5})
SCRIPTS: dict[str, list[Any]] = {
    "normal": [[LEADERBOARD, ("read_train_code", {"title": "Warmup cosine"})], GOOD_TEXT],
    "loop": [[LEADERBOARD]] * 5,
    "budget": [[("get_code_edit_history", {"last_n": n})] for n in range(1, 8)],
    "malformed": ["I think warmup helps.", '{"ideas": [{"idea": "warmup"}]}', GOOD_TEXT],
    "fixed": ["Sure, here are ideas: warmup.", GOOD_TEXT],
    "write": [
        [("edit_train_code_batch", {"edits": [{"title": "Sneaky", "overrides": {"learning_rate": 0.01}}]})]
        + [("submit_experiments", {"titles": ["LR 6e-3"]})],
        GOOD_TEXT,
    ],
    "cap": [[("get_code_edit_history", {"last_n": n})] for n in range(1, 8)],
    "agent": ["ok", "ok"],
}

env = flyte.TaskEnvironment("research_agent_tests")


async def seeded_ledger(key: str) -> ledger_mod.Ledger:
    """A real ledger: the baseline on three seeds, a warmup-cosine recipe that regressed, an LR step within noise."""
    ledger = await ledger_mod.Ledger.open(key, TINY)
    seed = ledger.base_config.seed
    for i, bpb in enumerate([2.00, 2.01, 1.99]):
        await ledger.record_result("baseline", ExperimentResult("success", val_bpb=bpb, seed=seed + i), "replicate")
    cosine = BY_NAME["warmup-cosine"].apply(ledger.baseline_source)
    edits = [
        {"title": "Warmup cosine", "train_py": cosine, "change_summary": "[warmup-cosine] warmup then cosine decay"},
        {"title": "LR 6e-3", "overrides": {"learning_rate": 0.006}, "change_summary": "[learning_rate:up] LR x2"},
    ]
    await ledger.save_edits(edits)
    await ledger.record_result("Warmup cosine", ExperimentResult("success", val_bpb=2.40, seed=seed))
    await ledger.record_result("LR 6e-3", ExperimentResult("success", val_bpb=2.005, seed=seed))
    return ledger


def tool_set(ledger: ledger_mod.Ledger, call_llm: Any = None, model: str = "") -> dict[str, Any]:
    """The agent's tools bound to `ledger`; the runner refuses any run (research must not start one)."""

    async def never(job: Any, extras: dict[str, Any]) -> ExperimentResult:
        raise AssertionError("the research subagent started a run")

    runner = ExperimentRunner(never, 1, warm_pool=False)
    loop = ResearchLoop(ledger, runner, Budget(5, 2, 1))
    research = tools.ResearchTools(loop, {"dataset": "shakespeare"}, call_llm=call_llm, model=model)
    return {f.__name__: f for f in research.as_tools()}


@env.task
async def research_scenarios(key: str) -> str:
    """Every scenario on one real ledger; what each returned, and the ledger before and after (JSON)."""
    ledger = await seeded_ledger(key)
    ledger.memory.append({"role": "user", "content": f"the agent's directive {MARKER}"})
    transcript = list(ledger.memory.messages)
    titles = sorted(r.title for r in await ledger.records())
    offline = tool_set(ledger)
    out: dict[str, Any] = {"tool_names": sorted(offline), "titles_before": titles}
    out["board"] = {r.title: r.label for r in await ledger.leaderboard()}
    out["offline"] = [await offline["research"]("what next?") for _ in range(2)]
    out["builtin"] = await tool_set(ledger, object(), llm.BUILTIN)["research"]("what next?")
    out["bad_question"] = await offline["research"]("  ")
    budgets = {"budget": 1000, "cap": 100_000}
    usage = {}
    for name in ("normal", "loop", "budget", "malformed", "fixed", "write"):
        client = llm.LLMClient()
        research = tool_set(ledger, client, f"scripted/{name}")["research"]
        out[name] = await research(f"question for {name}", budgets.get(name, 20_000))
        usage[name] = client.usage.to_dict()
    capped = llm.LLMClient(max_cost_usd=CAP)
    await capped("scripted/agent", "the agent", [{"role": "user", "content": "plan"}], None)
    usage["agent_only"] = capped.usage.to_dict()
    out["cap"] = await tool_set(ledger, capped, "scripted/cap")["research"]("question for cap", 100_000)
    usage["cap"] = capped.usage.to_dict()
    try:
        await capped("scripted/agent", "the agent", [{"role": "user", "content": "plan more"}], None)
        out["agent_after_cap"] = "answered"
    except llm.LLMBudgetExceeded as exc:
        out["agent_after_cap"] = str(exc)
    out["usage"] = usage
    out["titles_after"] = sorted(r.title for r in await ledger.records())
    out["runs_after"] = ledger.runs_used()
    out["transcript_unchanged"] = ledger.memory.messages == transcript
    return json.dumps(out, default=str)


@pytest.fixture(scope="module")
def scenarios(state_root: Path) -> tuple[dict[str, Any], ScriptedSubLLM]:
    """Run every scenario once (one Flyte local task) and keep what the scripted model saw."""
    handler = ScriptedSubLLM(SCRIPTS, {"budget": 300})
    saved = litellm.custom_provider_map
    litellm.custom_provider_map = [{"provider": "scripted", "custom_handler": handler}]
    try:
        ledger_mod.init_local(project="research-agent-tests", log_level=logging.CRITICAL)
        key = f"research-{uuid.uuid4().hex[:8]}"
        run = flyte.with_runcontext(**ledger_mod.run_context_kwargs()).run(research_scenarios, key=key)
        out = json.loads(run.outputs()[0])
    finally:
        litellm.custom_provider_map = saved
    return out, handler


def contents(call: dict[str, Any]) -> str:
    """Everything one sub-LLM call saw, as one string."""
    return json.dumps(call["messages"])


def test_the_tool_is_listed_and_the_ledger_reads_as_seeded(scenarios: tuple[dict[str, Any], Any]) -> None:
    out, _ = scenarios
    assert "research" in out["tool_names"]
    assert out["board"] == {"baseline": "baseline", "Warmup cosine": "regression", "LR 6e-3": "within_noise"}
    assert "error" in out["bad_question"]


def test_offline_research_ranks_the_recipes_from_the_ledger(scenarios: tuple[dict[str, Any], Any]) -> None:
    out, _ = scenarios
    first, second = out["offline"]
    assert first == second, "deterministic: two calls, one table"
    assert first["source"] == first["stopped"] == "offline" and first["usage"]["calls"] == 0
    assert out["builtin"]["ideas"] == first["ideas"], "the built-in planner's model gets the offline ranking"
    names = [row["idea"].split(":")[0] for row in first["ideas"]]
    assert names.index("warmup-cosine") > names.index("warmup-linear"), "its regression outweighs its higher prior"
    by_prior = [r.name for r in sorted(RECIPES, key=lambda r: -r.prior)]
    assert names.index("warmup-cosine") > by_prior.index("warmup-cosine")
    cosine = first["ideas"][names.index("warmup-cosine")]
    assert cosine["evidence"][0].startswith('ledger: "Warmup cosine" (regression, gain -')
    assert all(row["step"] in ra.STEP_TYPES for row in first["ideas"])


def test_a_normal_answer_becomes_the_table(scenarios: tuple[dict[str, Any], ScriptedSubLLM]) -> None:
    out, handler = scenarios
    answer, calls = out["normal"], handler.seen["normal"]
    assert answer["stopped"] == "answered" and answer["source"] == "llm"
    assert answer["ideas"] == ra.check_answer(GOOD_TEXT)[0]
    assert set(answer) == set(out["offline"][0]), "the same shape as the offline answer"
    assert sorted(calls[0]["tools"]) == sorted(ra.READ_ONLY), "only read-only tools are offered"
    tool_results = [m["content"] for m in calls[1]["messages"] if m["role"] == "tool"]
    assert "regression" in tool_results[0], "the leaderboard came from the real ledger"
    assert "# recipe: lr-schedule/warmup-cosine" in tool_results[1], "so did the experiment's code"
    assert answer["usage"]["calls"] == 2 and answer["usage"]["tokens"] == 60
    assert out["usage"]["normal"]["research_calls"] == 2 and out["usage"]["normal"]["research_tokens"] == 60
    assert out["usage"]["normal"]["research_cost_usd"] == pytest.approx(out["usage"]["normal"]["cost_usd"])


def test_the_sub_llm_never_sees_the_agents_transcript(scenarios: tuple[dict[str, Any], ScriptedSubLLM]) -> None:
    out, handler = scenarios
    first = handler.seen["normal"][0]["messages"]
    assert [m["role"] for m in first] == ["system", "user"] and first[1]["content"].startswith("question for normal\n")
    for name in ("normal", "loop", "budget", "malformed", "fixed", "write", "cap"):
        assert all(MARKER not in contents(c) for c in handler.seen[name]), name
    assert out["transcript_unchanged"], "nor does it write into the agent's transcript"


def test_a_looping_sub_llm_is_corrected_once_then_stopped(scenarios: tuple[dict[str, Any], ScriptedSubLLM]) -> None:
    out, handler = scenarios
    answer, calls = out["loop"], handler.seen["loop"]
    assert answer["stopped"] == "doom_loop" and answer["source"] == "offline"
    assert len(calls) == 4, "two calls run, the third is caught and corrected, the fourth stops it"
    assert "You are repeating yourself" not in contents(calls[2])
    correction = calls[3]["messages"][-1]
    assert correction["role"] == "user" and "get_leaderboard" in correction["content"]
    assert "not run: a repeated call" in contents(calls[3])
    assert answer["ideas"] == out["offline"][0]["ideas"] and "Corrected once" in answer["note"]


def test_the_token_budget_warns_then_stops(scenarios: tuple[dict[str, Any], ScriptedSubLLM]) -> None:
    out, handler = scenarios
    answer, calls = out["budget"], handler.seen["budget"]
    assert answer["stopped"] == "token_budget"
    assert answer["usage"]["tokens"] == 4 * 320 >= answer["usage"]["max_tokens"] == 1000
    assert len(calls) == 4, "320 tokens a call: the third reaches 80% and is warned, the fourth passes the budget"
    assert "Token budget" not in contents(calls[2]) and "Token budget: you have used 960 of 1000" in contents(calls[3])
    assert "token budget" in answer["note"] and answer["ideas"] == out["offline"][0]["ideas"]


def test_a_malformed_answer_gets_one_correction_then_falls_back(
    scenarios: tuple[dict[str, Any], ScriptedSubLLM],
) -> None:
    out, handler = scenarios
    answer, calls = out["malformed"], handler.seen["malformed"]
    assert len(calls) == 2 and answer["stopped"] == "malformed_answer" and answer["source"] == "offline"
    assert "not the JSON table" in calls[1]["messages"][-1]["content"]
    assert answer["ideas"] == out["offline"][0]["ideas"] and "offline ranking instead" in answer["note"]
    fixed = out["fixed"]
    assert fixed["stopped"] == "answered" and fixed["ideas"] == ra.check_answer(GOOD_TEXT)[0]
    assert "Asked once to fix" in fixed["note"]


def test_the_sub_llm_cannot_write(scenarios: tuple[dict[str, Any], ScriptedSubLLM]) -> None:
    out, handler = scenarios
    assert out["write"]["stopped"] == "answered"
    results = [m["content"] for m in handler.seen["write"][1]["messages"] if m["role"] == "tool"]
    assert len(results) == 2 and all("is not available here" in r for r in results)
    assert out["titles_after"] == out["titles_before"] and out["runs_after"] == 5, "nothing saved, nothing run"


def test_its_cost_counts_against_the_shared_cap(scenarios: tuple[dict[str, Any], ScriptedSubLLM]) -> None:
    out, handler = scenarios
    agent, after, answer = out["usage"]["agent_only"], out["usage"]["cap"], out["cap"]
    per_call = agent["cost_usd"]
    assert per_call > 0 and 2 * per_call < CAP <= 3 * per_call
    assert answer["stopped"] == "llm_cost_cap" and answer["usage"]["calls"] == 2 == len(handler.seen["cap"])
    assert after["calls"] == 3 and after["research_calls"] == 2
    assert after["research_cost_usd"] == pytest.approx(after["cost_usd"] - per_call) == answer["usage"]["cost_usd"]
    assert "budget spent" in out["agent_after_cap"], "the agent's next call is refused by the same cap"


def test_the_report_summary_shows_the_subagents_share() -> None:
    from autoresearch.report import html as ui_html

    usage = llm.Usage(calls=5, prompt_tokens=900, completion_tokens=100, cost_usd=0.01)
    usage.research_calls, usage.research_tokens, usage.research_cost_usd = 2, 400, 0.004
    html = ui_html.summary_html({"usage": usage.to_dict()})
    assert "research subagent" in html and "400 tokens" in html and "2 calls, $0.0040 (included above)" in html
    assert "research subagent" not in ui_html.summary_html({"usage": llm.Usage(calls=3).to_dict()})


async def test_a_failing_provider_falls_back_and_a_writing_tool_is_refused() -> None:
    async def down(model: str, system: str, messages: list, tools: list | None) -> Any:
        raise ConnectionError("provider down")

    ranking = ra.rank_recipes([])
    answer = await ra.run_subagent(down, "openai/x", {}, "what next?", ranking)
    assert answer["stopped"] == "llm_error" and answer["ideas"] == ranking["ideas"]
    assert "ConnectionError: provider down" in answer["note"] and answer["usage"]["calls"] == 0

    async def edit(**kwargs: Any) -> dict[str, Any]:
        return {}

    with pytest.raises(ValueError, match="read-only"):
        await ra.run_subagent(down, "openai/x", {"edit_train_code_batch": edit}, "what next?", ranking)
