"""The contracts shared by every module: small JSON-friendly dataclasses and their bounds.

Standard library only, so every other module (and the sandbox harness) can import it cheaply.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = (
    "success",
    "truncated",
    "over_budget",
    "oom",
    "timeout",
    "crash",
    "invalid",
    "leak",
    "tampered",
    "implausible",
    "pruned",
    "unexportable",
)
"""Every way an experiment can end. `unexportable`: trained, but its forward pass is not a pure graph the scorer
accepts (the message says what to change). `success`, `truncated` and `over_budget` carry a trusted `val_bpb`, but only
a `success` is ranked: a truncated run stopped at the time cap before its token budget, an over-budget one
bought its score with far more compute than its config predicts."""
SCORED_OUTCOMES = ("success", "truncated", "over_budget")
"""Outcomes whose `val_bpb` was computed by the trusted scorer (shown, but only `success` is compared)."""

VOCAB_RANGE = (264, 65536)
"""The BPE vocabulary sizes a bundle may have."""

RUN_KEYS = ("token_budget", "time_budget_s", "eval_tokens", "vocab_size", "seed", "threads")
"""Config fields that belong to the run, never to an edit: the fixed budget every experiment is compared at,
and the seed (replicates choose it; a seed change is not an idea)."""
RUN_OWNED = (*RUN_KEYS, "max_steps")
"""Everything an edit may not set: the run's keys, and `max_steps` (the budget in steps, from older keys)."""


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a training run needs besides its data: architecture, optimisation, budget, seed.

    The budget is a number of training tokens, not steps: `max_steps` is derived as
    `token_budget // (batch_size * seq_len)`, so an edit that doubles the batch trains half the steps
    and every experiment sees the same amount of data. `time_budget_s` is only a safety cap. The
    `RUN_KEYS` (budget, eval tokens, vocabulary, seed, threads) belong to the run, not to an edit.
    """

    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    seq_len: int = 128
    batch_size: int = 8
    learning_rate: float = 1.5e-3
    weight_decay: float = 0.1
    dropout: float = 0.0
    token_budget: int = 600 * 8 * 128
    time_budget_s: float = 300.0
    eval_tokens: int = 32768
    seed: int = 0
    vocab_size: int = 2048
    threads: int = 1

    @property
    def max_steps(self) -> int:
        """Optimizer steps this config trains for: its share of the token budget at its batch and length."""
        return max(1, self.token_budget // max(1, self.batch_size * self.seq_len))

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def nominal_params(self) -> int:
        """Parameters of the baseline TinyGPT at this config (embeddings, blocks, norms, untied head): the
        yardstick for memory sizing and for a run's expected compute, whatever its code does."""
        d, v, layers = self.n_embd, self.vocab_size, self.n_layer
        return 2 * v * d + self.seq_len * d + layers * (12 * d * d + 4 * d) + 2 * d

    def problem(self) -> str | None:
        """Why this config cannot train (a rule across fields), or None."""
        if self.n_head <= 0 or self.n_embd % self.n_head:
            return f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
        return None

    def to_dict(self) -> dict[str, Any]:
        """A plain dict, for JSON (with the derived `max_steps`, which `from_dict` ignores)."""
        return {**dataclasses.asdict(self), "max_steps": self.max_steps}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Build from a dict, ignoring keys this version does not know.

        A dict from before token budgets (`max_steps` and no `token_budget`) keeps its amount of data:
        its steps at its own batch and length become the token budget.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if "token_budget" not in values and isinstance(data.get("max_steps"), int):
            batch = values.get("batch_size", cls.batch_size)
            seq = values.get("seq_len", cls.seq_len)
            values["token_budget"] = int(data["max_steps"]) * int(batch) * int(seq)
        return cls(**values)

    def with_overrides(self, overrides: dict[str, Any]) -> ExperimentConfig:
        """A copy with `overrides` applied (callers clamp them first with `WorkshopBounds`).

        A legacy `max_steps` (a budget pinned before token budgets) becomes the same number of steps at the
        resulting batch and length.
        """
        values = {k: v for k, v in overrides.items() if k != "max_steps"}
        config = dataclasses.replace(self, **values)
        if "max_steps" in overrides and "token_budget" not in overrides:
            config = dataclasses.replace(config, token_budget=int(overrides["max_steps"]) * config.tokens_per_step)
        return config


