"""Interrupting ``python -m experiments`` (SIGINT to its process, SIGTERM to its process group) and resuming it:
every worker stops, no process is left, the resume command is printed, and ``--resume`` gives the numbers an
uninterrupted run gives."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.engine import Interrupted, Job, run_jobs
from experiments.engine.markers import INCOMPLETE, MARKER

DIGITS = ["digits", "--seeds", "2", "--no-progress", "--budget.samples", "1024", "--budget.eval-every", "512",
          "--budget.channels", "8", "16", "--budget.strides", "1", "2"]


def numbers(exp_dir: Path) -> dict:
    """Every number of results.json that does not measure time: the runs' curves and the summary rows."""
    results = json.loads((exp_dir / "results.json").read_text())
    curves = {r["job"]: [(p["samples"], p["accuracy"]) for p in r["curve"]] for r in results["runs"]}
    summary = [(r["quantity"], r["variant"], r["values"]) for r in results["summary"]
               if r["unit"] != "s" and "time" not in r["quantity"]]  # wall / CPU times and their ratios vary
    return {"curves": curves, "summary": summary, "errors": results["errors"]}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted") / "runs"
    assert main([*DIGITS, "--workers", "0", "--out", str(out)]) == 0
    return numbers(out / "digits")


def processes() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, state), from ``ps`` (zombies left out)."""
    listing = subprocess.run(["ps", "-eo", "pid=,ppid=,stat="], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in listing.splitlines()]
    return {int(pid): (int(ppid), stat) for pid, ppid, stat in rows if not stat.startswith("Z")}


def descendants(root: int) -> set[int]:
    table, found, frontier = processes(), set(), {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("signum, to_group, resume_workers", [(signal.SIGINT, False, "0"),
                                                               (signal.SIGTERM, True, "2")])
def test_an_interrupted_experiment_stops_every_process_and_resumes_to_the_same_numbers(
        tmp_path, uninterrupted, signum, to_group, resume_workers):
    out = tmp_path / "runs"
    argv = [*DIGITS, "--workers", "2", "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "experiments", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: any(out.glob(f"digits/*/*/{MARKER}")) or process.poll() is not None)
    wait_for(lambda: len(descendants(process.pid)) >= 4)  # Ray's services and at least one worker
    children = descendants(process.pid)
    if to_group:
        os.killpg(process.pid, signum)
    else:
        os.kill(process.pid, signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    wait_for(lambda: not children & set(processes()), 20)  # no orphan: every one of them is gone
    line = next(line for line in err.splitlines() if line.startswith("interrupted"))
    finished, total = map(int, re.search(r"(\d+) of (\d+) runs finished", line).groups())
    assert 0 < finished < total == 6
    assert not (out / "digits" / "results.json").exists()  # nothing unfinished looks finished
    assert len(list(out.glob(f"digits/*/*/{MARKER}"))) == finished
    resume = shlex.split(line.split("Resume with: ")[1])
    assert resume[:3] == ["python", "-m", "experiments"] and resume[-1] == "--resume"

    code = main([*resume[3:-1], "--resume", "--workers", resume_workers])  # a later option wins
    assert code == 0
    assert numbers(out / "digits") == uninterrupted
    assert not list(out.glob(f"digits/*/*/{INCOMPLETE}"))
    results = json.loads((out / "digits" / "results.json").read_text())
    assert results["timing"]["resumed_jobs"] == finished
    report = (out / "digits" / "report.md").read_text()
    assert f"resumed (`--resume`): {finished} of the {total} jobs had finished in an earlier invocation" in report


def test_a_signal_inside_an_in_process_job_stops_the_experiment_instead_of_failing_that_run(tmp_path, uninterrupted):
    out = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "experiments", *DIGITS, "--workers", "0", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def a_job_is_running() -> bool:  # one run finished and the next one has begun writing
        started = [d for d in out.glob("digits/*/*") if any(d.iterdir()) and not (d / MARKER).exists()]
        return bool(started and any(out.glob(f"digits/*/*/{MARKER}"))) or process.poll() is not None

    wait_for(a_job_is_running)
    os.kill(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "failed" not in err and not (out / "digits" / "results.json").exists()
    assert "Resume with:" in err
    assert main([*DIGITS, "--workers", "0", "--out", str(out), "--resume"]) == 0
    assert numbers(out / "digits") == uninterrupted


def loses_a_signal(run_dir: Path, report, deps) -> dict:
    """A job in which SIGTERM's exception is lost, as a C extension can lose it (torch did, in A2C's update)."""
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this sleep ends
    except KeyboardInterrupt:
        pass
    return {"value": 1.0}


def never_runs(run_dir: Path, report, deps) -> dict:
    raise AssertionError("a job started after SIGTERM")


def test_a_signal_whose_exception_a_job_lost_still_stops_the_engine_after_that_job(tmp_path):
    jobs = [Job("e/lost/seed1", loses_a_signal), Job("e/next/seed1", never_runs)]
    before = signal.getsignal(signal.SIGTERM)  # SIG_DFL, or Ray's where an earlier test started Ray here
    with pytest.raises(Interrupted) as stop:
        run_jobs(jobs, tmp_path, workers=0, progress=False)
    assert (stop.value.signum, stop.value.finished, stop.value.total) == (signal.SIGTERM, 1, 2)
    assert (tmp_path / "e/lost/seed1" / MARKER).exists() and not (tmp_path / "e/next/seed1").exists()
    assert signal.getsignal(signal.SIGTERM) is before  # the engine's handler is gone again


def test_a_used_output_directory_is_refused_with_a_hint_to_resume(tmp_path, capsys):
    (tmp_path / "runs" / "digits" / "ppo").mkdir(parents=True)
    assert main([*DIGITS, "--out", str(tmp_path / "runs")]) == 2
    assert "--resume" in capsys.readouterr().err
