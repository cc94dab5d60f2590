"""Where a key's `MemoryStore` lives, how it is opened and saved without ever leaving a torn record.

- **Location.** On a cluster, the SDK's keyed path. Locally, the same layout under the state dir (never
  `/tmp`, which sandboxed code can write), also when Flyte's raw-data path is the default under `/tmp`.
- **Atomic saves.** A local store is written file by file through a temporary file, `fsync` and `rename`,
  so a kill at any instant leaves every record either old or new. (An object store already replaces whole
  objects.) Only files whose bytes changed are written.
- **Damaged records.** On open, every JSON record is parsed and checked for its shape. A damaged one
  (truncated, empty, garbage) is set aside: its bytes move to `quarantine/<time>/<path>` and it is left
  out of the working copy, so the rest of the key opens and resumes. `OpenedStore.damaged` says what was
  set aside and why; to recover a record, repair it and move it back.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from autoresearch.sandbox import workdirs

LOCAL_SCOPE = {"project": "autoresearch", "domain": "development"}
"""Project and domain of a local store when Flyte was not initialised with any."""
QUARANTINE = "quarantine"
WORK_DIR = "ledger-work"
"""Working copies live in `<state>/ledger-work/<owner tag>-<key>-<hex>`: a crashed run's are removed later."""
SDK_DIRS = ("audit", "meta", "versions")
"""The MemoryStore's own bookkeeping: never set aside (the store rewrites it) and never a record."""


class StoreError(RuntimeError):
    """The store cannot be located or opened; the message says what to do."""


# ---------------------------------------------------------------- local mode


def state_dir_of(state_dir: str | Path | None) -> Path:
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
    return {"raw_data_path": str(state_dir_of(state_dir) / "flyte" / "raw")}


def init_local(project: str = "autoresearch", domain: str = "development", log_level: int = logging.WARNING) -> None:
    """`flyte.init` for local mode with the org/project/domain a `MemoryStore` needs."""
    import flyte

    flyte.init(org="local", project=project, domain=domain, log_level=log_level)


def local_path(remote_path: str) -> Path | None:
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
        raise StoreError(
            f"cannot locate the MemoryStore for key {memory_key!r}: {exc}. Call Ledger.open inside a Flyte task "
            "(locally: ledger.init_local(), then flyte.with_runcontext(**ledger.run_context_kwargs()).run(task))."
        ) from exc
    path = local_path(remote)
    if path is None or path == state_dir or state_dir in path.parents:
        return remote
    marker = "/agents/memory-store/"
    tail = str(path).split(marker, 1)[1] if marker in str(path) else f"v0/local/{memory_key}"
    return str(state_dir / "flyte" / "raw" / "agents" / "memory-store" / tail)


# ---------------------------------------------------------------- record shapes (pure)


def _is_dict_with(data: Any, **types: type | tuple[type, ...]) -> bool:
    return isinstance(data, dict) and all(isinstance(data.get(k), t) for k, t in types.items())


def _shape(rel: str) -> Callable[[Any], bool] | None:
    """The check a record at `rel` must pass, or None for files that are not JSON records."""
    parts = rel.split("/")
    if parts[0] == "experiments" and len(parts) == 3 and parts[2] == "spec.json":
        return lambda d: _is_dict_with(d, title=str, slug=str) and bool(d["title"].strip())
    if parts[0] == "experiments" and len(parts) == 4 and parts[2] == "runs":
        return lambda d: _is_dict_with(d, seq=int, result=dict) and isinstance(d["result"].get("outcome"), str)
    if parts[0] == "experiments" and len(parts) == 3 and parts[2] == "result.json":
        return lambda d: _is_dict_with(d, result=dict)
    if parts[0] in ("batches", "transcripts", "audits") and rel.endswith(".json"):
        return lambda d: isinstance(d, (dict, list))
    if rel == "settings.json":
        return lambda d: d is None or _is_dict_with(d, base_config=dict)
    if rel == "messages.json":
        return lambda d: isinstance(d, list)
    return None


