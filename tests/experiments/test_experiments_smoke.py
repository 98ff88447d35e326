"""Every experiment end to end at a tiny budget: runs, results files, plots and a report whose numbers are the
results file's, which are the runs' own."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from scipy import stats as scipy_stats
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments.cli import main
from experiments.curves import READ_RULE
from experiments.summary import format_cell, format_estimate, not_improved
from lab import tags

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def load(exp_dir: Path) -> dict:
    return json.loads((exp_dir / "results.json").read_text())


def table_cells(report: str) -> list[list[str]]:
    """Body rows of every markdown table of a report, as lists of cells."""
    rows = []
    for line in report.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def numbers(text: str) -> list[float]:
    return [float(n.replace(",", "")) for n in NUMBER.findall(text.split("(")[0])]


def check_experiment(exp_dir: Path, variants: set[str], seeds: list[int]) -> dict:
    """What every experiment must hold; returns its results."""
    results = load(exp_dir)
    assert results["errors"] == {}
    assert {r["variant"] for r in results["runs"] if "seed" in r} >= variants
    for run in results["runs"]:
        if "seed" not in run:
            continue  # e.g. the demonstration collection
        run_dir = Path(run["run_dir"])
        assert run_dir == exp_dir / run["variant"] / f"seed{run['seed']}"  # runs/<experiment>/<variant>/seed<N>
        assert list(run_dir.glob("events.out.tfevents.*")), run_dir
        assert (run_dir / ("record.json" if run["paradigm"] == "imitation" else "results.json")).is_file()
    assert sorted({r["seed"] for r in results["runs"] if "seed" in r}) == seeds == results["seeds"]

    # Files: CSVs with one line per run / summary row, PNG plots.
    with open(exp_dir / "runs.csv") as f:
        assert len(list(csv.DictReader(f))) == len(results["runs"])
    with open(exp_dir / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) == len(results["summary"]) > 0
    plots = list((exp_dir / "plots").glob("*.png"))
    assert len(plots) >= 2
    for plot in plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The report shows every table row exactly as formatted from results.json (test_report_numbers checks every
    # number of it); every estimate is the Student-t estimate of its per-seed values.
    report = (exp_dir / "report.md").read_text()
    cells = [cell for row in table_cells(report) for cell in row[1:]]
    for row in results["summary"]:
        if row["section"] not in ("ratio", "reference"):
            assert format_cell(row) in cells, format_cell(row)
    for row in results["summary"]:
        values = [v for v in row["values"] if v is not None]
        assert row["n"] == len(values)
        if row["section"] in ("ratio", "reference"):
            assert row["n_total"] == 1
        elif row.get("point") != "iqm":  # aggregate rows hold every (task, seed) score
            assert row["n_total"] == len(seeds)
        if values and row.get("point") != "iqm":
            assert row["mean"] == pytest.approx(sum(values) / len(values))
            assert row["ci_low"] - 1e-9 <= row["mean"] <= row["ci_high"] + 1e-9
    assert (exp_dir / "plots").name in report
    # Generated from the results file: re-rendering it gives the same report and leaves the results file alone.
    stored = (exp_dir / "results.json").read_bytes()
    assert main(["report", str(exp_dir)]) == 0
    assert (exp_dir / "report.md").read_text() == report
    assert (exp_dir / "results.json").read_bytes() == stored
    return results


def cell(report: str, row_label: str, column_label: str) -> str:
    header = None
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| quantity"):
            header = cells
        elif header and line.startswith(f"| {row_label} |") and column_label in header:
            return cells[header.index(column_label)]
    raise KeyError((row_label, column_label))


def test_flagship_digits_numbers_trace_back_to_the_runs(flagship_run):
    exp_dir = flagship_run / "digits"
    results = check_experiment(exp_dir, {"supervised", "ppo", "a2c"}, [1, 2])
    runs = {(r["variant"], r["seed"]): r for r in results["runs"]}
    for (variant, seed), run in runs.items():
        run_dir = Path(run["run_dir"])
        own = json.loads((run_dir / "results.json").read_text())
        events = EventAccumulator(str(run_dir)).Reload()
        accuracy = events.Scalars(tags.ACCURACY)  # the same tag and x-axis in both paradigms
        assert accuracy[-1].step == run["samples"] == 256
        assert accuracy[-1].value == pytest.approx(run["curve"][-1]["accuracy"], abs=1e-6)
        assert [e.step for e in accuracy] == [p["samples"] for p in run["curve"]]
        if variant == "supervised":
            assert own["test_accuracy"] == run["curve"][-1]["accuracy"]
            assert run["labels_seen"] == 256 and run["rewards_seen"] == 0
        else:
            assert own["final"]["accuracy"] == run["curve"][-1]["accuracy"]
            assert run["labels_seen"] == 0 and run["rewards_seen"] == 256 == run["episodes"]  # one-step episodes
            assert events.Scalars(tags.REWARDS_SEEN)[-1].value == 256
    # The headline cell of the report, read back as numbers, is the mean over the runs' own results.
    report = (exp_dir / "report.md").read_text()
    for variant, column in (("supervised", "supervised (labels)"), ("ppo", "PPO (rewards)")):
        finals = [runs[(variant, s)]["curve"][-1]["accuracy"] for s in (1, 2)]
        text = cell(report, "final test accuracy", column)
        mean = sum(finals) / 2
        half = scipy_stats.t.ppf(0.975, 1) * abs(finals[0] - finals[1]) / 2  # sd / sqrt(2) of two values
        aggregate, per_seed = text.split("; seeds ") if "; seeds " in text else (text, None)
        expected = [mean] if "all seeds" in text else [mean, max(mean - half, 0.0), min(mean + half, 1.0)]
        assert numbers(aggregate) == pytest.approx(expected, abs=5e-4)
        if per_seed is not None:  # each seed's own final accuracy, in seed order
            assert numbers(per_seed) == pytest.approx(finals, abs=5e-4)
    # Gradient steps: 256 / 64 supervised; PPO 4 epochs of one 256-sample batch; A2C one per 16 answers.
    assert {v: runs[(v, 1)]["updates"] for v in ("supervised", "ppo", "a2c")} == {"supervised": 4, "ppo": 4, "a2c": 16}
    # Same conv body in both paradigms.
    supervised, ppo = runs[("supervised", 1)], runs[("ppo", 1)]
    assert ppo["hyperparameters"]["encoder_kwargs"]["config"]["channels"] == [8, 16]
    assert supervised["params"] < ppo["params"]  # the policy adds a projection and a value head


def test_flagship_imitation_reports_demos_episodes_and_the_paper_separately(flagship_run):
    exp_dir = flagship_run / "imitation"
    results = check_experiment(exp_dir, {"bc-untrained", "bc-8demos", "bc-16demos", "ppo"}, [1, 2])
    report = (exp_dir / "report.md").read_text()
    assert "published reference (not measured here)" in report
    assert "8,430-12,400 demos (IL)" in report and "15,900-17,400 episodes (RL)" in report
    bc = [r for r in results["runs"] if r.get("paradigm") == "imitation" and r["variant"] != "bc-untrained"]
    assert {r["demos"] for r in bc} == {8, 16}
    assert all(0.0 <= r["success_rate"] <= 1.0 and r["labels_seen"] > 0 and r["rewards_seen"] == 0 for r in bc)
    ppo = [r for r in results["runs"] if r["variant"] == "ppo"]
    assert all(r["labels_seen"] == 0 and r["rewards_seen"] == 256 and r["curve"][0]["steps"] == 0 for r in ppo)
    row = next(r for r in results["summary"] if r["quantity"] == "minimum demonstrations to 99% success")
    assert row["reference"].startswith("BabyAI paper") and row["values"] == [None, None]  # tiny budget: not reached


def test_optimizers_experiment_runs_every_named_optimizer_in_both_paradigms(tmp_path, tiny_digits_budget):
    out = tmp_path / "runs"
    assert main(["optimizers", "--seeds", "1", "--workers", "0", "--no-progress", "--out", str(out),
                 "--budget.optimizers", "sgd", "nadam", *tiny_digits_budget]) == 0
    results = check_experiment(out / "optimizers", {"supervised-sgd", "ppo-sgd", "supervised-nadam", "ppo-nadam"},
                               [1])
    runs = {r["variant"]: r for r in results["runs"]}
    assert runs["ppo-nadam"]["hyperparameters"]["optimizer"] == "nadam"
    assert runs["ppo-sgd"]["hyperparameters"]["resolved_learning_rate"] == pytest.approx(0.1)  # the registry's lr


def test_finetune_experiment_starts_from_the_cloned_policy(tmp_path):
    out = tmp_path / "runs"
    args = ["--budget.pretrain-demos", "8", "--budget.bc-steps", "4", "--budget.rl-steps", "256",
            "--budget.eval-every", "128", "--budget.eval-episodes", "4", "--budget.strategies", "frozen", "scratch"]
    assert main(["finetune", "--seeds", "1", "--workers", "0", "--no-progress", "--out", str(out), *args]) == 0
    results = check_experiment(out / "finetune", {"bc-untrained", "bc-pretrain", "frozen", "scratch"}, [1])
    runs = {r["variant"]: r for r in results["runs"]}
    # Frozen: only the heads train; the curve starts at the cloned policy's success on the same episodes.
    assert runs["frozen"]["trainable_params"] < runs["scratch"]["trainable_params"] == runs["scratch"]["params"]
    assert runs["frozen"]["curve"][0]["success_rate"] == pytest.approx(runs["bc-pretrain"]["success_rate"])


def test_closing_summary_shows_the_headline_rows_and_the_published_column(flagship_run, capsys, monkeypatch):
    from experiments.pipeline import render
    from experiments.registry import EXPERIMENTS
    from experiments.report import print_closing

    monkeypatch.setenv("COLUMNS", "250")  # wide enough that no cell wraps, so cells can be searched whole
    all_results = [render(flagship_run / name, EXPERIMENTS[name]) for name in ("digits", "imitation")]
    print_closing(all_results, EXPERIMENTS, flagship_run, wall=1.0, cpu=2.0)
    printed = capsys.readouterr().out
    assert "published (not measured here)" in printed and "8,430-12,400" in printed
    for results in all_results:
        for row in results["summary"]:
            if row["quantity"] in EXPERIMENTS[results["experiment"]].analysis.HEADLINE:
                assert format_estimate(row) in printed
            if row["quantity"].startswith("untrained (step 0) ") and row["n"]:  # next to each final value
                assert format_estimate(row) in printed
        for row in not_improved(results["summary"]):  # the variants that did not learn are named
            assert f"{row['variant']} ({format_estimate(row)})" in printed
    assert str(flagship_run / "digits" / "report.md") in printed
    assert f"tensorboard --logdir {flagship_run}" in printed and "#custom_scalars" in printed


def test_imitation_runs_memory_ppo_beside_ppo_on_the_same_encoder(tmp_path):
    out = tmp_path / "runs"
    assert main(["imitation", "--seeds", "1", "--workers", "0", "--no-progress", "--out", str(out),
                 "--budget.demo-counts", "8", "--budget.bc-steps", "2", "--budget.bc-epochs", "0",
                 "--budget.rl-steps", "256", "--budget.eval-every", "128", "--budget.eval-episodes", "4",
                 "--budget.rl-algos", "ppo", "memory-ppo"]) == 0
    results = json.loads((out / "imitation" / "results.json").read_text())
    rl = {r["variant"]: r for r in results["runs"] if r["paradigm"] == "rl"}
    assert set(rl) == {"ppo", "memory-ppo"} and not results["errors"]
    assert rl["memory-ppo"]["algo"] == "memory-ppo" and rl["memory-ppo"]["curve"][0]["steps"] == 0
    assert rl["memory-ppo"]["encoder_params"] == rl["ppo"]["encoder_params"]  # one fusion encoder for both
    finals = {r["variant"] for r in results["summary"] if r["quantity"] == "final success rate"}
    assert {"ppo", "memory-ppo"} <= finals
    report = (out / "imitation" / "report.md").read_text()
    assert "| MemoryPPO (reward) |" in report and "MemoryPPO: the same recipe" in report


def test_memory_ppo_flops_count_its_memory_full():
    from agents.config import AgentConfig
    from agents.factory import make_agent
    from envs.make import first_observation
    from experiments.runs.rl import policy_flops

    def flops(memory_length: int) -> int:
        config = AgentConfig("lab/CartPoleNoVel-v1", "memory-ppo", n_envs=1,
                             algo_kwargs=dict(n_steps=32, batch_size=32),
                             policy_kwargs=dict(memory_kwargs=dict(memory_length=memory_length, d_model=16,
                                                                   num_heads=2, dim_feedforward=32)))
        model = make_agent(config, seed=0)
        try:
            return policy_flops(model, first_observation("lab/CartPoleNoVel-v1"))
        finally:
            model.get_env().close()

    short, long = flops(4), flops(36)
    # attention scores and the weighted sum over M past steps: 2 x 2 x M x d FLOPs for the one query
    assert long - short == 2 * 2 * (36 - 4) * 16


def test_the_ladder_runs_end_to_end_at_a_tiny_budget(tmp_path):
    """Experiment 5 (issue 19): a BC search over demonstration counts and a PPO run per level and seed, the
    table beside the paper's intervals, the log-scale figure."""
    out = tmp_path / "runs"
    assert main(["ladder", "--seeds", "1", "--workers", "0", "--no-progress", "--out", str(out),
                 "--budget.demo-grid", "4", "8", "--budget.bc-steps", "2", "--budget.bc-epochs", "0",
                 "--budget.rl-steps", "256", "--budget.eval-every", "128", "--budget.eval-episodes", "4",
                 "--budget.final-episodes", "6"]) == 0
    results = json.loads((out / "ladder" / "results.json").read_text())
    bc = next(r for r in results["runs"] if r["variant"] == "bc-GoToRedBallGrey")
    ppo = next(r for r in results["runs"] if r["variant"] == "ppo-GoToRedBallGrey")
    assert [p["demos"] for p in bc["points"]] == [4, 8] and bc["points"][-1]["eval_episodes"] == 6
    assert ppo["curve"][0]["steps"] == 0 and ppo["final"]["eval_episodes"] == 6 and ppo["steps"] == 256
    report = (out / "ladder" / "report.md").read_text()
    assert "| GoToRedBallGrey | not reached; seeds > 8 |" in report and "8,430-12,400" in report
    assert READ_RULE in report  # how "to the target" is read
    assert (out / "ladder" / "plots" / "ladder.png").is_file()


