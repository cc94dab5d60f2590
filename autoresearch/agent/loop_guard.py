"""Doom-loop breaking: a model that repeats a failing plan is shown a working one, then stopped with the reason.

A weak model fed "KeyError: max_steps" sends the same plan twelve times and the run exits 0 with only the
baseline. `LoopGuard` wraps the Agent's `call_llm` and, before each model call, reads the turn that just
ended: the model's reply, the observation, and the tool calls its plan made (`ResearchTools.log`). It

- rewrites a failed plan's observation so it names the line, the exception and what to do instead
  (`feedback.py`), and lists tool errors a successful plan did not show;
- counts errored turns, and the turns each failure cost until the run made progress again;
- detects a loop (`loop_reason`): the same plan twice in a row without progress, the same error three times,
  four failed plans in a row, or a cycle of two or three plans;
- on the first loop appends a corrective message with a minimal plan that works in the current state, built
  from the real tools and titles by the built-in planner's own policy (`corrective_plan`);
- if the model still makes no progress within `patience` turns, ends the run itself: its final answer says
  why, and `stop_reason` makes the driver exit non-zero and point at the built-in planner or a stronger model.

It also fences a plan the model sent without its ```python fence, and judges every reply without code
(`answer`, through `ending.judge`): the final answer, the concrete next step (the same corrective plan) while no
experiment ran and the budget allows one, or a stop with the reason once that was asked too often. For the
built-in planner it only counts (it never loops) and never answers with a next step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from flyte.ai.agents import LLMMessage
from flyte.ai.agents._code import extract_python_code

from autoresearch.agent import ending, feedback, plans
from autoresearch.agent.tutorial import KEY_ALIASES
from autoresearch.ledger.records import BASELINE_TITLE
from autoresearch.planner import builtin as planner
from autoresearch.planner.policy import Policy

REPEAT = 2
"""The same plan this many times in a row, without progress, is a loop."""
SAME_ERROR = 3
"""The same error this many times in a row, whatever the code, is a loop."""
FAILED_IN_A_ROW = 4
"""This many failed plans in a row, whatever they were, is a loop."""
CYCLES = (2, 3)
"""Periods of a repeating cycle of plans (A B A B, A B C A B C)."""
PATIENCE = 2
"""Turns the model gets after a corrective message to make progress before the run ends."""
PROGRESS_TOOLS = {"edit_train_code_batch": "saved", "edit_train_code": "saved"}
PROGRESS_TOOLS |= {"run_experiment_batch": "results", "run_experiment": "outcome"}
"""Tools whose answer, when it has this field set, means the plan saved or ran an experiment."""


@dataclass(frozen=True)
class Turn:
    """What one agent turn did: its plan (normalised, "" if none), its error ("" if it ran), and progress."""

    code: str
    error: str = ""
    progress: bool = False


def loop_reason(turns: list[Turn]) -> str:
    """Why the latest turns are a loop, in words; "" when they are not."""
    last = turns[-REPEAT:]
    if len(last) == REPEAT and last[0].code and len({t.code for t in last}) == 1 and not any(t.progress for t in last):
        what = f"failing plan ({last[-1].error})" if last[-1].error else "plan with no progress"
        return f"the same {what} {REPEAT} times in a row"
    last = turns[-SAME_ERROR:]
    if len(last) == SAME_ERROR and last[0].error and len({t.error for t in last}) == 1:
        return f"the same error ({last[-1].error}) {SAME_ERROR} times in a row"
    last = turns[-FAILED_IN_A_ROW:]
    if len(last) == FAILED_IN_A_ROW and all(t.error for t in last):
        return f"{FAILED_IN_A_ROW} failed plans in a row"
    for period in CYCLES:
        window = turns[-2 * period :]
        codes = [t.code for t in window]
        idle = len(window) == 2 * period and all(codes) and not any(t.progress for t in window)
        if idle and codes[:period] == codes[period:] and len(set(codes)) > 1:
            return f"a cycle of {period} plans repeated with no progress"
    return ""


def made_progress(calls: list[feedback.ToolCall]) -> bool:
    """True when one of a plan's calls saved or ran an experiment."""
    return any(
        isinstance(c.result, dict) and c.name in PROGRESS_TOOLS and bool(c.result.get(PROGRESS_TOOLS[c.name]))
        for c in calls
    )


def error_signature(failure: feedback.Failure | None, observation: str) -> str:
    """A short, stable name for a plan's error: `KeyError: 'max_steps'`, or the observation's first error line."""
    if failure is not None:
        message = failure.message if failure.kind != "KeyError" else repr(feedback.literal_key(failure.message))
        return f"{failure.kind}: {message}"[:120]
    lines = [ln.strip() for ln in observation.splitlines() if ln.strip() and not ln.startswith(("```", "Your code"))]
    return (lines[0] if lines else "error")[:120]


