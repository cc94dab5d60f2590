"""The key's budget: the ideas it may try, the runs it may spend, what a batch was promised, and whether research
was stopped (the agent's `stop` step, or the goal reached). `ResearchTools` owns one; the runner asks it before
every run starts.

Two budgets, as users mean them: `n_experiments` counts ideas (an experiment's first run, its screen), and
`max_runs` counts every run of the key (the baseline's seeds, screens and confirmation re-runs). A new idea starts
only while both allow it and the run budget still holds a confirmation's runs beyond it, so an idea that passes
the screen can be confirmed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from autoresearch.lab.runner import Job
from autoresearch.ledger.verdicts import GateRule


def auto_max_runs(n_experiments: int, replicates: int) -> int:
    """The run budget when none is given: the baseline's seeds, every idea's screen, and room to confirm half of
    the ideas on the baseline's other seeds."""
    return replicates + n_experiments + (replicates - 1) * math.ceil(n_experiments / 2)


def runs_for_one_idea(replicates: int) -> int:
    """The fewest runs a new key needs to try one idea: the baseline's seeds, a screen and its confirmation."""
    return replicates + 1 + (replicates - 1)


@dataclass
class Budget:
    """The key's ideas and runs: totals for the key, with what was used when this session opened plus what it
    started since."""

    n_experiments: int
    batch_size: int
    concurrency: int
    started: int = 0
    """Runs recorded or started under the key (every role)."""
    confirm_runs: int = GateRule().replicates - 1
    """Runs a candidate that passes the screen needs to be confirmed (the baseline's other seeds)."""
    max_runs: int = 0
    """Runs in total for the key; 0 takes `auto_max_runs` with `confirm_runs + 1` replicates."""
    ideas: int = 0
    """Ideas (experiments beyond the baseline) whose screen was recorded or started under the key."""
    reserved: int = 0
    """Screens promised to the batch in flight: what is left is counted beyond them."""
    stopped: str = ""
    """Why research ended before the budget did (the agent's `stop` step, or the goal reached); "" while it runs."""

    def __post_init__(self) -> None:
        if not self.max_runs:
            self.max_runs = auto_max_runs(self.n_experiments, self.confirm_runs + 1)

    @property
    def runs_left(self) -> int:
        return max(0, self.max_runs - self.started)

    @property
    def remaining(self) -> int:
        """New ideas that may start now: within the ideas left, and within the runs left after the promised screens
        and one confirmation's reserve."""
        if self.stopped:
            return 0
        ideas = self.n_experiments - self.ideas - self.reserved
        runs = self.runs_left - self.reserved - self.confirm_runs
        return max(0, min(ideas, runs))

    def stop(self, reason: str) -> None:
        """End research: nothing new starts (runs in flight finish and are recorded); the first reason stays."""
        self.stopped = self.stopped or reason

    def reserve(self, screens: int) -> int:
        """Promise up to `screens` runs to a batch's first runs; returns how many were promised."""
        granted = max(0, min(screens, self.remaining))
        self.reserved += granted
        return granted

    def admit(self, job: Job) -> bool:
        """Charge one run as it starts: a screen uses its batch's promise (or what is left) and counts as an idea;
        a replicate or confirmation draws on the runs left. Nothing starts once research was stopped."""
        if self.stopped:
            return False
        if job.role == "screen":
            if self.reserved > 0:
                self.reserved -= 1
            elif self.remaining <= 0:
                return False
            self.ideas += 1
        elif self.runs_left <= 0:
            return False
        self.started += 1
        return True

    def to_dict(self) -> dict[str, Any]:
        out = {"n_experiments": self.n_experiments, "started": self.ideas, "remaining": self.remaining}
        out.update(max_runs=self.max_runs, runs_started=self.started, runs_left=self.runs_left)
        out.update(batch_size=self.batch_size, concurrency=self.concurrency, confirm_runs=self.confirm_runs)
        if self.stopped:
            out["stopped"] = self.stopped
        if not self.remaining:
            out["note"] = "The budget is spent: reply now in plain text (no code) with your final summary."
        return out
