"""The session's code-mode Agent: the SDK's `Agent` and its loop, with this project's turn.

`flyte.ai.agents.Agent(code_mode=True)` runs each fenced plan with `orchestrate_local`, which lets the plan's
prints reach the user's terminal and never the model, and it ends the run on any reply without code. This
subclass keeps the SDK's loop (turns, events, memory, the report tab, `max_turns`) and changes one turn:

- a plan runs through `plans.run_plan`: its prints come back in the observation, before its value;
- a reply without code goes to `answer`, a capability passed in (the loop guard's `answer`), which says whether
  it is final (`ending.judge`), the driver's next step, or a stop.

`prompt`, when given, replaces the whole system prompt (the compact form for small models).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import flyte
from flyte.ai.agents import Agent, AgentEvent, LLMMessage
from flyte.ai.agents._code import build_sandbox_tools, extract_python_code
from flyte.ai.agents._tools import _abbreviate, _stringify_tool_result
from flyte.ai.agents.agent import _emit, _TurnResult
from flyte.ai.agents.protocol import AgentResult

from autoresearch.agent import plans
from autoresearch.agent.ending import Ending


async def _always_final(text: str) -> Ending:
    """The SDK's own rule, for an agent given no `answer`: every reply without code is final."""
    return Ending("final", text)


@dataclass(kw_only=True)
class ResearchAgent(Agent):
    """A code-mode `Agent` whose plans see their own prints and whose replies without code are judged by `answer`."""

    answer: Callable[[str], Awaitable[Ending]] = field(default=_always_final)
    """What a reply without code means (the loop guard's `answer`)."""
    prompt: str = ""
    """The whole system prompt, when the caller builds it (the compact form); "" for the SDK's catalogue."""
    value_limit: int | None = None
    """Characters of a plan's value the model gets back; None for all of it."""

    def __post_init__(self) -> None:
        self.code_mode = True
        super().__post_init__()

    def _build_system_prompt(self) -> str:
        return self.prompt or super()._build_system_prompt()

    async def _run_code_mode(self, message: str, memory: Any = None) -> AgentResult:
        tasks = build_sandbox_tools(self._registry, call_llm=self.call_llm, model=self.model)
        turn = _Turn(self.name, tasks, self.answer, self.value_limit)
        outcome = await self._run_loop(message, memory, tools_schema=None, step=turn.step, mode="code")
        return AgentResult(
            code=turn.last_code,
            summary=outcome.last_text,
            error=outcome.error_msg,
            attempts=outcome.attempts,
            memory=outcome.memory,
        )


@dataclass
class _Turn:
    """One agent turn after the model replied: judge a reply without code, or run the plan and observe it."""

    name: str
    tasks: list[Any]
    answer: Callable[[str], Awaitable[Ending]]
    value_limit: int | None = None
    last_code: str = ""

    async def step(self, reply: LLMMessage, messages: list[dict[str, Any]], turn: int) -> _TurnResult:
        text = reply.content or ""
        messages.append({"role": "assistant", "content": text})
        await _emit(AgentEvent("message", {"role": "assistant", "content": text}))
        code = extract_python_code(text)
        if not code:
            return await self.no_code(text, messages, turn)
        self.last_code = code
        await _emit(AgentEvent("tool_start", {"tool": "<sandbox>", "code": code}))
        with flyte.group(f"{self.name}-sandbox-{turn}"):
            run = await plans.run_plan(code, self.tasks)
        if run.error is not None:
            await _emit(AgentEvent("tool_error", {"tool": "<sandbox>", "error": str(run.error)}))
            value = ""
        else:
            await _emit(AgentEvent("tool_end", {"tool": "<sandbox>", "result": _abbreviate(run.value)}))
            value = await _stringify_tool_result(run.value)
        observed = plans.observation(value, run.output, run.error, self.value_limit)
        messages.append({"role": "user", "content": observed})
        await _emit(AgentEvent("turn_end", {"turn": turn, "had_code": True, "error": run.error is not None}))
        return _TurnResult(done=False)

    async def no_code(self, text: str, messages: list[dict[str, Any]], turn: int) -> _TurnResult:
        """A reply without code: the final answer, a stop (no summary), or the driver's next step."""
        ending = await self.answer(text)
        await _emit(AgentEvent("turn_end", {"turn": turn, "had_code": False, "ending": ending.kind}))
        if ending.kind == "next_step":
            messages.append({"role": "user", "content": ending.text})
            return _TurnResult(done=False)
        return _TurnResult(done=True, final_text=ending.text if ending.kind == "final" else "")
