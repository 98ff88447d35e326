"""The job runner in this process (dependencies, failures, order, resume, ETA) and the summary helpers; the Ray
engine itself: test_engine_cluster.py and test_engine_interrupt.py. (The RL evaluators moved to envs.evaluation
and agents.evaluation with the issue-9 redesign; their tests are tests/envs/test_evaluation.py.)"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from experiments.engine import Job, run_jobs
from experiments.engine.display import Display, format_eta
from experiments.engine.jobs import critical_path_order, execute
from experiments.engine.markers import INCOMPLETE, MARKER, mark_incomplete
from experiments.summary import format_estimate, markdown_table, summary_row


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
    assert mark_incomplete(jobs, tmp_path) == 1  # a is finished
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


def resumed_record(run_dir: Path, report, deps) -> dict:
    return {"earlier_segments": {"wall_time_s": 100.0, "cpu_time_s": 90.0}}  # as agents.run records a resumed run


def test_a_resumed_runs_times_include_the_processes_before_this_one(tmp_path):
    record = execute(Job("e/rl/seed1", resumed_record, resumable=True), tmp_path, {}, lambda *_: None)
    assert 100.0 <= record["job_wall_time_s"] < 110.0 and 90.0 <= record["job_cpu_time_s"] < 100.0


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

