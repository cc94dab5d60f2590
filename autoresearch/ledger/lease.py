"""One writer per key: a lease kept in the key's own store, taken and renewed with create-if-absent writes only.

The lease is a numbered series of small records, `lease/<epoch>.json`; the newest one holds. A writer takes the
key by creating the next epoch, which exactly one of two racing writers can do (`Blobs.create`: a hard link on a
local folder, a conditional put on an object store), and renews by creating the next one again; a renewal that
finds a newer epoch of someone else's has lost the key and stops writing. A holder that stopped renewing is stale
once its lease expires, or at once when it ran on this host and its process is gone; a stale lease is taken over.
Releasing writes an epoch marked released. Old epochs are deleted as new ones are written.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from autoresearch.ledger.blobs import Blobs

LEASE_DIR = "lease"
TTL_S = 300.0
"""A lease expires this long after its last renewal: a dead pod's key is free again after at most this."""
KEEP = 4
"""Epochs kept behind the newest (the rest are deleted)."""


class LeaseHeld(RuntimeError):
    """The key is held by another live writer; the message names who and since when."""


class LeaseLost(RuntimeError):
    """This writer's lease was taken over (it had expired): it must stop writing."""


@dataclass(frozen=True)
class Holder:
    """Who holds a key: host, process, run, since when, and until when unless renewed."""

    host: str
    pid: int
    run: str
    since: str
    renewed: str
    expires: float
    released: bool = False

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}"

    def describe(self) -> str:
        until = datetime.fromtimestamp(self.expires, UTC).isoformat(timespec="seconds")
        return f"run {self.run!r} (host {self.host}, pid {self.pid}) since {self.since}, renewed {self.renewed}, expires {until}"

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Holder | None:
        try:
            data = json.loads(raw)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError):
            return None


def pid_alive(pid: int) -> bool:
    """Whether a process of this host is still running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(holder: Holder, now: float, host: str, alive: Callable[[int], bool] = pid_alive) -> bool:
    """A lease nobody keeps: released, expired, or held by a process of this host that is gone."""
    return holder.released or holder.expires < now or (holder.host == host and not alive(holder.pid))


def epoch_name(epoch: int) -> str:
    return f"{LEASE_DIR}/{epoch:010d}.json"


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Lease:
    """This process's claim on one key's store."""

    def __init__(self, blobs: Blobs, run: str = "local", ttl_s: float = TTL_S, host: str | None = None) -> None:
        self.blobs, self.run, self.ttl_s = blobs, run, ttl_s
        self.host, self.pid = host or socket.gethostname(), os.getpid()
        self.epoch = 0
        self.since = ""
        self.renewed_at = 0.0
        self._keeper: asyncio.Task | None = None

    async def newest(self) -> tuple[int, Holder | None]:
        """The newest epoch and its holder (0, None when the key was never held)."""
        names = [n for n in await self.blobs.list(LEASE_DIR) if n.endswith(".json")]
        if not names:
            return 0, None
        last = max(names)
        raw = await self.blobs.read(last)
        return int(last.rsplit("/", 1)[1].removesuffix(".json")), Holder.from_bytes(raw or b"")

    def _mine(self, holder: Holder | None) -> bool:
        return holder is not None and holder.id == f"{self.host}:{self.pid}"

    async def acquire(self) -> None:
        """Take the key, or raise `LeaseHeld` naming the live holder."""
        epoch, holder = await self.newest()
        if holder is not None and not self._mine(holder) and not is_stale(holder, time.time(), self.host):
            raise LeaseHeld(self.held_message(holder))
        self.since = holder.since if self._mine(holder) and holder and not holder.released else now_text()
        if not await self._write(epoch + 1):
            _, winner = await self.newest()
            raise LeaseHeld(self.held_message(winner) if winner else f"the key {self.blobs.where} was just taken")

    def held_message(self, holder: Holder) -> str:
        return (
            f"this memory key is held by {holder.describe()}: one run writes a key at a time. Wait for it to "
            f"finish or stop it; a run that died leaves its lease until it expires (at most {self.ttl_s:.0f} s "
            "after its last renewal), and then it is taken over"
        )

    async def _write(self, epoch: int, released: bool = False) -> bool:
        stamp = time.time()
        holder = Holder(self.host, self.pid, self.run, self.since, now_text(), stamp + self.ttl_s, released)
        if not await self.blobs.create(epoch_name(epoch), holder.to_bytes()):
            return False
        self.epoch, self.renewed_at = epoch, stamp
        for old in [n for n in await self.blobs.list(LEASE_DIR) if n < epoch_name(epoch - KEEP)]:
            await self.blobs.delete(old)
        return True

    async def renew(self, force: bool = False) -> None:
        """Extend the lease (at most every third of its time to live unless `force`); `LeaseLost` if taken over."""
        if not self.epoch or (not force and time.time() - self.renewed_at < self.ttl_s / 3):
            return
        epoch, holder = await self.newest()
        if epoch != self.epoch or not self._mine(holder) or not await self._write(epoch + 1):
            _, winner = await self.newest()
            who = winner.describe() if winner else "another run"
            raise LeaseLost(f"this run's lease on the key lapsed and was taken over by {who}; it stops writing")

    def keep(self, interval_s: float | None = None) -> None:
        """Renew in the background while this run lives (a long experiment may not save for a while)."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_s or self.ttl_s / 3)
                await self.renew(force=True)

        self._keeper = asyncio.create_task(loop())

    async def release(self) -> None:
        """Give the key back (a released epoch): the next run takes it at once."""
        if self._keeper:
            self._keeper.cancel()
            self._keeper = None
        if self.epoch:
            epoch, holder = await self.newest()
            if epoch == self.epoch and self._mine(holder):
                await self._write(epoch + 1, released=True)
            self.epoch = 0
