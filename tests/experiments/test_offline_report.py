"""The offline report's sentences read each dataset's own rows: the takeaway quotes every dataset's success, and a
BC that stays flat is explained by its data's success, not called a budget limit."""
from __future__ import annotations

from experiments.offline.analysis import DATA_SUCCESS, METRIC, limits, takeaway
from experiments.offline.variants import method_variant
from experiments.report import NO_LEARNING
from experiments.summary import RATE, learning_rows, summary_row

BUDGET = {"mixtures": ["expert", "noisy"]}
UNTRAINED = [0.25, 0.26, 0.27]


def rows(mixture: str, data_success: float, final: dict[str, list[float]]) -> list[dict]:
    out = [summary_row(mixture, DATA_SUCCESS, "data", [data_success], bounds=RATE)]
    for method, values in final.items():
        v = method_variant(method, mixture)
        out.append(summary_row(mixture, f"final {METRIC}", v, values, bounds=RATE))
        out += learning_rows(mixture, METRIC, v, UNTRAINED, values)
    return out


def results() -> dict:
    summary = rows("expert", 1.0, {"bc": [0.98, 0.99, 0.985], "pbc": [0.25, 0.27, 0.26]})
    summary += rows("noisy", 0.298, {"bc": [0.24, 0.25, 0.27], "dt": [0.86, 0.87, 0.88]})
    return {"summary": summary, "budget": BUDGET}


def test_the_takeaway_quotes_each_datasets_own_success():
    text = takeaway(results())
    assert "On the expert data (1.000 of its episodes succeed)" in text
    assert "On the noisy data (0.298 of its episodes succeed)" in text


def test_a_flat_bc_is_read_against_its_data_and_other_flat_learners_as_a_budget_limit():
    said = {line.split(" ", 1)[0]: line for line in limits(results())}
    assert set(said) == {"pbc-expert", "bc-noisy"}  # the learners whose change is not above 0
    assert "0.298 of the logged episodes succeed" in said["bc-noisy"] and NO_LEARNING not in said["bc-noisy"]
    assert said["pbc-expert"].endswith(NO_LEARNING)
