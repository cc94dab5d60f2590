"""The research subagent: a sub-LLM with its own context and read-only tools that returns a ranked table of ideas.

The agent's `research(question, max_tokens)` tool (`tools.py`) calls `run_subagent` with a hosted or local model,
or `offline_answer` with the built-in planner. Either way the answer has one shape: `{"question", "ideas": [{"idea",
"evidence", "expected_effect", "step"}], "source", "stopped", "note", "usage", "tool_calls"}`, best idea first.

The sub-LLM starts from a fresh message list (the question only, never the agent's transcript) and may call only
the read-only tools in `READ_ONLY`. Its loop is guarded by pure rules, each testable without an LLM:
- `budget_status`: its token budget (prompt + completion tokens, as the provider counts them): warn near the end,
  stop past it;
- `detect_loop`: the same call three times in a row, or a repeating cycle of calls: corrected once, then stopped;
- `check_answer`: the final answer must be the JSON table; a malformed one gets one correction request, then the
  offline ranking stands in, with a note saying so;
- `rank_recipes`: the offline ranking of the recipe library from the ledger's verdicts and the
  recipes' priors (deterministic), and the step type of each recipe family.

Its calls go through the agent's own `LLMClient`, so `--max-llm-cost` caps both; its share is added to the client's
`Usage.research_*` figures, which the report shows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoresearch import llm
from autoresearch.ledger.records import STEPS, steps_text
from autoresearch.planner.policy import evidence, finished, recipe_score
from autoresearch.planner.recipes import MARKER, RECIPES, Recipe

STEP_TYPES = tuple(STEPS)
"""The step types an idea may carry (`autoresearch.ledger.records.STEPS` says what each means)."""

READ_ONLY = ("search_arxiv", "get_leaderboard", "get_code_edit_history", "read_train_code", "compare_experiments")
"""The only tools the sub-LLM may call: none of them writes to the ledger or starts a run."""

DEFAULT_MAX_TOKENS = 30_000
MIN_MAX_TOKENS, MAX_MAX_TOKENS = 500, 400_000
MAX_IDEAS = 20

SYSTEM = """You are a research subagent helping an ML research agent improve `train.py`, the training script of a
small GPT language model, scored by val_bpb (validation bits per byte, lower is better) under a fixed token budget.
Answer the question you are given with a ranked table of ideas to try next, best first.

You have read-only tools: get_leaderboard, get_code_edit_history, read_train_code, compare_experiments and
search_arxiv. Look at the evidence first: what was tried, and the gate's verdict on it (only "confirmed" beat seed
noise; "regression" made it worse; "within_noise" did nothing measurable). Do not repeat a call you already made.

When you are done, reply with JSON only, no tool call:
{"ideas": [{"idea": "what to change, concretely", "evidence": ["ledger: <experiment title> (<verdict>)",
"arXiv:<id> <paper title>"], "expected_effect": "e.g. -0.02 val_bpb", "step": "small" | "medium" | "radical"}]}
step: {steps}. Cite only experiments and papers the tools showed you.""".replace("{steps}", steps_text())
"""The sub-LLM's system prompt (scripted test models recognise its first words)."""

TOOL_SCHEMAS: tuple[dict[str, Any], ...] = tuple(
    {"type": "function", "function": {"name": name, "description": text, "parameters": params}}
    for name, text, params in (
        (
            "get_leaderboard",
            "Experiments ranked by mean val_bpb over seeds, with the gate's verdict (label) and the best.",
            {"type": "object", "properties": {"top_n": {"type": "integer", "default": 20}}},
        ),
        (
            "get_code_edit_history",
            "Every experiment in creation order: parent, change_summary, hypothesis, result and verdict.",
            {"type": "object", "properties": {"last_n": {"type": "integer", "default": 30}}},
        ),
        (
            "read_train_code",
            "The full train.py of one experiment (by exact title), with its overrides and result.",
            {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]},
        ),
        (
            "compare_experiments",
            "Two experiments side by side: val_bpb, delta (b minus a), overrides and a diff of train.py.",
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "required": ["a", "b"],
            },
        ),
        (
            "search_arxiv",
            "Search arXiv: title, authors, year, summary and URL of each paper (a note when offline).",
            {
                "type": "object",
                "properties": {"query": {"type": "string"}, "max_results": {"type": "integer", "default": 5}},
                "required": ["query"],
            },
        ),
    )
)

