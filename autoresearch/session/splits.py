"""Each key's secret held-out split: the seed that chooses its validation and test documents, kept out of the ledger.

The agent's tools read the ledger, and the LLM knows the corpus by heart: a seed (or a list of held-out plays) it
could read would let it memorise the validation text or see the test split. So the seed lives in a file of its
own in the key's store (`secret/split.json`, mode 0600 in a working copy), which no ledger read, tool, directive or
subcommand opens and no sandbox can reach; the key's settings record only the split's public id
(`prepare.split_id`), so a resume with a lost or different seed is refused instead of silently changing what is
held out. Being in the store, it goes where the key goes: a cluster's object store, and `move`.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import prepare

SECRET = "secret/split.json"
"""The secret's path inside the key's store (and its working copy)."""


class SplitError(ValueError):
    """A key's split secret is missing, unreadable or does not match the key; the message says what to do."""


def secret_path(work: Path) -> Path:
    """Where the split seed is kept in a key's working copy (`KeyStore.work`)."""
    return work / SECRET


def _read(path: Path) -> int:
    try:
        seed = json.loads(path.read_text())["seed"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SplitError(f"the split secret {path} is unreadable ({exc}); restore it from a copy") from exc
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SplitError(f"the split secret {path} holds no integer seed; restore it from a copy")
    return seed


def _create(path: Path) -> int:
    """A fresh random seed, written once (a concurrent writer of the same key wins, and its seed is used)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    seed = secrets.randbits(63)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    with os.fdopen(fd, "w") as fh:
        json.dump({"seed": seed}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return seed


def key_split(work: Path, recorded: str | None) -> int:
    """The split seed of the key whose working copy is `work`: its kept secret, or a new one for a key that records
    no split yet.

    `recorded` is the split id the key's settings hold (None for a new key). A key that records one must find the
    secret that produced it; a secret that does not match is refused.
    """
    path = secret_path(work)
    if not path.exists():
        if recorded:
            raise SplitError(
                f"this key's held-out split secret ({SECRET} in its store) is missing; without it the validation and "
                "test documents would change. Restore the file from a copy of the key's store, or start a new key."
            )
        return _create(path)
    seed = _read(path)
    if recorded and prepare.split_id(seed) != recorded:
        raise SplitError(f"the split secret {path} belongs to another split than this key's ({recorded}); restore it")
    return seed
