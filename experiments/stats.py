"""Aggregate numbers over seeds honestly at small n: mean, a Student-t 95% interval, IQM, paired differences.

With 3-5 seeds a percentile bootstrap of the mean only returns the extreme seeds (with 3 values its 2.5% and
97.5% percentiles are the lowest and highest value), so the interval of one quantity over seeds is the
Student-t interval of the mean, ``mean +- t(0.975, n-1) * sd / sqrt(n)``, clipped to the quantity's range
(a rate stays in [0, 1], a count above 0). It is wide for 2-3 seeds because that is what 2-3 seeds know.
The interquartile mean (rliable's robust aggregate) only differs from the mean from 4 values on.

Where one aggregate spans several tasks (rliable), :func:`stratified_bootstrap` resamples seeds within each
task; its generator has a fixed seed, so a results file always renders the same report.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
INTERVAL_METHOD = "Student-t 95% confidence interval of the mean over seeds"
BOOTSTRAP_SAMPLES = 5000  # enough for stable 2.5% / 97.5% percentiles
BOOTSTRAP_SEED = 0  # fixed: the same results file always gives the same interval
IQM_MIN_VALUES = 4  # below this the IQM is the mean: not worth printing


@dataclass(frozen=True)
class Estimate:
    """A statistic over seeds with its 95% interval (None values are reported as missing)."""

    mean: float
    iqm: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "iqm": self.iqm, "ci_low": self.low, "ci_high": self.high, "n": self.n}


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% (rliable's robust aggregate); the mean for n < 4."""
    x = np.sort(np.asarray(values, dtype=float))
    cut = int(math.floor(0.25 * len(x)))
    return float(x[cut:len(x) - cut].mean()) if len(x) else math.nan


def clean(values: Sequence[float | None]) -> np.ndarray:
    """The values that exist (None and NaN dropped)."""
    return np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)


def t_interval(x: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t interval of the mean of ``x`` (n >= 2); a zero-width interval when all values are equal."""
    n = len(x)
    if n < 2:
        raise ValueError(f"a t interval needs at least 2 values, got {n}")
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    mean = float(x.mean())
    return mean - half, mean + half


def estimate(values: Sequence[float | None], bounds: tuple[float | None, float | None] = (None, None)) -> Estimate:
    """Mean, IQM and Student-t 95% CI of the mean over seeds, the CI clipped to ``bounds`` (a quantity's range).

    Missing values (None/NaN) are dropped; with one value the interval is that value.
    """
    x = clean(values)
    if len(x) == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if len(x) == 1:
        return Estimate(mean, mean, mean, mean, 1)
    low, high = t_interval(x)
    lo_bound, hi_bound = bounds
    if lo_bound is not None:
        low = max(low, lo_bound)
    if hi_bound is not None:
        high = min(high, hi_bound)
    return Estimate(mean, iqm(x), low, high, len(x))


def improved(differences: Sequence[float | None]) -> bool | None:
    """Whether paired per-seed differences (final - untrained) are above 0 beyond their interval.

    True: the whole t interval of the mean difference is above 0; False: it is not; None: fewer than 2 seeds
    have both values, so there is no interval to judge by.
    """
    x = clean(differences)
    if len(x) < 2:
        return None
    low, _ = t_interval(x)
    return low > 0


def stratified_bootstrap(scores: Mapping[str, Sequence[float]], statistic: Callable[[np.ndarray], float] = iqm,
                         samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """rliable's aggregate over several tasks: ``statistic`` of all (task, seed) scores, and its 95% interval
    from resampling the seeds *within* each task (every task keeps its weight). Returns (point, low, high)."""
    tasks = [np.asarray(v, dtype=float) for v in scores.values() if len(v)]
    if not tasks:
        raise ValueError("stratified_bootstrap needs at least one task with scores")
    point = float(statistic(np.concatenate(tasks)))
    rng = np.random.default_rng(seed)
    draws = np.empty(samples)
    for i in range(samples):
        draws[i] = statistic(np.concatenate([t[rng.integers(0, len(t), len(t))] for t in tasks]))
    low, high = np.percentile(draws, [2.5, 97.5])
    return point, float(low), float(high)