@dataclass(frozen=True)
class Bound:
    """The allowed closed range of one numeric override."""

    low: float
    high: float
    integer: bool = True


@dataclass(frozen=True)
class ClampReport:
    """What `WorkshopBounds.clamp` did: the values kept, those changed, and keys it ignored."""

    values: dict[str, Any]
    clamped: dict[str, dict[str, Any]]
    ignored: list[str]
    errors: dict[str, str]


def _default_bounds() -> dict[str, Bound]:
    return {
        "n_layer": Bound(1, 8),
        "n_head": Bound(1, 8),
        "n_embd": Bound(32, 384),
        "seq_len": Bound(32, 1024),
        "batch_size": Bound(1, 32),
        "learning_rate": Bound(1e-5, 3e-2, integer=False),
        "weight_decay": Bound(0.0, 0.5, integer=False),
        "dropout": Bound(0.0, 0.5, integer=False),
    }


@dataclass(frozen=True)
class WorkshopBounds:
    """The workshop's limits on config overrides: max layers, width, heads, batch, steps and more."""

    limits: dict[str, Bound] = field(default_factory=_default_bounds)

    @property
    def max_layers(self) -> int:
        return int(self.limits["n_layer"].high)

    @property
    def max_width(self) -> int:
        return int(self.limits["n_embd"].high)

    @property
    def max_heads(self) -> int:
        return int(self.limits["n_head"].high)

    @property
    def max_batch(self) -> int:
        return int(self.limits["batch_size"].high)

    def covering(self, config: ExperimentConfig) -> WorkshopBounds:
        """These bounds, each widened just enough to hold `config`'s value: a key's base config (a preset's, say
        karpathy's 2048-token sequences) is always inside the bounds its edits are clamped to."""
        values = config.to_dict()
        limits = {
            key: dataclasses.replace(b, low=min(b.low, values[key]), high=max(b.high, values[key]))
            if key in values
            else b
            for key, b in self.limits.items()
        }
        return WorkshopBounds(limits)

    def clamp(self, overrides: Any) -> ClampReport:
        """Clamp each known override into range; report what changed, what was unknown, what was bad."""
        if not isinstance(overrides, dict):
            return ClampReport({}, {}, [], {"overrides": f"must be a dict, got {type(overrides).__name__}"})
        values: dict[str, Any] = {}
        clamped: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        ignored = sorted(str(k) for k in overrides if k not in self.limits and k not in RUN_OWNED)
        for key, raw in overrides.items():
            if key in RUN_OWNED:
                errors[key] = (
                    "belongs to the run, not to an edit: every experiment is compared at the same token budget, "
                    "time cap, eval tokens, vocabulary and threads, and seeds are chosen by the replicates "
                    "(more steps always help, and a seed change is not an idea)"
                )
                continue
            bound = self.limits.get(key)
            if bound is None:
                continue
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
                errors[key] = f"must be a finite number, got {raw!r}"
                continue
            value = min(max(raw, bound.low), bound.high)
            value = int(round(value)) if bound.integer else float(value)
            if value != raw:
                clamped[key] = {"requested": raw, "used": value, "range": [bound.low, bound.high]}
            values[key] = value
        return ClampReport(values, clamped, ignored, errors)

    def describe(self) -> dict[str, list[float]]:
        """The ranges as `{key: [low, high]}`, for the directive and tool docs."""
        return {k: [b.low, b.high] for k, b in self.limits.items()}


@dataclass
class TrainSummary:
    """What `train.run_training` reports about itself (informational, never a metric)."""

    steps: int
    train_seconds: float
    final_loss: float
    tokens_seen: int
    device: str


