"""Aggregate numbers over seeds honestly: mean, interquartile mean and a 95% bootstrap confidence interval."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 5000  # enough for stable 2.5% / 97.5% percentiles
BOOTSTRAP_SEED = 0  # fixed: the same results file always gives the same interval


@dataclass(frozen=True)
class Estimate:
    """A statistic over seeds with its 95% bootstrap interval (None values are reported as missing)."""

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


def estimate(values: Sequence[float | None]) -> Estimate:
    """Mean, IQM and percentile-bootstrap 95% CI of the mean over seeds. Missing values (None/NaN) are dropped."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if len(x) == 1:
        return Estimate(mean, mean, mean, mean, 1)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    resampled = x[rng.integers(0, len(x), size=(BOOTSTRAP_SAMPLES, len(x)))].mean(axis=1)
    low, high = np.percentile(resampled, [2.5, 97.5])
    return Estimate(mean, iqm(x), float(low), float(high), len(x))

