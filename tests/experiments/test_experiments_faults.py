"""``python -m experiments`` against what a careful user or a tester does to it (issue 18): two invocations into one
``--out``, a damaged record of a finished run, a file where the output directory should be, an unknown experiment,
a disk that refuses the results. Each one: one clear message, a documented exit code, nothing lost."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import experiments.pipeline
from experiments.cli import main
from experiments.engine.jobs import Job
from experiments.engine.markers import MARKER
from experiments.engine.run import run_jobs
from experiments.engine.signals import Interrupted
from experiments.output_dir import OutputLock
from lab.io import WriteError, atomic_write

REPO = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from pathlib import Path
from experiments.output_dir import OutputLock
with OutputLock(Path(sys.argv[1]), ["digits"], ["python -m experiments digits", "(the first)"]):
    print("holding", flush=True)
    time.sleep(600)
"""


def _quick(tiny_digits_budget: list[str], out: Path, *extra: str) -> list[str]:
    return ["digits", "--seeds", "1", "--workers", "0", "--no-progress", "--out", str(out), *tiny_digits_budget,
            *extra]


def test_a_second_invocation_into_the_same_out_is_refused_naming_the_first_and_a_dead_one_is_no_owner(
        tiny_digits_budget, tmp_path, capsys):
    """(Before: two invocations into one --out both ran, each clearing the other's run directories.)"""
    out = tmp_path / "runs"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=REPO, text=True, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        assert main(_quick(tiny_digits_budget, out)) == 2
        err = capsys.readouterr().err
        assert time.monotonic() - started < 30  # refused at once, before any work
        assert f"{out / 'digits'} is in use by another run (PID {holder.pid} on" in err
        assert "(the first)" in err and not (out / "digits").exists()
        assert main(_quick(tiny_digits_budget, out, "--resume")) == 2  # --resume is refused too
    finally:
        holder.send_signal(signal.SIGKILL)  # dies without releasing anything itself
        holder.wait()
    assert main(_quick(tiny_digits_budget, out)) == 0  # the kernel dropped the dead holder's lock


def test_resume_runs_again_a_run_whose_record_is_damaged_and_says_which_file(tiny_digits_budget, tmp_path, capsys):
    """(Before: a truncated job.json made --resume die with a raw JSONDecodeError traceback, no file named.)"""
    out = tmp_path / "runs"
    assert main(_quick(tiny_digits_budget, out)) == 0
    first = json.loads((out / "digits" / "results.json").read_text())
    marker = out / "digits" / "supervised" / "seed1" / MARKER
    marker.write_text(marker.read_text()[:40])  # truncated, as by a crash of a writer that was not atomic
    capsys.readouterr()
    assert main(_quick(tiny_digits_budget, out, "--resume")) == 0
    err = capsys.readouterr().err
    assert f"ignored {marker}" in err and "job.json.damaged" in err and "Traceback" not in err
    again = json.loads((out / "digits" / "results.json").read_text())
    assert again["timing"]["resumed_jobs"] == 2  # the two intact runs were loaded; the damaged one ran again
    curves = lambda results: {r["variant"]: [p["accuracy"] for p in r["curve"]] for r in results["runs"]}  # noqa
    assert curves(again) == curves(first) and json.loads(marker.read_text())["job"] == "digits/supervised/seed1"


def test_a_file_as_out_and_an_unknown_experiment_are_refused_in_one_line_before_any_work(tmp_path):
    """(Before: --out naming a file started Ray and failed after ~10 s with a NotADirectoryError traceback; an
    unknown experiment printed 58 lines of usage.)"""
    file = tmp_path / "a-file"
    file.write_text("not a directory")
    done = subprocess.run([sys.executable, "-m", "experiments", "digits", "--out", str(file)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip() == (
        f"error: --out {file}: {file} is a file, not a directory; choose another --out")
    done = subprocess.run([sys.executable, "-m", "experiments", "digitz"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 2
    assert "error: unknown experiment 'digitz'; choose one of digits, imitation" in done.stderr


def test_results_the_disk_refuses_exit_74_naming_the_file(tiny_digits_budget, tmp_path, capsys, monkeypatch):
    def full(exp_dir: Path, results: dict) -> None:
        raise WriteError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(exp_dir / "results.json"))

    monkeypatch.setattr(experiments.pipeline, "write_results", full)
    assert main(_quick(tiny_digits_budget, tmp_path / "runs")) == 74
    err = capsys.readouterr().err
    assert f"could not write {tmp_path / 'runs' / 'digits' / 'results.json'}: No space left on device" in err
    assert "repeat the command with --resume" in err and "Traceback" not in err
    assert len(list((tmp_path / "runs" / "digits").glob(f"*/seed1/{MARKER}"))) == 3  # every run is kept


@pytest.mark.parametrize("directory", ["a-file"])
def test_a_file_as_demos_dir_is_refused_before_any_work(tmp_path, capsys, directory):
    (tmp_path / directory).write_text("")
    assert main(["imitation", "--workers", "0", "--out", str(tmp_path / "runs"), "--budget.demos-dir",
                 str(tmp_path / directory)]) == 2
    assert "is a file, not a directory of demonstrations" in capsys.readouterr().err


def _checkpoint_torn_by_sigterm(run_dir, report, deps, torn):
    """A job whose checkpoint write is hit by the in-process engine's SIGTERM handler (it raises at once): the
    handler's exception raised inside torch.save's third write, as a signal landing there does."""
    error = Interrupted(signal.SIGTERM, 0, 0)
    atomic_write(Path(run_dir) / "last.pt", lambda f: torch.save({"w": torch.ones(100)}, torn(f, 3, error)))
    return {}


def _never(run_dir, report, deps):
    raise AssertionError("the engine went on after SIGTERM")


def test_sigterm_inside_a_checkpoint_write_stops_the_inline_engine(tmp_path, interrupted_file):
    # torch.save turns an exception inside its writes into "RuntimeError: unexpected pos"; the engine must still
    # see the interrupt (mark the run unfinished and stop), not a failed run to skip past.
    jobs = [Job("exp/a", _checkpoint_torn_by_sigterm, dict(torn=interrupted_file), cost=2.0), Job("exp/b", _never)]
    with pytest.raises(Interrupted) as stop:
        run_jobs(jobs, tmp_path, workers=0, progress=False)
    assert stop.value.signum == signal.SIGTERM and stop.value.total == 2 and stop.value.finished == 0
    assert not (tmp_path / "exp" / "a" / "last.pt").exists()
    assert not list((tmp_path / "exp" / "a").glob(".*.tmp"))