def trusted_bpb(outcome: Any, val_bpb: Any) -> float | None:
    """The one rule for a score that counts: the val_bpb of a successful run, a finite number; else None."""
    if outcome != "success" or isinstance(val_bpb, bool) or not isinstance(val_bpb, (int, float)):
        return None
    return float(val_bpb) if math.isfinite(val_bpb) else None


@dataclass
class ExperimentResult:
    """The trusted outcome of one experiment, as the harness and sandbox measured it."""

    outcome: str
    val_bpb: float | None = None
    seed: int = 0
    steps: int = 0
    planned_steps: int = 0
    tokens: int = 0
    train_cpu_s: float = 0.0
    """CPU seconds of phase 1's whole process tree, measured outside the sandbox (exact under bubblewrap)."""
    train_seconds: float = 0.0
    """Wall seconds of phase 1's job, measured outside the sandbox."""
    eval_seconds: float = 0.0
    wall_seconds: float = 0.0
    peak_memory_mb: float = 0.0
    peak_virtual_mb: float = 0.0
    device: str = "cpu"
    n_params: int = 0
    """Weights the exported graph reads, counted by the trusted scorer (tied weights once)."""
    flops_per_token: float = 0.0
    """Forward cost per token of the exported graph, counted by the trusted scorer from its real shapes
    (matmul FLOPs plus one per element of every other op): what the compute rule predicts training from."""
    tokens_handed: int = 0
    """Training tokens the trusted side handed phase 1 (its batches): the run's budget, whatever it used."""
    message: str = ""
    stderr_tail: str = ""
    resources: dict[str, Any] = field(default_factory=dict)
    oom_retries: int = 0
    sizes_tried: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: str = ""
    """Where the trusted side kept the run's exported graph (weights and forward pass, scored again by the
    held-out audit); empty if not kept."""
    curve: list[list[float]] = field(default_factory=list)
    """The run's learning curve as [fraction of its token budget, training loss] points (reported by the run,
    so untrusted: used only to prune runs and to draw curves, never as a metric)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class DatasetProfile:
    """What the agent may know of the bundle: its source, the training and validation sizes and the tokenizer's shape.

    The held-out documents are chosen per key from a secret seed and described by size only: nothing here names a
    held-out document, and nothing describes the test split at all.
    """

    dataset: str
    num_shards: int
    vocab_size: int
    train_tokens: int
    val_tokens: int
    train_documents: int
    val_documents: int
    bytes_per_token: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class AutoresearchOutput:
    """What a research run returns: the directive it started from, the data, the best, the board and totals."""

    memory_key: str
    model: str
    directive: str
    profile: DatasetProfile
    best: dict[str, Any]
    leaderboard: list[dict[str, Any]]
    summary: str
    totals: dict[str, Any]
    best_train_py: str = ""
    report_path: str = ""
    error: str = ""
    audit: dict[str, Any] = field(default_factory=dict)
    """The held-out test audit of the final pick and the baseline (see `session.audit.audit_summary`)."""
    results_tsv: str = ""
    """The key's `results.tsv` (karpathy's columns, then ours), for a caller that is not where the run ran."""
    saved: list[str] = field(default_factory=list)
    """The files the run wrote in the key's results dir (a local run; none on a cluster)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        """A few lines (what `flyte run` prints on success): the key, the best, the verdict, the files, the resume."""
        best = self.best or {}
        score = best.get("val_bpb")
        lines = [
            f"memory key: {self.memory_key}",
            f"best: {best.get('title')} (val_bpb {score:.4f})" if isinstance(score, float) else "best: none yet",
            self.summary.split("\n")[0][:400],
            *(f"saved: {path}" for path in self.saved),
            *([f"error: {self.error}"] if self.error else []),
            f"resume with: --memory-key {self.memory_key} (flyte run: --memory_key {self.memory_key})",
        ]
        return "\n".join(lines)
