"""The trusted scorer's side of the file protocol with one sandboxed model server (`harness.py serve`).

Requests and answers are `.npy` files in the server's work dir: the scorer writes `req-<i>.npy`
(int64 `(rows, seq_len)`), the server answers `resp-<i>.npy` (float32 `(rows, seq_len, vocab)`),
and `stop` ends it. Files rather than pipes because they work the same under every backend (the
`unionai-sandbox` sessions offer no stdin) and with the warm pool (a waiting process watches its
own work dir); both sides poll every millisecond and the scorer keeps two requests in flight.

Everything the server can touch is hostile input here:
- the work dir is opened once as a directory descriptor and every name is resolved relative to it
  without following links, so a server that swaps a name for a link (to the ledger, to another
  run) cannot make us read or write outside its work dir;
- a request is written under a fresh random name with `O_EXCL` and renamed into place;
- an answer is opened with `O_NONBLOCK` (a planted FIFO cannot hang us) and must be a regular
  file whose `.npy` header says exactly float32 and the shape we asked for, and whose size is
  exactly that header plus that many values. It is read once into our own memory, then deleted,
  so nothing written later changes what we scored. Any other answer is `Malformed`.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

POLL_S = 0.001
STOP = "stop"
ANSWER_DTYPE = np.dtype("<f4")


class ExchangeError(Exception):
    """A server that did not answer as asked; `role` says which one."""

    def __init__(self, role: str, detail: str) -> None:
        self.role = role
        super().__init__(f"model server ({role}): {detail}")


class Malformed(ExchangeError):
    """An answer that is not what the harness writes (link, FIFO, wrong header, shape, dtype or size)."""


class NonFinite(ExchangeError):
    """An answer with NaN or infinite logits."""


class ServerGone(ExchangeError):
    """The server's process ended before it answered."""


class OutOfTime(ExchangeError):
    """The experiment's deadline passed while waiting for an answer."""


def request_name(index: int) -> str:
    return f"req-{index:06d}.npy"


def response_name(index: int) -> str:
    return f"resp-{index:06d}.npy"


class Exchange:
    """Requests to and answers from one model server, through its work dir (see the module doc)."""

    def __init__(self, role: str, workdir: Path, alive: Callable[[], bool], deadline: float) -> None:
        """`alive()` says whether the server's process still runs; `deadline` is a `time.monotonic()` value."""
        self.role = role
        self.alive = alive
        self.deadline = deadline
        self.dir_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1

    def _write(self, name: str, data: bytes) -> None:
        """Write `data` under `name` atomically, never through a link the server planted."""
        tmp = f".{name}.{secrets.token_hex(8)}.part"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o644, dir_fd=self.dir_fd)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.rename(tmp, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError as exc:
            raise Malformed(self.role, f"could not hand over {name}: {exc}") from exc

    def send(self, index: int, tokens: np.ndarray) -> None:
        """Hand the server request `index`: int64 token ids `(rows, seq_len)`."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(tokens, dtype=np.int64), allow_pickle=False)
        self._write(request_name(index), buffer.getvalue())

    def stop(self) -> None:
        """Tell the server to write its summary and exit (best effort: it may be gone already)."""
        with contextlib.suppress(Malformed):
            self._write(STOP, b"")

    def _open_answer(self, name: str) -> int:
        """Wait for `name` to appear; a read-only descriptor on it (not yet checked)."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        while True:
            running = self.alive()
            try:
                return os.open(name, flags, dir_fd=self.dir_fd)
            except FileNotFoundError:
                pass
            except OSError as exc:  # a link (ELOOP), a directory, ...
                raise Malformed(self.role, f"{name} is not a regular file ({exc})") from exc
            if not running:
                raise ServerGone(self.role, f"ended before answering {name}")
            if time.monotonic() > self.deadline:
                raise OutOfTime(self.role, f"no answer {name} before the deadline")
            time.sleep(POLL_S)

    def receive(self, index: int, shape: tuple[int, int, int]) -> np.ndarray:
        """The server's answer to request `index`: float32 logits of exactly `shape`, all finite."""
        name = response_name(index)
        fd = self._open_answer(name)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise Malformed(self.role, f"{name} is not a regular file")
        try:
            with os.fdopen(fd, "rb") as fh:
                logits = self._read_checked(fh, name, shape)
            os.unlink(name, dir_fd=self.dir_fd)
        except OSError as exc:  # vanished, unreadable: not what the harness writes
            raise Malformed(self.role, f"{name} could not be read ({exc})") from exc
        if not np.isfinite(logits).all():
            raise NonFinite(self.role, f"{name} holds NaN or infinite logits")
        return logits

    def _read_checked(self, fh: io.BufferedReader, name: str, shape: tuple[int, int, int]) -> np.ndarray:
        """Read one answer, refusing anything but a regular `.npy` file of float32 `shape`, exactly sized."""
        info = os.fstat(fh.fileno())
        try:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else None
            read_header = read_header or np.lib.format.read_array_header_2_0
            got_shape, fortran, dtype = read_header(fh)
        except (ValueError, OSError, SyntaxError) as exc:
            raise Malformed(self.role, f"{name} is not a .npy array ({exc})") from exc
        if tuple(got_shape) != tuple(shape) or fortran or dtype != ANSWER_DTYPE:
            raise Malformed(self.role, f"{name}: got {dtype} {tuple(got_shape)}, asked for float32 {tuple(shape)}")
        logits = np.empty(shape, dtype=ANSWER_DTYPE)
        size = logits.nbytes
        if info.st_size != fh.tell() + size or fh.readinto(memoryview(logits).cast("B")) != size:
            raise Malformed(self.role, f"{name} is not exactly the size of its header's array")
        return logits