def test_one_side_of_the_ladder_runs_alone_and_the_other_joins_it_with_resume(tmp_path):
    """--budget.paradigms bc runs the demonstration searches only; the same command with both sides and --resume
    then loads them (not run again) and runs PPO beside them."""
    out = tmp_path / "runs"
    tiny = ["ladder", "--seeds", "1", "--workers", "0", "--no-progress", "--out", str(out),
            "--budget.demo-grid", "4", "--budget.bc-steps", "2", "--budget.bc-epochs", "0", "--budget.rl-steps", "128",
            "--budget.eval-every", "128", "--budget.eval-episodes", "2", "--budget.final-episodes", "2"]
    assert main([*tiny, "--budget.paradigms", "bc"]) == 0
    alone = load(out / "ladder")
    assert [r["variant"] for r in alone["runs"]] == ["bc-GoToRedBallGrey"]
    report = (out / "ladder" / "report.md").read_text()
    assert "| GoToRedBallGrey | not reached; seeds > 4 | 8,430-12,400 | not run |" in report
    assert "only the BC side ran (--budget.paradigms)" in report

    assert main([*tiny, "--resume"]) == 0
    both = load(out / "ladder")
    assert sorted(r["variant"] for r in both["runs"]) == ["bc-GoToRedBallGrey", "ppo-GoToRedBallGrey"]
    assert both["timing"]["resumed_jobs"] == 1
    assert next(r for r in both["runs"] if r["variant"] == "bc-GoToRedBallGrey") == alone["runs"][0]


