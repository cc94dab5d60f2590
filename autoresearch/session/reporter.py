"""The live report: the tabs redrawn from a fresh read of the ledger whenever something new happened.

The read is `read_view` (one read of the store); the snapshot and the HTML are the report package's pure functions.
With a results dir (a local run), each redraw also writes the report and `results.tsv` there, so a person finds
both under the state dir whichever way the run was started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import flyte.report

import ui
from autoresearch.ledger.ledger import Ledger
from autoresearch.report.results_tsv import results_tsv
from autoresearch.report.snapshot import StoreView, build_snapshot
from autoresearch.session import results
from autoresearch.session.activity import Activity

log = logging.getLogger("autoresearch")
AUDIT_TAIL = 50
"""The newest entries of the store's audit log the Memory tab shows."""


async def read_view(ledger: Ledger) -> StoreView:
    """Everything the report reads from the ledger, in one read of its records (one set of verdicts)."""
    records, verdicts, board = await ledger.view()
    plans, tail, audit = await ledger.batch_plans(), await ledger.audit_tail(AUDIT_TAIL), await ledger.latest_audit()
    transfer = await ledger.latest_transfer()
    return StoreView(records, verdicts, board, ledger.rule.describe(), plans, tail, audit or {}, transfer or {})


def report_html() -> str:
    """The whole report as Flyte flushes it (every tab, the Agent's included), from memory; "" outside a task."""
    report = flyte.report.current_report()
    return str(report.get_final_report()) if report is not None else ""


class Reporter:
    """Keeps the report tabs current: redraws when activity is new, at most every `interval_s` seconds."""

    def __init__(
        self,
        ledger: Ledger,
        run_info: dict[str, Any],
        activity: Activity,
        usage: Callable,
        files: results.ResultsDir | None = None,
    ):
        self.ledger, self.run_info, self.activity, self.usage = ledger, run_info, activity, usage
        self.files = files
        """Where the live report and `results.tsv` go (None on a cluster)."""
        self._task: asyncio.Task | None = None

    async def refresh(self) -> None:
        """Render every tab from a fresh snapshot, flush the report file, and update the results dir."""
        view = await read_view(self.ledger)
        snapshot = build_snapshot(view, self.run_info, self.activity.events, self.usage())
        for name, html in ui.render_report(snapshot).items():
            flyte.report.get_tab(name).replace(html)
        await flyte.report.flush.aio()
        if self.files is not None:
            key, base = self.run_info["memory_key"], self.ledger.base_config
            self.files.save_text(results.TSV, results_tsv(view.records, view.board, key, base))
            self.files.save_text(results.REPORT, report_html())
            self.say_errors()

    def say_errors(self) -> None:
        """Print each new failure to write the results dir once (the research goes on; the ledger has it all)."""
        assert self.files is not None
        for problem in self.files.unreported():
            print(f"error: {problem}; the research goes on and the ledger keeps every record", flush=True)

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
