"""Every number a report prints comes from its results.json: table cells are their row's fields, and the
takeaway and the closing 'could not show' section quote rows, the budget or the published references only.
Every variant has its untrained (step 0) point, and a variant that did not improve is flagged (the flagship
fixture's budget is deliberately tiny: PPO on BabyAI does not move in 256 steps)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from envs.babyai import PAPER_99
from experiments.cli import main
from experiments.registry import EXPERIMENTS
from experiments.report import format_seconds
from experiments.summary import CHANGE, format_cell, not_improved

NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
TAKEAWAY = "**Takeaway.** "
LIMITS = "### What this budget could not show"


def tokens(text: str) -> list[str]:
    return NUMBER.findall(text)


def row_texts(row: dict[str, Any]) -> list[str]:
    """Every number of a summary row as the report can print it (its own format)."""
    fmt = row["fmt"]
    out = [str(row["n"]), str(row["n_total"])]
    for key in ("mean", "ci_low", "ci_high", "iqm"):
        if row[key] == row[key]:  # not NaN
            out.append(fmt.format(row[key]))
    out += [fmt.format(v) for v in row["values"] if v is not None]
    out += [row["reference"] or ""]
    return out


def leaf_texts(value: Any) -> list[str]:
    """Numbers of a budget / machine / timing structure, in the formats the reports use."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in leaf_texts(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in leaf_texts(v)]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        texts = [f"{value:,}", f"{value:g}", f"{value:.0%}", f"{value:.2f}", f"{value:,.0f}", format_seconds(value)]
        return texts + [f"{value:.1f}"]
    return [str(value)]


def allowed(results: dict[str, Any]) -> set[str]:
    """The numbers (as printed) that results.json holds (its summary rows, budget, the full mode's budget and
    the experiment's settings), plus the published table the reports cite (the BabyAI paper's)."""
    texts = [t for row in results["summary"] for t in row_texts(row)]
    texts += leaf_texts([results["budget"], results["seeds"], results["machine"]["load_average"],
                         results["full_budget"], results["settings"], PAPER_99])
    return {tok for text in texts for tok in tokens(text)}


def sections(report: str) -> tuple[str, str]:
    takeaway = next(line for line in report.splitlines() if line.startswith(TAKEAWAY))
    limits = report[report.index(LIMITS) + len(LIMITS):]
    return takeaway, limits


def table_rows(report: str) -> list[tuple[str, list[str], list[str]]]:
    """(first cell, header, cells) for every body row of every markdown table."""
    out, header = [], None
    for line in report.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
        elif not line.startswith("|---"):
            out.append((cells[0], header, cells))
    return out


def experiments(out: Path) -> list[dict[str, Any]]:
    return [json.loads((out / name / "results.json").read_text()) for name in ("digits", "imitation")]


@pytest.fixture(scope="module")
def all_results(flagship_run, tmp_path_factory) -> list[dict[str, Any]]:
    """The flagship's two experiments plus experiment 4 (finetune) at a tiny budget, one seed."""
    out = tmp_path_factory.mktemp("finetune") / "runs"
    args = ["--budget.pretrain-demos", "8", "--budget.bc-steps", "4", "--budget.rl-steps", "256",
            "--budget.eval-every", "128", "--budget.eval-episodes", "4", "--budget.strategies", "frozen", "scratch"]
    assert main(["finetune", "--seeds", "2", "--workers", "2", "--no-progress", "--out", str(out), *args]) == 0
    found = experiments(flagship_run) + [json.loads((out / "finetune" / "results.json").read_text())]
    for r in found:
        r["_dir"] = str(flagship_run / r["experiment"]) if r["experiment"] != "finetune" else str(out / "finetune")
    return found


def report_of(results: dict[str, Any]) -> str:
    return (Path(results["_dir"]) / "report.md").read_text()


def test_takeaway_and_limits_quote_only_numbers_of_the_results_file(all_results):
    for results in all_results:
        report = report_of(results)
        takeaway, limits = sections(report)
        assert len(takeaway) > len(TAKEAWAY) + 40 and limits.strip()
        known = allowed(results)
        for text in (takeaway, limits):
            unknown = [t for t in tokens(text) if t not in known]
            assert not unknown, f"{results['experiment']}: {unknown} not in results.json: {text}"


def test_ratios_quoted_by_the_takeaway_are_ratios_of_the_rows(all_results):
    seen = 0
    for results in all_results:
        summary = results["summary"]
        for row in summary:
            if row["section"] != "ratio":
                continue
            (q1, v1), (q2, v2) = row["ratio_of"]
            num = next(r for r in summary if r["quantity"] == q1 and r["variant"] == v1)
            den = next(r for r in summary if r["quantity"] == q2 and r["variant"] == v2)
            assert row["mean"] == pytest.approx(num["mean"] / den["mean"])
            seen += 1
    assert seen  # the imitation report relates its budget to the paper's


