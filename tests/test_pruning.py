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
from autoresearch.ledger.verdicts import Verdict
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
        (PruneRule(mode="median"), BASE, [0.25, 0.5, 0.75]),
        (PruneRule(mode="parent"), BASE[:1], [0.25, 0.5, 0.75]),
        (PruneRule(mode="incumbent"), BASE[:1], [0.25, 0.5, 0.75]),
    ],
)
def test_thresholds_need_enough_evidence(rule: PruneRule, references: list, expected_rungs: list) -> None:
    assert [rung for rung, _ in pruning.thresholds(rule, references, BASE)] == expected_rungs


def test_the_incumbent_mode_stops_a_run_behind_the_best_by_half_a_noise_band() -> None:
    limits = pruning.thresholds(PruneRule(mode="incumbent"), [curve(6.8, 4.6)], BASE)
    (rung, limit), *_ = limits
    noise = pruning.noise_at(BASE, 0.25, curves.WINDOW)
    center = curves.loss_at(curve(6.8, 4.6), 0.25, curves.WINDOW)
    assert rung == 0.25 and limit == pytest.approx(center + max(0.5 * noise, 0.01 * center))
    assert curves.verdict(curve(7.0, 5.0)[:6], limits), "as good as the baseline, behind the incumbent: stopped"
    assert curves.verdict(curve(6.8, 4.6)[:12], limits) is None, "level with the incumbent: kept"


def test_a_run_is_stopped_only_when_clearly_worse_and_only_after_the_rung() -> None:
    limits = pruning.thresholds(PruneRule(mode="median"), BASE, BASE)
    (rung, limit), *_ = limits
    assert rung == 0.25 and 6.5 < limit < 6.8, "the median plus three times the seed noise, at a quarter of the budget"
    losing = curve(7.5, 7.0)
    assert curves.verdict(losing[:3], limits) is None, "not at the rung yet"
    assert "pruned at 25% of its budget" in curves.verdict(losing[:6], limits)
    assert curves.verdict(curve(7.0, 4.9)[:12], limits) is None, "as good as the others: never pruned"
    noisy = curve(7.08, 5.06)
    assert curves.verdict(noisy, limits) is None, "inside the noise margin"


def record(title: str, source: str, runs: list[tuple[float, curves.Curve]], parent: str | None = None):
    """A ledger record with successful runs of (trusted val_bpb, reported curve)."""
    from autoresearch.ledger.records import ExperimentRecord, ExperimentSpec, SeedRun
    from autoresearch_types import ExperimentResult

    rec = ExperimentRecord(ExperimentSpec(title=title, slug=title.lower(), parent=parent), source)
    for i, (bpb, points) in enumerate(runs):
        result = ExperimentResult("success", val_bpb=bpb, seed=i, curve=[list(p) for p in points])
        rec.runs.append(SeedRun(i, len(runs) * 10 + i, "screen" if i == 0 else "confirm", result))
    return rec


EDITED = BASELINE.replace("torch.manual_seed(config.seed)", "torch.manual_seed(config.seed + 1)")
BASE_RUNS = [(2.50, BASE[0]), (2.51, BASE[1]), (2.49, BASE[2])]
"""The baseline's replicates: final training loss 5.0 against val_bpb 2.5 (the ratio the band is built around)."""


def ledger_records(liar: bool) -> list:
    """A key's records: the baseline, a config-only edit that beat it (trusted code, honest curve), a code edit that
    is the incumbent, and (with `liar`) that code edit's curve claiming a far lower loss than it had."""
    honest = curve(6.9, 4.9)
    claimed = curve(3.0, 4.8) if liar else curve(6.9, 4.8)  # the lie: 3.0 at the start, an honest-looking end
    return [
        record("baseline", BASELINE, BASE_RUNS),
        record("LR 0.0015", BASELINE, [(2.45, honest), (2.46, honest), (2.44, honest)]),
        record("Recipe", EDITED, [(2.40, claimed), (2.41, claimed), (2.40, claimed)], parent="LR 0.0015"),
    ]


def test_only_the_repositorys_own_code_with_a_consistent_curve_sets_thresholds() -> None:
    trusted = pruning.trusted_curves(ledger_records(liar=True))
    assert EDITED != BASELINE
    assert set(trusted) == {"baseline", "LR 0.0015"}, "an edited train.py's curve is never a reference"
    commented = record("Comment", BASELINE.replace("def build_model(", "# a comment\ndef build_model("), BASE_RUNS)
    assert "Comment" in pruning.trusted_curves([*ledger_records(False), commented]), "by content, not by bytes"
    inconsistent = record("LR 6e-3", BASELINE, [(2.45, curve(6.0, 3.0))])  # ends at 3.0 where its score says ~4.9
    assert "LR 6e-3" not in pruning.trusted_curves([*ledger_records(False), inconsistent])


@pytest.mark.parametrize("mode", ["incumbent", "median", "parent"])
def test_a_lying_curve_changes_no_other_runs_thresholds(mode: str) -> None:
    rule = PruneRule(mode=mode)
    for parent in ("Recipe", "LR 0.0015", None):
        told = pruning.prune_limits(ledger_records(liar=True), parent, rule, incumbent="Recipe")
        honest = pruning.prune_limits(ledger_records(liar=False), parent, rule, incumbent="Recipe")
        assert told == honest and told, (mode, parent, told, honest)


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


