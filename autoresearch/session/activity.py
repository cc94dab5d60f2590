"""What a research run shows in the terminal while it runs: the activity timeline and its progress lines.

The session feeds `Activity` from the tools, the research loop and the Agent's events; the report's Activity tab
and the terminal both read it. `quiet_handled_failures` keeps Flyte's tracebacks of handled failures out of the
terminal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from flyte.ai.agents import AgentEvent

import ui
from autoresearch.lab.runner import Job
from autoresearch.ledger.records import BASELINE_TITLE
from autoresearch_types import ExperimentResult

log = logging.getLogger("autoresearch")


def _job(job: Job) -> dict[str, Any]:
    return {"title": job.title, "seed": job.seed, "role": job.role}


class Activity:
    """The run's timeline (turns, code, tool calls, results) for the Activity tab and the terminal."""

    def __init__(self, echo: bool = True):
        self.events: list[dict[str, Any]] = []
        self.results: list[ExperimentResult] = []
        self.echo = echo
        self.dirty = asyncio.Event()
        self._t0 = time.monotonic()
        self.roles: list[str] = []
        """Each finished run's role (screen, replicate, confirm), in the order of `results`."""
        self.first_confirmed_s: float | None = None
        """Seconds from the start of the session to the first confirmed gain (None if there was none)."""

    def emit(self, event: dict[str, Any]) -> None:
        """Record an event (tools and the agent call this); tool errors are echoed to the terminal."""
        event.setdefault("t", round(time.monotonic() - self._t0, 2))
        self.events.append(event)
        self.dirty.set()
        if self.echo and event.get("error"):
            print(f"  ! {event.get('name')}: {str(event['error'])[:200]}", flush=True)

    def elapsed(self) -> float:
        """Seconds since the session started."""
        return time.monotonic() - self._t0

    def on_start(self, jobs: list[Job], done: int = 0, total: int = 0) -> None:
        """Runs start: the progress counter and what runs in the terminal, an event in the report."""
        batch_id = jobs[-1].record.spec.batch_id if jobs else ""
        names = [_job(j) for j in jobs]
        if self.echo:
            print(ui.batch_start_line(batch_id, names, done, total), flush=True)
        listed = ", ".join(n["title"] + ("" if n["role"] == "screen" else f" (seed {n['seed']})") for n in names)
        self.emit({"kind": "batch", "name": batch_id, "detail": f"started {len(jobs)}: {listed}"})

    def on_result(
        self, job: Job, done: int, total: int, result: ExperimentResult, standing: dict[str, Any] | None
    ) -> None:
        """A run finished: a progress line (with the verdict so far) in the terminal, an event in the report."""
        self.results.append(result)
        self.roles.append(job.role)
        if standing and standing.get("verdict") == "confirmed" and self.first_confirmed_s is None:
            self.first_confirmed_s = round(time.monotonic() - self._t0, 1)
        batch_id = job.record.spec.batch_id
        if self.echo:
            print(ui.experiment_line(batch_id, done, total, _job(job), result.to_dict(), standing), flush=True)
        verdict = f", verdict {standing['verdict']}" if standing else ""
        detail = f"seed {job.seed} ({job.role}): {result.outcome} val_bpb={result.val_bpb}{verdict}"
        self.emit(
            {"kind": "experiment", "name": job.title, "detail": detail, "duration_s": round(result.wall_seconds, 1)}
        )

    def experiments_run(self) -> int:
        """Experiments (never the baseline) that ran at least once in this session."""
        titles = {e["name"] for e in self.events if e.get("kind") == "experiment"}
        return len(titles - {BASELINE_TITLE})

    async def on_agent_event(self, event: AgentEvent) -> None:
        """Turn the Agent's events into timeline entries (the code each turn ran included)."""
        data = event.data
        if event.type == "turn_start":
            if self.echo:
                print(f"[agent] turn {data.get('turn')}/{data.get('max_turns')}", flush=True)
            self.emit({"kind": "turn", "name": f"turn {data.get('turn')}", "detail": ""})
        elif event.type == "tool_start" and "code" in data:
            self.emit({"kind": "code", "name": "plan", "detail": str(data["code"])[:6000]})
        elif event.type == "tool_error":
            self.emit({"kind": "error", "name": str(data.get("tool")), "detail": "", "error": str(data.get("error"))})
        elif event.type == "message" and data.get("content"):
            self.emit({"kind": "message", "name": "assistant", "detail": str(data["content"])[:2000]})
        elif event.type == "turn_end" and data.get("ending") == "next_step":
            if self.echo:
                print(
                    "[agent] the reply had no plan and no experiment has run: answered with the next step", flush=True
                )
            self.emit({"kind": "next_step", "name": f"turn {data.get('turn')}", "detail": "answered with a plan"})


class HandledFailureFilter(logging.Filter):
    """Drops Flyte's traceback for a failed experiment: the driver records it and prints one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        import flyte.errors

        from autoresearch import llm
        from autoresearch.sandbox import experiment as sandbox
        from autoresearch.session import inputs

        exc = record.exc_info[1] if record.exc_info else None
        quiet = (sandbox.ExperimentFailed, flyte.errors.OOMError, llm.LLMUnavailable, inputs.InputError)
        return not isinstance(exc, quiet)


def quiet_handled_failures() -> None:
    """Keep the terminal readable: no tracebacks for experiment failures that are handled (once per process)."""
    flyte_log = logging.getLogger("flyte")
    if not any(isinstance(f, HandledFailureFilter) for f in flyte_log.filters):
        flyte_log.addFilter(HandledFailureFilter())
