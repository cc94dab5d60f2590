"""The agent's tools: a thin facade that checks arguments, delegates to the ledger or the research loop, returns dicts.

Their docstrings are the LLM's documentation (the SDK puts them in the code-mode system prompt), so each
one states its arguments, its return shape and an example. Bad input never raises into the agent loop:
it comes back as `{"error": "...what was wrong and what to do instead..."}`. Every tool runs in the
driver process, the ledger's single writer. What happens between runs (recording, confirmations, the judge,
the goal) is the research loop's (`autoresearch.lab.loop`), not the tools'.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from autoresearch import llm
from autoresearch.agent import subagent
from autoresearch.agent.arxiv import search_arxiv
from autoresearch.agent.feedback import ToolCallLog
from autoresearch.agent.tutorial import TUTORIAL_TOOLS, TutorialAPI
from autoresearch.lab.budget import Budget
from autoresearch.lab.loop import ResearchLoop
from autoresearch.lab.runner import ExperimentRunner, Outcome
from autoresearch.ledger.ledger import Ledger, LedgerError
from autoresearch.ledger.records import BASELINE_TITLE, ExperimentRecord, LeaderboardRow, steps_text
from autoresearch.ledger.views import result_brief, verdict_brief
from autoresearch.planner.recipes import apply_patches
from autoresearch_types import RUN_OWNED

DIFF_LIMIT = 8000
CODE_LIMIT = 20000


def with_steps(method: Callable[..., Any]) -> Callable[..., Any]:
    """Put the step types' one wording (`records.steps_text`) where a tool's documentation says `{steps}`."""
    method.__doc__ = (method.__doc__ or "").replace("{steps}", steps_text())
    return method


def _as_titles(titles: Any) -> list[str] | None:
    """A list of title strings from a string, list or tuple; None if it is something else."""
    if isinstance(titles, str):
        titles = [titles]
    if not isinstance(titles, (list, tuple)) or not all(isinstance(t, str) for t in titles):
        return None
    return [t.strip() for t in titles if t.strip()]


@dataclass
class ResearchTools:
    """The tool set bound to one session: its research loop (ledger, runner, budget) and the dataset profile."""

    loop: ResearchLoop
    profile: dict[str, Any]
    last_batch_id: str = ""
    call_llm: Any = None
    """The agent's `llm.LLMClient` (not the guard around it), for the research subagent; None offline."""
    model: str = ""
    """The agent's model name; `research` ranks the recipe library offline when it is empty or `builtin`."""
    log: ToolCallLog = field(default_factory=ToolCallLog)
    """Every call the agent made and what it returned: what a failed plan is replayed from (`agent.feedback`)."""

    @property
    def ledger(self) -> Ledger:
        return self.loop.ledger

    @property
    def budget(self) -> Budget:
        return self.loop.budget

    @property
    def runner(self) -> ExperimentRunner:
        return self.loop.runner

    def as_tools(self) -> list[Callable[..., Awaitable[Any]]]:
        """Every tool, wrapped so that it logs its call and turns an unexpected exception into `{"error"}`; the
        shared names also accept the upstream tutorial's calls, and its own tools are added (`tools_tutorial`)."""
        names = [
            "inspect_dataset",
            "get_baseline_train_code",
            "get_leaderboard",
            "get_code_edit_history",
            "read_train_code",
            "get_promising_code",
            "compare_experiments",
            "edit_train_code_batch",
            "record_batch_plan",
            "get_batch_plan",
            "record_batch_hypotheses",
            "run_experiment_batch",
            "submit_experiments",
            "wait_for_results",
            "evaluate_batch_results",
            "search_arxiv",
            "stop_research",
            "research",
        ]
        tutorial = TutorialAPI(self)
        return [self._wrap(tutorial.adapt(n)) for n in [*names, *TUTORIAL_TOOLS]]

    def _wrap(self, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        name = method.__name__

        @functools.wraps(method)
        async def tool(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                result = await method(*args, **kwargs)
            except TypeError as exc:
                result = {"error": f"bad arguments for {name}: {exc}. Signature: {name}{inspect.signature(method)}."}
            except Exception as exc:  # rule 6: nothing raises into the agent loop
                result = {"error": f"{name} failed: {type(exc).__name__}: {exc}"}
            self.log.record(name, args, kwargs, result)
            error = result.get("error", "") if isinstance(result, dict) else ""
            detail = ", ".join(f"{k}={str(v)[:60]}" for k, v in kwargs.items()) or ", ".join(str(a)[:60] for a in args)
            self.loop.emit(
                {
                    "kind": "tool",
                    "name": name,
                    "detail": detail,
                    "duration_s": round(time.monotonic() - start, 2),
                    "error": str(error)[:500],
                }
            )
            return result

        return tool

    # ---------------------------------------------------------------- looking

    async def inspect_dataset(self) -> dict[str, Any]:
        """The data, the base config, the override bounds, the noise floor and the experiment budget left.

        The held-out validation documents are described by size only (chosen per research key, never named); the
        test split is never described.
        Returns {"profile": {dataset, num_shards, vocab_size, train_tokens, train_documents, val_tokens,
        val_documents, bytes_per_token}, "base_config": {...},
        "bounds": {key: [low, high]}, "fixed": [keys an edit may not change], "sigma": seed noise in val_bpb or None,
        "gate": "how a change counts as an improvement", "mde": the smallest effect the next idea is found with 80%
        chance against the incumbent, "campaign": the key's false-confirmation bound, "budget": {"n_experiments"
        (ideas in total), "started" (ideas started), "remaining" (new ideas that may start now), "max_runs",
        "runs_started", "runs_left", "batch_size", "concurrency", "confirm_runs"}}.
        Example: info = inspect_dataset(); info["budget"]["remaining"]
        """
        verdicts = await self.ledger.judgement()
        return {
            "profile": self.profile,
            "base_config": self.ledger.base_config.to_dict(),
            "bounds": self.ledger.bounds.describe(),
            "fixed": list(RUN_OWNED),
            "sigma": verdicts.sigma,
            "gate": self.ledger.rule.describe(),
            "mde": verdicts.mde,
            "campaign": verdicts.campaign.text() if verdicts.campaign else "",
            "budget": self.budget.to_dict(),
        }

    async def get_baseline_train_code(self) -> dict[str, Any]:
        """The repository's baseline train.py and its standing, the starting point of every fork chain.

        Returns {"title": "baseline", "train_py": str, "standing": {"verdict", "mean_val_bpb", "se", "n_seeds", ...}}.
        Example: base = get_baseline_train_code(); base["train_py"]
        """
        (rec,) = await self.ledger.specs([BASELINE_TITLE])
        rows = {r.title: r for r in await self.ledger.leaderboard()}
        return {"title": BASELINE_TITLE, "train_py": rec.train_py, "standing": verdict_brief(rows.get(BASELINE_TITLE))}

    async def get_leaderboard(self, top_n: int = 20) -> dict[str, Any]:
        """Experiments ranked by mean val_bpb over seeds (lower is better), then unranked, failed and not-run ones.

        Returns {"rows": [{"rank", "title", "parent", "val_bpb" (mean over seeds), "se", "n_seeds", "delta_vs_best",
        "delta_vs_baseline", "label", "verdict", "incumbent", "outcome", "change_summary", "overrides"}],
        "best": the incumbent's row, "sigma": seed noise, "gate": str, "total": int, "budget": {...}}.
        label is the gate's verdict: baseline | confirmed | unconfirmed | within_noise | regression | truncated |
        over_budget | failed | unjudged | not_run; only "confirmed" beat seed noise, and "best" is the confirmed
        best (the baseline until something is confirmed). Example: lb = get_leaderboard(10); lb["best"]["title"]
        """
        _, verdicts, rows = await self.ledger.view()
        dicts = [r.to_dict() for r in rows]
        best = next((d for d in dicts if d["incumbent"]), None)
        out = {"rows": dicts[: max(1, int(top_n))], "best": best, "sigma": verdicts.sigma, "total": len(dicts)}
        return {**out, "gate": self.ledger.rule.describe(), "budget": self.budget.to_dict()}

    async def get_code_edit_history(self, last_n: int = 30) -> dict[str, Any]:
        """Every experiment in creation order with what it changed and how it did (no source code).

        Returns {"experiments": [{"title", "parent", "batch_id", "change_summary", "hypothesis", "expected_effect",
        "overrides", "result": {"outcome", "val_bpb", "seed", ...} of its first run or None,
        "standing": {"verdict", "mean_val_bpb", "se", "n_seeds", "delta_vs_best", "why", "best"}}], "total": int}.
        Example: h = get_code_edit_history(10); [(e["title"], e["standing"]["verdict"]) for e in h["experiments"]]
        """
        records, _, board = await self.ledger.view()
        standing = {r.title: r for r in board}
        records = sorted(records, key=lambda r: r.spec.created_at)
        shown = records[-max(1, int(last_n)) :]
        rows = []
        for rec in shown:
            spec = rec.spec
            row = {"title": spec.title, "parent": spec.parent, "batch_id": spec.batch_id}
            row.update(change_summary=spec.change_summary, hypothesis=spec.hypothesis)
            row.update(expected_effect=spec.expected_effect, overrides=spec.overrides, result=result_brief(rec.result))
            row["standing"] = verdict_brief(standing.get(rec.title))
            rows.append(row)
        return {"experiments": rows, "total": len(records)}

    async def read_train_code(self, title: str) -> dict[str, Any]:
        """The full train.py of one experiment, with its overrides and parent.

        Returns {"title", "parent", "overrides", "train_py", "result"}. Example: read_train_code("baseline")["train_py"]
        """
        if not isinstance(title, str):
            return {"error": "title must be a string, the exact title of an experiment (see get_leaderboard())."}
        try:
            (rec,) = await self.ledger.specs([title])
        except LedgerError as exc:
            return {"error": str(exc)}
        out = {"title": rec.title, "parent": rec.spec.parent, "overrides": rec.spec.overrides}
        out.update(train_py=rec.train_py[:CODE_LIMIT], result=result_brief(rec.result))
        return out

    async def get_promising_code(self, top_k: int = 3) -> dict[str, Any]:
        """The experiments worth forking, with their full train.py: the confirmed best first, then other ranked ones.

        Returns {"candidates": [{"title", "val_bpb" (mean), "n_seeds", "verdict", "overrides", "change_summary",
        "train_py"}]}. Example: best = get_promising_code(1)["candidates"][0]; best["title"]
        """
        rows = [r for r in await self.ledger.leaderboard() if r.rank is not None]
        rows = sorted(rows, key=lambda r: (not r.incumbent, r.label == "regression", r.rank))[: max(1, int(top_k))]
        recs = await self.ledger.specs([r.title for r in rows])
        out = []
        for row, rec in zip(rows, recs, strict=True):
            item = {"title": row.title, "val_bpb": row.val_bpb, "n_seeds": row.n_seeds, "verdict": row.label}
            item.update(overrides=row.overrides, change_summary=row.change_summary, train_py=rec.train_py[:CODE_LIMIT])
            out.append(item)
        note = "" if out else "No successful experiment yet: run the baseline or a first batch."
        return {"candidates": out, "note": note}

    async def compare_experiments(self, a: str, b: str) -> dict[str, Any]:
        """Compare two experiments: val_bpb of each, delta (b minus a), overrides, and a unified diff of train.py.

        Returns {"a", "b", "val_bpb": {a: mean, b: mean}, "seeds": {...}, "verdict": {...}, "delta", "overrides": {...},
        "diff": str}.
        Example: compare_experiments("baseline", "Cosine LR")["delta"]
        """
        if not isinstance(a, str) or not isinstance(b, str):
            return {"error": "a and b must be experiment titles (strings); see get_leaderboard()."}
        out = await self.ledger.compare(a, b)
        if "diff" in out and len(out["diff"]) > DIFF_LIMIT:
            out["diff"] = out["diff"][:DIFF_LIMIT] + "\n... (diff cut)"
        return out

    # ---------------------------------------------------------------- planning

    @with_steps
    async def edit_train_code_batch(self, edits: list[dict]) -> dict[str, Any]:
        """Save a batch of distinct experiments to the ledger (nothing runs yet). Invalid edits are rejected, not lost.

        Each edit is a dict: {"title": unique name, "parent_title": experiment to fork (omit for the baseline),
        "overrides": {config key: number} (optional), "patches": [{"old": exact unique snippet of the parent's
        train.py, "new": replacement}] (optional) OR "train_py": full new source (optional), "change_summary": str,
        "hypothesis": str, "expected_effect": str, "step": "small" | "medium" | "radical"}. The step says how big
        the change is: {steps}; take small steps while a line of edits keeps paying off, bigger ones when it stalls
        (omitted: inferred, never radical). At most batch_size edits; after the first batches, edits of the
        baseline must change code (config nudges on an edited experiment stay open). Returns {"batch_id", "saved": [{"title", "parent", "overrides"}],
        "rejected": [{"title", "error"}], "clamped": {...}, "notes": [...]}.
        Example: edit_train_code_batch([{"title": "LR 6e-3", "overrides": {"learning_rate": 0.006},
        "change_summary": "double the LR", "hypothesis": "the baseline LR is too low", "expected_effect": "-0.02 bpb"}])
        """
        if isinstance(edits, dict):
            edits = [edits]
        if not isinstance(edits, (list, tuple)) or not edits:
            return {"error": "edits must be a non-empty list of dicts (see the example in this tool's documentation)."}
        rejected: list[dict[str, Any]] = []
        if len(edits) > self.budget.batch_size:
            rejected += [
                {"title": e.get("title") if isinstance(e, dict) else None, "error": "over batch_size; plan it later"}
                for e in edits[self.budget.batch_size :]
            ]
            edits = edits[: self.budget.batch_size]
        ready = []
        for edit in edits:
            resolved = await self._resolve_patches(edit)
            if isinstance(resolved, str):
                rejected.append({"title": edit.get("title") if isinstance(edit, dict) else None, "error": resolved})
            else:
                ready.append(resolved)
        out = await self.ledger.save_edits(ready) if ready else {"saved": [], "rejected": [], "batch_id": None}
        out["rejected"] = rejected + out.get("rejected", [])
        if out.get("saved"):
            self.last_batch_id = out["batch_id"]
            out["next"] = "record_batch_plan(titles, rationale), then run_experiment_batch(titles)."
        return out

    async def refusal(self, edit: Any) -> str:
        """Why `edit_train_code_batch` would refuse this one edit now ("" when it would save it); nothing is saved.
        Not a tool: the loop guard checks the plan it offers a stuck model with it."""
        resolved = await self._resolve_patches(edit)
        return resolved if isinstance(resolved, str) else await self.ledger.refusal(resolved)

    async def _resolve_patches(self, edit: Any) -> dict[str, Any] | str:
        """The edit with `patches` turned into a full `train_py` against its parent, or why that failed."""
        if not isinstance(edit, dict) or "patches" not in edit:
            return edit
        if edit.get("train_py") is not None:
            return "give either patches or train_py, not both."
        parent = edit.get("parent_title") or BASELINE_TITLE
        try:
            (rec,) = await self.ledger.specs([parent])
            source = apply_patches(rec.train_py, edit["patches"])
        except (LedgerError, ValueError) as exc:
            return str(exc)
        resolved = {k: v for k, v in edit.items() if k != "patches"}
        resolved["train_py"] = source
        return resolved

    async def record_batch_plan(self, titles: list[str], rationale: str = "", batch_id: str = "") -> dict[str, Any]:
        """Record why this batch was chosen, before running it. batch_id defaults to the titles' batch.

        Returns the stored plan {"batch_id", "titles", "rationale", "created_at"}.
        Example: record_batch_plan(["LR 6e-3", "Deeper 4L"], "sweep LR and depth around the baseline")
        """
        names = _as_titles(titles)
        if not names:
            return {"error": "titles must be a non-empty list of saved experiment titles."}
        try:
            recs = await self.ledger.specs(names)
        except LedgerError as exc:
            return {"error": str(exc)}
        batch = batch_id or recs[0].spec.batch_id or self.last_batch_id
        return await self.ledger.record_batch_plan(batch, names, str(rationale)[:4000])

    async def get_batch_plan(self, batch_id: str = "") -> dict[str, Any]:
        """A stored batch plan (the latest when batch_id is empty), with its hypotheses.

        Returns {"batch_id", "titles", "rationale", "hypotheses", ...} and "all_batch_ids".
        Example: get_batch_plan("batch-001")["rationale"]
        """
        plans = await self.ledger.batch_plans()
        if not plans:
            return {"error": "no batch plan recorded yet; call record_batch_plan(titles, rationale) first."}
        ids = [p["batch_id"] for p in plans]
        if batch_id and batch_id not in ids:
            return {"error": f"no batch {batch_id!r}; recorded batches: {ids}."}
        plan = next(p for p in plans if p["batch_id"] == batch_id) if batch_id else plans[-1]
        return {**plan, "all_batch_ids": ids}

    async def record_batch_hypotheses(self, batch_id: str, hypotheses: dict) -> dict[str, Any]:
        """Attach hypotheses to a recorded batch: {title: "hypothesis"} or {title: {"hypothesis", "expected_effect"}}.

        Returns the updated plan. Example: record_batch_hypotheses("batch-001", {"LR 6e-3": "faster convergence"})
        """
        if not isinstance(hypotheses, dict) or not hypotheses:
            return {"error": 'hypotheses must be a non-empty dict like {"Title": "what you expect and why"}.'}
        clean = {}
        for title, value in hypotheses.items():
            entry = value if isinstance(value, dict) else {"hypothesis": str(value)}
            clean[str(title)] = {k: str(entry.get(k, ""))[:1000] for k in ("hypothesis", "expected_effect")}
        try:
            return await self.ledger.amend_batch_plan(batch_id or self.last_batch_id, {"hypotheses": clean})
        except LedgerError as exc:
            return {"error": str(exc)}

    # ---------------------------------------------------------------- running

    async def run_experiment_batch(self, titles: list[str]) -> dict[str, Any]:
        """Run saved experiments in parallel and WAIT for all of them: submit_experiments, then wait_for_results
        until nothing is running. Use it to think in batches; use submit_experiments and wait_for_results to keep
        every slot busy instead.

        titles: saved titles, at most batch_size; those that already ran are not rerun. Each runs on the run's seed
        first; one whose result beats the best by more than seed noise ("unconfirmed") is re-run at once on fresh
        seeds to confirm it, and confirmations left over from earlier batches run first. Every run, confirmations
        included, counts against the budget. Returns {"results": [{"title", "seed", "role", "outcome", "val_bpb",
        "steps", "wall_seconds", "message"?}], "verdicts": {title: {"verdict", "mean_val_bpb", "se", "n_seeds",
        "why", ...}}, "skipped": [{"title", "reason"}], "sigma": float or None, "budget": {...}, "slots": {...}}.
        Example: r = run_experiment_batch(["LR 6e-3", "Deeper 4L"]); r["verdicts"]["LR 6e-3"]["verdict"]
        """
        queued = await self._queue(titles)
        if "error" in queued:
            return queued
        outcome = await self.runner.wait(until_idle=True)
        return await self._results(outcome, queued["skipped"])

    async def submit_experiments(self, titles: list[str]) -> dict[str, Any]:
        """Start saved experiments and return AT ONCE (they run in the background, slots permitting). Use it to keep
        every slot busy: submit as many as there are free slots, then wait_for_results(1) and submit follow-ups into
        the slots that free up.

        titles: saved titles; those that already ran, or are running, are not rerun. Confirmation re-runs of
        candidates that pass the screen are queued automatically and run first. Returns {"queued": [titles],
        "skipped": [{"title", "reason"}], "slots": {"concurrency", "running", "queued", "free"}, "budget": {...}}.
        Example: s = submit_experiments(["LR 6e-3"]); s["slots"]["free"]
        """
        queued = await self._queue(titles)
        if "error" in queued:
            return queued
        return {**queued, "slots": self.loop.slot_state(), "budget": self.budget.to_dict()}

    async def wait_for_results(self, min_results: int = 1, timeout_s: float = 600.0) -> dict[str, Any]:
        """Wait until at least min_results submitted runs have finished (or nothing is running, or timeout_s passed)
        and return the ones not returned before. Use it after submit_experiments.

        Returns {"results": [{"title", "seed", "role", "outcome", "val_bpb", ...}], "verdicts": {title: {"verdict",
        "mean_val_bpb", "se", "n_seeds", "why", ...}}, "skipped": [{"title", "reason"}], "sigma", "budget": {...},
        "slots": {"concurrency", "running", "queued", "free"}}.
        Example: w = wait_for_results(1); [r["title"] for r in w["results"]]
        """
        try:
            wanted = max(1, int(min_results))
            timeout = min(max(0.0, float(timeout_s)), 3600.0)
        except (TypeError, ValueError):
            return {"error": "min_results must be a whole number and timeout_s a number of seconds, e.g. (1, 600)."}
        outcome = await self.runner.wait(min_results=wanted, timeout_s=timeout)
        return await self._results(outcome, [])

    async def _queue(self, titles: Any) -> dict[str, Any]:
        """Queue the screens of saved titles in the loop (see `ResearchLoop.queue`), or say what a title list is."""
        names = _as_titles(titles)
        if not names:
            return {"error": "titles must be a non-empty list of saved experiment titles (from edit_train_code_batch)."}
        return await self.loop.queue(names)

    async def _results(self, outcome: Outcome, skipped: list[dict[str, Any]]) -> dict[str, Any]:
        """What a wait returns to the agent: each run's result, the verdicts of the experiments it touched."""
        skipped = skipped + [
            {"title": j.title, "seed": j.seed, "reason": self.loop.skip_reason(j)} for j in outcome.skipped
        ]
        _, verdicts, board = await self.ledger.view()
        by_title = {r.title: r for r in board}
        results = [{"title": j.title, "role": j.role, **(result_brief(r) or {})} for j, r in outcome.done]
        touched = dict.fromkeys(j.title for j, _ in outcome.done)
        standing = {t: verdict_brief(by_title.get(t)) for t in touched}
        out = {"results": results, "verdicts": standing, "skipped": skipped, "sigma": verdicts.sigma}
        return {**out, "budget": self.budget.to_dict(), "slots": self.loop.slot_state()}

    async def evaluate_batch_results(self, batch_id: str = "") -> dict[str, Any]:
        """Judge a finished batch: each experiment's verdict against seed noise and the best, with its hypothesis.

        Returns {"batch_id", "experiments": [{"title", "parent", "outcome", "val_bpb" (mean), "se", "n_seeds",
        "verdict", "why", "delta_vs_best", "hypothesis", "expected_effect"}], "best": the incumbent's row,
        "sigma", "advice": str}. verdict is confirmed | unconfirmed | within_noise | regression | truncated |
        over_budget | failed | not_run. Example: evaluate_batch_results("batch-001")["best"]["title"]
        """
        batch_id = batch_id or self.last_batch_id
        records, verdicts, board = await self.ledger.view()
        mine = [r for r in records if r.spec.batch_id == batch_id]
        if not mine:
            ids = sorted({r.spec.batch_id for r in records if r.spec.batch_id.startswith("batch")})
            return {"error": f"no experiments in batch {batch_id!r}; batches: {ids}."}
        rows = {r.title: r for r in board}
        out = [self._judged(r, rows[r.title]) for r in sorted(mine, key=lambda r: r.spec.created_at)]
        best = next((r for r in board if r.incumbent), None)
        winners = [r["title"] for r in out if r["verdict"] == "confirmed"]
        noise = f"sigma = {verdicts.sigma:.4f}" if verdicts.sigma is not None else "no noise floor yet"
        advice = (
            f"{winners[-1]!r} is a confirmed gain: fork it with code changes."
            if winners
            else f"Nothing in this batch beat seed noise ({noise}): try different ideas, forking the best so far."
        )
        return {
            "batch_id": batch_id,
            "experiments": out,
            "best": best.to_dict() if best else None,
            "sigma": verdicts.sigma,
            "advice": advice,
        }

    @staticmethod
    def _judged(rec: ExperimentRecord, row: LeaderboardRow) -> dict[str, Any]:
        out = {"title": rec.title, "parent": rec.spec.parent or BASELINE_TITLE, "outcome": row.outcome}
        out.update(val_bpb=row.val_bpb, se=row.se, n_seeds=row.n_seeds, verdict=row.label, why=row.verdict)
        out.update(
            delta_vs_best=row.delta_vs_best, hypothesis=rec.spec.hypothesis, expected_effect=rec.spec.expected_effect
        )
        if rec.result is not None and rec.val_bpb is None:
            out["message"] = rec.result.message[:300]
        return out

    # ---------------------------------------------------------------- reading

    async def stop_research(self, reason: str) -> dict[str, Any]:
        """End research deliberately (the `stop` step) before the budget runs out: use it when more experiments are
        unlikely to help (every idea left is within noise, the goal is met, the same line keeps failing). Runs in
        flight finish and are recorded; nothing new starts; then reply with your final summary.

        reason: one or two sentences; the final summary quotes it. Returns {"stopped": reason, "budget": {...}}.
        Example: stop_research("three radical steps in a row were within noise; the LR line is exhausted")
        """
        if not isinstance(reason, str) or not reason.strip():
            return {"error": "give the reason as a non-empty string, e.g. stop_research('nothing left beats noise')."}
        await self.loop.stop(reason)
        return {"stopped": self.budget.stopped, "budget": self.budget.to_dict()}

    async def search_arxiv(self, query: str, max_results: int = 5) -> dict[str, Any]:
        """Search arXiv for papers (title, authors, year, summary). Offline or on error it returns a note instead.

        Returns {"papers": [{"title", "authors", "year", "summary", "url"}]} or {"papers": [], "note": str}.
        Example: search_arxiv("learning rate warmup transformer", 3)
        """
        if not isinstance(query, str) or not query.strip():
            return {"papers": [], "note": "give a non-empty query string, e.g. 'cosine learning rate schedule'."}
        return await search_arxiv(query, max(1, min(int(max_results), 10)))

    @with_steps
    async def research(self, question: str, max_tokens: int = subagent.DEFAULT_MAX_TOKENS) -> dict[str, Any]:
        """Ask a research subagent for ideas: a cheaper sub-LLM, in its OWN context (it never sees this
        conversation), reads the leaderboard, the history, experiments' code, diffs and arXiv with read-only tools,
        and returns a short ranked table instead of filling your context. Use it before planning a batch when you
        need fresh, evidence-backed ideas, or when nothing has been confirmed for a while. It saves and runs nothing.

        max_tokens: its token budget (prompt + completion, 500..400000); it is warned near the end and stopped past
        it. It is also stopped if it repeats itself. Its cost counts against the run's LLM cost cap.
        Returns {"question", "ideas": [{"idea", "evidence": [ledger rows or arXiv papers], "expected_effect",
        "step": "small" | "medium" | "radical"}] (best first), "source": "llm" | "offline", "stopped": "answered" |
        "offline" | "token_budget" | "doom_loop" | "malformed_answer" | "llm_cost_cap" | "llm_error" | "max_turns",
        "note", "usage": {"calls", "tokens", "cost_usd", "max_tokens", ...}, "tool_calls": [str]}. When it stops
        without a valid answer (and with the built-in planner), "ideas" is the recipe library ranked by the
        ledger's verdicts and the recipes' priors, and "note" says so. step: {steps}.
        Example: r = research("what should follow the confirmed LR gain?", 20000); r["ideas"][0]["idea"]
        """
        if not isinstance(question, str) or not question.strip():
            return {"error": "question must be a non-empty string, e.g. research('which schedule to try next?')."}
        limit = subagent.clamp_tokens(max_tokens)
        if limit is None:
            return {"error": "max_tokens must be a whole number of tokens, e.g. 20000."}
        history = (await self.get_code_edit_history(last_n=1_000_000))["experiments"]
        best = await self.ledger.best()
        source = (await self.ledger.specs([best.title]))[0].train_py if best else ""
        ranking = subagent.rank_recipes(history, source, best.title if best else "")
        if self.call_llm is None or self.model in ("", llm.BUILTIN):
            return subagent.offline_answer(question, ranking)
        readers = (self.search_arxiv, self.get_leaderboard, self.get_code_edit_history)
        readers += (self.read_train_code, self.compare_experiments)
        tools = {f.__name__: f for f in readers}
        limits = subagent.Limits(max_tokens=limit)
        usage = getattr(self.call_llm, "usage", None)
        shared = usage if isinstance(usage, llm.Usage) else None
        return await subagent.run_subagent(self.call_llm, self.model, tools, question, ranking, limits, shared)
