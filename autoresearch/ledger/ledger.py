"""The experiment ledger: the one module that knows how research state is laid out in the keyed `MemoryStore`.

Layout under the memory key (records, never tables; every view is derived from them on each read):

    experiments/<slug>/spec.json    the planned experiment (`records.ExperimentSpec`)
    experiments/<slug>/train.py     its effective source
    experiments/<slug>/runs/seed-<n>.json  one finished run on seed n, written when it arrives (with its arrival
                                    number `seq` and role: screen, replicate or confirm)
    experiments/<slug>/result.json  a run from before seeds were recorded separately (read as the screen run)
    batches/<batch_id>.json         the batch plan
    settings.json                   the key's fixed comparison: base config (budget included) and gate rule
    audits/<time>.json              a held-out test audit (the newest is the one shown)
    transfers/<time>.json           a transfer check: the pick and the baseline at K x the token budget
    sessions/<time>.json            one session's totals at its close (runs, compute, LLM usage and cost)
    human_verdicts/<slug>.json      a person's accept/reject of an experiment, with the earlier ones as history
    messages.json                   the agent transcript (the store's own)

The driver process is the only writer (a save writes the whole working copy, so a second writer silently
overwrites files); an `asyncio.Lock` serialises writes inside it, and every batch of edits and every result
is followed by a save. Saves are atomic per file and damaged records are set aside on open (`store.py`).
Use it inside a Flyte task: in local mode start the run with
`flyte.with_runcontext(**run_context_kwargs())` so the store lands under the state dir, not `/tmp`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import weakref
from pathlib import Path
from typing import Any

from autoresearch.ledger import store as ledger_store
from autoresearch.ledger.edits import EditContext, PlannedEdit, now, plan_edit
from autoresearch.ledger.lineage import fork_refusal
from autoresearch.ledger.records import (
    BASELINE_TITLE,
    ExperimentRecord,
    ExperimentSpec,
    LeaderboardRow,
    budget_of,
    seed_run,
    settings_record,
    settle_settings,
)
from autoresearch.ledger.source import close_titles, signature, slugify
from autoresearch.ledger.store import init_local, run_context_kwargs, store_location
from autoresearch.ledger.verdicts import DECISIONS, FUTILE, Decision, GateRule, Judgement
from autoresearch.ledger.views import comparison, history_table, judgement, leaderboard, lineage, lineage_text
from autoresearch_types import OUTCOMES, ExperimentConfig, ExperimentResult, WorkshopBounds

__all__ = ["Ledger", "LedgerError", "init_local", "run_context_kwargs", "store_location"]

CONFIG_ONLY_AFTER = 8
"""Default number of saved experiments after which edits that only change the config are refused."""

ACTOR = "ledger"
TRAIN_PY = Path(__file__).resolve().parent.parent.parent / "train.py"


class LedgerError(RuntimeError):
    """A programming or setup error (unknown title, store in the wrong place); the message says what to do."""


SETTINGS_PATH = "settings.json"
HUMAN_DECISIONS = ("accept", "reject")
"""What a person may decide about an experiment (`Ledger.record_human_verdict`)."""
KINDS = (*DECISIONS, FUTILE)
"""What `judge/<slug>.json` may hold: a judge's decision, or pruning's on a confirmation in progress."""
HUMAN_FIELDS = ("title", "decision", "note", "at")
HUMAN_DIR = "human_verdicts"
"""Where people's verdicts live: written by the `verdict` command, read (never written) by a running session."""


