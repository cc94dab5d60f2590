"""Where a key's `MemoryStore` lives, how it is opened and saved without ever leaving a torn record.

- **Location.** On a cluster, the SDK's keyed path. Locally, the same layout under the state dir (never
  `/tmp`, which sandboxed code can write), also when Flyte's raw-data path is the default under `/tmp`.
- **Atomic saves.** A local store is written file by file through a temporary file, `fsync` and `rename`,
  so a kill at any instant leaves every record either old or new. (An object store already replaces whole
  objects.) A save writes only the files this writer changed since it last saw the store (`KeyStore`), so
  an object store uploads what changed and nothing else, and a file another writer added meanwhile (a person's
  verdict) is never overwritten; `KeyStore.pull` brings such files into the working copy.
- **One writer.** A writer holds the key's lease (`lease.py`) from open to close; a second one is refused.
- **Damaged records.** On open, every JSON record is parsed and checked for its shape. A damaged one
  (truncated, empty, garbage) is set aside: its bytes move to `quarantine/<time>/<path>` and it is left
  out of the working copy, so the rest of the key opens and resumes. `OpenedStore.damaged` says what was
  set aside and why; to recover a record, repair it and move it back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from autoresearch.ledger.blobs import Blobs, Folder, atomic_write, object_store
from autoresearch.ledger.lease import LEASE_DIR, Lease
from autoresearch.sandbox import workdirs

LOCAL_SCOPE = {"project": "autoresearch", "domain": "development"}
"""Project and domain of a local store when Flyte was not initialised with any."""
QUARANTINE = "quarantine"
WORK_DIR = "ledger-work"
"""Working copies live in `<state>/ledger-work/<owner tag>-<key>-<hex>`: a crashed run's are removed later."""
SDK_DIRS = ("audit", "meta", "versions")
"""The MemoryStore's own bookkeeping: never set aside (the store rewrites it) and never a record."""
NOT_COPIED = (LEASE_DIR,)
"""Files of the store that are not part of a working copy: the lease is read and written in the store only."""


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

    A local run whose raw-data path is under `/tmp` (the default `/tmp/flyte/...`, for example `flyte run
    --local`) is rebased under `<state>/flyte/raw`, where `run_context_kwargs()` would have put it, because
    sandboxed code can write the host's `/tmp`. Without an initialised org, local stores use the org `local`.
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
    tmp = Path("/tmp")
    if path is None or path == state_dir or state_dir in path.parents or tmp not in path.parents:
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
    if parts[0] == "sessions" and len(parts) == 2 and rel.endswith(".json"):
        return _is_session
    if rel == "settings.json":
        return lambda d: d is None or _is_dict_with(d, base_config=dict)
    if rel == "messages.json":
        return lambda d: isinstance(d, list)
    return None


def _is_session(d: Any) -> bool:
    """A session record: its time and totals, and, when present, a program with its sha256 and text."""
    program = d.get("program") if isinstance(d, dict) else None
    good_program = program is None or _is_dict_with(program, sha256=str, text=str)
    return _is_dict_with(d, at=str, totals=dict) and good_program


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
    """Every regular file under `root` except the SDK's bookkeeping, earlier quarantines and the lease."""
    skip = {*SDK_DIRS, QUARANTINE, *NOT_COPIED}
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
        shutil.copytree(store, work, symlinks=False, dirs_exist_ok=True, ignore=_not_copied(store))
    elif exists:
        await Dir.from_existing_remote(remote).download(local_path=str(work))
        for name in NOT_COPIED:
            shutil.rmtree(work / name, ignore_errors=True)
    opened = OpenedStore(work, remote, exists)
    set_aside_damaged(opened)
    return opened


def _not_copied(store: Path) -> Callable[[str, list[str]], list[str]]:
    """What a copy of the store leaves out: leftover temporaries of an interrupted atomic write, and the lease."""

    def ignore(folder: str, names: list[str]) -> list[str]:
        top = Path(folder) == store
        return [n for n in names if (n.startswith(".") and n.endswith(".tmp")) or (top and n in NOT_COPIED)]

    return ignore


def blobs_for(remote: str) -> Blobs:
    """A key's store as files: its local folder, or its object-store prefix."""
    path = local_path(remote)
    return Folder(path) if path is not None else object_store(remote)


def digests(root: Path) -> dict[str, str]:
    """rel path -> sha256 of every file of a working copy (what a writer last saw, or has now)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


class KeyStore:
    """A key's store as one writer sees it: where it lives, what this writer last saw there, and its lease."""

    def __init__(self, memory: Any, opened: OpenedStore, run: str = "local", blobs: Blobs | None = None) -> None:
        self.memory, self.work = memory, opened.work
        self.blobs = blobs or blobs_for(opened.remote)
        self.seen = digests(opened.work)
        self.lease = Lease(self.blobs, run)

    async def hold(self, keep_alive: bool = False) -> None:
        """Take the key's lease (`LeaseHeld` names the live holder), renewed in the background if `keep_alive`."""
        await self.lease.acquire()
        if keep_alive:
            self.lease.keep()

    async def save(self) -> int:
        """Write every file this writer changed since it last saw the store; how many. Renews a held lease, and
        raises `LeaseLost` (writing nothing) if it was taken over."""
        await self.lease.renew()
        await self.memory.flush_messages()
        now = digests(self.work)
        changed = [rel for rel, sha in now.items() if self.seen.get(rel) != sha]
        for rel in changed:
            await self.blobs.write(rel, (self.work / rel).read_bytes())
            self.seen[rel] = now[rel]
        return len(changed)

    async def pull(self, prefix: str) -> int:
        """Bring files another writer added or changed under `prefix` into the working copy; how many."""
        pulled = 0
        for rel in await self.blobs.list(prefix):
            raw = await self.blobs.read(rel)
            if raw is None:
                continue
            sha = hashlib.sha256(raw).hexdigest()
            here = self.work / rel
            if sha != self.seen.get(rel) and (not here.is_file() or here.read_bytes() != raw):
                atomic_write(here, raw)
                self.seen[rel] = sha
                pulled += 1
        return pulled

    async def close(self) -> None:
        """Give the key back."""
        await self.lease.release()
