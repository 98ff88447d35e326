"""Experiment 3 with learning rates tuned by Ray Tune (``--tune-trials``): the same search for every optimizer
and paradigm on the validation split, then the tuned rates over the seeds beside the default ones."""
from __future__ import annotations

import json
import math

from experiments.cli import main
from experiments.optimizers.tuning import LOG10_RANGE, METRIC, TUNING_JSON
from lab.optim import get_optimizer_info


def test_each_optimizer_gets_the_same_search_and_its_best_rate_runs_over_the_seeds(tmp_path, tiny_digits_budget):
    out = tmp_path / "runs"
    argv = ["optimizers", "--seeds", "1", "--workers", "2", "--no-progress", "--out", str(out),
            "--budget.optimizers", "sgd", "--tune-trials", "2", *tiny_digits_budget]
    assert main(argv) == 0
    exp_dir = out / "optimizers"
    results = json.loads((exp_dir / "results.json").read_text())
    tuning = results["tuning"]
    variants = {"supervised-sgd", "ppo-sgd"}
    assert set(tuning["best"]) == variants
    for variant in variants:
        trials = [t for t in tuning["trials"] if t["variant"] == variant]
        assert len(trials) == 2  # the same budget for every optimizer and paradigm
        default = get_optimizer_info(variant.split("-", 1)[1]).default_lr
        assert all(LOG10_RANGE[0] <= math.log10(t["lr"] / default) <= LOG10_RANGE[1] for t in trials)
        assert tuning["best"][variant][METRIC] == max(t[METRIC] for t in trials)
    runs = {r["variant"]: r for r in results["runs"]}
    assert set(runs) == variants | {f"{v}-tuned" for v in variants}  # tuned runs beside the default-rate ones
    for name in ("sgd",):
        assert float(runs[f"ppo-{name}-tuned"]["hyperparameters"]["lr"]) == tuning["best"][f"ppo-{name}"]["lr"]
        config = json.loads((exp_dir / f"supervised-{name}-tuned" / "seed1" / "config.json").read_text())
        assert config["train"]["lr"] == tuning["best"][f"supervised-{name}"]["lr"]
    # the report sets each tuned rate beside the registry's, with both runs' test accuracy from the summary
    report = (exp_dir / "report.md").read_text()
    summary = {(r["quantity"], r["variant"]): r for r in results["summary"]}
    table = report.split("### Tuned learning rates")[1].split("###")[0]
    for paradigm in ("supervised", "ppo"):
        best = tuning["best"][f"{paradigm}-sgd"]
        line = next(line for line in table.splitlines()
                    if line.startswith("| sgd |") and f"| {best['lr']:.3g} |" in line)
        for variant in (f"{paradigm}-sgd", f"{paradigm}-sgd-tuned"):
            assert f"{summary[('final test accuracy', variant)]['mean']:.3f}" in line
        assert f"{best[METRIC]:.3f} (2 trials)" in line
    assert summary[("final test accuracy, both paradigms", "both-sgd-tuned")]["n"] == 2
    # --resume after a finished run: nothing is tuned or trained again, the numbers stay.
    tuned_file = (exp_dir / TUNING_JSON).stat().st_mtime_ns
    assert main([*argv, "--resume"]) == 0
    again = json.loads((exp_dir / "results.json").read_text())
    assert again["timing"]["resumed_jobs"] == len(runs) and (exp_dir / TUNING_JSON).stat().st_mtime_ns == tuned_file
    assert again["runs"] == results["runs"] and again["tuning"] == tuning
