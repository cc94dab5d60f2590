"""The statistics the gate uses, as pure functions: Student's t, each side's own variance with a prior, Welch's
test with Satterthwaite's degrees of freedom, the screen-then-confirm design's joint error, its power and the
minimum detectable effect; and the seed noise pooled over configs (`Noise`), which every side's prior comes from.

Nothing here knows about experiments or runs: `verdicts.py` hands in numbers. Every probability of the two-stage
design (a one-seed screen, then fresh seeds) uses the normal approximation of the two test statistics, whose
correlation comes from the incumbent's mean that both share (see `design_rho`); the t distribution then turns each
level into a critical value at its own degrees of freedom.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass

NORMAL = statistics.NormalDist()

# ---------------------------------------------------------------- Student's t


def _nonzero(x: float, tiny: float = 1e-300) -> float:
    return x if abs(x) > tiny else tiny


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), for `_betainc`."""
    c, d = 1.0, 1.0 / _nonzero(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, 300):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        for num in (even, odd):
            d = 1.0 / _nonzero(1.0 + num * d)
            c = _nonzero(1.0 + num / c)
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


@functools.lru_cache(maxsize=4096)
def t_critical(alpha: float, df: float) -> float:
    """The one-sided critical value: P(T > t) = alpha (bisection on `t_sf`; cached, as every fold asks again)."""
    if df <= 0:
        return math.inf
    low, high = 0.0, 1e6
    for _ in range(80):
        mid = (low + high) / 2
        low, high = (mid, high) if t_sf(mid, df) > alpha else (low, mid)
    return (low + high) / 2


# ---------------------------------------------------------------- each side's variance, and Welch


def variance(values: list[float]) -> float:
    """The sample variance (n - 1), in floats: `statistics.variance` computes exactly and is far too slow for a
    fold that runs on every read of the ledger."""
    m = math.fsum(values) / len(values)
    return math.fsum((x - m) ** 2 for x in values) / (len(values) - 1)


@dataclass(frozen=True)
class Side:
    """One side of a comparison: its mean over n seeds, its variance estimate and that estimate's degrees of
    freedom (its own seeds' plus the prior's)."""

    mean: float
    var: float
    n: int
    df: float


def side(values: list[float], prior_var: float, prior_df: float) -> Side:
    """A config's mean and variance from its own seeds, shrunk toward the prior (the pooled variance over every
    config) with `prior_df` pseudo degrees of freedom: a config with few seeds leans on the prior, one with many
    seeds on its own spread, and the prior never pulls it below what its own seeds show (an unstable config is not
    made to look stable). With one seed the variance is the prior's alone."""
    own_df = len(values) - 1
    own = variance(values) if own_df > 0 else 0.0
    df = prior_df + own_df
    var = (prior_df * prior_var + own_df * own) / df if df > 0 else prior_var
    return Side(math.fsum(values) / len(values), max(var, own), len(values), df)


def welch(incumbent: Side, candidate: Side) -> tuple[float, float, float]:
    """Welch's t for "the candidate's mean is lower than the incumbent's" (positive is better), its standard error
    and Satterthwaite's degrees of freedom."""
    a, b = incumbent.var / incumbent.n, candidate.var / candidate.n
    se = math.sqrt(max(a + b, 1e-24))
    df = (a + b) ** 2 / max(a * a / max(incumbent.df, 1e-9) + b * b / max(candidate.df, 1e-9), 1e-300)
    return (incumbent.mean - candidate.mean) / se, se, df


# ---------------------------------------------------------------- the two-stage design


def upper_orthant(a: float, b: float, rho: float) -> float:
    """P(Z1 > a, Z2 > b) for standard normals with correlation `rho` (0 <= rho < 1), by Simpson's rule over Z1."""
    if a > 9 or b > 9:
        return 0.0
    s = math.sqrt(max(1e-12, 1.0 - rho * rho))
    lo, hi, n = a, max(a, 0.0) + 9.0, 400
    h = (hi - lo) / n

    def f(z: float) -> float:
        return NORMAL.pdf(z) * (1.0 - NORMAL.cdf((b - rho * z) / s))

    total = f(lo) + f(hi) + sum((4 if i % 2 else 2) * f(lo + i * h) for i in range(1, n))
    return total * h / 3.0


def design_rho(inc_var_of_mean: float, screen_se: float, confirm_se: float) -> float:
    """The correlation of the screen's and the confirmation's statistics: both subtract the same incumbent mean."""
    return max(0.0, min(0.99, inc_var_of_mean / max(screen_se * confirm_se, 1e-24)))


def power(effect: float, screen: tuple[float, float], confirm: tuple[float, float], rho: float) -> float:
    """The chance that a candidate `effect` better than the incumbent passes both tests: `screen` and `confirm` are
    (critical value, standard error) pairs."""
    (c1, se1), (c2, se2) = screen, confirm
    return upper_orthant(c1 - effect / se1, c2 - effect / se2, rho)


def min_detectable(screen: tuple[float, float], confirm: tuple[float, float], rho: float, target: float = 0.8) -> float:
    """The smallest effect (in val_bpb) found with probability `target` by the screen and the confirmation."""
    low, high = 0.0, 50.0 * max(screen[1], confirm[1])
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if power(mid, screen, confirm, rho) < target else (low, mid)
    return high


SIGMA_FLOOR = 1e-4
"""sigma never goes below this (in bpb), so identical replicates cannot make every difference significant."""


def mean_se(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and standard error (None with fewer than two values)."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return mean, se


def pooled_sigma(groups: list[list[float]]) -> tuple[float | None, int]:
    """Pooled standard deviation over groups of seed results, and its degrees of freedom (None if df = 0)."""
    usable = [g for g in groups if len(g) >= 2]
    df = sum(len(g) - 1 for g in usable)
    if df == 0:
        return None, 0
    ss = sum((len(g) - 1) * variance(g) for g in usable)
    return max(SIGMA_FLOOR, math.sqrt(ss / df)), df


class Noise:
    """The seeds each config adds to the noise estimate (`verdicts._noise_sample`), with their sums of squares kept, so
    the pooled spread of every config but one or two is had at once (the fold asks on every run)."""

    def __init__(self) -> None:
        self._parts: dict[str, tuple[float, int]] = {}
        self._ss, self._df = 0.0, 0

    def set(self, title: str, values: list[float]) -> None:
        """`title`'s noise seeds are now `values`."""
        ss, df = self._parts.pop(title, (0.0, 0))
        self._ss, self._df = self._ss - ss, self._df - df
        if len(values) >= 2:
            part = ((len(values) - 1) * variance(values), len(values) - 1)
            self._parts[title] = part
            self._ss, self._df = self._ss + part[0], self._df + part[1]

    def pooled(self, *excluding: str) -> tuple[float | None, int]:
        """The pooled sigma and its degrees of freedom over every config but `excluding` (None if df = 0)."""
        ss, df = self._ss, self._df
        for title in set(excluding):
            part_ss, part_df = self._parts.get(title, (0.0, 0))
            ss, df = ss - part_ss, df - part_df
        if df <= 0:
            return None, 0
        return max(SIGMA_FLOOR, math.sqrt(max(ss, 0.0) / df)), df
