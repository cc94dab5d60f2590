"""The acceptance gate as pure functions: Student's t, pooled noise, screen, confirmation and the fold."""

from __future__ import annotations

import random

import pytest

from autoresearch.ledger import verdicts as v
from autoresearch.ledger.verdicts import Arrival, GateRule


@pytest.mark.parametrize(
    "alpha, df, expected",
    [(0.05, 1, 6.313752), (0.05, 2, 2.919986), (0.05, 10, 1.812461), (0.10, 2, 1.885618), (0.025, 5, 2.570582)],
)
def test_t_critical_matches_published_tables(alpha: float, df: int, expected: float) -> None:
    assert v.t_critical(alpha, df) == pytest.approx(expected, abs=1e-5)
    assert v.t_sf(expected, df) == pytest.approx(alpha, abs=1e-7)


def test_t_critical_approaches_the_normal_and_is_infinite_without_data() -> None:
    assert v.t_critical(0.05, 10_000) == pytest.approx(1.6449, abs=1e-3)
    assert v.t_critical(0.05, 0) == float("inf")


def test_pooled_sigma_weights_groups_by_their_degrees_of_freedom() -> None:
    sigma, df = v.pooled_sigma([[1.0, 2.0, 3.0], [4.0, 6.0], [9.0]])
    assert df == 3 and sigma == pytest.approx((4 / 3) ** 0.5)
    assert v.pooled_sigma([[1.0], []]) == (None, 0)
    assert v.pooled_sigma([[2.0, 2.0]])[0] == v.SIGMA_FLOOR, "identical seeds cannot make sigma zero"


RULE = GateRule()
BASE = [2.70, 2.66, 2.70]  # sd 0.0231, df 2


@pytest.mark.parametrize(
    "x, label",
    [
        (2.54, "unconfirmed"),  # far below: passes the screen, still needs fresh seeds
        (2.65, "within_noise"),  # lower, but inside the noise margin
        (2.69, "within_noise"),
        (2.75, "within_noise"),  # a little worse: not clearly a regression
        (2.95, "regression"),  # clearly worse
    ],
)
def test_screen_table(x: float, label: str) -> None:
    sigma, df = v.pooled_sigma([BASE])
    assert v.screen(x, BASE, sigma, df, RULE)[0] == label


@pytest.mark.parametrize(
    "fresh, label",
    [
        ([2.52, 2.55], "confirmed"),
        ([2.66, 2.68], "within_noise"),  # the lucky first seed did not hold up
        ([2.62, 2.63], "within_noise"),  # lower, not by enough at 2 degrees of freedom
        ([2.95, 2.90], "regression"),
    ],
)
def test_confirmation_table(fresh: list[float], label: str) -> None:
    sigma, df = v.pooled_sigma([BASE, fresh])
    assert v.confirm(fresh, BASE, sigma, df, RULE)[0] == label


def arrivals(*runs: tuple[str, int, float | None]) -> list[Arrival]:
    """Runs in arrival order as (title, seed, val_bpb); None is a crash."""
    return [Arrival(i, t, s, "success" if b is not None else "crash", b) for i, (t, s, b) in enumerate(runs, 1)]


BASELINE_RUNS = [("baseline", 0, 2.70), ("baseline", 1, 2.66), ("baseline", 2, 2.70)]


def test_a_gain_needs_its_reruns_before_it_counts() -> None:
    screened = v.judge(arrivals(*BASELINE_RUNS, ("A", 0, 2.50)), ["baseline", "A"], RULE)
    assert screened.verdicts["A"].label == "unconfirmed" and screened.incumbent == "baseline"
    assert screened.confirm_seeds == {"A": [1, 2]}, "the baseline's other seeds"
    half = v.judge(arrivals(*BASELINE_RUNS, ("A", 0, 2.50), ("A", 1, 2.52)), ["baseline", "A"], RULE)
    assert half.verdicts["A"].label == "unconfirmed" and half.confirm_seeds == {"A": [2]}
    done = v.judge(arrivals(*BASELINE_RUNS, ("A", 0, 2.50), ("A", 1, 2.52), ("A", 2, 2.55)), ["baseline", "A"], RULE)
    assert done.verdicts["A"].label == "confirmed" and done.incumbent == "A" and done.confirm_seeds == {}
    assert done.verdicts["A"].fresh_mean == pytest.approx(2.535) and done.verdicts["A"].n == 3
    assert done.verdicts["A"].gain == pytest.approx(2.6867 - 2.535, abs=1e-3)


def test_a_lucky_seed_that_does_not_hold_up_is_within_noise() -> None:
    runs = arrivals(*BASELINE_RUNS, ("Lucky", 0, 2.55), ("Lucky", 1, 2.69), ("Lucky", 2, 2.71))
    judged = v.judge(runs, ["baseline", "Lucky"], RULE)
    assert judged.verdicts["Lucky"].label == "within_noise" and judged.incumbent == "baseline"