def test_every_table_cell_is_its_rows_format_and_every_number_in_it_a_field_of_the_row(all_results):
    for results in all_results:
        cells = {format_cell(row): row for row in results["summary"]}
        for first, header, row_cells in table_rows(report_of(results)):
            for text in row_cells[1:]:
                if not text or not NUMBER.search(text) or text.startswith("BabyAI paper"):
                    continue
                assert text in cells, (results["experiment"], first, text)
                measured = re.sub(r"\*\*.*\*\*", "", text)  # the verdict's wording ('not above 0') aside
                assert set(tokens(measured)) <= set(t for s in row_texts(cells[text]) for t in tokens(s)), text


def test_every_variant_has_its_untrained_point_for_every_seed(all_results):
    for results in all_results:
        summary = results["summary"]
        finals = {r["variant"] for r in summary if r["quantity"].startswith("final ") or
                  r["quantity"] == "success rate of the cloned policy"}
        starts = {r["variant"]: r for r in summary if r["quantity"].startswith(("untrained (step 0) ", "at step 0 "))}
        assert finals and finals <= set(starts), (results["experiment"], finals - set(starts))
        for variant, row in starts.items():
            assert row["n"] == row["n_total"], (results["experiment"], variant, row["values"])
            assert f"| {row['quantity']} |" in report_of(results)
    imitation = next(r for r in all_results if r["experiment"] == "imitation")
    bc0 = {r["seed"]: r["success_rate"] for r in imitation["runs"] if r["variant"] == "bc-untrained"}
    row = next(r for r in imitation["summary"] if r["quantity"] == "untrained (step 0) success rate"
               and r["variant"] == "bc-8demos")
    assert row["values"] == [bc0[1], bc0[2]]  # the BC policy as initialised, per seed


def test_a_variant_that_did_not_improve_is_flagged_in_its_row_and_in_words(all_results):
    imitation = next(r for r in all_results if r["experiment"] == "imitation")
    ppo = next(r for r in imitation["summary"] if r["variant"] == "ppo" and r["quantity"].startswith(CHANGE))
    assert ppo["improved"] is False  # 256 PPO steps: the policy has not moved
    for results in all_results:
        report = report_of(results)
        _, limits = sections(report)
        for row in results["summary"]:
            if not row["quantity"].startswith(CHANGE) or not row["n"]:
                continue
            flagged = row in not_improved(results["summary"])
            assert flagged == (row["improved"] is not True)
            assert ("did not improve beyond its interval" in format_cell(row)) == (row["improved"] is False)
            assert format_cell(row) in report
        for row in not_improved(results["summary"]):
            if row["improved"] is False:
                interval = f"[{row['fmt'].format(row['ci_low'])}, {row['fmt'].format(row['ci_high'])}]"
                assert interval in limits, (results["experiment"], row["variant"])
    assert "PPO did not improve beyond its interval" in sections(report_of(imitation))[1]
    assert "at this budget PPO has not learned" in sections(report_of(imitation))[0]


def test_the_report_states_its_interval_method(all_results):
    for results in all_results:
        report = report_of(results)
        assert "Student-t 95% confidence interval of the mean over seeds" in report
        assert "every seed's value" in report
        assert "percentile-bootstrap" not in report


def test_an_older_results_file_is_upgraded_when_rendered(flagship_run, tmp_path):
    import shutil

    exp_dir = tmp_path / "digits"
    shutil.copytree(flagship_run / "digits", exp_dir)
    results = json.loads((exp_dir / "results.json").read_text())
    results["summary"] = results["summary"][:3]  # as if written by an older analysis
    (exp_dir / "results.json").write_text(json.dumps(results))
    assert main(["report", str(exp_dir)]) == 0
    upgraded = json.loads((exp_dir / "results.json").read_text())
    fresh = EXPERIMENTS["digits"].analysis.summarize(upgraded["runs"], upgraded["budget"])
    assert json.dumps(upgraded["summary"]) == json.dumps(fresh) and len(fresh) > 3
    assert upgraded["runs"] == results["runs"]


def test_a_minimum_at_the_smallest_set_tried_is_called_an_upper_bound():
    """BC that reaches a threshold with the fewest demonstrations tried has an unknown minimum (at most that set):
    the report says so, quoting the row; a report with nothing to flag has no empty 'could not show' heading."""
    from experiments.imitation.analysis import limits
    from experiments.report import closing_lines

    budget = {"demo_counts": [1000, 4000], "thresholds": [0.99], "rl_steps": 1000}
    row = {"quantity": "minimum demonstrations to 99% success", "variant": "bc", "values": [1000.0, 4000.0],
           "n": 2, "n_total": 2}
    episodes = {"quantity": "training episodes to 99% success", "variant": "ppo", "values": [500.0], "n": 1,
                "n_total": 1}
    [line] = limits({"summary": [row, episodes], "budget": budget, "runs": []})
    assert "at most 1,000" in line and "1,000 / 4,000" in line
    assert limits({"summary": [{**row, "values": [4000.0, 4000.0]}, episodes], "budget": budget, "runs": []}) == []
    assert LIMITS not in "\n".join(closing_lines(["plots/a.png"], []))


