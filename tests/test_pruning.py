"""Learning-curve pruning: the pure rule on recorded curves, then a clearly bad edit stopped in the real sandbox."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

import prepare
from autoresearch.lab import pruning
from autoresearch.lab.pruning import PruneRule
from autoresearch.sandbox import curve as curves
from autoresearch.sandbox import experiment as sandbox
from autoresearch_types import ExperimentConfig

BASELINE = (Path(__file__).resolve().parent.parent / "train.py").read_text()


def curve(start: float, end: float, n: int = 20) -> curves.Curve:
    """A straight learning curve from `start` to `end` over the budget."""
    return [((i + 1) / n, start + (end - start) * (i + 1) / n) for i in range(n)]


BASE = [curve(7.0, 5.0), curve(7.05, 5.02), curve(6.95, 4.98)]


def test_parse_curve_keeps_only_well_formed_points_in_range() -> None:
    lines = [
        json.dumps({"step": 10, "loss": 6.5}),
        "not json",
        json.dumps({"step": 20, "loss": float("nan")}),
        json.dumps({"step": 999, "loss": 1.0}),
        json.dumps({"step": True, "loss": 1.0}),
        json.dumps({"step": 30, "loss": "low"}),
        json.dumps({"step": 40, "loss": 6.1}),
        json.dumps({"step": 10, "loss": 6.4}),  # a later report for the same step wins
    ]
    assert curves.parse_curve("\n".join(lines), planned_steps=100) == [(0.1, 6.4), (0.4, 6.1)]
    many = "\n".join(json.dumps({"step": s, "loss": 1.0}) for s in range(1, 5001))
    assert len(curves.parse_curve(many, 5000)) == curves.MAX_POINTS


@pytest.mark.parametrize(
    "rule, references, expected_rungs",
    [
        (PruneRule(mode="off"), BASE, []),
        (PruneRule(mode="median"), BASE[:2], []),  # too few finished curves to call anything clearly worse
        (PruneRule(mode="median"), BASE, [0.25, 0.5]),
        (PruneRule(mode="parent"), BASE[:1], [0.25, 0.5]),
    ],
)
def test_thresholds_need_enough_evidence(rule: PruneRule, references: list, expected_rungs: list) -> None:
    assert [rung for rung, _ in pruning.thresholds(rule, references, BASE)] == expected_rungs


def test_a_run_is_stopped_only_when_clearly_worse_and_only_after_the_rung() -> None:
    limits = pruning.thresholds(PruneRule(mode="median"), BASE, BASE)
    (rung, limit), _ = limits
    assert rung == 0.25 and 6.5 < limit < 6.8, "the median plus three times the seed noise, at a quarter of the budget"
    losing = curve(7.5, 7.0)
    assert curves.verdict(losing[:3], limits) is None, "not at the rung yet"
    assert "pruned at 25% of its budget" in curves.verdict(losing[:6], limits)
    assert curves.verdict(curve(7.0, 4.9)[:12], limits) is None, "as good as the others: never pruned"
    noisy = curve(7.08, 5.1)
    assert curves.verdict(noisy, limits) is None, "inside the noise margin"


TINY = ExperimentConfig(
    n_layer=1,
    n_head=2,
    n_embd=32,
    seq_len=32,
    batch_size=4,
    token_budget=200 * 4 * 32,
    eval_tokens=2048,
    vocab_size=512,
)


@pytest.mark.timeout(300)
def test_a_clearly_bad_edit_is_pruned_in_the_real_sandbox_and_a_good_one_is_not(tiny_bundle: Path) -> None:
    def spec(config: ExperimentConfig, limits: tuple = ()) -> sandbox.SandboxSpec:
        where = (str(tiny_bundle / "data"), str(tiny_bundle / "tokenizer"))
        digests = prepare.bundle_digests(tiny_bundle)
        return sandbox.SandboxSpec(BASELINE, config, *where, cpu=1, deadline_s=120, prune=limits, digests=digests)

    async def main() -> tuple:
        seeds = [dataclasses.replace(TINY, seed=s) for s in range(3)]
        base = await asyncio.gather(*(sandbox.run_sandboxed(spec(c)) for c in seeds))
        curves = [[tuple(p) for p in r.curve] for r in base]
        limits = tuple(pruning.thresholds(PruneRule(mode="median"), curves, curves))
        # The lower bound of the learning rate: it barely learns. Ten times the steps, so the run is still going
        # when the watcher reads its curve past the rung on a busy machine (curves are compared by budget share).
        bad = dataclasses.replace(TINY, learning_rate=1e-5, seed=7, token_budget=10 * TINY.token_budget)
        good = dataclasses.replace(TINY, seed=8)
        return (
            base,
            limits,
            await asyncio.gather(sandbox.run_sandboxed(spec(bad, limits)), sandbox.run_sandboxed(spec(good, limits))),
        )

    base, limits, (bad, good) = asyncio.run(main())
    assert all(r.outcome == "success" and len(r.curve) >= 10 for r in base), [r.message for r in base]
    assert limits, "three finished curves give a threshold"
    assert bad.outcome == "pruned" and "pruned at 25% of its budget" in bad.message, (bad.outcome, bad.message)
    assert bad.steps == 0 and bad.val_bpb is None and bad.curve, "stopped early; its curve is kept"
    assert good.outcome == "success" and good.steps == TINY.max_steps, (good.outcome, good.message)
    with pytest.raises(sandbox.ExperimentPruned):
        sandbox.raise_for_outcome(bad)