def test_later_candidates_are_judged_against_the_new_incumbent() -> None:
    runs = [*BASELINE_RUNS, ("A", 0, 2.50), ("A", 1, 2.52), ("A", 2, 2.51), ("B", 0, 2.60)]
    judged = v.judge(arrivals(*runs), ["baseline", "A", "B"], RULE)
    assert judged.incumbent == "A" and judged.verdicts["B"].versus == "A"
    assert judged.verdicts["B"].label == "regression", "better than the baseline, clearly worse than A"


def test_failures_truncation_and_a_missing_noise_floor() -> None:
    runs = [Arrival(1, "baseline", 0, "success", 2.7), Arrival(2, "A", 0, "success", 2.0)]
    alone = v.judge(runs, ["baseline", "A"], RULE)
    assert alone.sigma is None and alone.verdicts["A"].label == "unjudged" and alone.incumbent == "baseline"
    runs = arrivals(*BASELINE_RUNS, ("Crash", 0, None))
    runs.append(Arrival(len(runs) + 1, "Capped", 0, "truncated", 1.0))
    judged = v.judge(runs, ["baseline", "Crash", "Capped", "Later"], RULE)
    labels = {t: judged.verdicts[t].label for t in ("Crash", "Capped", "Later")}
    assert labels == {"Crash": "failed", "Capped": "truncated", "Later": "not_run"}
    assert judged.incumbent == "baseline"


def test_every_confirmation_run_failing_is_not_a_gain() -> None:
    runs = [*BASELINE_RUNS, ("A", 0, 2.50), ("A", 1, None), ("A", 2, None)]
    judged = v.judge(arrivals(*runs), ["baseline", "A"], RULE)
    assert judged.verdicts["A"].label == "within_noise" and judged.incumbent == "baseline"


def test_the_fold_is_a_pure_function_of_the_runs() -> None:
    runs = arrivals(*BASELINE_RUNS, ("A", 0, 2.50), ("A", 1, 2.52), ("B", 0, 2.66), ("A", 2, 2.51))
    shuffled = runs[:]
    random.Random(0).shuffle(shuffled)
    one, two = v.judge(runs, ["baseline", "A", "B"], RULE), v.judge(shuffled, ["baseline", "A", "B"], RULE)
    assert one == two


def confirmed_share(effect: float, trials: int, seed: int, sd: float = 0.03) -> float:
    """The share of simulated candidates the gate confirms, each `effect` better than the baseline (3 seeds each)."""
    rng = random.Random(seed)
    confirmed = 0
    for _ in range(trials):
        base = [("baseline", s, rng.gauss(2.7, sd)) for s in range(3)]
        cand = [("C", s, rng.gauss(2.7 - effect, sd)) for s in range(3)]
        confirmed += v.judge(arrivals(*base, *cand), ["baseline", "C"], RULE).verdicts["C"].label == "confirmed"
    return confirmed / trials


def test_a_null_edit_is_a_false_discovery_at_about_the_stated_rate() -> None:
    """Thousands of pure-noise candidates: the share confirmed stays under alpha, and is not zero (a gate that
    never confirms anything would pass an upper bound alone)."""
    share = confirmed_share(0.0, 4000, seed=1)
    assert 0.1 * RULE.alpha < share < 1.5 * RULE.alpha, share


def test_a_real_gain_is_confirmed_most_of_the_time() -> None:
    """The other side: a change worth 6 sigma is confirmed at the power the gate's rule states (about 0.88)."""
    share = confirmed_share(6 * 0.03, 1000, seed=2)
    assert 0.75 < share < 0.98, share


def test_a_run_that_burns_far_more_cpu_than_its_work_predicts_is_over_budget() -> None:
    base = [Arrival(i + 1, "baseline", i, "success", 2.7, cpu_s=20.0 + i, work=1e9) for i in range(3)]
    runs = [
        Arrival(4, "Greedy", 0, "success", 2.2, cpu_s=150.0, work=1e9),  # 7x the baseline's rate
        Arrival(5, "Bigger", 0, "success", 2.6, cpu_s=60.0, work=2e9),  # twice the work, twice the CPU: fine
        Arrival(6, "Unmeasured", 0, "success", 2.6, cpu_s=0.0, work=1e9),  # nothing measured: never flagged
    ]
    flagged = v.over_budget(base + runs, RULE.over_budget_factor)
    assert set(flagged) == {4} and "150 CPU-s where its exported graph predicts 21" in flagged[4]
    judged = v.judge(base + runs, ["baseline", "Greedy", "Bigger", "Unmeasured"], RULE)
    assert judged.verdicts["Greedy"].label == "over_budget" and "not compared" in judged.verdicts["Greedy"].reason
    assert judged.verdicts["Bigger"].label != "over_budget" and judged.incumbent == "baseline"
    assert v.over_budget(runs, 4.0) == {}, "no baseline, no calibration, no flag"