def test_a_read_at_the_largest_set_only_is_named_as_unconfirmed():
    """BC that reads 99% only at the largest set has no next count to hold it: the report says the seed counts as
    not reached and why, instead of leaving a bare 'n/a' beside a final success of 0.995; each seed is read from its
    own runs, so a seed without a run at the largest set is not mistaken for another."""
    from experiments.imitation.analysis import limits

    budget = {"demo_counts": [1000, 4000], "thresholds": [0.99], "rl_steps": 1000}

    def runs(success: dict[int, tuple[float, ...]]) -> list[dict[str, Any]]:
        return [{"paradigm": "imitation", "seed": seed, "demos": n, "success_rate": rate, "samples": n,
                 "train_wall_time_s": 1.0} for seed, rates in success.items() for n, rate in zip((1000, 4000), rates)]

    row = {"quantity": "minimum demonstrations to 99% success", "variant": "bc", "values": [None, None, None, None],
           "n": 0, "n_total": 4}
    episodes = {"quantity": "training episodes to 99% success", "variant": "ppo", "values": [500.0], "n": 1,
                "n_total": 1}
    # seed 4 has no run at 4,000: its 0.995 at 1,000 was held by nothing and is not the largest set's read
    success = {1: (0.97, 0.995), 2: (0.96, 0.98), 3: (0.98, 0.99), 4: (0.995,)}
    [line] = limits({"summary": [row, episodes], "budget": budget, "runs": runs(success)})
    assert "largest set tried (4,000 demonstrations)" in line and "on 2 seed(s)" in line
    assert "(0.995, 0.990)" in line and "not reached 99%" in line
    below = {1: (0.97, 0.98), 2: (0.96, 0.97), 3: (0.98, 0.985)}
    assert limits({"summary": [row, episodes], "budget": budget, "runs": runs(below)}) == []


def test_every_report_with_a_threshold_count_says_how_it_is_read(all_results):
    from experiments.curves import READ_RULE
    from experiments.report import threshold_sentence

    for results in all_results:  # digits, imitation and finetune all count samples / episodes / demos "to X%"
        assert READ_RULE in report_of(results)
    assert threshold_sentence([{"quantity": "final test accuracy"}]) == ""
    assert READ_RULE in threshold_sentence([{"quantity": "training episodes to the target"}])


def test_the_finetune_takeaway_names_a_best_strategy_only_beyond_the_others_intervals():
    from experiments.finetune.analysis import takeaway
    from experiments.summary import summary_row

    def results(finals: dict[str, list[float]]) -> dict[str, Any]:
        rows = [summary_row("outcome", "final success rate", s, v) for s, v in finals.items()]
        return {"summary": rows, "budget": {"strategies": list(finals), "rl_steps": 1000, "pretrain_demos": 10}}

    tied = takeaway(results({"frozen": [0.97, 0.99, 0.98], "full": [0.98, 0.97, 0.985], "scratch": [0.5, 0.6, 0.55]}))
    assert "best" not in tied and "the highest is frozen, and the intervals of full overlap its own" in tied
    apart = takeaway(results({"frozen": [0.97, 0.99, 0.98], "scratch": [0.5, 0.6, 0.55]}))
    assert "the best is frozen, its interval above every other's" in apart
    one_seed = takeaway(results({"frozen": [0.98], "scratch": [0.5]}))
    assert "best" not in one_seed and "the highest is frozen, from one seed: no interval to rank by" in one_seed


def test_a_ranking_of_aggregates_reads_their_iqm_and_bootstrap_interval():
    """The optimizers' 'over both paradigms' rows: the point is the IQM, the interval a stratified bootstrap."""
    from experiments.report import ranking
    from experiments.summary import aggregate_row

    low = aggregate_row("both", "q", "both-sgd", {"a": [0.2, 0.3, 0.25], "b": [0.3, 0.2, 0.25]})
    high = aggregate_row("both", "q", "both-adam", {"a": [0.9, 0.95, 0.92], "b": [0.91, 0.93, 0.94]})
    near = aggregate_row("both", "q", "both-nadam", {"a": [0.9, 0.96, 0.93], "b": [0.9, 0.92, 0.95]})
    assert ranking([low, high]) == "the best is both-adam, its interval above every other's"
    top = max((high, near), key=lambda r: r["iqm"])["variant"]
    assert ranking([low, high, near]).startswith(f"the highest is {top}, and the intervals of ")
