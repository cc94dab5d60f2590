"""`move`: a memory key from this machine's store to a cluster's, or back, so research continues where it moved.

Each side's store work is the store task's (`commands.py`), run where that store is: `export` says where the key's
files are (refusing a key a live run holds), `import` copies them into the other store (refusing a key that
already exists there), and `delete` removes the source once the destination holds every file. The key's lease is
not copied: the destination's first run takes it fresh.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoresearch.ledger import store as ledger_store

Run = Callable[[str, dict[str, Any]], dict[str, Any]]
"""Runs one store command on one side (`command`, inputs) and returns its data; raises `commands.BadInput`."""
Fetch = Callable[[str, Path], Path]
"""Copies the folder at a store URI into a local folder (for a source that is not on this machine)."""


class MoveFailed(RuntimeError):
    """The destination did not end up with every file of the key; the source was left as it was."""


def move_key(key: str, source: Run, dest: Run, fetch: Fetch, staging: Path) -> dict[str, Any]:
    """Move `key` from `source` to `dest`: copy, check the count, then delete the source; what moved, and where."""
    exported = source("outgoing", {"key": key})
    folder = ledger_store.local_path(exported["uri"])
    if folder is None:
        folder = fetch(exported["uri"], staging / f"{key}-{uuid.uuid4().hex[:8]}")
    imported = dest("incoming", {"key": key, "data": str(folder)})
    if imported["files"] != exported["files"]:
        raise MoveFailed(
            f"{key}: {imported['files']} of {exported['files']} files reached {imported['where']}; the source "
            f"{exported['where']} is kept as it was"
        )
    source("delete", {"key": key})
    return {"key": key, "files": imported["files"], "from": exported["where"], "to": imported["where"]}