def test_the_offline_experiment_runs_end_to_end_at_a_tiny_budget(tmp_path):
    """Experiment 6 (issue 20): behaviour policies' episodes as Minari datasets that minari's own API reads, BC,
    %BC and DT on each, PPO online, DT's return achieved against return asked."""
    import minari

    out = tmp_path / "runs"
    assert main(["offline", "--seeds", "1", "--workers", "0", "--no-progress", "--out", str(out),
                 "--budget.episodes", "20", "--budget.mixtures", "expert", "noisy", "--budget.epochs", "0",
                 "--budget.min-steps", "2", "--budget.rl-steps", "256", "--budget.eval-every", "128",
                 "--budget.eval-episodes", "4", "--budget.dt-targets", "0.5", "1.0"]) == 0
    results = json.loads((out / "offline" / "results.json").read_text())
    assert not results["errors"]
    variants = {r["variant"] for r in results["runs"]}
    assert {"bc-noisy", "pbc-noisy", "dt-noisy", "ppo", "bc-untrained", "dataset-noisy"} <= variants
    dataset = next(r for r in results["runs"] if r["variant"] == "dataset-noisy")
    assert dataset["sources"] == {"bot": 2, "random": 18} and dataset["episodes"] == 20
    read = minari.load_dataset(str(Path(dataset["run_dir"]) / dataset["dataset_path"]))  # minari's own reader
    assert read.total_episodes == 20 and read.spec.env_spec.id == "BabyAI-GoToRedBallGrey-v0"
    dt = next(r for r in results["runs"] if r["variant"] == "dt-noisy")
    assert [t["fraction"] for t in dt["targets"]] == [0.5, 1.0]
    assert next(r for r in results["runs"] if r["variant"] == "pbc-noisy")["kept_episodes"] == 2
    report = (out / "offline" / "report.md").read_text()
    assert "### The noisy data" in report and "return achieved, asking for 50% of the best return" in report
    assert (out / "offline" / "plots" / "dt_return_asked_vs_achieved.png").is_file()


