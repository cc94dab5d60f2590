"""The research loop between runs: which runs a key owes, what happens when one finishes, when research stops.

`ResearchLoop` is bound to one session's ledger, runner and budget. The runner calls `record_job` for every
finished run: it is recorded, the gate's verdicts are recomputed from the records, a borderline verdict goes to
the judge, confirmation runs a candidate earned are handed back to the runner (queued first), and the goal is
checked. The agent's tools (`tools.py`) only ask it to queue screens and read what it recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autoresearch.lab.budget import Budget
from autoresearch.lab.goal import Goal, goal_met
from autoresearch.lab.judge import Judge, case_for
from autoresearch.lab.pruning import PruneRule, chance_to_pass, futile, seeds_at_once
from autoresearch.lab.runner import ExperimentRunner, Job, Outcome
from autoresearch.ledger.ledger import Ledger, LedgerError
from autoresearch.ledger.records import BASELINE_TITLE, ExperimentRecord, LeaderboardRow
from autoresearch.ledger.verdicts import FUTILE, Judgement
from autoresearch.ledger.views import verdict_brief
from autoresearch_types import ExperimentResult

Emit = Callable[[dict[str, Any]], None]
"""Receives activity events for the report and the terminal."""
OnResult = Callable[[Job, int, int, ExperimentResult, dict[str, Any] | None], None]
"""Shown a finished run: the job, the progress counter (see `ResearchLoop.progress`), the result, its standing."""
OnStart = Callable[[list[Job], int, int], None]
"""Shown the runs that just started, with the progress counter."""


def _quiet(*_: Any) -> None:
    """The default observer: shows nothing."""


@dataclass
class ResearchLoop:
    """One session's loop between runs: records each result, earns confirmations, asks the judge, checks the goal."""

    ledger: Ledger
    runner: ExperimentRunner
    budget: Budget
    emit: Emit = _quiet
    on_result: OnResult = _quiet
    on_start: OnStart = _quiet
    judge: Judge | None = None
    """Decides the borderline verdicts (see `judge.py`); None leaves every verdict to the gate's rule."""
    goal: Goal = field(default_factory=Goal)
    """When to stop before the budget: a confirmed result reaching the target."""

    prune: PruneRule = field(default_factory=PruneRule)
    """Pruning's rule: with it on, a confirmation whose chance to pass is tiny stops (`pruning.futile`)."""
    closed: set[str] = field(default_factory=set)
    """Candidates whose confirmation ended before all its fresh seeds ran (one was pruned, failed or truncated, or
    it was futile: the gate owes it no more seeds), so their queued confirmation runs are skipped, not trained."""

    def __post_init__(self) -> None:
        self.runner.bind(self.record_job, self.admit)

    def _unowed(self, job: Job) -> bool:
        return job.role == "confirm" and job.title in self.closed

    def admit(self, job: Job) -> bool:
        """Whether a queued job may start now: never a confirmation the gate no longer owes; else the budget's
        say (it charges the run)."""
        return not self._unowed(job) and self.budget.admit(job)

    def skip_reason(self, job: Job) -> str:
        """Why `admit` refused a job, for the agent."""
        if self._unowed(job):
            return "its confirmation already ended (a fresh seed was pruned, failed or truncated, or it was futile)"
        return "the experiment budget is spent"

    # ---------------------------------------------------------------- what runs

    def job(self, record: ExperimentRecord, role: str, seed: int | None = None) -> Job:
        """A run of `record` on `seed` (default: the run's seed)."""
        return Job(record, self.ledger.base_config.seed if seed is None else seed, role)

    async def confirmation_jobs(self) -> list[Job]:
        """Fresh-seed runs still owed to candidates that passed the screen (with pruning on, the next one of each
        candidate with none queued or running)."""
        verdicts = await self.ledger.judgement()
        return await self._confirm_jobs(verdicts, list(verdicts.confirm_seeds), self.runner.titles())

    async def _confirm_jobs(self, verdicts: Judgement, titles: list[str], busy: set[str]) -> list[Job]:
        """The owed fresh-seed runs of `titles`. With pruning on, none of a candidate whose title `busy` holds, and
        one at a time until its chance to pass is high (`pruning.seeds_at_once`), so a futile confirmation stops
        before its next seed starts; other slots meanwhile take other work."""
        owed = {t: verdicts.confirm_seeds.get(t, []) for t in titles}
        if self.prune.on:
            owed = {
                t: s[: seeds_at_once(verdicts.verdicts.get(t), len(s), self.prune)]
                for t, s in owed.items()
                if t not in busy
            }
        owed = {t: seeds for t, seeds in owed.items() if seeds}
        if not owed:
            return []
        recs = await self.ledger.specs(list(owed))
        return [self.job(rec, "confirm", seed) for rec in recs for seed in owed[rec.title]]

    async def pending_jobs(self) -> list[Job]:
        """What the ledger owes before new research: the baseline's replicate seeds, experiments saved but never
        run (a crash or Ctrl-C), and confirmations. Runs that did finish are Flyte cache hits, not reruns."""
        records = await self.ledger.records()
        jobs = []
        base = next(r for r in records if r.title == BASELINE_TITLE)
        seeds = [self.ledger.base_config.seed + i for i in range(self.ledger.rule.replicates)]
        jobs += [self.job(base, "replicate", s) for s in seeds if base.run_for(s) is None]
        unrun = [r for r in records if not r.runs and not r.legacy and r.title != BASELINE_TITLE]
        jobs += [self.job(r, "screen") for r in sorted(unrun, key=lambda r: r.spec.created_at)]
        return await self.confirmation_jobs() + jobs

    async def queue(self, names: list[str]) -> dict[str, Any]:
        """Submit the screens of saved, never-run titles (at most batch_size) after the confirmations still owed.

        Returns {"queued": [titles], "skipped": [{"title", "reason"}]}, or {"error"} for an unknown title."""
        try:
            recs = await self.ledger.specs(list(dict.fromkeys(names)))
        except LedgerError as exc:
            return {"error": str(exc)}
        skipped = [{"title": r.title, "reason": "already ran; not rerun"} for r in recs if r.runs or r.legacy]
        todo = [r for r in recs if not r.runs and not r.legacy]
        over = todo[self.budget.batch_size :]
        skipped += [{"title": r.title, "reason": "over the batch size; submit it later"} for r in over]
        screens = [self.job(r, "screen") for r in todo[: self.budget.batch_size]]
        accepted = await self.start_jobs(await self.confirmation_jobs() + screens)
        promised = [j for j in accepted if j.role == "screen"]
        self.budget.reserve(len(promised))
        running = {j.title for j in screens} - {j.title for j in accepted}
        skipped += [{"title": t, "reason": "already queued or running"} for t in sorted(running)]
        return {"queued": [j.title for j in promised], "skipped": skipped}

    async def start_jobs(self, jobs: list[Job]) -> list[Job]:
        """Hand jobs to the runner (returns at once); what it accepted (not already queued or running)."""
        accepted = self.runner.submit(jobs)
        if accepted:
            self.on_start(accepted, *self.progress())
        return accepted

    async def finish_confirmations(self) -> list[Job]:
        """Once the agent is done: let the runs in flight finish, then run the confirmations still owed (within the
        run budget), so a session never ends with a candidate half-confirmed, whenever the agent chose to stop."""
        await self.runner.wait(until_idle=True)
        jobs = await self.confirmation_jobs()
        if jobs:
            await self.run_jobs(jobs)
        return jobs

    def progress(self) -> tuple[int, int]:
        """The terminal's counter: runs recorded under the key, of the key's run budget (or of the runs, if a resumed
        key already has more). Both only grow, so the counter never goes back, however the batches change."""
        done = self.ledger.runs_used()
        return done, max(self.budget.max_runs, done)

    async def run_jobs(self, jobs: list[Job]) -> Outcome:
        """Run jobs to the end (follow-ups included), recording each as it finishes: the batch form."""
        await self.start_jobs(jobs)
        return await self.runner.wait(until_idle=True)

    def slot_state(self) -> dict[str, int]:
        """The runner's slots right now."""
        r = self.runner
        return {"concurrency": r.concurrency, "running": r.in_flight, "queued": r.queued, "free": r.free_slots}

    # ---------------------------------------------------------------- when a run finishes

    async def record_job(self, job: Job, result: ExperimentResult) -> list[Job]:
        """The runner's callback: record one finished run, show it, and return the confirmations it earned."""
        await self.ledger.record_result(job.title, result, job.role)
        _, verdicts, board = await self.ledger.view()
        if await self._judge_borderline(job, verdicts):  # a second chance owes seeds: futility may stop it at once
            _, verdicts, board = await self.ledger.view()
        if await self._stop_futile(job, verdicts):
            _, verdicts, board = await self.ledger.view()
        if job.role == "confirm" and job.title not in verdicts.confirm_seeds:
            self.closed.add(job.title)
        owed = job.title in verdicts.confirm_seeds
        earned = owed and (job.role == "screen" or verdicts.verdicts[job.title].by == "judge")
        earned = earned or (owed and job.role == "confirm" and self.prune.on)  # its next seed, one at a time
        follow = await self._confirm_jobs(verdicts, [job.title] if earned else [], self.runner.titles(job.key))
        await self._check_goal(board)
        standing = verdict_brief(next((r for r in board if r.title == job.title), None))
        self.on_result(job, *self.progress(), result, standing)
        return follow

    async def _judge_borderline(self, job: Job, verdicts: Judgement) -> bool:
        """Send the experiment to the judge if its fresh verdict is borderline (once per experiment); record the
        decision. True when a decision was recorded."""
        title = job.title
        if self.judge is None or title == BASELINE_TITLE or title in await self.ledger.decisions():
            return False
        verdict = verdicts.verdicts[title]
        if title in verdicts.confirm_seeds and verdict.label == "unconfirmed":
            return False  # its confirmation runs are still to come: judge the settled verdict
        (rec,) = await self.ledger.specs([title])
        parent = (await self.ledger.specs([rec.spec.parent or BASELINE_TITLE]))[0]
        incumbent = verdicts.incumbent or BASELINE_TITLE
        inc_values = [r.val_bpb for r in (await self.ledger.specs([incumbent]))[0].runs if r.val_bpb is not None]
        case = case_for(rec, parent, verdict, inc_values, self.ledger.rule.replicates)
        if case is None:
            return False
        decision, reason, who = await self.judge.decide(case, 0 if self.budget.stopped else self.budget.runs_left)
        await self.ledger.record_decision(title, decision, f"{reason} [{who}; {case.why}]")
        self.emit({"kind": "judge", "title": title, "decision": decision, "reason": reason, "who": who})
        return True

    async def _stop_futile(self, job: Job, verdicts: Judgement) -> bool:
        """Record pruning's `FUTILE` decision when a confirmation's chance to pass is below the rule's futility,
        after a fresh seed or, before any, after its screen (its seeds not yet started are then skipped). True when
        one was recorded."""
        verdict = verdicts.verdicts.get(job.title)
        owed = job.title in verdicts.confirm_seeds
        if job.title in self.closed or verdict is None or not futile(verdict, owed, self.prune):
            return False
        self.closed.add(job.title)  # at once: a fresh seed ending beside this one must not stop it again
        chance, floor = chance_to_pass(verdict), self.prune.futility
        when = "fell to" if verdict.confirm_chance is not None else "before any fresh seed (from its screen) was"
        why = f"stopped for futility: its chance to be confirmed {when} {chance:.1%} (under {floor:.0%})"
        await self.ledger.record_decision(job.title, FUTILE, why, by="pruning")
        self.emit({"kind": "futile", "title": job.title, "chance": chance, "detail": why})
        return True

    async def _check_goal(self, board: list[LeaderboardRow]) -> None:
        """Stop research (nothing new starts) once a confirmed result reaches the goal."""
        reached = goal_met(self.goal, board)
        if reached and not self.budget.stopped:
            self.budget.stop(f"{reached}, after {self.ledger.runs_used()} runs")
            await self.ledger.record_stop(self.budget.stopped, by="goal")
            self.emit({"kind": "goal", "detail": self.budget.stopped})

    async def stop(self, reason: str) -> None:
        """End research deliberately (the agent's `stop` step): nothing new starts; runs in flight finish."""
        self.budget.stop(" ".join(reason.split())[:500])
        await self.ledger.record_stop(self.budget.stopped, by="agent")
