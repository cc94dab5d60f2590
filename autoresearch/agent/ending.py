"""When a reply ends the research: the one judgement of "final", and the words the driver answers a non-answer with.

The SDK's code mode takes any reply without a ```python block as the final answer. A small model that replies
"I'm sorry, I don't see any output" before a single experiment ran would then end a run that was asked for ten,
and have its apology quoted back as the summary. Here a reply without code is final only once the research can
stop: the budget is spent or stopped, or an experiment ran this session and the reply reads as a report. Before
that the driver answers with the concrete next step (a plan that works now), a bounded number of times, then
stops the run with the reason. A reply that does not read as a report is never quoted as the agent's summary.
"""

from __future__ import annotations

import re
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


REPORT_WORDS = re.compile(r"val_bpb|baseline|confirmed|noise|best|gain|\d\.\d", re.IGNORECASE)
"""What a final report talks about: the metric, the baseline, a verdict, a number."""


def reads_as_report(text: str, titles: list[str]) -> bool:
    """True when a reply talks about the research (the metric, a verdict, a number or an experiment's title);
    "I'm sorry, I don't see any output" does not."""
    lowered = text.lower()
    return bool(REPORT_WORDS.search(text)) or any(t.lower() in lowered for t in titles if len(t) > 2)


def judge(
    has_code: bool, stopped: bool, budget_open: bool, ran_this_session: bool, report: bool, next_steps: int, limit: int
) -> Kind:
    """The judgement of a reply: `run` its plan; `final` once the research may end (the budget is spent or stopped,
    or an experiment ran this session and the reply is a `report`); else the `next_step`, `limit` times at most,
    then `stop`. A run the guard already stopped always ends here."""
    if stopped:
        return "stop"
    if has_code:
        return "run"
    if not budget_open or (ran_this_session and report):
        return "final"
    return "next_step" if next_steps < limit else "stop"


def quote(text: str, limit: int = 120) -> str:
    """A reply in one short line, for a reason."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def next_step_message(plan: str, remaining: int, given: int, limit: int, ran: bool) -> str:
    """The driver's answer to a reply without code while experiments can still run (none has, or the reply is not a
    report)."""
    why = "it is not a report of results" if ran else "no experiment has run yet"
    head = (
        f"Your reply has no ```python block and {why}, while the budget allows {remaining} more runs, so the "
        "research is not finished and this is not a final answer."
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


def no_plan_reason(replies: int, last: str, ran: bool, model: bool = True) -> str:
    """Why a run that only got prose ends: the count, the last reply, and what to try instead (for a model; the
    built-in planner's reply is quoted as it is)."""
    when = "with budget left and no report" if ran else "before any experiment ran"
    if not model:
        return f'the planner ended {when}: "{quote(last)}"'
    return (
        f'the model replied without a plan {replies} times {when} (last: "{quote(last)}"); '
        "try the built-in planner (--model builtin) or a stronger model"
    )
