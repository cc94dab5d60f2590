"""The training runtime a sandbox gets, staged into every work dir under the name `prepare.py` (TRUSTED).

`train.py`'s contract is `from prepare import BatchFeed, log_progress, PROGRESS_EVERY`. Inside a sandbox that
name resolves to this file alone: the batches handed to the run, the learning-curve log and the logits helper
the harness uses. Nothing here builds, reads or describes data beyond the handed batches: no data source, no
tokenizer, no corpus, no held-out split. The repository's `prepare.py` re-exports these names, so this file is
their one home. It imports only the standard library and numpy (torch lazily), because it runs in an
environment that holds nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """Bad input or bad data, with a message that says which file or value and what to do."""


PROGRESS_FILE = "progress.jsonl"
"""Where a run's training loss goes as it trains (in its working directory), read from outside to prune it."""
PROGRESS_EVERY = 10
"""The baseline reports its training loss every this many steps."""
BATCHES_FILE = "batches.npy"
"""The one training file a run gets: exactly its token budget, as `(steps, batch, seq_len + 1)` uint16 rows."""


def log_progress(step: int, loss: float) -> None:
    """Append one (step, training loss) point to the run's learning curve.

    The orchestrator reads the curve from outside the sandbox, only to stop a run that is clearly losing
    (`pruning.py`): a false report can only stop the run that makes it, and never reaches a metric.
    """
    with open(PROGRESS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"step": int(step), "loss": float(loss)}) + "\n")


class BatchFeed:
    """The training batches handed to a run (`data_dir/batches.npy`), in order, as `(inputs, targets)` int64 tensors.

    Iterating yields each batch once: the run's whole token budget, and nothing beyond it.
    """

    def __init__(self, data_dir: str | Path):
        path = Path(data_dir) / BATCHES_FILE
        if not path.exists():
            raise DataError(f"no training batches at {path}")
        self.blocks = np.load(path, mmap_mode="r")

    def __len__(self) -> int:
        return int(self.blocks.shape[0])

    def __iter__(self) -> Iterator:
        import torch

        for block in self.blocks:
            rows = torch.from_numpy(np.asarray(block, dtype=np.int64))
            yield rows[:, :-1], rows[:, 1:]


def model_logits(model, x):
    """The `(B, T, V)` logits of `model(x)`; a returned tuple's first element is taken as logits."""
    out = model(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if out.dim() != 3 or out.shape[:2] != x.shape:
        raise ValueError(f"model returned logits of shape {tuple(out.shape)}, expected ({x.shape[0]}, {x.shape[1]}, V)")
    return out
