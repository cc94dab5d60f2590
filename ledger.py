"""The experiment ledger: the one module that knows how research state is laid out in the keyed `MemoryStore`.

Layout under the memory key (records, never tables; every view is derived from them on each read):

    experiments/<slug>/spec.json    the planned experiment (`ledger_views.ExperimentSpec`)
    experiments/<slug>/train.py     its effective source
    experiments/<slug>/runs/seed-<n>.json  one finished run on seed n, written when it arrives (with its arrival
                                    number `seq` and role: screen, replicate or confirm)
    experiments/<slug>/result.json  a run from before seeds were recorded separately (read as the screen run)
    batches/<batch_id>.json         the batch plan
    settings.json                   the key's fixed comparison: base config (budget included) and gate rule
    messages.json                   the agent transcript (the store's own)

The driver process is the only writer (`MemoryStore.save` uploads the whole working copy, so a second
writer silently overwrites files); an `asyncio.Lock` serialises writes inside it, and every batch of
edits and every result is followed by a save. Use it inside a Flyte task: in local mode start the run
with `flyte.with_runcontext(**run_context_kwargs())` so the store lands under the state dir, not `/tmp`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from autoresearch_types import OUTCOMES, ExperimentConfig, ExperimentResult, WorkshopBounds
from ledger_views import (
    BASELINE_TITLE,
    ExperimentRecord,
    ExperimentSpec,
    LeaderboardRow,
    budget_of,
    check_source,
    close_titles,
    history_table,
    judgement,
    leaderboard,
    lineage,
    lineage_text,
    normalize_code,
    seed_run,
    settings_record,
    settle_settings,
    signature,
    slugify,
    unified_diff,
)
from validation import config_problem
from verdicts import GateRule, Judgement

CONFIG_ONLY_AFTER = 8
"""Default number of saved experiments after which edits that only change the config are refused."""

ACTOR = "ledger"
LOCAL_SCOPE = {"project": "autoresearch", "domain": "development"}
"""Project and domain of a local store when Flyte was not initialised with any."""
TRAIN_PY = Path(__file__).resolve().parent / "train.py"


class LedgerError(RuntimeError):
    """A programming or setup error (unknown title, store in the wrong place); the message says what to do."""


# ---------------------------------------------------------------- local mode


def _state_dir(state_dir: str | Path | None) -> Path:
    """The given state dir, or `prepare.state_dir()` (`$AUTORESEARCH_STATE_DIR` or `~/.cache/...`)."""
    if state_dir is not None:
        path = Path(state_dir).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    import prepare

    return prepare.state_dir()


def run_context_kwargs(state_dir: str | Path | None = None) -> dict[str, str]:
    """Keyword arguments for `flyte.with_runcontext` that keep a local run's raw data (and so the keyed
    `MemoryStore`, which lives at `<raw_data_path>/agents/memory-store/v0/<org>/<project>/<domain>/<key>`)
    under the state dir instead of `/tmp/flyte/raw_data/<run>`."""
    return {"raw_data_path": str(_state_dir(state_dir) / "flyte" / "raw")}


def init_local(project: str = "autoresearch", domain: str = "development", log_level: int = logging.WARNING) -> None:
    """`flyte.init` for local mode with the org/project/domain a `MemoryStore` needs."""
    import flyte

    flyte.init(org="local", project=project, domain=domain, log_level=log_level)


def _local_path(remote_path: str) -> Path | None:
    """The filesystem path of a local store location, or None for an object-store URI."""
    parsed = urlparse(remote_path)
    if parsed.scheme not in ("", "file"):
        return None
    return Path(parsed.path if parsed.scheme else remote_path).resolve()


def _local_scope() -> dict[str, str]:
    """The initialised project and domain, or `LOCAL_SCOPE` when Flyte was not initialised with any."""
    import flyte

    try:
        return {"project": flyte.current_project(), "domain": flyte.current_domain()}
    except Exception:
        return dict(LOCAL_SCOPE)


def store_location(memory_key: str, state_dir: Path) -> str:
    """Where the keyed store lives: the SDK's path on a cluster; locally, the same layout under the state dir.

    A local run whose raw-data path is the default `/tmp/flyte/...` (for example `flyte run --local`) is
    rebased under `<state>/flyte/raw`, where `run_context_kwargs()` would have put it, because sandboxed
    code can write the host's `/tmp`. Without an initialised org, local stores use the org `local`.
    """
    from flyte.ai.agents import MemoryStore, MemoryStoreError

    try:
        try:
            remote = MemoryStore.remote_path_for_key(key=memory_key)
        except (MemoryStoreError, RuntimeError):  # local mode without flyte.init(org=...), e.g. `flyte run --local`
            remote = MemoryStore.remote_path_for_key(key=memory_key, org="local", **_local_scope())
    except Exception as exc:
        raise LedgerError(
            f"cannot locate the MemoryStore for key {memory_key!r}: {exc}. Call Ledger.open inside a Flyte task "
            "(locally: ledger.init_local(), then flyte.with_runcontext(**ledger.run_context_kwargs()).run(task))."
        ) from exc
    path = _local_path(remote)
    if path is None or path == state_dir or state_dir in path.parents:
        return remote
    marker = "/agents/memory-store/"
    tail = str(path).split(marker, 1)[1] if marker in str(path) else f"v0/local/{memory_key}"
    return str(state_dir / "flyte" / "raw" / "agents" / "memory-store" / tail)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# ---------------------------------------------------------------- edit validation (pure)


@dataclass
class EditContext:
    """What an edit is checked against: the base, the bounds, and every experiment known so far."""

    base: ExperimentConfig
    bounds: WorkshopBounds
    baseline_src: str
    config_only_after: int
    titles: dict[str, str] = field(default_factory=dict)  # slug -> title
    sources: dict[str, str] = field(default_factory=dict)  # title -> train.py
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # title -> overrides
    signatures: dict[str, str] = field(default_factory=dict)  # signature -> title
    n_saved: int = 0  # experiments other than the baseline

    def add(self, spec: ExperimentSpec, source: str) -> None:
        """Make a saved (or accepted-in-this-batch) experiment visible to the next edits."""
        self.titles[spec.slug] = spec.title
        self.sources[spec.title] = source
        self.overrides[spec.title] = dict(spec.overrides)
        self.signatures.setdefault(spec.signature, spec.title)
        if spec.title != BASELINE_TITLE:
            self.n_saved += 1


@dataclass
class PlannedEdit:
    """An edit that passed every check: its spec, its source, and what clamping did."""

    spec: ExperimentSpec
    train_py: str
    clamped: dict[str, Any]
    ignored: list[str]


def _text(edit: dict[str, Any], key: str) -> str:
    value = edit.get(key)
    return value.strip() if isinstance(value, str) else ""


def _check_title(edit: dict[str, Any], ctx: EditContext) -> tuple[str, str] | str:
    """(title, slug), or why the title is unusable."""
    title = _text(edit, "title")
    if not title:
        return "a title is required: give each edit a short, unique, descriptive title such as 'Deeper 6L'."
    slug = slugify(title)
    if not slug:
        return f"title {title!r} has no letters or digits; use a descriptive title such as 'Cosine LR schedule'."
    other = ctx.titles.get(slug)
    if other == title:
        return (
            f"an experiment titled {title!r} already exists. Pick a new title, or fork it with "
            f"parent_title={title!r} and a change on top."
        )
    if other is not None:
        return (
            f"title {title!r} collides with the existing experiment {other!r} (both become '{slug}'). "
            "Pick a clearly different title."
        )
    return title, slug


def _resolve_parent(edit: dict[str, Any], ctx: EditContext) -> tuple[str | None, str, dict[str, Any]] | str:
    """(parent title, code to start from, inherited overrides), or why the parent is unknown."""
    parent = _text(edit, "parent_title") or None
    if parent is None:
        return None, ctx.baseline_src, {}
    if parent not in ctx.sources:
        by_slug = ctx.titles.get(slugify(parent))
        if by_slug is not None:
            parent = by_slug
        else:
            near = close_titles(parent, list(ctx.sources))
            hint = f" Close titles: {', '.join(repr(t) for t in near)}." if near else ""
            recent = list(ctx.sources)[-5:]
            return (
                f"parent_title {parent!r} is not in the ledger.{hint} Use an exact existing title "
                f"(recent: {', '.join(repr(t) for t in recent)}), or leave parent_title out to start from the baseline."
            )
    return parent, ctx.sources[parent], ctx.overrides[parent]


def _check_overrides(edit: dict[str, Any], ctx: EditContext) -> Any:
    """A `ClampReport`, or why the overrides are unusable."""
    raw = edit.get("overrides")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return (
            f"overrides must be a dict of config values such as {{'n_layer': 4, 'learning_rate': 0.002}}, "
            f"got {type(raw).__name__}. Allowed keys and ranges: {ctx.bounds.describe()}."
        )
    report = ctx.bounds.clamp(raw)
    if report.errors:
        bad = "; ".join(f"{k} {msg}" for k, msg in report.errors.items())
        return f"bad override values: {bad}. Give plain numbers within {ctx.bounds.describe()}."
    return report


def plan_edit(edit: Any, ctx: EditContext, batch_id: str) -> PlannedEdit | str:
    """Check one edit from the agent against everything known; a `PlannedEdit`, or what was wrong and what to do."""
    if not isinstance(edit, dict):
        return f"each edit must be a dict with title, train_py and/or overrides; got {type(edit).__name__}."
    named = _check_title(edit, ctx)
    if isinstance(named, str):
        return named
    title, slug = named
    report = _check_overrides(edit, ctx)
    if isinstance(report, str):
        return report
    parent = _resolve_parent(edit, ctx)
    if isinstance(parent, str):
        return parent
    parent_title, start_src, inherited = parent
    source = edit.get("train_py")
    if source is None:
        source = start_src
    elif not isinstance(source, str):
        return f"train_py must be the full source as a string, got {type(source).__name__}."
    bad_source = check_source(source)
    if bad_source:
        return bad_source
    overrides = {**inherited, **report.values}
    config = ctx.base.with_overrides(overrides)
    inconsistent = config_problem(config)
    if inconsistent:
        return f"these overrides cannot train: {inconsistent}. Change one of them (allowed ranges: {ctx.bounds.describe()})."
    code = normalize_code(source)
    config_only = code == normalize_code(start_src)
    if code == normalize_code(ctx.baseline_src) and config == ctx.base:
        return (
            "this edit is identical to the baseline (same code, no override that changes the base config). "
            "Change train_py, or give overrides that differ from the base config."
        )
    if config_only and ctx.n_saved >= ctx.config_only_after:
        return (
            f"config-only edits are closed: {ctx.n_saved} experiments are saved (limit {ctx.config_only_after}). "
            "Change the training code instead: send train_py with a real change (for example a warmup + cosine "
            "learning_rate(), weight tying, a different activation or norm), with overrides on top if you like."
        )
    sig = signature(source, config)
    if sig in ctx.signatures:
        original = ctx.signatures[sig]
        return (
            f"duplicate of {original!r}: the same code, config and budget are already in the ledger. "
            f"Use {original!r}'s result, or change something."
        )
    spec = ExperimentSpec(
        title=title,
        slug=slug,
        parent=parent_title,
        change_summary=_text(edit, "change_summary"),
        hypothesis=_text(edit, "hypothesis"),
        expected_effect=_text(edit, "expected_effect"),
        overrides=overrides,
        batch_id=batch_id,
        created_at=_now(),
        signature=sig,
        budget=budget_of(ctx.base),
    )
    return PlannedEdit(spec, source, report.clamped, report.ignored)


# ---------------------------------------------------------------- the ledger


SETTINGS_PATH = "settings.json"


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
    ) -> Ledger:
        """Open (or create) the ledger under `memory_key`; call inside a Flyte task.

        The working copy is downloaded into the state dir (not `/tmp`). With `start` (the default) the key's
        settings are settled against `base_config` and `rule` (stored ones win; see `settle`) and the baseline
        experiment is recorded, so it can be run and ranked like any other. With `start=False` nothing is
        written: call `settle`, then `start`.
        """
        from flyte.ai.agents import MemoryStore
        from flyte.io import Dir

        root = _state_dir(state_dir)
        remote = store_location(memory_key, root)
        work = root / "ledger-work" / f"{memory_key}-{uuid.uuid4().hex[:8]}"
        local = _local_path(remote)
        exists = local.is_dir() if local is not None else await MemoryStore.exists(key=memory_key)
        if exists:
            await Dir.from_existing_remote(remote).download(local_path=str(work))
        memory = MemoryStore(key=memory_key, root=work, remote_path=remote)
        weakref.finalize(memory, shutil.rmtree, str(work), True)
        source = baseline_source if baseline_source is not None else TRAIN_PY.read_text()
        stored = await memory.read_json.aio(SETTINGS_PATH) if exists else None
        ledger = cls(memory, ExperimentConfig(), source, bounds, config_only_after, None, stored or None)
        ledger.exists = exists
        if start:
            base, gate, dataset = ledger.settle(base_config or ExperimentConfig(), rule or GateRule(), explicit=())
            await ledger.start(base, gate, dataset)
        return ledger

    def settle(
        self, base: ExperimentConfig, rule: GateRule, explicit: Any, dataset: dict[str, Any] | None = None
    ) -> tuple[ExperimentConfig, GateRule, dict[str, Any]]:
        """The key's fixed comparison: its stored settings, or these for a new key (see `ledger_views.settle_settings`)."""
        try:
            return settle_settings(self.stored_settings, base, rule, dataset or {}, set(explicit))
        except ValueError as exc:
            raise LedgerError(str(exc)) from exc

    async def start(self, base: ExperimentConfig, rule: GateRule, dataset: dict[str, Any] | None = None) -> None:
        """Fix the key's settings (written once) and record the baseline experiment once per key; save if new."""
        self.base_config, self.rule, self.dataset = base, rule, dict(dataset or {})
        async with self._lock:
            save = not self.exists
            if self.stored_settings is None:
                self.stored_settings = settings_record(base, rule, self.dataset, _now())
                await self.memory.write_json.aio(SETTINGS_PATH, self.stored_settings, actor=ACTOR)
                save = True
            if not self.memory.exists(self._path(slugify(BASELINE_TITLE), "spec.json")):
                spec = ExperimentSpec(
                    title=BASELINE_TITLE,
                    slug=slugify(BASELINE_TITLE),
                    change_summary="the repository's train.py under the base config",
                    batch_id="baseline",
                    created_at=_now(),
                    signature=signature(self.baseline_source, base),
                    budget=budget_of(base),
                )
                await self._write_experiment(spec, self.baseline_source)
                save = True
            if save:
                await self.memory.save.aio()

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
        """Runs recorded across the key (what the experiment budget counts)."""
        return sum(1 for p in self.memory.list_paths("experiments") if "/runs/seed-" in p)

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

    def _edit_context(self, records: list[ExperimentRecord]) -> EditContext:
        ctx = EditContext(self.base_config, self.bounds, self.baseline_source, self.config_only_after)
        for rec in sorted(records, key=lambda r: r.spec.created_at):
            ctx.add(rec.spec, rec.train_py)
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
        """Upload the working copy (records and transcript) to the keyed store."""
        async with self._lock:
            await self.memory.save.aio()

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
            ctx = self._edit_context(records)
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
                await self.memory.save.aio()
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
            payload = {"title": title, "seq": seq, "seed": result.seed, "role": role, "recorded_at": _now()}
            payload["result"] = result.to_dict()
            await self.memory.write_json.aio(
                self._path(rec.spec.slug, f"runs/seed-{result.seed}.json"), payload, actor=ACTOR
            )
            await self.memory.save.aio()
        return {"title": title, "seq": seq, "seed": result.seed, "outcome": result.outcome, "val_bpb": result.val_bpb}

    async def record_batch_plan(
        self, batch_id: str, titles: list[str], rationale: str = "", extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Store a batch plan as `batches/<batch_id>.json`, then save."""
        if not slugify(batch_id):
            raise LedgerError(f"batch id {batch_id!r} has no letters or digits.")
        plan = {"batch_id": batch_id, "titles": list(titles), "rationale": rationale, "created_at": _now()}
        plan.update(extra or {})
        async with self._lock:
            await self.memory.write_json.aio(f"batches/{slugify(batch_id)}.json", plan, actor=ACTOR)
            await self.memory.save.aio()
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
                "created_at": _now(),
            }
            for key, value in fields.items():
                old = plan.get(key)
                plan[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
            await self.memory.write_json.aio(path, plan, actor=ACTOR)
            await self.memory.save.aio()
        return plan

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
        verdicts = judgement(records, self.rule, self.base_config.seed)
        return records, verdicts, leaderboard(records, verdicts)

    async def judgement(self) -> Judgement:
        """The gate's verdicts, the incumbent and the noise floor (see `verdicts.judge`)."""
        return judgement(await self.records(), self.rule, self.base_config.seed)

    async def leaderboard(self) -> list[LeaderboardRow]:
        """Ranked by mean val_bpb over seeds, then scored-but-unranked, failed, not run (`ledger_views.leaderboard`)."""
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
        rows = {r.title: r for r in await self.leaderboard()}
        ma, mb = rows[a].val_bpb, rows[b].val_bpb
        return {
            "a": a,
            "b": b,
            "val_bpb": {a: ma, b: mb},
            "seeds": {a: rows[a].n_seeds, b: rows[b].n_seeds},
            "verdict": {a: rows[a].label, b: rows[b].label},
            "delta": None if ma is None or mb is None else mb - ma,
            "overrides": {a: ra.spec.overrides, b: rb.spec.overrides},
            "diff": unified_diff(a, ra.train_py, b, rb.train_py),
        }

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
