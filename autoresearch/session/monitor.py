"""What a research run shows while it runs: the activity timeline, the terminal lines and the live report.

The driver feeds `Activity` from the tools and the Agent's events; `Reporter` redraws the report tabs
from a fresh snapshot of the ledger's records whenever something new happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import flyte.report
from flyte.ai.agents import AgentEvent

import ui
from autoresearch.lab.runner import Job
from autoresearch.ledger.ledger import Ledger
from autoresearch.ledger.views import BASELINE_TITLE
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

    def on_start(self, jobs: list[Job]) -> None:
        """A batch starts: an empty progress bar and what runs in the terminal, an event in the report."""
        batch_id = jobs[-1].record.spec.batch_id if jobs else ""
        names = [_job(j) for j in jobs]
        if self.echo:
            print(ui.batch_start_line(batch_id, names), flush=True)
        listed = ", ".join(n["title"] + ("" if n["role"] == "screen" else f" (seed {n['seed']})") for n in names)
        self.emit({"kind": "batch", "name": batch_id, "detail": f"started {len(jobs)}: {listed}"})

    def on_result(
        self, job: Job, done: int, total: int, result: ExperimentResult, standing: dict[str, Any] | None
    ) -> None:
        """A run finished: a progress line (with the verdict so far) in the terminal, an event in the report."""
        self.results.append(result)
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


async def build_snapshot(
    ledger: Ledger, run_info: dict[str, Any], activity: Activity, usage: dict[str, Any]
) -> dict[str, Any]:
    """Everything the report renders, read fresh from the ledger's records (one read, one set of verdicts)."""
    records, verdicts, board = await ledger.view()
    records = sorted(records, key=lambda r: r.spec.created_at)
    labels = {r.title: r.label for r in board}
    experiments = [
        {
            **r.spec.to_dict(),
            "seq": r.seq,
            "train_py": r.train_py,
            "result": r.result and r.result.to_dict(),
            "runs": [
                {
                    "seed": run.seed,
                    "seq": run.seq,
                    "role": run.role,
                    "outcome": run.result.outcome,
                    "val_bpb": run.val_bpb,
                }
                for run in r.runs
            ],
            "label": labels.get(r.title),
        }
        for r in records
    ]
    runs = [run.result for r in records for run in r.runs]
    by_outcome: dict[str, int] = {}
    for result in runs:
        by_outcome[result.outcome] = by_outcome.get(result.outcome, 0) + 1
    return {
        "run": run_info,
        "experiments": experiments,
        "leaderboard": [r.to_dict() for r in board],
        "lineage": await ledger.lineage(),
        "batch_plans": await ledger.batch_plans(),
        "audit_tail": await ledger.audit_tail(50),
        "activity": list(activity.events[-300:]),
        "usage": usage,
        "noise": {
            "sigma": verdicts.sigma,
            "df": verdicts.df,
            "gate": ledger.rule.describe(),
            "incumbent": verdicts.incumbent,
        },
        "audit": await ledger.latest_audit() or {},
        "totals": {
            "compute_s": round(sum(r.wall_seconds for r in runs), 1),
            "experiments_run": sum(1 for r in records if r.runs and r.title != BASELINE_TITLE),
            "runs": len(runs),
            "by_outcome": by_outcome,
        },
        "baseline_title": BASELINE_TITLE,
    }


class Reporter:
    """Keeps the report tabs current: redraws when activity is new, at most every `interval_s` seconds."""

    def __init__(self, ledger: Ledger, run_info: dict[str, Any], activity: Activity, usage: Callable):
        self.ledger, self.run_info, self.activity, self.usage = ledger, run_info, activity, usage
        self._task: asyncio.Task | None = None

    async def refresh(self) -> None:
        """Render every tab from a fresh snapshot and flush the report file."""
        snapshot = await build_snapshot(self.ledger, self.run_info, self.activity, self.usage())
        for name, html in ui.render_report(snapshot).items():
            flyte.report.get_tab(name).replace(html)
        await flyte.report.flush.aio()

    async def _loop(self, interval_s: float) -> None:
        while True:
            await self.activity.dirty.wait()
            self.activity.dirty.clear()
            try:
                await self.refresh()
            except Exception as exc:  # a report glitch must never stop the research
                log.warning("report refresh failed: %s", exc)
            await asyncio.sleep(interval_s)

    async def start(self, interval_s: float = 2.0) -> None:
        """Draw every tab once (so they come before the Agent's own tab), then keep them current."""
        await self.refresh()
        self._task = asyncio.create_task(self._loop(interval_s))

    async def stop(self, status: str, error: str = "") -> None:
        """Stop the live loop and draw the final state."""
        if self._task:
            self._task.cancel()
        self.run_info.update(status=status, error=error)
        try:
            await self.refresh()
        except Exception as exc:  # the run's outcome matters more than its last redraw
            log.warning("final report refresh failed: %s", exc)


class HandledFailureFilter(logging.Filter):
    """Drops Flyte's traceback for a failed experiment: the driver records it and prints one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        import flyte.errors

        from autoresearch import llm
        from autoresearch.sandbox import experiment as sandbox
        from autoresearch.session import inputs as validation

        exc = record.exc_info[1] if record.exc_info else None
        quiet = (sandbox.ExperimentFailed, flyte.errors.OOMError, llm.LLMUnavailable, validation.InputError)
        return not isinstance(exc, quiet)


def quiet_handled_failures() -> None:
    """Keep the terminal readable: no tracebacks for experiment failures that are handled (once per process)."""
    flyte_log = logging.getLogger("flyte")
    if not any(isinstance(f, HandledFailureFilter) for f in flyte_log.filters):
        flyte_log.addFilter(HandledFailureFilter())
