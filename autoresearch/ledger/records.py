"""The ledger's records: what one experiment, one seed run and one leaderboard line are, and the key's settings.

Plain dataclasses and pure functions (no Flyte, no store). `ledger.py` writes and reads them; every view in
`views.py` is computed from them. `STEPS` is the one home of the step types' wording: the tools' documentation,
the subagent's prompt and the planner all quote it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from autoresearch.ledger.arrivals import BASELINE
from autoresearch.ledger.verdicts import GateRule
from autoresearch_types import RUN_KEYS, ExperimentConfig, ExperimentResult, trusted_bpb

BASELINE_TITLE = BASELINE
"""The experiment every ledger starts with: the repository's `train.py` under the base config."""


STEPS = {
    "small": "a nudge to one knob (one config value, or a one-line tweak)",
    "medium": "one component changed (the schedule, the init, a norm, the activation, the model's size)",
    "radical": "the architecture or the optimiser changed",
}
"""The step types every saved edit carries; the agent ends research with `stop_research(reason)` instead."""


def steps_text() -> str:
    """The step types in one line, for the tools' documentation and the prompts (the one wording of `STEPS`)."""
    return "; ".join(f"{name} = {meaning}" for name, meaning in STEPS.items())


CAPACITY_KEYS = frozenset({"n_layer", "n_embd", "n_head", "seq_len"})
"""Config keys that change the model's size: moving them is at least a medium step."""


def infer_step(changed_keys: set[str], code_changed: bool) -> str:
    """The step type of an edit that did not say: a one-knob config nudge is small, anything more is medium
    (radical is never inferred: only the author knows the architecture or optimiser was changed)."""
    if code_changed or len(changed_keys) > 1 or changed_keys & CAPACITY_KEYS:
        return "medium"
    return "small"


BUDGET_KEYS = tuple(k for k in RUN_KEYS if k != "seed")
"""The base-config fields a spec pins at creation, so a resumed run with another budget reproduces it."""


RANKED_LABELS = ("baseline", "confirmed", "accepted", "unconfirmed", "within_noise", "regression", "unjudged")
"""Verdict labels whose experiments are ranked (they have a comparable val_bpb); see `verdicts.LABELS`."""


@dataclass
class ExperimentSpec:
    """One planned experiment as `experiments/<slug>/spec.json` stores it (its code lives beside it).

    `overrides` are already clamped and include those inherited from `parent`; `budget` pins the
    base budget the experiment was planned (and signed) under, so `effective_config(base)` gives the
    same config even if a later run of the ledger uses another budget.
    """

    title: str
    slug: str
    parent: str | None = None
    change_summary: str = ""
    hypothesis: str = ""
    expected_effect: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    batch_id: str = ""
    created_at: str = ""
    signature: str = ""
    budget: dict[str, Any] = field(default_factory=dict)
    step: str = ""
    """`small`, `medium` or `radical` (see `STEPS`); "" for the baseline and older records."""

    def to_dict(self) -> dict[str, Any]:
        """A plain dict, for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentSpec:
        """Build from a dict, ignoring keys this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def effective_config(self, base: ExperimentConfig) -> ExperimentConfig:
        """The config this experiment trains with: `base`, then the pinned budget, then the overrides."""
        return base.with_overrides({**self.budget, **self.overrides})


@dataclass
class SeedRun:
    """One finished run of an experiment on one seed, as `experiments/<slug>/runs/seed-<n>.json` stores it.

    `seq` is its arrival number across the whole ledger; `role` is `screen` (its first run), `replicate`
    (a baseline seed) or `confirm` (a fresh seed re-run of a candidate).
    """

    seed: int
    seq: int
    role: str
    result: ExperimentResult
    recorded_at: str = ""

    @property
    def val_bpb(self) -> float | None:
        """The trusted metric of a successful run with a finite value, else None."""
        return trusted_bpb(self.result.outcome, self.result.val_bpb)


def seed_run(payload: dict[str, Any]) -> SeedRun:
    """A `SeedRun` from its stored JSON."""
    result = ExperimentResult.from_dict(payload["result"])
    seed = int(payload.get("seed", result.seed))
    return SeedRun(
        seed, int(payload["seq"]), str(payload.get("role", "screen")), result, payload.get("recorded_at", "")
    )