def record_problem(rel: str, raw: bytes) -> str | None:
    """Why the record at `rel` is damaged (it does not parse, is empty, or has the wrong shape), or None."""
    check = _shape(rel)
    if check is None:
        return None
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        return "empty" if rel != "settings.json" else None
    try:
        data = json.loads(text)
    except ValueError as exc:
        return f"not valid JSON ({exc.msg} at character {exc.pos})"
    return None if check(data) else "valid JSON, but not a record of this kind"


# ---------------------------------------------------------------- damage and atomic writes


@dataclass
class OpenedStore:
    """A key's working copy: whether the key existed, and what was set aside as damaged."""

    work: Path
    remote: str
    exists: bool
    damaged: list[dict[str, str]] = field(default_factory=list)


def _records(root: Path) -> list[Path]:
    """Every regular file under `root` except the SDK's bookkeeping and earlier quarantines."""
    skip = {*SDK_DIRS, QUARANTINE}
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if rel[0] not in skip and path.is_file() and not path.is_symlink():
            files.append(path)
    return files


def set_aside_damaged(opened: OpenedStore) -> None:
    """Move every damaged record out of the working copy (and of a local store) into `quarantine/<time>/`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + f"-{uuid.uuid4().hex[:4]}"
    store = local_path(opened.remote)
    for path in _records(opened.work):
        rel = path.relative_to(opened.work).as_posix()
        problem = record_problem(rel, path.read_bytes())
        if problem is None:
            continue
        kept = f"{QUARANTINE}/{stamp}/{rel}"
        source = store / rel if store is not None and (store / rel).exists() else path
        atomic_write(opened.work / kept, path.read_bytes())
        if store is not None:
            atomic_write(store / kept, source.read_bytes())
            (store / rel).unlink(missing_ok=True)
        path.unlink()
        opened.damaged.append({"path": rel, "problem": problem, "kept_at": kept})


def atomic_write(dest: Path, data: bytes) -> None:
    """Replace `dest` with `data` through a temporary file, fsync and rename: never a torn file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, dest)
    _fsync_dir(dest.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_local(work: Path, store: Path) -> int:
    """Write every file of the working copy whose bytes differ into the local store, atomically; how many."""
    written = 0
    for path in sorted(work.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        dest = store / path.relative_to(work)
        data = path.read_bytes()
        if dest.is_file() and dest.stat().st_size == len(data) and dest.read_bytes() == data:
            continue
        atomic_write(dest, data)
        written += 1
    return written


async def open_working_copy(memory_key: str, state_dir: str | Path | None = None) -> OpenedStore:
    """Copy the keyed store (if it exists) into a fresh working copy under the state dir, damaged records set aside."""
    from flyte.ai.agents import MemoryStore
    from flyte.io import Dir

    root = state_dir_of(state_dir)
    remote = store_location(memory_key, root)
    work = root / WORK_DIR / f"{workdirs.owner_tag()}-{memory_key}-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    store = local_path(remote)
    exists = store.is_dir() if store is not None else await MemoryStore.exists(key=memory_key)
    if exists and store is not None:
        shutil.copytree(store, work, symlinks=False, dirs_exist_ok=True, ignore=_ignore_temporaries)
    elif exists:
        await Dir.from_existing_remote(remote).download(local_path=str(work))
    opened = OpenedStore(work, remote, exists)
    set_aside_damaged(opened)
    return opened


def _ignore_temporaries(_: str, names: list[str]) -> list[str]:
    """Leftover temporary files of an interrupted atomic write are never copied."""
    return [n for n in names if n.startswith(".") and n.endswith(".tmp")]


async def save(memory: Any) -> None:
    """Save the working copy: atomically file by file for a local store, the SDK's upload for an object store."""
    store = local_path(memory.remote_path)
    if store is None:
        await memory.save.aio()
        return
    await memory.flush_messages()
    sync_local(Path(memory.root), store)