def test_the_offline_experiment_learns_from_a_minari_dataset_the_user_names(tmp_path, monkeypatch,
                                                                             minari_made_dataset):
    """A dataset made with minari's own tools, named by id (``--budget.minari-datasets``), joins the mixtures."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    minari_made_dataset("users/GoToRedBallGrey/turns-v0", episodes=6)
    out = tmp_path / "runs"
    assert main(["offline", "--seeds", "1", "--workers", "0", "--no-progress", "--out", str(out),
                 "--budget.episodes", "10", "--budget.mixtures", "expert", "--budget.epochs", "0",
                 "--budget.min-steps", "2", "--budget.rl-steps", "128", "--budget.eval-every", "128",
                 "--budget.eval-episodes", "4", "--budget.dt-targets", "1.0",
                 "--budget.minari-datasets", "users/GoToRedBallGrey/turns-v0"]) == 0
    results = json.loads((out / "offline" / "results.json").read_text())
    assert not results["errors"]
    dataset = next(r for r in results["runs"] if r["variant"] == "dataset-minari-turns-v0")
    assert dataset["episodes"] == 6 and dataset["sources"] == {"random turns": 6}
    assert {"bc-minari-turns-v0", "pbc-minari-turns-v0", "dt-minari-turns-v0"} <= {r["variant"] for r in results["runs"]}
    assert "### The minari-turns-v0 data" in (out / "offline" / "report.md").read_text()
