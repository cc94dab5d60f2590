"""A realistic report snapshot for the UI tests: real ledger records (one with a hostile title) through the real
`build_snapshot`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoresearch.ledger.records import ExperimentRecord, ExperimentSpec, SeedRun
from autoresearch.ledger.source import slugify
from autoresearch.ledger.verdicts import GateRule
from autoresearch.ledger.views import judgement, leaderboard
from autoresearch.report.snapshot import StoreView, build_snapshot
from autoresearch_types import ExperimentResult

ROOT = Path(__file__).resolve().parent.parent
BASELINE = (ROOT / "train.py").read_text()
WARMUP = BASELINE.replace("return config.learning_rate\n", "return config.learning_rate * min(1.0, (step + 1) / 50)\n")
RELU2 = WARMUP.replace("F.gelu(self.fc(x))", "F.relu(self.fc(x)).square()")
WIDE = WARMUP.replace("4 * config.n_embd", "8 * config.n_embd")

HOSTILE = "<script>document.title='pwned';alert(1)</script><img src=x onerror=\"document.title='pwned'\">"
"""A title that would run script if any renderer forgot to escape it."""

# (title, parent, source, overrides, result fields or None, change summary, val_bpb of its other seeds)
PLAN: list[tuple[str, str | None, str, dict[str, Any], dict[str, Any] | None, str, list[float]]] = [
    (
        "baseline",
        None,
        BASELINE,
        {},
        {"outcome": "success", "val_bpb": 1.95},
        "the repository's train.py",
        [1.94, 1.96],
    ),
    (
        "lr-warmup",
        "baseline",
        WARMUP,
        {"learning_rate": 0.003},
        {"outcome": "success", "val_bpb": 1.90},
        "warmup",
        [1.88, 1.885],
    ),
    (HOSTILE, "baseline", BASELINE, {"dropout": 0.1}, {"outcome": "success", "val_bpb": 1.93}, HOSTILE, []),
    ("wide-mlp", "lr-warmup", WIDE, {}, {"outcome": "oom", "val_bpb": None, "oom_retries": 2}, "8x MLP", []),
    ("relu-squared", "lr-warmup", RELU2, {}, {"outcome": "success", "val_bpb": 1.80}, "relu^2 MLP", [1.79, 1.795]),
    (
        "broken",
        "relu-squared",
        RELU2 + "\nraise SystemExit(3)\n",
        {},
        {"outcome": "crash", "val_bpb": None},
        "crash",
        [],
    ),
    ("pending", "relu-squared", RELU2, {"n_layer": 6}, None, "deeper", []),
]
N_SUCCESS = 4
N_FAILED = 2
N_CONFIRMED = 2
RULE = GateRule(replicates=3)


def _result(fields: dict[str, Any], index: int) -> ExperimentResult:
    """A full ExperimentResult with plausible measurements around the given outcome fields."""
    return ExperimentResult(
        steps=300,
        train_seconds=25.0 + index,
        eval_seconds=3.0,
        wall_seconds=31.0 + index,
        peak_memory_mb=900.0 + 10 * index,
        n_params=3_400_000,
        message="" if fields["outcome"] == "success" else f"{fields['outcome']}: {HOSTILE}",
        resources={"cpu": 1, "memory_mb": 2048 * (1 + fields.get("oom_retries", 0))},
        **fields,
    )


def records() -> list[ExperimentRecord]:
    """The plan as ledger records, runs arriving in plan order (each experiment's seeds together)."""
    out = []
    seq = 0
    for i, (title, parent, source, overrides, fields, change, others) in enumerate(PLAN):
        spec = ExperimentSpec(
            title=title,
            slug=slugify(title) or f"exp-{i}",
            parent=parent,
            change_summary=change,
            hypothesis=f"{change} should lower val_bpb {HOSTILE if i == 2 else ''}",
            expected_effect="-0.03 val_bpb",
            overrides=overrides,
            batch_id="b000" if i < 3 else "b001",
            created_at=f"2025-01-01T00:0{i}:00Z",
        )
        rec = ExperimentRecord(spec, source)
        if fields:
            role = "replicate" if title == "baseline" else "screen"
            seq += 1
            rec.runs.append(SeedRun(0, seq, role, _result(fields, i)))
        for seed, bpb in enumerate(others, start=1):
            seq += 1
            run = _result({"outcome": "success", "val_bpb": bpb, "seed": seed}, i)
            rec.runs.append(SeedRun(seed, seq, "replicate" if title == "baseline" else "confirm", run))
        out.append(rec)
    return out


def snapshot() -> dict[str, Any]:
    """The full snapshot the session hands to `ui.render_report`, built by the session's own `build_snapshot`."""
    recs = records()
    verdicts = judgement(recs, RULE)
    board = leaderboard(recs, verdicts)
    view = StoreView(recs, verdicts, board, RULE.describe(), BATCH_PLANS, AUDIT_TAIL)
    return build_snapshot(view, RUN, ACTIVITY, USAGE)


RUN: dict[str, Any] = {
    "memory_key": "ui-test-key",
    "model": "builtin",
    "model_reason": f"no API key {HOSTILE}",
    "dataset": "shakespeare",
    "status": "running",
    "error": "",
    "n_experiments": 8,
    "max_runs": 19,
    "batch_size": 4,
    "concurrency": 2,
    "started_at": "2025-01-01T00:00:00Z",
}
BATCH_PLANS: list[dict[str, Any]] = [
    {
        "batch_id": "b000",
        "titles": [row[0] for row in PLAN[:3]],
        "rationale": f"config sweep {HOSTILE}",
        "created_at": "2025-01-01T00:00:00Z",
        "hypotheses": {HOSTILE: {"hypothesis": HOSTILE, "expected_effect": "none"}},
    },
    {
        "batch_id": "b001",
        "titles": [row[0] for row in PLAN[3:]],
        "rationale": "fork the winner",
        "created_at": "2025-01-01T00:03:00Z",
    },
]
AUDIT_TAIL: list[dict[str, Any]] = [
    {
        "ts": "2025-01-01T00:00:01Z",
        "actor": "driver",
        "op": "write",
        "path": "experiments/x/spec.json",
        "reason": HOSTILE,
        "sha": "abc123",
    },
]
ACTIVITY: list[dict[str, Any]] = [
    {"t": 0.5, "kind": "turn", "name": "turn 1", "detail": "", "duration_s": 2.0, "error": ""},
    {
        "t": 1.0,
        "kind": "code",
        "name": "plan",
        "detail": f"edit_train_code_batch([{{'title': {HOSTILE!r}}}])",
        "duration_s": None,
        "error": "",
    },
    {
        "t": 2.0,
        "kind": "tool",
        "name": "run_experiment_batch",
        "detail": "titles=[...]",
        "duration_s": 95.5,
        "error": "",
    },
    {
        "t": 98.0,
        "kind": "error",
        "name": "edit_train_code_batch",
        "detail": "",
        "duration_s": 0.1,
        "error": f"duplicate title {HOSTILE}",
    },
]
USAGE = {"calls": 3, "prompt_tokens": 12000, "completion_tokens": 800, "cost_usd": 0.0123, "retries": 1}
