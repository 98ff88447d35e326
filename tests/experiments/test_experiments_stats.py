import math

import numpy as np
import pytest

from experiments.stats import estimate, first_crossing, iqm


def test_estimate_mean_and_interval_contain_the_truth():
    values = [0.90, 0.95, 1.00, 0.97, 0.93]
    e = estimate(values)
    assert e.mean == pytest.approx(np.mean(values)) and e.n == 5
    assert min(values) <= e.low <= e.mean <= e.high <= max(values)
    assert estimate(values) == e  # deterministic


def test_estimate_handles_missing_and_single_values():
    assert estimate([None, float("nan")]).n == 0 and estimate([]).format() == "n/a"
    single = estimate([0.5, None])
    assert single.n == 1 and single.low == single.high == 0.5 and "1 seed" in single.format()
    assert estimate([1.0, 1.0, 1.0]).format("{:.1f}") == "1.0 [1.0, 1.0]"


def test_iqm_discards_the_tails():
    assert iqm([0, 1, 1, 1, 1, 1, 1, 100]) == pytest.approx(1.0)
    assert iqm([1, 2, 3]) == pytest.approx(2.0)
    assert math.isnan(iqm([]))


def test_first_crossing():
    assert first_crossing([10, 20, 30], [0.5, 0.99, 1.0], 0.99) == 20
    assert first_crossing([10, 20], [0.1, 0.2], 0.99) is None
