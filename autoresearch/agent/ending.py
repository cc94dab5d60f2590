"""When a reply ends the research: the one judgement of "final", and the words the driver answers a non-answer with.

The SDK's code mode takes any reply without a ```python block as the final answer. A small model that replies
"I'm sorry, I don't see any output" before a single experiment ran would then end a run that was asked for ten,
and have its apology quoted back as the summary. Here a reply without code is final only once the research can
stop: the budget is spent or stopped, or an experiment ran this session. Before that the driver answers with the
concrete next step (a plan that works now), a bounded number of times, then stops the run with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MAX_NEXT_STEPS = 2
"""Replies without code the driver answers with the next step before it stops the run."""

Kind = Literal["run", "final", "next_step", "stop"]


@dataclass(frozen=True)
class Ending:
    """What a reply means: `final` (its text is the agent's summary), `next_step` (the text is the driver's answer
    and the run goes on) or `stop` (the text is the reason the run ends without a summary)."""

    kind: Kind
    text: str = ""


def judge(
    has_code: bool, stopped: bool, budget_open: bool, ran_this_session: bool, next_steps: int, limit: int
) -> Kind:
    """The judgement of a reply: `run` its plan; `final` once the research may end (budget spent or stopped, or an
    experiment ran this session); else the `next_step`, `limit` times at most, then `stop`. A run the guard already
    stopped always ends here."""
    if stopped:
        return "stop"
    if has_code:
        return "run"
    if not budget_open or ran_this_session:
        return "final"
    return "next_step" if next_steps < limit else "stop"


def quote(text: str, limit: int = 120) -> str:
    """A reply in one short line, for a reason."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def next_step_message(plan: str, remaining: int, given: int, limit: int) -> str:
    """The driver's answer to a reply without code while experiments can still run and none has."""
    head = (
        f"Your reply has no ```python block, and no experiment has run yet while the budget allows {remaining} more "
        "runs, so the research is not finished and this is not a final answer."
    )
    left = limit - given + 1
    warn = (
        " (one more reply without code ends the run)"
        if left == 1
        else f" ({left} more replies without code end the run)"
    )
    if not plan:
        return f"{head} Reply with one ```python block that calls the tools{warn}."
    return f"{head} Run this plan next (real tools, real titles){warn}:\n```python\n{plan}\n```"


def no_plan_reason(replies: int, last: str, model: bool = True) -> str:
    """Why a run that only got prose ends: the count, the last reply, and what to try instead (for a model; the
    built-in planner's reply is quoted as it is)."""
    if not model:
        return f'the planner ended before any experiment ran, with budget left: "{quote(last)}"'
    return (
        f'the model replied without a plan {replies} times before any experiment ran (last: "{quote(last)}"); '
        "try the built-in planner (--model builtin) or a stronger model"
    )