@dataclass
class ExperimentRecord:
    """Everything the ledger holds about one experiment: spec, effective source, and its runs (oldest first)."""

    spec: ExperimentSpec
    train_py: str
    runs: list[SeedRun] = field(default_factory=list)
    legacy: ExperimentResult | None = None
    """A result from before seeds and token budgets were recorded: shown, never compared."""

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def screen(self) -> SeedRun | None:
        """Its first run (the one the gate screens)."""
        return self.runs[0] if self.runs else None

    @property
    def result(self) -> ExperimentResult | None:
        """The first run's result (None before any run finished)."""
        return self.runs[0].result if self.runs else None

    @property
    def seq(self) -> int | None:
        """When its first run arrived (its place in the run order)."""
        return self.runs[0].seq if self.runs else None

    @property
    def recorded_at(self) -> str:
        return self.runs[0].recorded_at if self.runs else ""

    @property
    def val_bpb(self) -> float | None:
        """The first run's trusted val_bpb (None unless it succeeded)."""
        return self.runs[0].val_bpb if self.runs else None

    @property
    def values(self) -> list[float]:
        """The val_bpb of every successful seed."""
        return [r.val_bpb for r in self.runs if r.val_bpb is not None]

    def run_for(self, seed: int) -> SeedRun | None:
        """Its run on `seed`, if one finished."""
        return next((r for r in self.runs if r.seed == seed), None)


@dataclass
class LeaderboardRow:
    """One leaderboard line: rank by mean val_bpb over seeds (None if not ranked), its spread, and its verdict."""

    rank: int | None
    title: str
    parent: str | None
    val_bpb: float | None
    """Mean over successful seeds (the first run's value for unranked experiments that were scored)."""
    se: float | None
    n_seeds: int
    delta_vs_best: float | None
    delta_vs_baseline: float | None
    label: str
    verdict: str
    gain: float | None
    """The gate's measured gain over the incumbent it was judged against (positive is better)."""
    incumbent: bool
    outcome: str | None
    seq: int | None
    change_summary: str
    overrides: dict[str, Any]
    step: str = ""
    decided_by: str = "rule"
    """Who settled the verdict: `rule` (the gate), `judge` (a borderline case) or `human`."""
    fresh_mean: float | None = None
    """The mean over its fresh (confirmation) seeds only: the unbiased estimate its reported gain uses."""
    fresh_se: float | None = None
    n_fresh: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def settings_record(base: ExperimentConfig, rule: GateRule, dataset: dict[str, Any], created_at: str) -> dict[str, Any]:
    """What `settings.json` stores: the base config (with its budget), the gate rule and the data."""
    return {
        "base_config": base.to_dict(),
        "gate": dataclasses.asdict(rule),
        "dataset": dataset,
        "created_at": created_at,
    }


def settle_settings(
    stored: dict[str, Any] | None,
    base: ExperimentConfig,
    rule: GateRule,
    dataset: dict[str, Any],
    explicit: set[str],
) -> tuple[ExperimentConfig, GateRule, dict[str, Any]]:
    """The key's settings: `stored` if the key has them, else the requested ones (a new key).

    A resumed key keeps its own budget, base config, data and gate rule, so every experiment in it is compared
    at the same budget. A setting the user gave explicitly (`explicit` names config fields, `replicates`,
    `dataset`, `num_shards`) that differs from the stored one raises ValueError naming both values.
    """
    if not stored:
        return base, rule, dataset
    kept = ExperimentConfig.from_dict(stored.get("base_config") or {})
    kept_rule = GateRule(**{k: v for k, v in (stored.get("gate") or {}).items() if k in GateRule.__dataclass_fields__})
    kept_data = dict(stored.get("dataset") or {})
    wanted = {**base.to_dict(), **dataclasses.asdict(rule), **dataset}
    have = {**kept.to_dict(), **dataclasses.asdict(kept_rule), **kept_data}
    clashes = [
        f"{k}: this key uses {have[k]!r}, you asked for {wanted[k]!r}"
        for k in sorted(explicit)
        if k in have and wanted.get(k) != have[k]
    ]
    if clashes:
        raise ValueError(
            "this memory key was created with other settings, and every experiment in a key is compared at the same "
            "budget: " + "; ".join(clashes) + ". Resume without those flags (the key's own settings apply), or start a "
            "new key."
        )
    return kept, kept_rule, kept_data


def budget_of(config: ExperimentConfig) -> dict[str, Any]:
    """The budget fields of a config (see `BUDGET_KEYS`)."""
    return {k: getattr(config, k) for k in BUDGET_KEYS}