LIAR = BASELINE.replace("log_progress(step, loss_value)", "log_progress(step, 0.01)")
"""A train.py that trains honestly but reports a training loss of 0.01 at every point of its curve."""


@pytest.mark.timeout(600)
def test_a_lying_curve_in_the_real_sandbox_changes_no_other_runs_fate(tiny_bundle: Path) -> None:
    """The liar's run really trains and scores in the sandbox; as the confirmed incumbent of a key its curve would
    prune every honest run if it were a reference. It is not: the thresholds an honest run gets, and so its fate, are
    the same with the liar in the key as without it."""
    from autoresearch.ledger.records import ExperimentRecord, ExperimentSpec, SeedRun

    assert LIAR != BASELINE

    def spec(source: str, config: ExperimentConfig, limits: tuple = ()) -> sandbox.SandboxSpec:
        where = (str(tiny_bundle / "data"), str(tiny_bundle / "tokenizer"))
        digests = prepare.bundle_digests(tiny_bundle)
        return sandbox.SandboxSpec(source, config, *where, cpu=1, deadline_s=120, prune=limits, digests=digests)

    def rec(title: str, source: str, results: list) -> ExperimentRecord:
        out = ExperimentRecord(ExperimentSpec(title=title, slug=title.lower()), source)
        out.runs = [SeedRun(r.seed, i + 1, "screen", r) for i, r in enumerate(results)]
        return out

    async def main() -> tuple:
        seeds = [dataclasses.replace(TINY, seed=s) for s in range(3)]
        base = await asyncio.gather(*(sandbox.run_sandboxed(spec(BASELINE, c)) for c in seeds))
        lies = await asyncio.gather(
            *(sandbox.run_sandboxed(spec(LIAR, dataclasses.replace(c, seed=c.seed + 20))) for c in seeds)
        )
        return base, lies

    base, lies = asyncio.run(main())
    assert all(r.outcome == "success" for r in [*base, *lies]), [r.message for r in [*base, *lies]]
    assert all(loss == 0.01 for r in lies for _, loss in r.curve), "the liar really reported its lie"
    honest_key = [rec("baseline", BASELINE, base)]
    lying_key = [*honest_key, rec("Liar", LIAR, lies)]
    rule = PruneRule(mode="incumbent")
    with_liar = pruning.prune_limits(lying_key, "Liar", rule, incumbent="Liar")
    without = pruning.prune_limits(honest_key, None, rule, incumbent="baseline")
    assert with_liar == without and with_liar, (with_liar, without)
    lie_as_reference = pruning.thresholds(
        rule, [[tuple(p) for p in lies[0].curve]], [[tuple(p) for p in r.curve] for r in base]
    )
    for run in base:  # every honest run's fate: the same with the liar in the key; pruned had the lie been a reference
        points = [tuple(p) for p in run.curve]
        assert curves.verdict(points, with_liar) == curves.verdict(points, without)
        assert curves.verdict(points, lie_as_reference)


@pytest.mark.parametrize(
    "mode, chance, expected",
    [
        ("off", None, 4),  # pruning off: every owed seed at once, as always
        ("off", 0.01, 4),
        ("incumbent", None, 1),  # no fresh seed yet: the first runs alone
        ("incumbent", 0.5, 1),
        ("incumbent", 0.899, 1),
        ("incumbent", 0.9, 4),  # likely to pass: the rest start together
        ("median", 0.99, 4),
    ],
)
def test_fresh_seeds_go_one_at_a_time_until_the_chance_to_pass_is_high(mode: str, chance: float, expected: int) -> None:
    verdict = Verdict(title="C", label="unconfirmed", confirm_chance=chance)
    assert pruning.seeds_at_once(verdict, 4, PruneRule(mode=mode)) == expected
    assert pruning.seeds_at_once(None, 3, PruneRule(mode=mode)) == (3 if mode == "off" else 1)
    assert pruning.seeds_at_once(verdict, 0, PruneRule(mode=mode)) == 0, "nothing owed, nothing started"


@pytest.mark.parametrize(
    "mode, confirm_chance, screen_chance, owed, expected",
    [
        ("incumbent", 0.05, None, True, True),  # a fresh seed left it little chance
        ("incumbent", 0.15, 0.01, True, False),  # fresh seeds speak once they are in: the screen no longer does
        ("incumbent", None, 0.05, True, True),  # before any fresh seed, its screen leaves it little chance
        ("incumbent", None, 0.5, True, False),
        ("incumbent", None, None, True, False),  # nothing to predict from
        ("incumbent", None, 0.01, False, False),  # no seeds owed: nothing to stop
        ("off", 0.01, 0.01, True, False),  # pruning off: never
    ],
)
def test_a_confirmation_is_futile_by_its_fresh_seeds_or_before_any_by_its_screen(
    mode: str, confirm_chance: float | None, screen_chance: float | None, owed: bool, expected: bool
) -> None:
    verdict = Verdict(title="C", label="within_noise", confirm_chance=confirm_chance, screen_chance=screen_chance)
    assert pruning.futile(verdict, owed, PruneRule(mode=mode)) is expected
