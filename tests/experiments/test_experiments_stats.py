import math

import numpy as np
import pytest

from experiments.common import first_crossing, format_estimate, summary_row
from experiments.stats import estimate, iqm


def test_estimate_mean_and_interval_contain_the_truth():
    values = [0.90, 0.95, 1.00, 0.97, 0.93]
    e = estimate(values)
    assert e.mean == pytest.approx(np.mean(values)) and e.n == 5
    assert min(values) <= e.low <= e.mean <= e.high <= max(values)
    assert estimate(values) == e  # deterministic


def test_estimate_handles_missing_and_single_values():
    assert estimate([None, float("nan")]).n == 0 and estimate([]).n == 0
    assert format_estimate(summary_row("s", "q", "v", [None, float("nan")])) == "n/a (0/2 seeds)"
    single = estimate([0.5, None])
    assert single.n == 1 and single.low == single.high == 0.5
    assert format_estimate(summary_row("s", "q", "v", [0.5, None])) == "0.500 (1/2 seeds)"
    assert format_estimate(summary_row("s", "q", "v", [1.0, 1.0, 1.0], fmt="{:.1f}")) == "1.0 (all seeds)"


def test_iqm_discards_the_tails():
    assert iqm([0, 1, 1, 1, 1, 1, 1, 100]) == pytest.approx(1.0)
    assert iqm([1, 2, 3]) == pytest.approx(2.0)
    assert math.isnan(iqm([]))


def test_first_crossing():
    curve = [{"x": 10, "y": 0.5}, {"x": 20, "y": 0.99}, {"x": 30, "y": 1.0}]
    assert first_crossing(curve, "x", "y", 0.99) == 20
    assert first_crossing(curve[:1], "x", "y", 0.99) is None