Tool = Callable[..., Awaitable[Any]]


# ---------------------------------------------------------------- pure rules


def clamp_tokens(max_tokens: Any) -> int | None:
    """`max_tokens` as a whole number within [MIN_MAX_TOKENS, MAX_MAX_TOKENS], or None if it is not a number."""
    if isinstance(max_tokens, bool):
        return None
    try:
        value = int(max_tokens)
    except (TypeError, ValueError, OverflowError):
        return None
    return min(MAX_MAX_TOKENS, max(MIN_MAX_TOKENS, value))


def budget_status(used: int, last: int, max_tokens: int, warn_at: float = 0.8) -> str:
    """`over` once `used` tokens reach the budget; `warn` from `warn_at` of it, or when one more call as large as
    the `last` would reach it; else `ok`."""
    if used >= max_tokens:
        return "over"
    if used >= warn_at * max_tokens or used + last >= max_tokens:
        return "warn"
    return "ok"


def call_key(name: str, arguments: Any) -> str:
    """One tool call as a comparable string: its name and its arguments in a canonical JSON form."""
    return f"{name}({json.dumps(arguments, sort_keys=True, default=str)})"


def detect_loop(calls: Sequence[str], repeats: int = 3, max_period: int = 3) -> str | None:
    """What the latest calls repeat, or None: the same call `repeats` times in a row, or a cycle of up to
    `max_period` calls (A, B, A, B, A, B) repeated `repeats` times at the end of `calls`."""
    for period in range(1, max_period + 1):
        if len(calls) < repeats * period:
            break
        tail = list(calls[len(calls) - repeats * period :])
        cycle = tail[:period]
        if all(tail[i * period : (i + 1) * period] == cycle for i in range(repeats)):
            if period == 1:
                return f"the same call {cycle[0]} {repeats} times in a row"
            return f"the cycle {' -> '.join(cycle)} {repeats} times in a row"
    return None