def plan_text(edit: dict[str, Any] | None, unrun: list[str]) -> str:
    """A minimal plan: run the saved experiments that never ran, or save one edit and run it."""
    if unrun:
        return f'r = run_experiment_batch({unrun!r})\n{{"results": r.get("results"), "verdicts": r.get("verdicts")}}'
    return (
        f"saved = edit_train_code_batch([{edit!r}])\n"
        'titles = [s["title"] for s in saved.get("saved", [])]\n'
        'r = run_experiment_batch(titles) if titles else {"error": saved.get("rejected")}\n'
        '{"saved": titles, "results": r.get("results"), "verdicts": r.get("verdicts"), "error": r.get("error")}'
    )


class Tools(Protocol):
    """What the guard reads of the session's tools (`tools.ResearchTools`): their call log, the budget and ledger,
    and the survey tools the corrective plan is built from. A protocol, so the agent layer imports no face."""

    log: feedback.ToolCallLog

    @property
    def budget(self) -> Any: ...

    @property
    def ledger(self) -> Any: ...

    async def inspect_dataset(self) -> dict[str, Any]: ...

    async def get_leaderboard(self, top_n: int = 20) -> dict[str, Any]: ...

    async def get_code_edit_history(self, last_n: int = 30) -> dict[str, Any]: ...

    async def get_promising_code(self, top_k: int = 3) -> dict[str, Any]: ...

    async def refusal(self, edit: Any) -> str: ...


async def corrective_plan(research: Tools) -> str:
    """The smallest plan that makes progress now, from the real tools and titles; "" when the budget is spent or no
    candidate would be saved. The built-in planner proposes a batch's worth of edits and the first one the ledger
    would accept is used (a model's own titles and configs can collide with the planner's first choice)."""
    if research.budget.remaining <= 0:
        return ""
    records = await research.ledger.records()
    unrun = [r.title for r in records if not r.runs and not r.legacy and r.title != BASELINE_TITLE]
    if unrun:
        return plan_text(None, unrun[: research.budget.batch_size])
    survey = {"step": "survey", "info": await research.inspect_dataset(), "board": await research.get_leaderboard(50)}
    survey.update(history=await research.get_code_edit_history(500), best=await research.get_promising_code(1))
    edits, _ = planner.next_edits(planner.read_state([survey]), Policy(), max(1, research.budget.batch_size))
    for edit in edits:
        clean = {k: v for k, v in edit.items() if k != "tags"}
        if not await research.refusal(clean):
            return plan_text(clean, [])
    return ""


