"""What a run is scored on, loaded and verified by the trusted side before anything untrusted runs (TRUSTED).

A bundle's held-out files (`prepare.HELD_OUT_FILES`: the val and test token arrays and the byte table) are hashed
when it is built (`Bundle.digests`). Before phase 1 starts, the windows that will be scored and the byte table are
read once, checked against those hashes and kept in this process; the score is computed from that copy only. A
file that differs before the run is `tampered` and nothing runs; one that differs after the run (a sandbox that
could reach the bundle rewrote it) makes the run `tampered` too, though its rewrite could not change the copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import prepare
from autoresearch_types import ExperimentConfig


@dataclass(frozen=True)
class HeldOut:
    """The scored windows and the byte table, as verified: held in the orchestrator's memory only."""

    windows: np.ndarray
    byte_table: np.ndarray


def _read(data_dir: str | Path, tokenizer_dir: str | Path, digests: dict[str, str], name: str) -> np.ndarray:
    return prepare.read_verified(prepare.held_out_path(data_dir, tokenizer_dir, name), digests.get(name, ""))


def load(
    data_dir: str | Path, tokenizer_dir: str | Path, digests: dict[str, str], split: str, config: ExperimentConfig
) -> HeldOut:
    """The windows of `split` (`val`, or `test` for an audit) and the byte table, each read once and checked against
    the recorded hashes. Raises `prepare.HeldOutMismatch` when a file differs (or has no recorded hash)."""
    tokens = _read(data_dir, tokenizer_dir, digests, split)
    byte_table = _read(data_dir, tokenizer_dir, digests, "token_bytes")
    return HeldOut(prepare.eval_windows(tokens, config.seq_len, config.eval_tokens), byte_table)


def unchanged(data_dir: str | Path, tokenizer_dir: str | Path, digests: dict[str, str], split: str) -> bool:
    """Whether `split`'s tokens and the byte table still match their recorded hashes (after the untrusted phases)."""
    try:
        for name in (split, "token_bytes"):
            _read(data_dir, tokenizer_dir, digests, name)
    except (OSError, prepare.DataError):
        return False
    return True
