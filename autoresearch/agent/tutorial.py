"""The upstream tutorial's tool API, accepted as written: aliases over this project's tools.

People arrive from the Flyte autoresearch tutorial with prompts and programs written against its tools, and a
model primed on it writes those calls: `record_batch_plan(batch_id=..., experiments=[...])`,
`edit_train_code_batch(edits=[{"config_overrides": ...}])`, `r = run_experiment_batch(titles=[...],
concurrency=3)`, `evaluate_batch_results(results=r["results"])`, `edit_train_code(...)`,
`record_hypothesis(...)`, `flyte_map("run_experiment", titles, budgets, keys)`. Every such call works here with
the same argument names, and its result is this project's result with the tutorial's keys added (never a key
renamed or removed). Where this project differs on purpose, the result says how in a short `note`:

- batch ids are given when edits are saved (`batch-001`); a tutorial label names that batch in every tool;
- the run owns the budget (steps, time cap) and the memory key, so those arguments are dropped;
- `run_training` returns the trained model and trusted code computes val_bpb;
- `best` is the gate's confirmed incumbent, so `evaluate_batch_results` ranks by the ledger's mean over seeds
  and shows the batch's lowest separately.

`TutorialAPI.adapt(name)` is what `ResearchTools.as_tools` registers: the alias when there is one, else the
tool itself, either way accepting a `memory_key` argument. Aliases only translate; every rule stays in its
own module (edits, ledger, verdicts).
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import autoresearch_types
from autoresearch.ledger.source import slugify

TUTORIAL_TOOLS = ("edit_train_code", "record_hypothesis", "run_experiment", "get_seed_train_code")
"""Tools only the tutorial has; the other aliases share their name with this project's tool."""
KEY_ALIASES = {"entries": "rows", "trials": "experiments", "errors": "rejected", "count": "total"}
"""Result keys the tutorial reads and what this project calls them (named in the feedback on a KeyError)."""
CONFIG_RENAMES = {"device_batch_size": "batch_size"}
"""The tutorial's config names for this project's config keys."""
RUN_OWNED = {*autoresearch_types.RUN_OWNED, "time_budget_sec"}
"""What the run owns, with the tutorial's own name for the time cap."""
"""Config keys the run owns here: an alias drops them from `config_overrides` with a note."""
RUN_TRAINING_NOTE = (
    "Here train.py's run_training(config, data_dir) returns the trained model, and trusted code computes val_bpb: "
    "do not compute or return a metric."
)
DOCS = {
    "record_batch_plan": 'Tutorial form: record_batch_plan(batch_id="batch-1-lr", experiments=[{"title", '
    '"hypothesis"}]) before the edits exist; it is attached to their batch when they are saved.',
    "edit_train_code_batch": 'Tutorial form: edits=[{"title", "config_overrides": {...}, "change_summary"}]; the '
    'result also has "count", "titles", "edits" and "errors".',
    "record_batch_hypotheses": 'Tutorial form: record_batch_hypotheses(experiments=[{"title", "hypothesis", '
    '"expected_effect"}]); returns "recorded" and "entries" too.',
    "run_experiment_batch": "Tutorial form: run_experiment_batch(titles=[...], concurrency=3, batch_id=...); each "
    'result also has "success"; concurrency never goes above the run\'s own limit.',
    "evaluate_batch_results": 'Tutorial form: evaluate_batch_results(results=r["results"], batch_id=...) ranks '
    'those experiments: "ranked", "batch_best", "n_success", "n_failed", "failures".',
}
"""What each shared tool's documentation adds about its tutorial form."""


