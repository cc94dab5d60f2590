"""The store side of the `summary`, `list`, `verdict` and `export` subcommands: read a key's records without training
or calling an LLM (and, for `verdict`, write one record).

A keyed `MemoryStore` is located from the Flyte context (org, project, domain and raw-data path), so the work runs
in one small local task, `store_command`, started by `cli.py` (this folder) under the state dir like a research run. It opens
keys that exist and never creates one: a key is found by its folder in the local store, before `Ledger.open`.
The task answers JSON, `{"data": ...}` or `{"error": ..., "code": 2}`; rendering is `summary.py`'s.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import flyte

from autoresearch.ledger import store as ledger_store
from autoresearch.ledger.ledger import Ledger, LedgerError
from autoresearch.ledger.source import close_titles
from autoresearch.ledger.verdicts import GateRule
from autoresearch.report import lineage_git, results_tsv, summary
from autoresearch.session.inputs import MEMORY_KEY
from autoresearch_types import ExperimentConfig

store_env = flyte.TaskEnvironment(name="autoresearch_store")
"""Only this CLI uses it: `cli.py` imports this module for a subcommand, never for a research run."""

PLACEHOLDER_KEY = "k"
"""Any valid key: its store's parent folder is where every key of this org/project/domain lives."""


class BadInput(ValueError):
    """Bad input to a subcommand (an unknown key or title, a bad decision): exit code 2, with the fix."""


def keys_dir(state: Path) -> Path:
    """The folder holding every key's local store (`<state>/flyte/raw/agents/memory-store/v0/<org>/<p>/<d>`)."""
    path = ledger_store.local_path(ledger_store.store_location(PLACEHOLDER_KEY, state))
    if path is None:
        raise BadInput("the store is not local: summary, list and verdict read a local state dir only")
    return path.parent


def known_keys(state: Path) -> list[str]:
    """The memory keys with a local store under the state dir, sorted."""
    root = keys_dir(state)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and MEMORY_KEY.fullmatch(p.name))


async def open_existing(key: str, state: Path) -> Ledger:
    """The key's ledger with its own settings, read-only until a writer is called; `BadInput` (with close keys)
    if the key has no store, which is never created here."""
    keys = known_keys(state)
    if key not in keys:
        near = close_titles(key, keys)
        hint = f" Close keys: {', '.join(repr(k) for k in near)}." if near else ""
        raise BadInput(f"no memory key {key!r} under {keys_dir(state)}.{hint} `list` shows every key.")
    led = await Ledger.open(key, start=False, state_dir=state)
    led.base_config, led.rule, led.dataset = led.settle(ExperimentConfig(), GateRule(), explicit=())
    return led


async def summary_data(key: str, state: Path) -> dict[str, Any]:
    """Everything `summary` shows for `key` (see `summary.build_summary`)."""
    led = await open_existing(key, state)
    records, verdicts, rows = await led.view()
    audit, sessions, human = await led.latest_audit(), await led.sessions(), await led.human_verdicts()
    data = summary.build_summary(key, records, verdicts, rows, led.rule, audit, sessions, human)
    return summary.with_transfer(data, await led.latest_transfer())


async def key_row(key: str, state: Path) -> dict[str, Any]:
    """One `list` row for `key`: counts, best, last activity (as `summary` dates it)."""
    led = await open_existing(key, state)
    records, _, rows = await led.view()
    stamps = summary.activity_stamps(await led.sessions(), await led.human_verdicts())
    return summary.key_row(key, records, rows, stamps)


async def list_data(state: Path) -> dict[str, Any]:
    """Every key under the state dir, newest activity first, and where they were looked for."""
    rows = [await key_row(k, state) for k in known_keys(state)]
    return {"where": str(keys_dir(state)), "keys": summary.sort_keys_by_activity(rows)}


async def verdict_data(key: str, title: str, decision: str, note: str, state: Path) -> dict[str, Any]:
    """Store a human verdict under `key` (see `Ledger.record_human_verdict`); the stored record."""
    led = await open_existing(key, state)
    try:
        return await led.record_human_verdict(title, decision, note)
    except LedgerError as exc:
        raise BadInput(str(exc)) from exc


async def tsv_data(key: str, state: Path) -> dict[str, Any]:
    """`results.tsv` of `key` (see `results_tsv.py`)."""
    led = await open_existing(key, state)
    records, _, rows = await led.view()
    return {"tsv": results_tsv.results_tsv(records, rows, key, led.base_config)}


async def export_data(key: str, state: Path, branch: str, include_tries: bool) -> dict[str, Any]:
    """What `export --git` writes: every experiment's commit plan (parents first) and the branches' tips."""
    led = await open_existing(key, state)
    records, verdicts, rows = await led.view()
    plans = lineage_git.commit_plans(records, rows, key, led.base_config)
    refs = lineage_git.branch_refs(records, plans, verdicts.incumbent, branch, include_tries)
    return {"plans": [dataclasses.asdict(p) for p in plans.values()], "refs": refs}


@store_env.task
async def store_command(
    command: str,
    state_dir: str,
    key: str = "",
    title: str = "",
    decision: str = "",
    note: str = "",
    branch: str = "",
    include_tries: bool = False,
) -> str:
    """Run one store subcommand (`summary`, `list`, `verdict`, `tsv` or `export`) inside a local Flyte task; JSON
    out."""
    state = Path(state_dir)
    try:
        if command == "summary":
            data = await summary_data(key, state)
        elif command == "tsv":
            data = await tsv_data(key, state)
        elif command == "export":
            data = await export_data(key, state, branch, include_tries)
        elif command == "list":
            data = await list_data(state)
        elif command == "verdict":
            data = await verdict_data(key, title, decision, note, state)
        else:
            raise BadInput(f"unknown subcommand {command!r}")
    except BadInput as exc:
        return json.dumps({"error": str(exc), "code": 2})
    return json.dumps({"data": data}, sort_keys=True, default=str)
