"""Named presets: a run's data and base config set together, each value a default that an explicit flag overrides.

`karpathy` is karpathy/autoresearch's setup on one H100 (his `prepare.py` and `train.py`, commit 228791f): the
climbmix corpus with his pinned validation shard used whole as val, an 8192-token BPE, 2048-token sequences, his
`EVAL_TOKENS`, and the tokens his baseline trains in its 5-minute budget. Pure data and pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autoresearch_types import ExperimentConfig, WorkshopBounds

KARPATHY_EVAL_TOKENS = 40 * 524_288
"""His `EVAL_TOKENS` (prepare.py): 20,971,520 target tokens from the start of the val shard."""
KARPATHY_STEP_TOKENS = 2**19
"""His `TOTAL_BATCH_SIZE` (train.py): 524,288 tokens per optimizer step (128 rows x 2048, 2 micro-batches)."""
KARPATHY_STEPS = 953
"""Optimizer steps his baseline makes in `TIME_BUDGET` = 300 s on an H100 (program.md's sample output)."""
KARPATHY_TOKENS = KARPATHY_STEPS * KARPATHY_STEP_TOKENS
"""499,646,464 tokens: his baseline's `total_tokens_M: 499.6`, our fixed token budget."""


@dataclass(frozen=True)
class Preset:
    """The task inputs a preset fills in where the user gave none (0 / "" / None), and base-config defaults."""

    name: str
    description: str
    dataset: str
    num_shards: int
    vocab_size: int
    max_steps: int
    time_budget: float
    base_config: dict[str, Any] = field(default_factory=dict)

    def config(self) -> ExperimentConfig:
        """The base config this preset asks for (before a user's overrides)."""
        return ExperimentConfig().with_overrides(self.base_config)


KARPATHY = Preset(
    name="karpathy",
    description="karpathy/autoresearch on one H100: climbmix, vocab 8192, seq 2048, his eval tokens and token budget",
    dataset="climbmix",
    num_shards=10,
    vocab_size=8192,
    max_steps=KARPATHY_TOKENS // (128 * 2048),
    time_budget=1800.0,
    base_config={
        "seq_len": 2048,
        "batch_size": 128,
        "n_layer": 8,
        "n_embd": 512,
        "n_head": 4,
        "eval_tokens": KARPATHY_EVAL_TOKENS,
    },
)
PRESETS: dict[str, Preset] = {KARPATHY.name: KARPATHY}
NO_PRESET = "none"
"""The CLI's spelling of "no preset" (the driver input takes "" too)."""


def get(name: str) -> Preset | None:
    """The preset called `name`, or None for no preset; `ValueError` naming the choices for an unknown name."""
    if name in ("", NO_PRESET):
        return None
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join((NO_PRESET, *PRESETS))}, got {name!r}")
    return PRESETS[name]


def apply(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """The driver's inputs with the preset's values wherever `values` leaves one unset (0 / "" / None); the user's
    base-config keys win over the preset's one by one."""
    preset = get(name)
    if preset is None:
        return dict(values)
    out = dict(values)
    for key in ("dataset", "num_shards", "vocab_size", "max_steps", "time_budget"):
        if not out.get(key):
            out[key] = getattr(preset, key)
    out["base_config"] = {**preset.base_config, **dict(values.get("base_config") or {})}
    return out


def bounds(name: str) -> WorkshopBounds:
    """The workshop's bounds a preset's base config is checked against: the defaults, widened to hold it."""
    preset = get(name)
    return WorkshopBounds() if preset is None else WorkshopBounds().covering(preset.config())