def add_note(result: Any, note: str) -> Any:
    """`result` with `note` added to its `note` field (a dict result only)."""
    if not note or not isinstance(result, dict):
        return result
    old = result.get("note")
    return {**result, "note": f"{old} {note}" if old else note}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def from_tutorial_edit(edit: Any) -> tuple[Any, list[str]]:
    """A tutorial edit as this project's edit (`config_overrides` -> `overrides`), and notes on what changed."""
    if not isinstance(edit, dict):
        return edit, []
    out, notes = dict(edit), []
    given = out.pop("config_overrides", None) or out.pop("config", None)
    if isinstance(given, dict) and "overrides" not in out:
        overrides = {CONFIG_RENAMES.get(k, k): v for k, v in given.items()}
        dropped = sorted(k for k in overrides if k in RUN_OWNED)
        out["overrides"] = {k: v for k, v in overrides.items() if k not in RUN_OWNED}
        if dropped:
            notes.append(
                f"{', '.join(dropped)} belong to the run here (a fixed token budget for every experiment); dropped."
            )
    elif given is not None and "overrides" not in out:
        out["overrides"] = given
    if isinstance(out.get("train_py"), str) and not out["train_py"].strip():
        out.pop("train_py")
    if "def run_training(config)" in str(out.get("train_py", "")):
        notes.append(RUN_TRAINING_NOTE)
    for key in ("parent_title", "change_summary"):
        if out.get(key) is None:
            out.pop(key, None)
    return out, notes


def experiment_entries(experiments: Any) -> list[dict[str, str]] | None:
    """`[{"title", "hypothesis", "expected_effect", ...}]` with string fields, or None if it is not that shape."""
    if isinstance(experiments, dict):
        experiments = [experiments]
    if not isinstance(experiments, (list, tuple)) or not experiments:
        return None
    if not all(isinstance(e, dict) and isinstance(e.get("title"), str) and e["title"].strip() for e in experiments):
        return None
    return [{k: str(v) for k, v in e.items() if v is not None} for e in experiments]


def resolved_signature(func: Callable[..., Any]) -> inspect.Signature:
    """`func`'s signature with its annotations evaluated (this module's are strings), as Flyte's tool schema needs."""
    hints = typing.get_type_hints(func)
    sig = inspect.signature(func)
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()]
    return sig.replace(parameters=params, return_annotation=hints.get("return", sig.return_annotation))


