"""The store side of the subcommands: `summary`, `list` and `verdict` read a key's records (and `verdict` writes
one), `summary --tsv` and `export --git` render them, without training or calling an LLM; `outgoing`, `incoming` and
`delete` are the store halves of `move`.

A keyed `MemoryStore` is located from the Flyte context (org, project, domain and raw-data path), so the work runs
in one small task, `store_command`, started by `cli.py` (this folder): locally under the state dir like a research
run, or on a cluster (`--config`) against the cluster's store. It opens keys that exist and never creates one
(except `incoming`): a key is found by its folder in the store, before `Ledger.open`.
The task answers JSON, `{"data": ...}` or `{"error": ..., "code": 2}`; rendering is `summary.py`'s.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import flyte
from flyte.io import Dir

import bundle
import prepare
from autoresearch.ledger import store as ledger_store
from autoresearch.ledger.blobs import Folder
from autoresearch.ledger.lease import LEASE_DIR, Lease, is_stale
from autoresearch.ledger.ledger import Ledger, LedgerError
from autoresearch.ledger.source import close_titles
from autoresearch.ledger.verdicts import GateRule
from autoresearch.report import lineage_git, results_tsv, summary
from autoresearch.session.inputs import MEMORY_KEY
from autoresearch_types import ExperimentConfig

store_env = flyte.TaskEnvironment(
    name="autoresearch_store",
    image=bundle.IMAGE,
    include=bundle.SHIPPED,
    resources=flyte.Resources(cpu=1, memory=("1Gi", "1Gi")),
)
"""Only this CLI uses it: `cli.py` imports this module for a subcommand, never for a research run."""

PLACEHOLDER_KEY = "k"
"""Any valid key: its store's parent folder is where every key of this org/project/domain lives."""


class BadInput(ValueError):
    """Bad input to a subcommand (an unknown key or title, a bad decision): exit code 2, with the fix."""


def keys_dir(state: Path) -> str:
    """Where every key's store lives (`.../agents/memory-store/v0/<org>/<project>/<domain>`): a folder under the
    state dir locally, an object-store prefix on a cluster."""
    return ledger_store.store_location(PLACEHOLDER_KEY, state).rstrip("/").rsplit("/", 1)[0]


async def known_keys(state: Path) -> list[str]:
    """The memory keys with a store here, sorted."""
    names = await ledger_store.blobs_for(keys_dir(state)).folders()
    return sorted(n for n in names if MEMORY_KEY.fullmatch(n))


async def check_known(key: str, state: Path) -> None:
    """`BadInput` (naming close keys) unless `key` has a store here."""
    keys = await known_keys(state)
    if key not in keys:
        near = close_titles(key, keys)
        hint = f" Close keys: {', '.join(repr(k) for k in near)}." if near else ""
        raise BadInput(f"no memory key {key!r} under {keys_dir(state)}.{hint} `list` shows every key.")


async def open_existing(key: str, state: Path) -> Ledger:
    """The key's ledger with its own settings, read-only until a writer is called; `BadInput` (with close keys)
    if the key has no store, which is never created here."""
    await check_known(key, state)
    led = await Ledger.open(key, start=False, state_dir=state, hold=False)  # a person's verdict needs no lease
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
    rows = [await key_row(k, state) for k in await known_keys(state)]
    return {"where": keys_dir(state), "keys": summary.sort_keys_by_activity(rows)}


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


async def key_files(key: str, state: Path) -> tuple[Any, list[str]]:
    """A key's store as files, and its files (the lease left out), refusing a key a live run holds."""
    blobs = ledger_store.blobs_for(ledger_store.store_location(key, state))
    lease = Lease(blobs, run="move")
    _, holder = await lease.newest()
    if holder is not None and not is_stale(holder, time.time(), lease.host):
        raise BadInput(f"memory key {key!r} cannot move: {lease.held_message(holder)}")
    return blobs, [rel for rel in await blobs.list() if not rel.startswith(f"{LEASE_DIR}/")]


async def outgoing_data(key: str, state: Path) -> dict[str, Any]:
    """Where a key's store is, for a copy to be taken from it (`move`'s first half at the source)."""
    await check_known(key, state)
    blobs, files = await key_files(key, state)
    return {"uri": ledger_store.store_location(key, state), "files": len(files), "where": blobs.where}


async def incoming_data(key: str, source: str, state: Path) -> dict[str, Any]:
    """Copy a key's files from the local folder `source` into this store (`move`'s second half); a key that
    already exists here is refused."""
    if key in await known_keys(state):
        raise BadInput(f"memory key {key!r} already exists under {keys_dir(state)}: move it away first")
    blobs = ledger_store.blobs_for(ledger_store.store_location(key, state))
    root = Path(source)
    files = [rel for rel in await Folder(root).list() if not rel.startswith(f"{LEASE_DIR}/")]
    for rel in files:
        await blobs.write(rel, (root / rel).read_bytes())
    return {"files": len(files), "where": blobs.where}


async def delete_data(key: str, state: Path) -> dict[str, Any]:
    """Remove a key's store once it was copied elsewhere (`move`'s last step); refused while a run holds it."""
    await check_known(key, state)
    blobs, files = await key_files(key, state)
    for rel in await blobs.list():
        await blobs.delete(rel)
    folder = ledger_store.local_path(ledger_store.store_location(key, state))
    if folder is not None:  # a local store's empty folders would still name the key
        shutil.rmtree(folder, ignore_errors=True)
    return {"files": len(files), "where": blobs.where}


@store_env.task
async def store_command(
    command: str,
    state_dir: str = "",
    key: str = "",
    title: str = "",
    decision: str = "",
    note: str = "",
    branch: str = "",
    include_tries: bool = False,
    data: Dir | None = None,
) -> str:
    """Run one store subcommand (`summary`, `list`, `verdict`, `tsv`, `export`, or `move`'s `outgoing`, `incoming`
    and `delete`) in a Flyte task: locally under `state_dir`, or on a cluster against its store (`state_dir` "");
    JSON out."""
    state = Path(state_dir) if state_dir else prepare.state_dir()
    try:
        if command == "summary":
            out = await summary_data(key, state)
        elif command == "tsv":
            out = await tsv_data(key, state)
        elif command == "export":
            out = await export_data(key, state, branch, include_tries)
        elif command == "list":
            out = await list_data(state)
        elif command == "verdict":
            out = await verdict_data(key, title, decision, note, state)
        elif command == "outgoing":
            out = await outgoing_data(key, state)
        elif command == "incoming" and data is not None:
            out = await incoming_data(key, await bundle.local_path(data), state)
        elif command == "delete":
            out = await delete_data(key, state)
        else:
            raise BadInput(f"unknown subcommand {command!r}")
    except BadInput as exc:
        return json.dumps({"error": str(exc), "code": 2})
    return json.dumps({"data": out}, sort_keys=True, default=str)
