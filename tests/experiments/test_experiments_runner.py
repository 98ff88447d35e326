"""The job runner in this process (dependencies, failures, order, resume, ETA) and the batched evaluators; the Ray
engine itself: test_engine_cluster.py and test_engine_interrupt.py."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from experiments.common import format_estimate, markdown_table, mean_curve, summary_row
from experiments.display import Display, format_eta
from experiments.runner import INCOMPLETE, MARKER, Job, critical_path_order, mark_incomplete, run_jobs


def record(run_dir: Path, report, deps, *, value: float, fail: bool = False) -> dict:
    if fail:
        raise RuntimeError("this run fails")
    report(1, 1)
    return {"value": value + sum(d["value"] for d in deps.values()), "dir": str(run_dir)}


def test_jobs_see_their_dependencies_and_a_failure_skips_only_its_dependants(tmp_path):
    jobs = [
        Job("e/b/seed1", record, dict(value=2.0), deps=("e/a/seed1",)),
        Job("e/a/seed1", record, dict(value=1.0)),
        Job("e/bad/seed1", record, dict(value=0.0, fail=True)),
        Job("e/after-bad/seed1", record, dict(value=0.0), deps=("e/bad/seed1",)),
    ]
    outcome = run_jobs(jobs, tmp_path, workers=0, progress=False)
    assert outcome.records["e/b/seed1"]["value"] == 3.0  # its dependency's record was passed in
    assert outcome.records["e/a/seed1"]["dir"] == str(tmp_path / "e/a/seed1")
    assert "this run fails" in outcome.errors["e/bad/seed1"]
    assert outcome.errors["e/after-bad/seed1"].startswith("skipped")
    assert not outcome.ok and outcome.cpu_time_s >= 0 and outcome.wall_time_s > 0


def test_bad_job_lists_fail_before_running():
    with pytest.raises(ValueError, match="unique"):
        run_jobs([Job("a", record), Job("a", record)], "unused", workers=0, progress=False)
    with pytest.raises(ValueError, match="unknown job"):
        run_jobs([Job("a", record, deps=("nope",))], "unused", workers=0, progress=False)


def test_resume_loads_finished_jobs_and_runs_unfinished_ones_again(tmp_path):
    jobs = [Job("e/a/seed1", record, dict(value=1.0)), Job("e/b/seed1", record, dict(value=2.0), deps=("e/a/seed1",)),
            Job("e/c/seed1", record, dict(value=3.0), resumable=True)]
    first = run_jobs(jobs, tmp_path, workers=0, progress=False)
    assert all((tmp_path / j.id / MARKER).is_file() for j in jobs)
    for job in jobs[1:]:  # as if interrupted while b and c ran: no marker, a partial file
        (tmp_path / job.id / MARKER).unlink()
        (tmp_path / job.id / "partial.txt").write_text("half")
    mark_incomplete(jobs, tmp_path, {"e/a/seed1": first.records["e/a/seed1"]})
    assert (tmp_path / "e/b/seed1" / INCOMPLETE).is_file() and not (tmp_path / "e/a/seed1" / INCOMPLETE).exists()
    again = run_jobs(jobs, tmp_path, workers=0, progress=False, resume=True)
    assert again.loaded == ["e/a/seed1"] and again.records["e/a/seed1"] == first.records["e/a/seed1"]
    assert {k: r["value"] for k, r in again.records.items()} == {k: r["value"] for k, r in first.records.items()}
    assert not (tmp_path / "e/b/seed1" / "partial.txt").exists()  # not resumable: started from scratch
    assert (tmp_path / "e/c/seed1" / "partial.txt").exists()  # resumable: its checkpoint dir is left to it
    assert not list(tmp_path.rglob(INCOMPLETE))


def test_resume_refuses_a_finished_job_whose_arguments_changed(tmp_path):
    run_jobs([Job("e/a/seed1", record, dict(value=1.0))], tmp_path, workers=0, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        run_jobs([Job("e/a/seed1", record, dict(value=5.0))], tmp_path, workers=0, progress=False, resume=True)


def test_eta_weighs_runs_by_cost_and_counts_partial_progress():
    jobs = [Job("a", record, cost=1.0), Job("b", record, cost=3.0), Job("old", record, cost=100.0)]
    display = Display(jobs, "t", enabled=False, loaded=["old"])  # loaded: done, not part of the rate
    assert display.eta_s() is None and display.done == 1
    display.started(jobs[0])
    display.began = time.perf_counter() - 10.0  # 10 s in: a finished (cost 1), b half done (1.5): 2.5 of 4 took 10 s
    display.finished(jobs[0], ok=True)
    display.started(jobs[1])
    display.update("b", 50, 100)
    assert display.eta_s() == pytest.approx(10.0 * 1.5 / 2.5, rel=0.05)
    assert format_eta(6.0) == "ETA 0:06" and format_eta(3725) == "ETA 1:02:05"


def test_long_chains_start_first():
    short, long_ = Job("short", record, cost=1.0), Job("long", record, cost=10.0)
    parent = Job("parent", record, cost=0.5)  # cheap itself, but a long run waits for it
    child = Job("child", record, cost=20.0, deps=("parent",))
    assert [j.id for j in critical_path_order([short, long_, child, parent])] == ["parent", "child", "long", "short"]


def test_summary_rows_format_and_tables():
    row = summary_row("goal", "final test accuracy", "ppo", [0.9, 0.95, None])
    assert row["n"] == 2 and row["n_total"] == 3 and row["mean"] == pytest.approx(0.925)
    assert format_estimate(row) == f"0.925 [{row['ci_low']:.3f}, {row['ci_high']:.3f}] (2/3 seeds)"
    assert format_estimate(summary_row("c", "params", "x", [5, 5], "{:,.0f}")) == "5 (all seeds)"
    assert format_estimate(summary_row("c", "t", "x", [None, None])) == "n/a (0/2 seeds)"
    rows = [row, summary_row("goal", "final test accuracy", "a2c", [0.5, 0.6], reference="paper: 0.7")]
    table = markdown_table(rows, labels={"ppo": "PPO"})
    assert table.splitlines()[0] == "| quantity | PPO | a2c | published reference (not measured here) |"
    assert "paper: 0.7" in table.splitlines()[2]


def test_mean_curve_aligns_seeds():
    same = [[{"x": 0, "y": 0.0}, {"x": 10, "y": 1.0}], [{"x": 0, "y": 0.5}, {"x": 10, "y": 1.0}]]
    curve = mean_curve(same, "x", "y")
    assert curve["x"] == [0, 10] and curve["mean"] == [0.25, 1.0]
    shifted = [[{"x": 0, "y": 0.0}, {"x": 10, "y": 1.0}], [{"x": 0, "y": 0.0}, {"x": 20, "y": 1.0}]]
    curve = mean_curve(shifted, "x", "y", points=3)
    assert curve["x"] == [0, 5, 10] and curve["mean"] == pytest.approx([0.0, 0.375, 0.75])


def test_bandit_evaluator_equals_the_sequential_test_sweep():
    from agents.factory import make_agent
    from agents.train import evaluate, make_eval_env
    from experiments.rl_runs import BanditTestEvaluator

    model = make_agent("ppo", "lab/DigitsBandit-v0", "conv", seed=0, device="cpu", n_envs=2,
                       encoder_kwargs=dict(channels=[8, 16], strides=[1, 2]), algo_kwargs=dict(n_steps=32))
    model.learn(64)
    env, kind, episodes = make_eval_env("lab/DigitsBandit-v0", {}, 0, 0)
    sweep = evaluate(model, env, episodes, kind)  # agents.train: one test image per episode, in order
    batched = BanditTestEvaluator("lab/DigitsBandit-v0")(model)
    assert batched["accuracy"] == pytest.approx(sweep["accuracy"]) and batched["eval_episodes"] == episodes
    model.get_env().close()
    env.close()


def test_rollout_evaluator_is_reproducible_and_leaves_training_randomness_alone():
    import torch

    from experiments.rl_runs import RolloutEvaluator

    evaluator = RolloutEvaluator("lab/BabyAI-GoToRedBallGrey-v0", episodes=6, seed=5, n_envs=4,
                                 exclude_seeds={6})
    assert evaluator.episode_seeds == [5, 7, 8, 9, 10, 11]

    def random_act(obs):
        return torch.randint(0, 7, (len(obs["image"]),)).numpy()

    torch.manual_seed(123)
    first = evaluator.play(random_act)
    after_first = torch.rand(1)
    torch.manual_seed(123)
    second = evaluator.play(random_act)
    assert first == second and first["eval_episodes"] == 6 and 0.0 <= first["success_rate"] <= 1.0
    assert torch.equal(torch.rand(1), after_first)  # the caller's random stream is where it was
    evaluator.close()
    assert np.isfinite(first["mean_length"])