@dataclass
class TutorialAPI:
    """The tutorial's calls over one run's `ResearchTools`; remembers tutorial batch labels and early hypotheses."""

    tools: Any
    """The session's `tools.ResearchTools` (the agent layer imports no face: it is handed the object)."""
    labels: dict[str, str] = field(default_factory=dict)
    """A tutorial batch label -> this project's batch id."""
    pending_plans: list[dict[str, Any]] = field(default_factory=list)
    """Batch plans recorded before their edits were saved: {"label", "experiments", "rationale"}."""
    pending_hypotheses: dict[str, dict[str, str]] = field(default_factory=dict)
    """Hypotheses for titles not saved yet, attached when they are."""
    _run_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _queued: list[str] = field(default_factory=list)
    _ran: dict[str, dict[str, Any]] = field(default_factory=dict)

    def adapt(self, name: str) -> Callable[..., Awaitable[Any]]:
        """The tool registered under `name`: the alias or the tool itself, accepting a `memory_key` argument."""
        original = getattr(self.tools, name, None)
        target = getattr(self, name, None) or original
        assert target is not None, name

        async def tool(*args: Any, **kwargs: Any) -> Any:
            given = kwargs.pop("memory_key", None)
            return add_note(await target(*args, **kwargs), self.memory_key_note(given))

        tool.__name__ = name
        doc = inspect.getdoc(original) if original is not None else inspect.getdoc(target)
        tool.__doc__ = (doc or "") + (f"\n{DOCS[name]}" if name in DOCS else "")
        tool.__signature__ = resolved_signature(target)  # type: ignore[attr-defined]
        return tool

    def memory_key_note(self, given: Any) -> str:
        """What a tutorial `memory_key` argument did: nothing, because the run's key is fixed."""
        key = getattr(self.tools.ledger.memory, "key", "")
        if given in (None, "", key):
            return ""
        return f"memory_key is the run's own ({key!r}); {given!r} was ignored."

    def batch(self, batch_id: Any) -> str:
        """This project's batch id for a tutorial label (or the id itself)."""
        text = str(batch_id or "").strip()
        return self.labels.get(text, text)

    async def saved(self, titles: list[str]) -> dict[str, Any]:
        """title -> record for the titles already saved (by exact title, or the same slug)."""
        by_slug = {slugify(r.title): r for r in await self.tools.ledger.records()}
        return {t: by_slug[slugify(t)] for t in titles if slugify(t) in by_slug}

    # ---------------------------------------------------------------- planning

    async def record_batch_plan(
        self,
        titles: list[str] | str | None = None,
        rationale: str | list[dict] = "",
        batch_id: str = "",
        experiments: list[dict] | None = None,
    ) -> dict[str, Any]:
        if isinstance(titles, str) and isinstance(rationale, (list, tuple)):  # record_batch_plan("label", [...])
            titles, batch_id, experiments, rationale = None, titles, rationale, ""
        if experiments is None:
            return await self.tools.record_batch_plan(titles, str(rationale or ""), self.batch(batch_id))
        entries = experiment_entries(experiments)
        if entries is None:
            return {"error": 'experiments must be a non-empty list like [{"title": "deeper-3L", "hypothesis": "..."}].'}
        label = str(batch_id or "").strip()
        why = str(rationale or "") or "; ".join(f"{e['title']}: {e.get('hypothesis', '')}" for e in entries)
        names = [e["title"] for e in entries]
        found = await self.saved(names)
        out = {
            "batch_id": label,
            "experiments": entries,
            "count": len(entries),
            "status": "planned",
            "created_at": now(),
        }
        if len(found) == len(names):
            plan = await self.tools.record_batch_plan([r.title for r in found.values()], why, self.batch(label))
            if "error" in plan:
                return plan
            self.labels[label or plan["batch_id"]] = plan["batch_id"]
            await self.attach_hypotheses({e["title"]: e for e in entries})
            return {**out, **plan, "batch_id": label or plan["batch_id"], "count": len(entries)}
        self.pending_plans.append({"label": label, "experiments": entries, "rationale": why})
        self.pending_hypotheses.update({e["title"]: e for e in entries if e.get("hypothesis")})
        note = "Batch ids are given when edits are saved (batch-001, ...); this plan is attached to its batch then"
        return add_note(out, note + (f", and {label!r} names that batch in every tool." if label else "."))

    async def edit_train_code_batch(self, edits: list[dict]) -> dict[str, Any]:
        if isinstance(edits, dict):
            edits = [edits]
        if not isinstance(edits, (list, tuple)):
            return await self.tools.edit_train_code_batch(edits)
        converted = [from_tutorial_edit(e) for e in edits]
        notes = list(dict.fromkeys(n for _, ns in converted for n in ns))
        out = await self.tools.edit_train_code_batch([e for e, _ in converted])
        if out.get("saved"):
            await self.after_save(out)
        saved = out.get("saved") or []
        out["count"], out["titles"] = len(saved), [s["title"] for s in saved]
        out["edits"] = [
            {"saved": True, **s, "config_overrides": s.get("overrides"), "parent_title": s.get("parent")} for s in saved
        ]
        out["errors"] = [{**r, "saved": False} for r in out.get("rejected") or []]
        return add_note(out, " ".join(notes))

    async def after_save(self, out: dict[str, Any]) -> None:
        """Attach the plans and hypotheses recorded before these edits were saved to their batch."""
        batch_id, titles = out["batch_id"], [s["title"] for s in out["saved"]]
        slugs = {slugify(t): t for t in titles}
        for plan in list(self.pending_plans):
            mine = [slugs[slugify(e["title"])] for e in plan["experiments"] if slugify(e["title"]) in slugs]
            if mine:
                await self.tools.record_batch_plan(mine, plan["rationale"], batch_id)
                self.labels[plan["label"] or batch_id] = batch_id
                self.pending_plans.remove(plan)
        matched = [t for t in self.pending_hypotheses if slugify(t) in slugs]
        early = {slugs[slugify(t)]: self.pending_hypotheses.pop(t) for t in matched}
        if early:
            await self.tools.record_batch_hypotheses(batch_id, early)

    async def attach_hypotheses(self, entries: dict[str, dict[str, str]]) -> list[str]:
        """Record hypotheses on the saved titles' batches; keep the rest for when they are saved. Returns those kept."""
        found = await self.saved(list(entries))
        by_batch: dict[str, dict[str, Any]] = {}
        for title, rec in found.items():
            by_batch.setdefault(rec.spec.batch_id, {})[rec.title] = entries[title]
        for batch_id, hyps in by_batch.items():
            await self.tools.record_batch_hypotheses(batch_id, hyps)
        kept = [t for t in entries if t not in found]
        self.pending_hypotheses.update({t: entries[t] for t in kept})
        return kept

    async def record_batch_hypotheses(
        self, batch_id: str | list[dict] = "", hypotheses: dict | None = None, experiments: list[dict] | None = None
    ) -> dict[str, Any]:
        if isinstance(batch_id, (list, tuple)):  # record_batch_hypotheses([...])
            batch_id, experiments = "", batch_id
        if experiments is None:
            return await self.tools.record_batch_hypotheses(self.batch(batch_id), hypotheses)
        entries = experiment_entries(experiments)
        if entries is None:
            return {"error": 'experiments must be a non-empty list like [{"title", "hypothesis", "expected_effect"}].'}
        stamped = [{**e, "recorded_at": now()} for e in entries]
        kept = await self.attach_hypotheses({e["title"]: e for e in entries})
        out = {"recorded": len(entries), "entries": stamped, "batch_id": str(batch_id or "")}
        note = f"Not saved yet, attached when saved: {', '.join(map(repr, kept))}." if kept else ""
        return add_note(out, note)

    async def get_batch_plan(self, batch_id: str = "") -> dict[str, Any]:
        label = str(batch_id or "").strip()
        pending = next((p for p in self.pending_plans if label and p["label"] == label), None)
        if pending is not None:
            return add_note({"found": True, "batch_id": label, **pending}, "Not attached yet: its edits are not saved.")
        out = await self.tools.get_batch_plan(self.batch(label))
        return {"found": "error" not in out, **out}

    # ---------------------------------------------------------------- running and judging

    async def run_experiment_batch(
        self,
        titles: list[str] | str | None = None,
        concurrency: int | None = None,
        batch_id: str = "",
        time_budget_sec: float | None = None,
        group_name: str | None = None,
    ) -> dict[str, Any]:
        real = self.batch(batch_id)
        if not titles and real:
            titles = [r.title for r in await self.tools.ledger.records() if r.spec.batch_id == real]
        out = await self.tools.run_experiment_batch(titles)
        if "error" in out:
            return out
        limit = self.tools.budget.concurrency
        out["results"] = [{**r, "success": r.get("outcome") == "success"} for r in out["results"]]
        names = titles if isinstance(titles, list) else [titles]
        out.update(
            batch_size=len(names),
            titles=names,
            concurrency=limit,
            batch_id=str(batch_id or "") or real,
            group_name=group_name,
        )
        notes = []
        if concurrency not in (None, limit):
            notes.append(
                f"The run's --concurrency ({limit}) sets how many run at once here; concurrency={concurrency} was not applied."
            )
        if time_budget_sec is not None:
            notes.append("The run owns the time cap (--time-budget); time_budget_sec was ignored.")
        return add_note(out, " ".join(notes))

    async def run_experiment(
        self, title: str, time_budget_sec: float | None = None, memory_key: str = ""
    ) -> dict[str, Any]:
        """Run one saved experiment (the tutorial's single-run tool, e.g. under flyte_map("run_experiment", titles,
        budgets, keys)). Calls that arrive together run as one batch; each returns its own result.

        Returns {"title", "success", "outcome", "val_bpb", "seed", "steps", ..., "verdict": {...}}.
        Example: r = run_experiment("deeper-3L"); r["val_bpb"]
        """
        if not isinstance(title, str) or not title.strip():
            return {"error": "title must be the title of a saved experiment (see edit_train_code)."}
        self._queued.append(title)
        async with self._run_lock:
            batch = [t for t in dict.fromkeys(self._queued) if t not in self._ran]
            self._queued.clear()
            if batch:
                out = await self.tools.run_experiment_batch(batch)
                for t in batch:
                    self._ran[t] = out
        out = self._ran.pop(title, None) or {}
        if "error" in out:
            return out
        mine = next((r for r in out.get("results", []) if r["title"] == title and r.get("role") == "screen"), None)
        if mine is None:
            done = await self.tools.read_train_code(title)
            mine = {"title": title, **(done.get("result") or {}), "note": "already ran; not rerun"}
        verdict = (out.get("verdicts") or {}).get(title)
        return {**mine, "success": mine.get("outcome") == "success", "verdict": verdict, "budget": out.get("budget")}

    async def evaluate_batch_results(
        self, results: list[dict] | str | None = None, batch_id: str = ""
    ) -> dict[str, Any]:
        if isinstance(results, str):  # evaluate_batch_results("batch-001")
            results, batch_id = None, results
        if results is None:
            out = await self.tools.evaluate_batch_results(self.batch(batch_id))
            return out if "error" in out else {**out, **self.ranking(out["experiments"])}
        titles = list(
            dict.fromkeys(r["title"] for r in results if isinstance(r, dict) and isinstance(r.get("title"), str))
        )
        if not titles:
            return {
                "error": 'results must be the list run_experiment_batch returned: evaluate_batch_results(results=r["results"]).'
            }
        found = await self.saved(titles)
        batches = list(dict.fromkeys(rec.spec.batch_id for rec in found.values()))
        merged: dict[str, Any] = {}
        for real in batches:
            part = await self.tools.evaluate_batch_results(real)
            mine = [e for e in part.get("experiments", []) if e["title"] in {r.title for r in found.values()}]
            merged = {**part, "experiments": merged.get("experiments", []) + mine}
        if not merged:
            return {"error": f"none of {titles} is a saved experiment; see get_code_edit_history()."}
        merged["batch_id"] = str(batch_id or "") or (batches[0] if len(batches) == 1 else batches)
        note = (
            "Ranked by the ledger's mean val_bpb over seeds for these titles, not by the values passed in; best is the "
            "confirmed incumbent (a lower first run is not a gain until confirmed), batch_best is the lowest here."
        )
        return add_note({**merged, **self.ranking(merged["experiments"])}, note)

    @staticmethod
    def ranking(experiments: list[dict[str, Any]]) -> dict[str, Any]:
        """The tutorial's view of judged experiments: ranked by mean val_bpb, failures, counts, the lowest."""
        ok = sorted((e for e in experiments if e.get("val_bpb") is not None), key=lambda e: e["val_bpb"])
        failed = [e for e in experiments if e.get("val_bpb") is None]
        ranked = [{k: e.get(k) for k in ("title", "val_bpb", "se", "n_seeds", "verdict")} for e in ok]
        failures = [
            {
                "title": e["title"],
                "error": e.get("message") or e.get("outcome") or "not run",
                "oom": e.get("outcome") == "oom",
            }
            for e in failed
        ]
        out = {"total": len(experiments), "n_success": len(ok), "n_failed": len(failed), "ranked": ranked}
        return {**out, "failures": failures, "batch_best": ranked[0] if ranked else None}

    # ---------------------------------------------------------------- single edits

    async def edit_train_code(
        self,
        title: str,
        train_py: str = "",
        change_summary: str = "",
        config_overrides: dict | None = None,
        parent_title: str | None = None,
        hypothesis: str = "",
        expected_effect: str = "",
    ) -> dict[str, Any]:
        """Save one experiment (the tutorial's single edit): a full train_py, or config_overrides on the parent.

        Returns the saved edit {"saved": True, "title", "slug", "parent_title", "config_overrides", "batch_id"} or
        {"saved": False, "title", "error"}. Example: edit_train_code(title="deeper-3L", config_overrides={"n_layer": 3},
        change_summary="one more layer")["saved"]
        """
        edit = {"title": title, "train_py": train_py, "change_summary": change_summary, "parent_title": parent_title}
        edit.update(config_overrides=config_overrides, hypothesis=hypothesis, expected_effect=expected_effect)
        out = await self.edit_train_code_batch([{k: v for k, v in edit.items() if v not in (None, "")}])
        if out.get("edits"):
            return add_note({**out["edits"][0], "batch_id": out["batch_id"]}, out.get("note", ""))
        error = (out.get("errors") or [{}])[0].get("error") or out.get("error") or "not saved"
        return add_note({"saved": False, "title": title, "error": error}, out.get("note", ""))

    async def record_hypothesis(self, title: str, hypothesis: str, expected_effect: str = "") -> dict[str, Any]:
        """Record what you expect of one experiment before running it (attached when the title is saved).

        Returns {"title", "hypothesis", "expected_effect", "recorded_at"}.
        Example: record_hypothesis("deeper-3L", "more depth adds capacity", "-0.02 val_bpb")["recorded_at"]
        """
        entry = {"title": str(title), "hypothesis": str(hypothesis), "expected_effect": str(expected_effect)}
        kept = await self.attach_hypotheses({entry["title"]: entry})
        note = f"{title!r} is not saved yet: the hypothesis is attached when it is." if kept else ""
        return add_note({**entry, "recorded_at": now()}, note)

    async def get_seed_train_code(self) -> dict[str, Any]:
        """The train.py to fork next: the confirmed best experiment (the baseline until a gain is confirmed).

        Returns {"title", "train_py", "val_bpb", "verdict", "lines"}. Example: get_seed_train_code()["title"]
        """
        found = await self.tools.get_promising_code(1)
        if not found.get("candidates"):
            return {"error": found.get("note") or "no successful experiment yet."}
        best = found["candidates"][0]
        return {**best, "lines": len(best["train_py"].splitlines()), "note": "The seed is the gate's confirmed best."}

    # ---------------------------------------------------------------- looking, with the tutorial's arguments

    async def inspect_dataset(self, num_shards: int | None = None) -> dict[str, Any]:
        out = await self.tools.inspect_dataset()
        profile = out.get("profile") or {}
        out.update(vocab_size=profile.get("vocab_size"), val_metric="val_bpb (lower is better)")
        return add_note(out, "The run's data is fixed when it starts; num_shards was ignored." if num_shards else "")

    async def get_leaderboard(self, top_n: int | str = 20) -> dict[str, Any]:
        out = await self.tools.get_leaderboard(20 if isinstance(top_n, str) else top_n)
        if "error" not in out:
            out.update(count=out.get("total"), best_val_bpb=(out.get("best") or {}).get("val_bpb"))
        return out

    async def get_code_edit_history(self, last_n: int | str = 30) -> dict[str, Any]:
        out = await self.tools.get_code_edit_history(30 if isinstance(last_n, str) else last_n)
        return {**out, "count_edits": out.get("total")} if "error" not in out else out

    async def get_promising_code(self, top_k: int | str = 3) -> dict[str, Any]:
        out = await self.tools.get_promising_code(3 if isinstance(top_k, str) else top_k)
        first = (out.get("candidates") or [{}])[0]
        return {
            **out,
            "best_title": first.get("title"),
            "best_val_bpb": first.get("val_bpb"),
            "count": len(out.get("candidates") or []),
        }

    async def compare_experiments(
        self, a: str = "", b: str = "", title_a: str = "", title_b: str = ""
    ) -> dict[str, Any]:
        out = await self.tools.compare_experiments(a or title_a, b or title_b)
        if isinstance(out.get("delta"), (int, float)):
            out["delta_val_bpb"] = -out["delta"]
            out = add_note(out, "delta is b minus a; delta_val_bpb is a minus b (negative: a is better).")
        return out

    async def read_train_code(self, title: str) -> dict[str, Any]:
        out = await self.tools.read_train_code(title)
        return {**out, "lines": len(out["train_py"].splitlines())} if "train_py" in out else out

    async def get_baseline_train_code(self) -> dict[str, Any]:
        out = await self.tools.get_baseline_train_code()
        return add_note({**out, "lines": len(out["train_py"].splitlines())}, RUN_TRAINING_NOTE)