def _json_payload(text: str) -> Any:
    """The JSON value in a reply: the whole text, a fenced block, or the outermost object or list; raises
    ValueError when there is none."""
    stripped = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", stripped, re.DOTALL)
    candidates = [stripped] + ([fenced.group(1)] if fenced else [])
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = stripped.find(opener), stripped.rfind(closer)
        if 0 <= start < end:
            candidates.append(stripped[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    raise ValueError("the reply holds no JSON object")


def _check_row(i: int, row: Any) -> dict[str, Any] | str:
    """One idea row in its exact shape, or what is wrong with it."""
    if not isinstance(row, dict):
        return f"ideas[{i}] must be an object"
    idea, effect = row.get("idea"), row.get("expected_effect")
    ev = row.get("evidence")
    ev = [ev] if isinstance(ev, str) else ev
    step = row.get("step").strip().lower() if isinstance(row.get("step"), str) else None
    if not isinstance(idea, str) or not idea.strip():
        return f'ideas[{i}]["idea"] must be a non-empty string'
    if not isinstance(ev, list) or not ev or not all(isinstance(e, str) and e.strip() for e in ev):
        return f'ideas[{i}]["evidence"] must be a non-empty list of strings (ledger titles or arXiv papers)'
    if not isinstance(effect, str) or not effect.strip():
        return f'ideas[{i}]["expected_effect"] must be a non-empty string'
    if step not in STEP_TYPES:
        return f'ideas[{i}]["step"] must be one of {list(STEP_TYPES)}, not {row.get("step")!r}'
    return {"idea": idea.strip(), "evidence": [e.strip() for e in ev], "expected_effect": effect.strip(), "step": step}


def check_answer(text: str) -> tuple[list[dict[str, Any]], str]:
    """The sub-LLM's final answer checked against the table's schema: (rows, "") or ([], what is wrong).

    Accepts `{"ideas": [...]}` or a bare list, bare or in a fenced block; keeps at most `MAX_IDEAS` rows."""
    try:
        payload = _json_payload(text or "")
    except ValueError as exc:
        return [], str(exc)
    rows = payload.get("ideas") if isinstance(payload, dict) else payload
    if not isinstance(rows, list) or not rows:
        return [], 'the answer must be {"ideas": [...]} with at least one idea'
    out = []
    for i, row in enumerate(rows[:MAX_IDEAS]):
        checked = _check_row(i, row)
        if isinstance(checked, str):
            return [], checked
        out.append(checked)
    return out, ""


def _in_source(recipe: Recipe, source: str) -> bool:
    """True when the recipe, or another variant of its family, is already in `source` (by its marker)."""
    return bool(source) and f"{MARKER}{recipe.family}/" in source


def _verdict_text(verdict: str, gain: float | None) -> str:
    return (verdict or "no verdict yet") + ("" if gain is None else f", gain {gain:+.4f}")


def rank_recipes(history: list[dict[str, Any]], best_source: str = "", best_title: str = "") -> dict[str, Any]:
    """The recipe library ranked for the next experiments: each recipe's prior plus the credit the gate's verdicts
    gave it and its family (`policy.recipe_score`), highest first, ties in library order. Recipes already in the
    best's source are left out. `history` rows are `get_code_edit_history` rows (change_summary tags, standing).

    Returns {"ideas": [{"idea", "evidence", "expected_effect", "step"}], "note"}. Deterministic."""
    ev = evidence(history, [])
    runs = [f for f in finished(history) if f.ran]
    scored, left_out = [], []
    for index, recipe in enumerate(RECIPES):
        if _in_source(recipe, best_source):
            left_out.append(recipe.name)
            continue
        scored.append((-recipe_score(recipe, ev), index, recipe))
    ideas = []
    for neg_score, _, recipe in sorted(scored, key=lambda s: (s[0], s[1])):
        mates = {r.name for r in RECIPES if r.family == recipe.family and r is not recipe}
        cited = [f'ledger: "{f.title}" ({_verdict_text(f.verdict, f.gain)})' for f in runs if recipe.name in f.tags]
        cited += [
            f'ledger: "{f.title}" (same family, {_verdict_text(f.verdict, f.gain)})'
            for f in runs
            if mates & set(f.tags) and recipe.name not in f.tags
        ]
        cited.append(f"recipe library: prior {recipe.prior:.2f}; score {-neg_score:+.2f} after the ledger's verdicts")
        row = {"idea": f"{recipe.name}: {recipe.summary}", "evidence": cited}
        row.update(expected_effect=recipe.expected_effect, step=recipe.step)
        ideas.append(row)
    note = "Recipe library ranked by prior and the gate's verdicts on each recipe and its family."
    if left_out:
        note += f" Left out, already in the best ({best_title}): {', '.join(left_out)}."
    return {"ideas": ideas, "note": note}


# ---------------------------------------------------------------- answers


def usage_dict(usage: llm.Usage, max_tokens: int) -> dict[str, Any]:
    """The usage figures an answer reports."""
    out = {"calls": usage.calls, "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
    out.update(tokens=usage.tokens, cost_usd=round(usage.cost_usd, 8), max_tokens=max_tokens)
    return out


def offline_answer(question: str, ranking: dict[str, Any]) -> dict[str, Any]:
    """The built-in answer: the offline ranking, no LLM call."""
    note = ranking["note"] + " The built-in planner has no LLM, so the question is not read."
    out = {"question": question, "ideas": ranking["ideas"], "source": "offline", "stopped": "offline", "note": note}
    return {**out, "usage": usage_dict(llm.Usage(), 0), "tool_calls": []}


STOP_NOTES = {
    "token_budget": "the sub-LLM used its token budget before answering",
    "doom_loop": "the sub-LLM kept repeating itself after one correction",
    "malformed_answer": "the sub-LLM's answer was not the JSON table, even after one correction",
    "llm_cost_cap": "the run's --max-llm-cost is spent",
    "llm_error": "the sub-LLM's provider failed",
    "max_turns": "the sub-LLM used all its turns without answering",
}


@dataclass(frozen=True)
class Limits:
    """How far one research call may go."""

    max_tokens: int = DEFAULT_MAX_TOKENS
    warn_at: float = 0.8
    max_turns: int = 12
    result_chars: int = 6000
    """Each tool result is cut to this many characters before the sub-LLM sees it."""


@dataclass
class SubagentState:
    """One research call's own context and accounting (a fresh one per call: nothing is shared with the agent)."""

    messages: list[dict[str, Any]]
    usage: llm.Usage = field(default_factory=llm.Usage)
    calls: list[str] = field(default_factory=list)
    last_tokens: int = 0
    warned: bool = False
    loop_corrected: bool = False
    answer_corrected: bool = False
    notes: list[str] = field(default_factory=list)


def _finish(
    state: SubagentState, question: str, limits: Limits, stopped: str, ideas: list[dict[str, Any]], note: str
) -> dict[str, Any]:
    out = {"question": question, "ideas": ideas, "source": "llm" if stopped == "answered" else "offline"}
    out.update(stopped=stopped, note=" ".join([*state.notes, note]).strip())
    return {**out, "usage": usage_dict(state.usage, limits.max_tokens), "tool_calls": list(state.calls)}


def _fallback(state: SubagentState, question: str, limits: Limits, stopped: str, ranking: dict[str, Any]) -> dict:
    """Stop without a valid answer: the offline ranking stands in, and the note says why."""
    note = f"Stopped: {STOP_NOTES.get(stopped, stopped)}; these ideas are the offline ranking instead. "
    return _finish(state, question, limits, stopped, ranking["ideas"], note + ranking["note"])


def _account(state: SubagentState, response: Any, shared: llm.Usage | None) -> None:
    """Count one call's tokens and dollars as the provider reported them, here and in the run's shared usage."""
    spent = llm.response_usage(response)
    state.usage.calls += spent.calls
    state.usage.prompt_tokens += spent.prompt_tokens
    state.usage.completion_tokens += spent.completion_tokens
    state.usage.cost_usd += spent.cost_usd
    state.usage.cost_known = state.usage.cost_known and spent.cost_known
    state.last_tokens = spent.tokens
    if shared is not None:
        shared.research_calls += spent.calls
        shared.research_tokens += spent.tokens
        shared.research_cost_usd += spent.cost_usd
        shared.cost_known = shared.cost_known and spent.cost_known


def _assistant_message(content: str, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The sub-LLM's tool-calling turn in the OpenAI message format litellm speaks."""
    calls = [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
        for c in tool_calls
    ]
    return {"role": "assistant", "content": content or None, "tool_calls": calls}


async def _run_tool(tools: Mapping[str, Tool], name: str, arguments: Any, limit: int) -> str:
    """One read-only tool call's result as JSON text (cut to `limit`); errors come back as {"error"}."""
    if name not in tools:
        result: Any = {"error": f"{name!r} is not available here; the read-only tools are {sorted(tools)}."}
    elif not isinstance(arguments, dict) or "_raw" in arguments:
        result = {"error": f"the arguments of {name} must be a JSON object."}
    else:
        try:
            result = await tools[name](**arguments)
        except TypeError as exc:
            result = {"error": f"bad arguments for {name}: {exc}"}
        except Exception as exc:  # a tool never raises into the loop
            result = {"error": f"{name} failed: {type(exc).__name__}: {exc}"}
    text = json.dumps(result, default=str)
    return text if len(text) <= limit else text[:limit] + " ... (cut)"


def _loop_message(loop: str) -> str:
    return (
        f"You are repeating yourself: {loop}. Those calls were not run again. Do not call any tool now: give your "
        'final answer as JSON {"ideas": [...]} from what you have already seen.'
    )


def _budget_message(used: int, max_tokens: int) -> str:
    return (
        f"Token budget: you have used {used} of {max_tokens} tokens. Stop calling tools and give your final answer "
        'as JSON {"ideas": [...]} in your next reply; past the budget you will be stopped.'
    )


def _ask_for_the_table(state: SubagentState, content: str, problem: str) -> None:
    """The one correction a malformed final answer gets."""
    state.answer_corrected = True
    state.notes.append(f"Asked once to fix a malformed answer ({problem}).")
    state.messages.append({"role": "assistant", "content": content or ""})
    fix = f'Your answer is not the JSON table: {problem}. Reply with JSON only: {{"ideas": [...]}}.'
    state.messages.append({"role": "user", "content": fix})


async def _tool_turn(state: SubagentState, tools: Mapping[str, Tool], reply: Any, limits: Limits) -> bool:
    """Record and run one tool-calling turn (a repeated call is not run); True when a loop recurs after its
    correction, so the subagent must stop."""
    state.messages.append(_assistant_message(reply.content, reply.tool_calls))
    state.calls += [call_key(c["name"], c["arguments"]) for c in reply.tool_calls]
    loop = detect_loop(state.calls)
    for call in reply.tool_calls:
        text = (
            json.dumps({"error": "not run: a repeated call"})
            if loop
            else await _run_tool(tools, call["name"], call["arguments"], limits.result_chars)
        )
        state.messages.append({"role": "tool", "tool_call_id": call["id"], "name": call["name"], "content": text})
    if loop is None:
        return False
    if state.loop_corrected:
        return True
    state.loop_corrected = True
    state.notes.append(f"Corrected once for a loop: {loop}.")
    state.messages.append({"role": "user", "content": _loop_message(loop)})
    return False


async def run_subagent(
    call_llm: Any,
    model: str,
    tools: Mapping[str, Tool],
    question: str,
    ranking: dict[str, Any],
    limits: Limits | None = None,
    shared: llm.Usage | None = None,
) -> dict[str, Any]:
    """Answer `question` with a sub-LLM in its own context, over the read-only `tools`, within `limits`.

    `call_llm` speaks the Agent's protocol (`llm.LLMClient`); `shared` is its `Usage`, which gets the subagent's
    share. `ranking` (from `rank_recipes`) stands in when the sub-LLM stops without a valid answer. Never raises
    for the sub-LLM's behaviour; only a tool outside `READ_ONLY` is refused, as a programming error."""
    extra = set(tools) - set(READ_ONLY)
    if extra:
        raise ValueError(f"the research subagent's tools must be read-only; refused: {sorted(extra)}")
    limits = limits or Limits()
    schemas = [s for s in TOOL_SCHEMAS if s["function"]["name"] in tools]
    opening = f"{question}\n\n(Your token budget for this question: {limits.max_tokens} tokens.)"
    state = SubagentState(messages=[{"role": "user", "content": opening}])
    for _ in range(limits.max_turns):
        try:
            reply = await call_llm(model, SYSTEM, list(state.messages), schemas)
        except llm.LLMBudgetExceeded:
            return _fallback(state, question, limits, "llm_cost_cap", ranking)
        except Exception as exc:  # the provider failed after its retries: fall back, never raise into the agent
            state.notes.append(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}.")
            return _fallback(state, question, limits, "llm_error", ranking)
        _account(state, getattr(reply, "raw", None), shared)
        rows, problem = ([], "") if reply.tool_calls else check_answer(reply.content)
        if rows:  # a valid answer counts even past the budget: it is already paid for
            return _finish(state, question, limits, "answered", rows, "")
        status = budget_status(state.usage.tokens, state.last_tokens, limits.max_tokens, limits.warn_at)
        if status == "over":
            return _fallback(state, question, limits, "token_budget", ranking)
        if not reply.tool_calls:
            if state.answer_corrected:
                return _fallback(state, question, limits, "malformed_answer", ranking)
            _ask_for_the_table(state, reply.content, problem)
            continue
        if await _tool_turn(state, tools, reply, limits):
            return _fallback(state, question, limits, "doom_loop", ranking)
        if status == "warn" and not state.warned:
            state.warned = True
            state.notes.append(f"Warned at {state.usage.tokens} of {limits.max_tokens} tokens.")
            state.messages.append({"role": "user", "content": _budget_message(state.usage.tokens, limits.max_tokens)})
    return _fallback(state, question, limits, "max_turns", ranking)
