"""A report renders whatever runs finished: a variant whose every run failed (or was skipped) leaves a report
that says so, never a crash that would hide the runs that did finish."""
from __future__ import annotations

import json

import pytest

from experiments.registry import EXPERIMENTS


@pytest.mark.parametrize("experiment", ["digits", "imitation"])
def test_a_report_renders_without_any_one_variant(flagship_run, experiment, tmp_path):
    module = EXPERIMENTS[experiment].analysis
    results = json.loads((flagship_run / experiment / "results.json").read_text())
    variants = sorted({run["variant"] for run in results["runs"]})
    assert len(variants) >= 3
    for missing in variants:
        runs = [run for run in results["runs"] if run["variant"] != missing]
        partial = {**results, "runs": runs, "summary": module.summarize(runs, results["budget"]),
                   "errors": {f"{experiment}/{missing}/seed1": "Traceback: a failed run"}}
        assert module.report(partial, []).startswith("## Experiment")
        assert module.plot(partial, tmp_path / missing)  # the plots too
