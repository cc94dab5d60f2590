"""The built-in offline planner: a seeded search policy that speaks the `call_llm` protocol.

It reads the observations of earlier turns from the transcript and writes code-mode plans that call the
tools (no imports, no dict mutation, no augmented assignment, as the Monty sandbox requires): a survey,
then a config sweep around the baseline, then batches of `train.py` recipes forked from the best (see
`policy.py` for the choices and `recipes.py` for the checked transformations), then a plain-text summary.
Every plan ends by reading the board, the history and the best's source, so the next turn decides on
fresh facts, including the tools' errors (rejected edits, duplicates, failed runs, failed plans).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flyte.ai.agents import LLMMessage

from autoresearch.ledger.records import BASELINE_TITLE
from autoresearch.ledger.views import best_line
from autoresearch.planner.policy import Fork, Policy, code_batch, search_space, sweep, tag_label, tags_of

RESULT_PREFIX = "Execution result:"
ERROR_PREFIX = "Your code raised an error"
MAX_CODE_ERRORS = 3


# ---------------------------------------------------------------- reading the transcript


def observations(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The planner's own observations in order: parsed results, or `{"code_error": text}` for a failed plan."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        content = msg.get("content")
        if msg.get("role") != "user" or not isinstance(content, str):
            continue
        if content.startswith(ERROR_PREFIX):
            out.append({"code_error": content[:2000]})
        elif content.startswith(RESULT_PREFIX):
            try:
                data = json.loads(content[len(RESULT_PREFIX) :].strip())
            except json.JSONDecodeError:
                data = {"unparsed": content[:2000]}
            out.append(data if isinstance(data, dict) else {"value": data})
    return out


@dataclass
class State:
    """What the observations say: base config and bounds, budget, board, history, proposals and the best's code."""

    base: dict[str, Any] = field(default_factory=dict)
    bounds: dict[str, list[float]] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    proposals: list[dict[str, Any]] = field(default_factory=list)
    tried: set[str] = field(default_factory=set)
    best: dict[str, Any] | None = None
    sigma: float | None = None
    slots: dict[str, int] = field(default_factory=dict)
    """The runner's slots after the last submit or wait: concurrency, running, queued, free."""
    code_errors: int = 0
    last_failed: bool = False
    surveyed: bool = False
    stopped: str = ""
    """The reason of a `stop` step already taken (research then only summarises)."""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _proposals(o: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch's proposals, each with the tool's rejection error if it was refused."""
    saved = _dict(o.get("saved"))
    errors = {r.get("title"): r.get("error") for r in saved.get("rejected") or [] if isinstance(r, dict)}
    fallback = saved.get("error")  # the whole call was refused
    out = []
    for p in o.get("proposed") or []:
        error = errors.get(p.get("title")) or fallback
        out.append({**p, "error": error} if error else dict(p))
    return out


def read_state(obs: list[dict[str, Any]]) -> State:
    """Fold the observations, oldest first, into the planner's state."""
    state = State()
    for o in obs:
        if "code_error" in o:
            state.code_errors += 1
            state.last_failed = True
            continue
        state.last_failed = False
        info = _dict(o.get("info"))
        if o.get("step") == "stop":
            state.stopped = str(o.get("reason") or "stopped")
        if o.get("step") == "survey":
            state.surveyed = True
            state.base = info.get("base_config", state.base)
            state.bounds = info.get("bounds", state.bounds)
        board = _dict(o.get("board"))
        waited = _dict(o.get("done")) or _dict(o.get("ran"))
        state.budget = board.get("budget") or waited.get("budget") or info.get("budget") or state.budget
        state.slots = waited.get("slots") or _dict(o.get("submitted")).get("slots") or state.slots
        state.rows = board.get("rows", state.rows)
        state.sigma = board.get("sigma", state.sigma)
        state.history = _dict(o.get("history")).get("experiments", state.history)
        candidates = _dict(o.get("best")).get("candidates") or []
        state.best = candidates[0] if candidates else state.best
        state.proposals += _proposals(o)
        saved = _dict(o.get("saved"))
        state.tried |= {s.get("title") for s in saved.get("saved") or []}
        state.tried |= {r.get("title") for r in saved.get("rejected") or []}
    state.tried |= {h["title"] for h in state.history} | {p.get("title") for p in state.proposals}
    state.tried.discard(None)
    return state


# ---------------------------------------------------------------- decisions


def fork_of(state: State) -> Fork | None:
    """The best experiment with its real source and effective config, as the next code batch's parent."""
    if not state.best or not state.best.get("train_py"):
        return None
    config = {**state.base, **(state.best.get("overrides") or {})}
    return Fork(state.best["title"], state.best["train_py"], config)


def batch_room(budget: dict[str, Any]) -> int:
    """How many new experiments to plan: the batch size, within the ideas that may start now (the budget already
    keeps the runs to confirm one that passes the screen)."""
    return max(0, min(int(budget.get("batch_size", 1)), int(budget.get("remaining", 0))))


def swept(state: State) -> int:
    """How many config-sweep experiments (no parent, not the baseline) have been proposed or saved."""
    titles = {h["title"] for h in state.history if not h.get("parent") and h["title"] != BASELINE_TITLE}
    titles |= {p["title"] for p in state.proposals if not p.get("parent") and not p.get("error")}
    return len(titles)


def next_edits(state: State, policy: Policy, size: int) -> tuple[list[dict[str, Any]], str]:
    """The next `size` edits and their rationale: a config sweep of one batch's worth, then code edits that fork
    the confirmed best."""
    if size <= 0:
        return [], ""
    space = search_space(state.base, state.bounds)
    sweep_left = int(state.budget.get("batch_size", 1)) - swept(state)
    if sweep_left > 0:
        edits = sweep(state.base, space, min(size, sweep_left), state.tried)
        if edits:
            return edits, "sweep one config axis per experiment around the baseline"
    fork = fork_of(state)
    if fork is None:
        return [], ""
    return code_batch(fork, state.history, state.proposals, policy, size, space)


# ---------------------------------------------------------------- plans


SURVEY_PLAN = """info = inspect_dataset()
board = get_leaderboard(50)
history = get_code_edit_history(500)
best = get_promising_code(1)
{"step": "survey", "info": info, "board": board, "history": history, "best": best}"""


WAIT_PLAN = """done = wait_for_results(1)
board = get_leaderboard(50)
history = get_code_edit_history(500)
best = get_promising_code(1)
{"step": "wait", "done": done, "board": board, "history": history, "best": best}"""


def async_plan(edits: list[dict[str, Any]], rationale: str) -> str:
    """Code that saves the edits, records the plan and hypotheses, submits them, waits for the next result and
    re-reads the board (the runner keeps the other slots busy meanwhile)."""
    return _plan(
        edits, rationale, "sub = submit_experiments(titles) if titles else None\ndone = wait_for_results(1)", "async"
    )


def batch_plan(edits: list[dict[str, Any]], rationale: str) -> str:
    """Code that saves the edits, records the plan and hypotheses, runs the batch, reviews it and re-reads."""
    run = 'ran = run_experiment_batch(titles) if titles else {"results": [], "budget": None}\nreview = evaluate_batch_results(batch_id) if titles else None'
    return _plan(edits, rationale, run, "batch")


def _plan(edits: list[dict[str, Any]], rationale: str, run: str, step: str) -> str:
    """Code that saves the edits, records the plan and hypotheses, runs them (`run`), and re-reads the board."""
    proposed = [{"title": e["title"], "parent": e.get("parent_title"), "tags": e["tags"]} for e in edits]
    clean = [{k: v for k, v in e.items() if k != "tags"} for e in edits]
    hyps = {e["title"]: {"hypothesis": e["hypothesis"], "expected_effect": e["expected_effect"]} for e in edits}
    outputs = '"ran": ran, "review": review' if step == "batch" else '"submitted": sub, "done": done'
    return f"""proposed = {proposed!r}
edits = {clean!r}
saved = edit_train_code_batch(edits)
titles = [s["title"] for s in saved.get("saved", [])]
batch_id = saved.get("batch_id", "")
plan = record_batch_plan(titles, {rationale!r}) if titles else None
hypotheses = {hyps!r}
hyps = record_batch_hypotheses(batch_id, {{t: hypotheses[t] for t in titles if t in hypotheses}}) if titles else None
{run}
board = get_leaderboard(50)
history = get_code_edit_history(500)
best = get_promising_code(1)
{{"step": {step!r}, "proposed": proposed, "saved": saved, {outputs}, "board": board,
  "history": history, "best": best}}"""


def stop_plan(reason: str) -> str:
    """Code that ends research deliberately (the `stop` step) with its reason."""
    return f"""stop = stop_research({reason!r})
{{"step": "stop", "reason": {reason!r}, "stop": stop}}"""


def out_of_ideas(state: State) -> str:
    """The stop step when nothing is left to try but budget is, or the final summary once stopped or spent."""
    if state.stopped or int(state.budget.get("remaining", 0)) <= 0:
        return final_summary(state, state.stopped or "experiment budget spent")
    reason = "no untried idea left on the confirmed best: every recipe and config step was tried or cannot apply"
    return f"Stop: {reason}.\n```python\n{stop_plan(reason)}\n```"


def lineage_gains(title: str, history: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """(title, confirmed gain) for each confirmed step of the fork chain from the baseline to `title`, oldest first."""
    by_title = {h["title"]: h for h in history}
    chain, seen = [], set()
    while title in by_title and title not in seen and title != BASELINE_TITLE:
        seen.add(title)
        standing = by_title[title].get("standing") or {}
        if standing.get("verdict") == "confirmed" and isinstance(standing.get("gain"), (int, float)):
            chain.append((title, float(standing["gain"])))
        title = by_title[title].get("parent") or BASELINE_TITLE
    return chain[::-1]


def final_summary(state: State, reason: str) -> str:
    """The closing plain-text answer: the confirmed best, its mean val_bpb over seeds, its gain, what helped."""
    best = best_line(list(state.rows), state.sigma)
    if best is None:
        return f"Research stopped ({reason}). No experiment succeeded, so there is no best train.py yet."
    top = next(r for r in state.rows if r.get("incumbent"))
    tags = {h["title"]: tags_of(h.get("change_summary")) for h in state.history}
    chain = lineage_gains(top["title"], state.history)
    helped = [f"{' + '.join(map(tag_label, tags.get(t, ()))) or t} ({-g:+.4f})" for t, g in chain if g > 0]
    text = f"Research finished ({reason}). {best}. What helped, confirmed step by step from the baseline: "
    text += ", ".join(helped) if helped else "nothing was confirmed"
    kept = {tag for t, _ in chain for tag in tags.get(t, ())}
    ran = {tag for h in state.history if (h.get("result") or {}).get("outcome") for tag in tags[h["title"]]}
    unhelpful = ", ".join(tag_label(t) for t in sorted(ran - kept))
    return text + (f". Tried without a lasting gain: {unhelpful}." if unhelpful else ".")


def decide(messages: list[dict[str, Any]], policy: Policy | None = None) -> str:
    """The next reply: a fenced plan, or the final plain-text summary."""
    policy = policy or Policy()
    state = read_state(observations(messages))
    if state.code_errors >= MAX_CODE_ERRORS:
        return final_summary(state, f"{state.code_errors} plans failed to run")
    if not state.surveyed or state.last_failed:
        return f"Survey the data, the budget, prior research and the best code.\n```python\n{SURVEY_PLAN}\n```"
    if policy.scheduling == "async":
        return decide_async(state, policy)
    if state.stopped or int(state.budget.get("remaining", 0)) <= 0:
        return out_of_ideas(state)
    edits, rationale = next_edits(state, policy, batch_room(state.budget))
    if not edits:
        return out_of_ideas(state)
    return f"Next batch: {rationale}.\n```python\n{batch_plan(edits, rationale)}\n```"


def decide_async(state: State, policy: Policy) -> str:
    """Keep every slot busy: plan as many experiments as there are free slots (within the budget), submit them,
    and wait for the next result; wait when every slot is taken; summarise once nothing is left to run."""
    slots = state.slots or {"free": int(state.budget.get("concurrency", 1)), "running": 0, "queued": 0}
    in_flight = int(slots.get("running", 0)) + int(slots.get("queued", 0))
    room = min(int(slots.get("free", 0)), batch_room(state.budget))
    edits, rationale = next_edits(state, policy, room) if room > 0 and not state.stopped else ([], "")
    if edits:
        return f"Into the free slots: {rationale}.\n```python\n{async_plan(edits, rationale)}\n```"
    if in_flight:
        return f"Every slot is busy: wait for the next result.\n```python\n{WAIT_PLAN}\n```"
    return out_of_ideas(state)


class BuiltinPlanner:
    """A `call_llm` that plans without a network: `await planner(model, system, messages, tools)`."""

    def __init__(self, seed: int = 0, patience: int = Policy.patience, scheduling: str = Policy.scheduling) -> None:
        self.policy = Policy(seed=seed, patience=patience, scheduling=scheduling)
        self.calls = 0

    async def __call__(
        self, model: str, system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> LLMMessage:
        self.calls += 1
        return LLMMessage(content=decide(messages, self.policy), tool_calls=[], raw=None)