@dataclass
class LoopGuard:
    """A `call_llm` around another: feedback on failed plans, loop detection, one correction, then a clean stop."""

    call_llm: Any
    research: Tools
    tool_names: list[str]
    active: bool = True
    """False for the built-in planner: count errored turns, change nothing."""
    patience: int = PATIENCE
    turns: list[Turn] = field(default_factory=list)
    errored_turns: int = 0
    corrections: int = 0
    repaired_replies: int = 0
    next_steps: int = 0
    """Replies without code answered with the next step (`ending`)."""
    max_next_steps: int = ending.MAX_NEXT_STEPS
    stop_reason: str = ""
    stuck: str = ""
    """How the run got stuck when the guard stopped it: "the model looped" or "the model sent no plan"."""
    started_at: int | None = None
    """The budget's runs started when the guard was made: a run after that is an experiment of this session."""
    first_run_turn: int | None = None
    """The turn whose plan started this session's first run."""
    wasted: list[int] = field(default_factory=list)
    """For each failure the run recovered from: the turns from the first failed plan to the next progress."""
    open_failure: int | None = None
    corrected_at: int | None = None
    _mark: int = 0
    _first_len: int | None = None
    _reviewed: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.started_at is None:
            self.started_at = self.research.budget.started

    @property
    def ran_this_session(self) -> bool:
        """True once a run started after the guard was made (an experiment or its confirmation)."""
        return self.research.budget.started > (self.started_at or 0)

    async def __call__(
        self, model: str, system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> LLMMessage:
        if self._first_len is None:
            self._first_len = len(messages)
        elif len(messages) >= 2 and messages[-2].get("role") == "assistant":
            await self.review(messages[-2], messages[-1])
            if self.stop_reason:
                return LLMMessage(content=f"Stopped: {self.stop_reason}.", tool_calls=[], raw=None)
        reply = await self.call_llm(model, system, messages, tools)
        return self.fix_reply(reply)

    async def finish(self, messages: list[dict[str, Any]]) -> None:
        """Count the last turn too when the run ended on it (max turns): no model call came after it."""
        if len(messages) >= 2 and messages[-1].get("role") == "user" and messages[-2].get("role") == "assistant":
            await self.review(messages[-2], messages[-1])

    async def review(self, reply: dict[str, Any], observation: dict[str, Any]) -> None:
        """Read the turn that just ended; enrich its observation, track the loop, correct or stop."""
        if id(observation) in self._reviewed:
            return
        self._reviewed.add(id(observation))
        code = extract_python_code(reply.get("content") or "") or ""
        calls = self.research.log.since(self._mark)
        self._mark = len(self.research.log)
        text = str(observation.get("content") or "")
        failed = text.startswith(plans.ERROR_PREFIX)
        extra = []
        failure = await feedback.replay(code, calls, self.tool_names) if failed and code else None
        if failed and self.active:
            extra.append(feedback.explain(failure, text, calls, self.tool_names, KEY_ALIASES))
        elif self.active:
            extra.append(feedback.unseen_tool_errors(calls, text))
        turn = Turn(feedback.normalise(code), error_signature(failure, text) if failed else "", made_progress(calls))
        if self.first_run_turn is None and self.ran_this_session:
            self.first_run_turn = len(self.turns) + 1
        extra.append(await self.track(turn))
        extra = [e for e in extra if e]
        if extra and self.active:
            observation["content"] = text + "\n\n" + "\n\n".join(extra)

    async def track(self, turn: Turn) -> str:
        """Count the turn, and return a corrective message when it closes a loop ("" otherwise)."""
        self.turns.append(turn)
        index = len(self.turns)
        self.errored_turns += bool(turn.error)
        if turn.error and self.open_failure is None:
            self.open_failure = index
        if turn.progress:
            if self.open_failure is not None:
                self.wasted.append(index - self.open_failure)
            self.open_failure, self.corrected_at = None, None
            return ""
        if not self.active:
            return ""
        reason = loop_reason(self.turns[-2 * max(CYCLES) :])
        if self.corrected_at is not None:
            if index - self.corrected_at >= self.patience:
                self.stuck = "the model looped"
                self.stop_reason = (
                    f"the model kept making no progress ({reason or 'no experiment saved or run'}) for "
                    f"{index - self.corrected_at} turns after a corrective example; try the built-in planner "
                    "(--model builtin) or a stronger model"
                )
            return ""
        if not reason:
            return ""
        self.corrected_at, self.corrections = index, self.corrections + 1
        return await self.correction(reason)

    async def plan_now(self) -> str:
        """The corrective plan (`corrective_plan`), or "" when building it failed: the guard never raises into the
        agent loop."""
        try:
            return await corrective_plan(self.research)
        except Exception:  # a ledger read that failed: the message goes out without a plan
            return ""

    async def correction(self, reason: str) -> str:
        """The corrective message: what the loop is, and a plan that works now."""
        if self.research.budget.remaining <= 0:
            return (
                f"This run is stuck: {reason}. The experiment budget is spent: reply in plain text with your summary."
            )
        plan = await self.plan_now()
        if not plan:
            return (
                f"This run is stuck: {reason}. Stop repeating it: save an edit with a NEW title and a config or code "
                f"that no experiment has, then run it. {feedback.FRESH_SANDBOX}"
            )
        return (
            f"This run is stuck: {reason}. Stop repeating it. This minimal plan works in the current state (real "
            f"tools, real titles); send it as your next reply, then build on it:\n```python\n{plan}\n```\n"
            f"{feedback.FRESH_SANDBOX}"
        )

    def fix_reply(self, reply: LLMMessage) -> LLMMessage:
        """Fence a plan the model sent without its fence (else the reply would read as a final answer)."""
        if not self.active:
            return reply
        fixed = feedback.repair_reply(reply.content or "", self.tool_names)
        if not fixed:
            return reply
        self.repaired_replies += 1
        return LLMMessage(content=fixed, tool_calls=reply.tool_calls, raw=reply.raw)

    async def answer(self, text: str) -> ending.Ending:
        """What a reply without code means (`ending.judge`): the final answer (quoted only if it reads as a report),
        the next step (a plan that works now) while the budget allows runs and none ran or the reply is no report,
        or a stop with the reason."""
        budget = self.research.budget
        limit = self.max_next_steps if self.active else 0
        try:
            titles = [r.title for r in await self.research.ledger.records()]
        except Exception:  # the ledger could not be read: judge the words alone
            titles = []
        report, ran = ending.reads_as_report(text, titles), self.ran_this_session
        kind = ending.judge(False, bool(self.stop_reason), budget.remaining > 0, ran, report, self.next_steps, limit)
        if kind == "final":
            return ending.Ending("final", text if report else "")
        if kind == "stop":
            if not self.stop_reason:
                self.stuck = "the model sent no plan" if self.active else "the planner sent no plan"
                self.stop_reason = ending.no_plan_reason(self.next_steps + 1, text, ran, self.active)
            return ending.Ending("stop", self.stop_reason)
        self.next_steps += 1
        plan = await self.plan_now()
        message = ending.next_step_message(plan, budget.remaining, self.next_steps, limit, ran)
        return ending.Ending("next_step", message)

    def totals(self) -> dict[str, Any]:
        """What the guard saw, for the output's totals and the report."""
        out = {"agent_turns": len(self.turns), "errored_turns": self.errored_turns, "corrections": self.corrections}
        out.update(repaired_replies=self.repaired_replies, next_steps=self.next_steps, stop_reason=self.stop_reason)
        out.update(stuck=self.stuck, first_run_turn=self.first_run_turn)
        return {**out, "turns_wasted": list(self.wasted), "unrecovered": int(self.open_failure is not None)}
