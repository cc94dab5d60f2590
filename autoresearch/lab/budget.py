"""The key's experiment budget: how many runs it may still start, what a batch has promised, and whether research
was stopped (the agent's `stop` step, or the goal reached). `ResearchTools` owns one; the runner asks it before
every run starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autoresearch.lab.runner import Job


@dataclass
class Budget:
    """The key's experiment budget: runs in total (replicates and confirmations included), and the batch size.

    `started` counts the runs recorded under the key when this session opened plus those it started since.
    """

    n_experiments: int
    batch_size: int
    concurrency: int
    started: int = 0
    confirm_runs: int = 2
    """Runs a candidate that passes the screen needs to be confirmed (the baseline's other seeds)."""
    reserved: int = 0
    """Runs promised to the screens of the batch in flight: confirmations only use what is left beyond them."""
    stopped: str = ""
    """Why research ended before the budget did (the agent's `stop` step, or the goal reached); "" while it runs."""

    @property
    def remaining(self) -> int:
        return 0 if self.stopped else max(0, self.n_experiments - self.started - self.reserved)

    def stop(self, reason: str) -> None:
        """End research: nothing new starts (runs in flight finish and are recorded); the first reason stays."""
        self.stopped = self.stopped or reason

    def reserve(self, screens: int) -> int:
        """Promise up to `screens` runs to a batch's first runs; returns how many were promised."""
        granted = max(0, min(screens, self.remaining))
        self.reserved += granted
        return granted

    def admit(self, job: Job) -> bool:
        """Charge one run to the budget as it starts: a screen uses its batch's promise, anything else what is left;
        nothing starts once research was stopped."""
        if self.stopped:
            return False
        if job.role == "screen" and self.reserved > 0:
            self.reserved -= 1
        elif self.remaining <= 0:
            return False
        self.started += 1
        return True

    def to_dict(self) -> dict[str, Any]:
        out = {"n_experiments": self.n_experiments, "started": self.started, "remaining": self.remaining}
        out.update(batch_size=self.batch_size, concurrency=self.concurrency, confirm_runs=self.confirm_runs)
        if self.stopped:
            out["stopped"] = self.stopped
        if not self.remaining:
            out["note"] = "The experiment budget is spent: reply now in plain text (no code) with your final summary."
        return out
