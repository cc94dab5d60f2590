"""One code-mode plan run in Monty with what it prints captured, and the observation the model reads next.

A model inspects the way people do in a REPL: it prints. The SDK's code-mode loop lets Monty write a plan's
`print()` straight to the host's terminal, so the model never saw its own prints and the user saw them instead.
`run_plan` runs the plan on Flyte's own sandbox pool and bridge (the same limits, tools and `flyte_map`), with a
bounded sink for its stdout and stderr; `observation` puts that output before the plan's value, notes a cut, and
tells a model whose plan returned nothing and printed nothing how to see a value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

OUTPUT_LIMIT = 4000
"""Characters of a plan's printed output the model gets back (its head and its tail)."""
COMPACT_VALUE_LIMIT = 8000
"""Characters of a plan's value a small model gets back (the compact form); the full form gets it whole, as the
built-in planner, which parses it, needs."""
ERROR_PREFIX = "Your code raised an error"
"""How the observation after a failed plan starts (the loop guard recognises a failed turn by it)."""
NO_VALUE = (
    "Execution result: (no value). The plan's last line is not an expression and it printed nothing, so you saw "
    'nothing. End the plan with the value you want to see, e.g. `info` or `{"board": board, "left": left}`, '
    "or print() it."
)
PLAN_TIMEOUT_MS = 30_000
"""Monty's own time limit for a plan (tool calls do not count against it), as in the SDK's code mode."""


class PrintSink:
    """A plan's printed output, bounded: the first and last characters and how many were cut between them.

    Monty calls it with `(stream, text)` for every flush of `print()`; stderr is kept in line, marked."""

    def __init__(self, limit: int = OUTPUT_LIMIT):
        self.head_limit, self.tail_limit = limit * 2 // 3, limit - limit * 2 // 3
        self.head, self.tail, self.total = "", "", 0

    def __call__(self, stream: str, text: str) -> None:
        text = f"[stderr] {text}" if stream == "stderr" else text
        self.total += len(text)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += text[:room]
            text = text[room:]
        if text:
            self.tail = (self.tail + text)[-self.tail_limit :] if self.tail_limit else ""

    @property
    def cut(self) -> int:
        """Characters printed but not kept."""
        return self.total - len(self.head) - len(self.tail)

    def text(self) -> str:
        """What the model gets back: the head, a note of the cut, the tail."""
        if not self.cut:
            return self.head + self.tail
        note = f"\n... ({self.cut} characters cut; print less, or print only the fields you need) ...\n"
        return self.head + note + self.tail


@dataclass
class PlanRun:
    """What one plan did: the value of its last expression, what it printed, and the exception if it failed."""

    value: Any = None
    output: str = ""
    error: BaseException | None = None


class _Printing:
    """A checked-out Monty session whose feeds send `print()` to a sink instead of the host's terminal."""

    def __init__(self, session: Any, sink: Callable[[str, str], None]):
        self._session, self._sink = session, sink

    async def feed_start(self, code: str, **kwargs: Any) -> Any:
        return await self._session.feed_start(code, print_callback=self._sink, **kwargs)


async def run_plan(
    code: str, tasks: list[Any], timeout_ms: int = PLAN_TIMEOUT_MS, limit: int = OUTPUT_LIMIT
) -> PlanRun:
    """Run `code` in Monty with `tasks` as its functions, exactly as Flyte's `orchestrate_local` does, but with its
    prints captured (never the terminal). Never raises for the plan's own failure: it comes back in `error`."""
    from flyte.sandbox._api import _tasks_to_dict
    from flyte.sandbox._bridge import ExternalFunctionBridge
    from flyte.sandbox._code_task import _classify_refs
    from flyte.sandbox._config import SandboxedConfig
    from flyte.sandbox._runtime import checkout
    from flyte.sandbox._source import prepare_code_source

    sink = PrintSink(limit)
    bridge = ExternalFunctionBridge(**_classify_refs(_tasks_to_dict(tasks)))
    try:
        async with await checkout(SandboxedConfig(timeout_ms=timeout_ms)) as session:
            value = await bridge.execute_monty(_Printing(session, sink), prepare_code_source(code), {"_unused": 0})
    except Exception as exc:
        return PlanRun(None, sink.text(), exc)
    return PlanRun(value, sink.text())


def cut(text: str, limit: int, what: str) -> str:
    """`text` within `limit` characters, with a note of what was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... ({len(text) - limit} characters of the {what} cut; return only what you need)"


def observation(value_text: str, output: str, error: BaseException | None, value_limit: int | None = None) -> str:
    """The message the model reads after its plan: the error (with what it printed before it), or what it printed
    then its value (within `value_limit` characters, if given); a plan that printed nothing and returned nothing is
    told how to see a value."""
    printed = f"Printed output:\n```\n{output.rstrip()}\n```\n" if output.strip() else ""
    if error is not None:
        text = f"{ERROR_PREFIX}:\n\n```\n{error}\n```\n\nFix the code and try again."
        return text + (f"\n\nBefore the error, the plan printed:\n```\n{output.rstrip()}\n```" if printed else "")
    if value_text:
        shown = cut(value_text, value_limit, "value") if value_limit else value_text
        return f"{printed}Execution result:\n{shown}"
    return f"{printed}Execution result: (no value)" if printed else NO_VALUE