class Ledger:
    """Research state on a keyed `MemoryStore`: writes go through one lock; views are derived on every read.

    Open it with `Ledger.open(key)`, settle the key's fixed comparison with `settle`, then `start` it.
    """

    def __init__(
        self,
        memory: Any,
        base_config: ExperimentConfig,
        baseline_source: str,
        bounds: WorkshopBounds | None = None,
        config_only_after: int = CONFIG_ONLY_AFTER,
        rule: GateRule | None = None,
        stored_settings: dict[str, Any] | None = None,
    ):
        self.memory = memory
        self.base_config = base_config
        self.baseline_source = baseline_source
        self.bounds = bounds or WorkshopBounds()
        self.config_only_after = config_only_after
        self.rule = rule or GateRule()
        self.stored_settings = stored_settings
        self.dataset: dict[str, Any] = {}
        self.exists = False
        self.damaged: list[dict[str, str]] = []
        """Records set aside as damaged when the key was opened (see `store.py`)."""
        self.store: ledger_store.KeyStore | None = None
        """The key's store as this writer sees it (set by `open`): changed-file saves, pulls, the lease."""
        self._lock = asyncio.Lock()

    # ---- opening

    @classmethod
    async def open(
        cls,
        memory_key: str,
        base_config: ExperimentConfig | None = None,
        *,
        rule: GateRule | None = None,
        baseline_source: str | None = None,
        bounds: WorkshopBounds | None = None,
        config_only_after: int = CONFIG_ONLY_AFTER,
        state_dir: str | Path | None = None,
        start: bool = True,
        hold: bool = True,
        run: str = "local",
    ) -> Ledger:
        """Open (or create) the ledger under `memory_key`; call inside a Flyte task.

        The working copy is downloaded into the state dir (not `/tmp`). With `start` (the default) the key's
        settings are settled against `base_config` and `rule` (stored ones win; see `settle`) and the baseline
        experiment is recorded, so it can be run and ranked like any other. With `start=False` nothing is
        written: call `settle`, then `start`. With `hold` (a writer) the key's lease is taken first: a key another
        live run holds is refused with `LeaseHeld`, naming that run (`run` names this one in the lease).
        """
        from flyte.ai.agents import MemoryStore

        opened = await ledger_store.open_working_copy(memory_key, state_dir)
        memory = MemoryStore(key=memory_key, root=opened.work, remote_path=opened.remote)
        weakref.finalize(memory, shutil.rmtree, str(opened.work), True)
        store = ledger_store.KeyStore(memory, opened, run)
        if hold:
            await store.hold()
        source = baseline_source if baseline_source is not None else TRAIN_PY.read_text()
        stored = await memory.read_json.aio(SETTINGS_PATH) if opened.exists else None
        ledger = cls(memory, ExperimentConfig(), source, bounds, config_only_after, None, stored or None)
        ledger.exists, ledger.damaged, ledger.store = opened.exists, opened.damaged, store
        if start:
            base, gate, dataset = ledger.settle(base_config or ExperimentConfig(), rule or GateRule(), explicit=())
            await ledger.start(base, gate, dataset)
        return ledger

    def settle(
        self, base: ExperimentConfig, rule: GateRule, explicit: Any, dataset: dict[str, Any] | None = None
    ) -> tuple[ExperimentConfig, GateRule, dict[str, Any]]:
        """The key's fixed comparison: its stored settings, or these for a new key (see `records.settle_settings`)."""
        try:
            return settle_settings(self.stored_settings, base, rule, dataset or {}, set(explicit))
        except ValueError as exc:
            raise LedgerError(str(exc)) from exc

    async def start(self, base: ExperimentConfig, rule: GateRule, dataset: dict[str, Any] | None = None) -> None:
        """Fix the key's settings (written once) and record the baseline experiment once per key; save if new."""
        self.base_config, self.rule, self.dataset = base, rule, dict(dataset or {})
        self.bounds = self.bounds.covering(base)  # a preset's base config lies outside the default bounds
        async with self._lock:
            save = not self.exists
            if self.stored_settings is None:
                self.stored_settings = settings_record(base, rule, self.dataset, now())
                await self.memory.write_json.aio(SETTINGS_PATH, self.stored_settings, actor=ACTOR)
                save = True
            if not self.memory.exists(self._path(slugify(BASELINE_TITLE), "spec.json")):
                spec = ExperimentSpec(
                    title=BASELINE_TITLE,
                    slug=slugify(BASELINE_TITLE),
                    change_summary="the repository's train.py under the base config",
                    batch_id="baseline",
                    created_at=now(),
                    signature=signature(self.baseline_source, base),
                    budget=budget_of(base),
                )
                await self._write_experiment(spec, self.baseline_source)
                save = True
            if save:
                await self.store.save()

    # ---- paths and reads

    @staticmethod
    def _path(slug: str, name: str) -> str:
        return f"experiments/{slug}/{name}"

    def _slugs(self) -> list[str]:
        return sorted({p.split("/")[1] for p in self.memory.list_paths("experiments") if p.count("/") >= 2})

    async def _read_record(self, slug: str) -> ExperimentRecord | None:
        data = await self.memory.read_json.aio(self._path(slug, "spec.json"))
        if not data:
            return None
        source = await self.memory.read_text.aio(self._path(slug, "train.py"))
        rec = ExperimentRecord(ExperimentSpec.from_dict(data), source)
        legacy = await self.memory.read_json.aio(self._path(slug, "result.json"))
        if legacy:
            rec.legacy = ExperimentResult.from_dict(legacy["result"])
        for path in self.memory.list_paths(self._path(slug, "runs")):
            run = await self.memory.read_json.aio(path)
            if run:
                rec.runs.append(seed_run(run))
        rec.runs.sort(key=lambda r: r.seq)
        return rec

    def _run_count(self) -> int:
        """Runs recorded across the key (what the run budget counts)."""
        return sum(1 for p in self.memory.list_paths("experiments") if "/runs/seed-" in p)

    def ideas_used(self) -> int:
        """Experiments beyond the baseline with a recorded run (what the idea budget counts)."""
        ran = {p.split("/")[1] for p in self.memory.list_paths("experiments") if "/runs/seed-" in p}
        return len(ran - {slugify(BASELINE_TITLE)})

    async def records(self) -> list[ExperimentRecord]:
        """Every experiment, read from its records (spec, source, result)."""
        found = [await self._read_record(slug) for slug in self._slugs()]
        return [r for r in found if r is not None]

    async def _record_by_title(self, title: str) -> ExperimentRecord | None:
        rec = await self._read_record(slugify(title)) if slugify(title) else None
        return rec if rec is not None and rec.title == title else None

    async def _unknown_title_message(self, title: str) -> str:
        titles = [r.title for r in await self.records()]
        near = close_titles(title, titles)
        hint = f" Close titles: {', '.join(repr(t) for t in near)}." if near else ""
        return (
            f"no experiment titled {title!r} in the ledger.{hint} Save it first with save_edits, or use an exact title."
        )

    # ---- writes

    async def _write_experiment(self, spec: ExperimentSpec, source: str) -> None:
        await self.memory.write_text.aio(self._path(spec.slug, "train.py"), source, actor=ACTOR, reason=spec.title)
        await self.memory.write_json.aio(self._path(spec.slug, "spec.json"), spec.to_dict(), actor=ACTOR)

    async def _edit_context(self, records: list[ExperimentRecord]) -> EditContext:
        ctx = EditContext(self.base_config, self.bounds, self.baseline_source, self.config_only_after)
        for rec in sorted(records, key=lambda r: r.spec.created_at):
            ctx.add(rec.spec, rec.train_py)
        decisions = await self.decisions()
        verdicts = judgement(records, self.rule, self.base_config, decisions).verdicts
        for title in set(decisions) | set(verdicts):
            why = fork_refusal(verdicts.get(title), decisions.get(title)) if title != BASELINE_TITLE else None
            if why:
                ctx.unforkable[title] = why
        return ctx

    def _next_batch_id(self, records: list[ExperimentRecord]) -> str:
        """`batch-NNN`, one past every batch seen in specs or plans."""
        used = {r.spec.batch_id for r in records} | {
            p.split("/")[-1].removesuffix(".json") for p in self.memory.list_paths("batches")
        }
        n = sum(1 for b in used if b.startswith("batch-")) + 1
        while f"batch-{n:03d}" in used:
            n += 1
        return f"batch-{n:03d}"

    async def save(self) -> None:
        """Write what changed in the working copy (records and transcript) to the keyed store."""
        async with self._lock:
            await self.store.save()

    async def close(self) -> None:
        """Save, then give the key's lease back (the next run takes it at once)."""
        await self.save()
        await self.store.close()

    async def refusal(self, edit: Any) -> str:
        """Why `save_edits` would refuse this one edit now ("" when it would save it); nothing is written. The loop
        guard checks the plan it offers a stuck model with it."""
        async with self._lock:
            planned = plan_edit(edit, await self._edit_context(await self.records()), "check")
        return planned if isinstance(planned, str) else ""

    async def save_edits(self, edits: Any, batch_id: str | None = None) -> dict[str, Any]:
        """Validate a batch of edits from the agent and save every valid one; never raises for bad input.

        Returns `{"batch_id", "saved": [{title, slug, parent, overrides}], "rejected": [{title, error}],
        "clamped": {title: {key: {requested, used, range}}}, "ignored_keys": {title: [key]}, "notes": [str]}`.
        """
        if isinstance(edits, dict):
            edits = [edits]
        if not isinstance(edits, list):
            return {"error": f"edits must be a list of dicts, got {type(edits).__name__}.", "saved": [], "rejected": []}
        async with self._lock:
            records = await self.records()
            ctx = await self._edit_context(records)
            batch_id = batch_id or self._next_batch_id(records)
            out: dict[str, Any] = {"batch_id": batch_id, "saved": [], "rejected": [], "clamped": {}, "ignored_keys": {}}
            planned: list[PlannedEdit] = []
            for edit in edits:
                result = plan_edit(edit, ctx, batch_id)
                if isinstance(result, str):
                    title = edit.get("title") if isinstance(edit, dict) else None
                    out["rejected"].append({"title": title, "error": result})
                    continue
                ctx.add(result.spec, result.train_py)
                planned.append(result)
            for p in planned:
                await self._write_experiment(p.spec, p.train_py)
                out["saved"].append(
                    {"title": p.spec.title, "slug": p.spec.slug, "parent": p.spec.parent, "overrides": p.spec.overrides}
                )
                if p.clamped:
                    out["clamped"][p.spec.title] = p.clamped
                if p.ignored:
                    out["ignored_keys"][p.spec.title] = p.ignored
            out["notes"] = self._notes(out)
            if planned:
                await self.store.save()
        return out

    def _notes(self, out: dict[str, Any]) -> list[str]:
        notes = []
        if out["clamped"]:
            notes.append("Some overrides were out of range and were clamped; 'clamped' shows the values used.")
        if out["ignored_keys"]:
            notes.append(
                f"Unknown override keys were ignored (see 'ignored_keys'); allowed keys: {sorted(self.bounds.limits)}."
            )
        return notes

    async def record_result(
        self, title: str, result: ExperimentResult | dict[str, Any], role: str = "screen"
    ) -> dict[str, Any]:
        """Store one finished run as `runs/seed-<seed>.json` (keeping its first arrival number), then save."""
        if isinstance(result, dict):
            result = ExperimentResult.from_dict(result)
        if result.outcome not in OUTCOMES:
            raise LedgerError(f"unknown outcome {result.outcome!r}; expected one of {OUTCOMES}.")
        async with self._lock:
            rec = await self._record_by_title(title)
            if rec is None:
                raise LedgerError(await self._unknown_title_message(title))
            earlier = rec.run_for(result.seed)
            seq = earlier.seq if earlier else 1 + self._run_count()
            role = earlier.role if earlier else role
            payload = {"title": title, "seq": seq, "seed": result.seed, "role": role, "recorded_at": now()}
            payload["result"] = result.to_dict()
            await self.memory.write_json.aio(
                self._path(rec.spec.slug, f"runs/seed-{result.seed}.json"), payload, actor=ACTOR
            )
            await self.store.save()
        return {"title": title, "seq": seq, "seed": result.seed, "outcome": result.outcome, "val_bpb": result.val_bpb}

    async def record_batch_plan(
        self, batch_id: str, titles: list[str], rationale: str = "", extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Store a batch plan as `batches/<batch_id>.json`, then save."""
        if not slugify(batch_id):
            raise LedgerError(f"batch id {batch_id!r} has no letters or digits.")
        plan = {"batch_id": batch_id, "titles": list(titles), "rationale": rationale, "created_at": now()}
        plan.update(extra or {})
        async with self._lock:
            await self.memory.write_json.aio(f"batches/{slugify(batch_id)}.json", plan, actor=ACTOR)
            await self.store.save()
        return plan

    async def amend_batch_plan(self, batch_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Merge `fields` into a stored batch plan (dict values merge key by key), creating it if missing; save."""
        if not slugify(batch_id):
            raise LedgerError(
                f"batch id {batch_id!r} has no letters or digits; use the batch_id edit_train_code_batch gave."
            )
        path = f"batches/{slugify(batch_id)}.json"
        async with self._lock:
            plan = await self.memory.read_json.aio(path) or {
                "batch_id": batch_id,
                "titles": [],
                "rationale": "",
                "created_at": now(),
            }
            for key, value in fields.items():
                old = plan.get(key)
                plan[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
            await self.memory.write_json.aio(path, plan, actor=ACTOR)
            await self.store.save()
        return plan

    async def record_audit(self, audit: dict[str, Any]) -> None:
        """Store a held-out audit as `audits/<time>.json` (the newest is the one shown), then save.

        Audits hold test-split scores: no tool, directive or verdict reads them; only the closing summary, the
        output and the report do."""
        async with self._lock:
            await self.memory.write_json.aio(f"audits/{now().replace(':', '-')}.json", audit, actor=ACTOR)
            await self.store.save()

    async def record_session(self, totals: dict[str, Any], program: dict[str, Any] | None = None) -> dict[str, Any]:
        """Store one session's totals (runs, compute, LLM usage and cost) and its research `program` (hash and text,
        `agent/program.py`) as `sessions/<time>.json`, then save. Only the store outlives the run: `summary` adds the
        totals up per key and shows each session's program hash, so a result traces to the instructions behind it."""
        record = {"at": now(), "totals": json.loads(json.dumps(totals, default=str))}
        record.update({"program": program} if program else {})
        async with self._lock:
            await self.memory.write_json.aio(f"sessions/{record['at'].replace(':', '-')}.json", record, actor=ACTOR)
            await self.store.save()
        return record

    async def sessions(self) -> list[dict[str, Any]]:
        """Every stored session record (`{at, totals}`), oldest first; unreadable ones are skipped."""
        found = [await self._read_json_or_none(p) for p in self.memory.list_paths("sessions")]
        return sorted((s for s in found if isinstance(s, dict)), key=lambda s: str(s.get("at", "")))

    async def record_human_verdict(self, title: str, decision: str, note: str = "") -> dict[str, Any]:
        """Store a person's verdict on an experiment as `human_verdicts/<slug>.json`, then save; returns the record.

        A later verdict for the same title replaces the earlier one, which moves into the record's `history` (oldest
        first), so nothing a person decided is lost. Raises `LedgerError` for a decision other than accept/reject,
        an unknown title (naming close titles), or a rejected baseline (every result is measured against it)."""
        if decision not in HUMAN_DECISIONS:
            raise LedgerError(f"decision must be one of {', '.join(HUMAN_DECISIONS)}, got {decision!r}.")
        if not isinstance(note, str):
            raise LedgerError(f"note must be text, got {type(note).__name__}.")
        async with self._lock:
            rec = await self._record_by_title(title)
            if rec is None:
                near = close_titles(title, [r.title for r in await self.records()])
                hint = f" Close titles: {', '.join(repr(t) for t in near)}." if near else ""
                raise LedgerError(f"no experiment titled {title!r} under this key.{hint} Use an exact title.")
            if rec.title == BASELINE_TITLE and decision == "reject":
                raise LedgerError(
                    "the baseline cannot be rejected: every result is measured against it. Reject the experiments "
                    "you do not trust instead."
                )
            path = f"{HUMAN_DIR}/{rec.spec.slug}.json"
            earlier = await self._read_json_or_none(path)
            history = []
            if isinstance(earlier, dict):
                history = [*earlier.get("history", []), {k: earlier.get(k) for k in HUMAN_FIELDS}]
            record = {"title": rec.title, "decision": decision, "note": note, "at": now(), "history": history}
            await self.memory.write_json.aio(path, record, actor="human", reason=f"{decision} {rec.title}")
            await self.store.save()
        return record

    async def human_verdicts(self) -> dict[str, dict[str, Any]]:
        """title -> the newest human verdict on it (`{title, decision, note, at, history}`); unreadable ones skipped.
        A verdict a person stored while this run is going is read from the store first."""
        await self.store.pull(HUMAN_DIR)
        found = [await self._read_json_or_none(p) for p in self.memory.list_paths(HUMAN_DIR)]
        return {v["title"]: v for v in found if isinstance(v, dict) and isinstance(v.get("title"), str)}

    async def _read_json_or_none(self, path: str) -> Any:
        """A JSON record, or None when it does not parse (these kinds are not checked on open by `store.py`)."""
        try:
            return await self.memory.read_json.aio(path)
        except ValueError:
            return None

    async def archive_transcript(self) -> int:
        """Move an earlier session's agent transcript to `transcripts/<time>.json` (the directive carries the
        history instead); returns how many messages were moved."""
        old = list(self.memory.messages)
        if old:
            path = f"transcripts/{now().replace(':', '-')}.json"
            await self.memory.write_json.aio(path, old, actor=ACTOR, reason="new session")
            self.memory.messages.clear()
        return len(old)

    async def audit_tail(self, n: int) -> list[Any]:
        """The store's last `n` audit-log entries (who wrote what, when)."""
        return await self.memory.audit_tail(n)

    async def record_decision(self, title: str, decision: str, reason: str, by: str = "judge") -> dict[str, Any]:
        """Store a judge's decision on a borderline experiment, or pruning's (`KINDS`), as `judge/<slug>.json`.

        The newest stands; humans record theirs with `record_human_verdict`, which overrides a judge's."""
        if decision not in KINDS:
            raise LedgerError(f"decision must be one of {KINDS}, got {decision!r}")
        async with self._lock:
            rec = await self._record_by_title(title)
            if rec is None:
                raise LedgerError(await self._unknown_title_message(title))
            record = {"title": title, "decision": decision, "reason": reason, "by": by, "at": now()}
            await self.memory.write_json.aio(f"judge/{rec.spec.slug}.json", record, actor=ACTOR)
            await self.store.save()
        return record

    async def decisions(self) -> dict[str, Decision]:
        """Every verdict from outside the gate, by title: the judge's, then a human's on top (see `Decision`)."""
        out: dict[str, Decision] = {}
        for path in self.memory.list_paths("judge"):
            data = await self._read_json_or_none(path)
            if isinstance(data, dict) and isinstance(data.get("title"), str) and data.get("decision") in KINDS:
                by = "pruning" if data["decision"] == FUTILE else "judge"
                out[data["title"]] = Decision(data["title"], data["decision"], by, str(data.get("reason") or ""))
        for title, data in (await self.human_verdicts()).items():
            if data.get("decision") in HUMAN_DECISIONS:
                out[title] = Decision(title, data["decision"], "human", str(data.get("note") or ""))
        return out

    async def record_stop(self, reason: str, by: str) -> None:
        """Store why research ended before its budget (`stops/<time>.json`: the agent's stop step, or the goal)."""
        async with self._lock:
            record = {"reason": reason, "by": by, "at": now(), "runs_used": self._run_count()}
            await self.memory.write_json.aio(f"stops/{now().replace(':', '-')}.json", record, actor=ACTOR)
            await self.store.save()

    async def stops(self) -> list[dict[str, Any]]:
        """Every recorded stop, oldest first."""
        return [await self.memory.read_json.aio(p) for p in self.memory.list_paths("stops")]

    async def record_transfer(self, check: dict[str, Any]) -> None:
        """Store a transfer check (the pick and the baseline at K x the token budget) as `transfers/<time>.json`."""
        async with self._lock:
            await self.memory.write_json.aio(f"transfers/{now().replace(':', '-')}.json", check, actor=ACTOR)
            await self.store.save()

    async def latest_transfer(self) -> dict[str, Any] | None:
        """The newest transfer check, or None."""
        paths = self.memory.list_paths("transfers")
        return await self._read_json_or_none(paths[-1]) if paths else None

    async def latest_audit(self) -> dict[str, Any] | None:
        """The newest held-out audit, or None."""
        paths = self.memory.list_paths("audits")
        return await self.memory.read_json.aio(paths[-1]) if paths else None

    # ---- reads for other modules

    async def specs(self, titles: list[str]) -> list[ExperimentRecord]:
        """The records (spec + effective train.py) to run, in the order given; raises `LedgerError` on unknown titles."""
        found, missing = [], []
        for title in titles:
            rec = await self._record_by_title(title)
            (found if rec else missing).append(rec or title)
        if missing:
            raise LedgerError("; ".join([await self._unknown_title_message(t) for t in missing]))
        return found

    def effective_config(self, spec: ExperimentSpec) -> ExperimentConfig:
        """The config an experiment trains with under this ledger's base config."""
        return spec.effective_config(self.base_config)

    async def batch_plans(self) -> list[dict[str, Any]]:
        """Every stored batch plan, oldest first."""
        plans = [await self.memory.read_json.aio(p) for p in self.memory.list_paths("batches")]
        return sorted((p for p in plans if p), key=lambda p: p.get("created_at", ""))

    # ---- derived views

    async def view(self) -> tuple[list[ExperimentRecord], Judgement, list[LeaderboardRow]]:
        """Records, the gate's verdicts and the leaderboard, all from one read of the records."""
        records = await self.records()
        verdicts = judgement(records, self.rule, self.base_config, await self.decisions())
        return records, verdicts, leaderboard(records, verdicts)

    async def judgement(self) -> Judgement:
        """The gate's verdicts, the incumbent and the noise floor (see `verdicts.judge`)."""
        return judgement(await self.records(), self.rule, self.base_config, await self.decisions())

    async def leaderboard(self) -> list[LeaderboardRow]:
        """Ranked by mean val_bpb over seeds, then scored-but-unranked, failed, not run (`views.leaderboard`)."""
        return (await self.view())[2]

    async def best(self) -> LeaderboardRow | None:
        """The incumbent: the confirmed best, or the baseline before any confirmed gain; None before any success."""
        return next((r for r in await self.leaderboard() if r.incumbent), None)

    def runs_used(self) -> int:
        """Runs recorded under the key (replicates and confirmations included): what the budget counts."""
        return self._run_count()

    async def history_table(self, last_n: int = 20) -> str:
        """The research-history markdown table for the directive (last `last_n` rows)."""
        records, _, rows = await self.view()
        return history_table(records, rows, last_n)

    async def lineage(self) -> list[dict[str, Any]]:
        """The fork tree: `[{title, val_bpb, label, incumbent, outcome, children: [...]}]`."""
        records, _, rows = await self.view()
        return lineage(records, rows)

    async def lineage_text(self) -> str:
        """The fork tree as indented text."""
        return lineage_text(await self.lineage())

    async def compare(self, a: str, b: str) -> dict[str, Any]:
        """Mean val_bpb delta (b minus a) with seeds and verdicts, and a unified diff; `{"error"}` on unknown titles."""
        ra, rb = await self._record_by_title(a), await self._record_by_title(b)
        if ra is None or rb is None:
            return {"error": await self._unknown_title_message(a if ra is None else b)}
        return comparison(ra, rb, {r.title: r for r in await self.leaderboard()})

    async def summary(self) -> dict[str, Any]:
        """A JSON-friendly snapshot for tools and reports: counts, best, noise floor, leaderboard rows."""
        _, verdicts, rows = await self.view()
        best = next((r for r in rows if r.incumbent), None)
        return {
            "experiments": len(rows),
            "run": sum(1 for r in rows if r.label != "not_run"),
            "runs_used": self.runs_used(),
            "sigma": verdicts.sigma,
            "best": best.to_dict() if best else None,
            "leaderboard": [json.loads(json.dumps(r.to_dict(), default=str)) for r in rows],
        }
