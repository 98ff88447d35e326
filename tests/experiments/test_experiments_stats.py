import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from experiments.curves import first_crossing, first_read
from experiments.summary import (
    CHANGE, RATE, UNTRAINED, aggregate_row, format_cell, format_estimate, learning_rows, not_improved, summary_row,
)
from experiments.stats import estimate, improved, iqm, stratified_bootstrap, t_interval


def test_estimate_is_the_student_t_interval_of_the_mean():
    values = [0.869, 0.944, 0.947]
    e = estimate(values)
    half = scipy_stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert e.mean == pytest.approx(np.mean(values)) and e.n == 3
    assert (e.low, e.high) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    # with 3 values a percentile bootstrap returns the extreme seeds; the t interval is wider than them
    assert e.low < min(values) and e.high > max(values)
    assert estimate(values) == e  # deterministic


def test_interval_is_clipped_to_the_quantity_range_and_shrinks_with_more_seeds():
    e = estimate([0.9, 0.99, 1.0], bounds=RATE)
    assert e.high == 1.0 and e.low > 0
    assert estimate([0.0, 0.1], bounds=(0.0, None)).low == 0.0
    rng = np.random.default_rng(0)
    few, many = rng.normal(0.5, 0.1, 3), rng.normal(0.5, 0.1, 30)
    width = lambda x: estimate(list(x)).high - estimate(list(x)).low  # noqa: E731
    assert width(many) < width(few)


def test_estimate_handles_missing_and_single_values():
    assert estimate([None, float("nan")]).n == 0 and estimate([]).n == 0
    assert format_estimate(summary_row("s", "q", "v", [None, float("nan")])) == "n/a (0/2 seeds)"
    single = estimate([0.5, None])
    assert single.n == 1 and single.low == single.high == 0.5
    assert format_estimate(summary_row("s", "q", "v", [0.5, None])) == "0.500 (1/2 seeds)"
    assert format_estimate(summary_row("s", "q", "v", [1.0, 1.0, 1.0], fmt="{:.1f}")) == "1.0 (all seeds)"
    with pytest.raises(ValueError, match="at least 2"):
        t_interval(np.array([1.0]))


def test_cells_show_every_seed_below_ten_seeds_and_the_iqm_from_four():
    row = summary_row("s", "q", "v", [0.2, None, 0.4])
    assert format_cell(row) == f"0.300 [{row['ci_low']:.3f}, {row['ci_high']:.3f}] (2/3 seeds); seeds 0.200 / - / 0.400"
    five = summary_row("s", "q", "v", [1, 2, 3, 4, 100], "{:.1f}")
    assert "IQM 3.0" in format_cell(five) and "seeds 1.0 / 2.0 / 3.0 / 4.0 / 100.0" in format_cell(five)
    ten = summary_row("s", "q", "v", list(range(10)), "{:.0f}")
    assert "seeds" not in format_cell(ten)
    assert format_cell(summary_row("c", "params", "x", [5, 5], "{:,.0f}")) == "5 (all seeds)"


def test_learning_rows_flag_a_variant_that_did_not_improve_beyond_its_interval():
    learned = learning_rows("goal", "accuracy", "a", [0.1, 0.1, 0.12], [0.9, 0.92, 0.95])
    flat = learning_rows("goal", "accuracy", "b", [0.19, 0.20, 0.23], [0.20, 0.25, 0.25])
    single = learning_rows("goal", "accuracy", "c", [0.1], [0.5])
    assert [r["quantity"] for r in learned] == [f"{UNTRAINED} accuracy", f"{CHANGE} accuracy"]
    assert learned[1]["values"] == pytest.approx([0.8, 0.82, 0.83])
    assert learned[1]["improved"] is True and flat[1]["improved"] is False and single[1]["improved"] is None
    summary = learned + flat + single
    assert [r["variant"] for r in not_improved(summary)] == ["b", "c"]
    assert "did not improve beyond its interval" in format_cell(flat[1])
    assert "did not improve" not in format_cell(learned[1]) and "no interval" in format_cell(single[1])
    assert improved([0.0, 0.0, 0.0]) is False  # no change at all is no improvement


def test_stratified_bootstrap_resamples_within_tasks():
    scores = {"supervised": [0.97, 0.98, 0.99], "ppo": [0.1, 0.2, 0.3]}
    point, low, high = stratified_bootstrap(scores, iqm)
    assert point == pytest.approx(iqm(scores["supervised"] + scores["ppo"]))
    assert low <= point <= high
    assert stratified_bootstrap(scores, iqm) == (point, low, high)  # fixed seed
    # every resample keeps 3 scores per task, so the mean of a task-balanced set never leaves the task means' range
    _, low, high = stratified_bootstrap(scores, np.mean)
    assert 0.1 * 0.5 + 0.97 * 0.5 - 1e-9 <= low and high <= 0.3 * 0.5 + 0.99 * 0.5 + 1e-9
    row = aggregate_row("aggregate", "final accuracy, both", "both-adam", scores)
    assert format_estimate(row).startswith(f"IQM {point:.3f} [") and row["n"] == 6


def test_iqm_discards_the_tails():
    assert iqm([0, 1, 1, 1, 1, 1, 1, 100]) == pytest.approx(1.0)
    assert iqm([1, 2, 3]) == pytest.approx(2.0)
    assert math.isnan(iqm([]))


def test_a_threshold_counts_where_it_is_reached_and_held_at_the_next_evaluation():
    curve = [{"x": 10, "y": 0.5}, {"x": 20, "y": 0.99}, {"x": 30, "y": 1.0}]
    assert first_crossing(curve, "x", "y", 0.99) == 20
    assert first_crossing(curve[:1], "x", "y", 0.99) is None
    lucky = [{"x": 10, "y": 0.99}, {"x": 20, "y": 0.98}, {"x": 30, "y": 0.992}, {"x": 40, "y": 0.995}]
    assert first_read(lucky, "x", "y", 0.99) == 10 and first_crossing(lucky, "x", "y", 0.99) == 30
    assert first_crossing(lucky[:3], "x", "y", 0.99) is None  # reached at the last point only: not confirmed
    gaps = [{"x": 10, "y": 0.99}, {"x": 20, "y": None}, {"x": 30, "y": 0.99}]  # a point without the value is skipped
    assert first_crossing(gaps, "x", "y", 0.99) == 10
