"""``python -m agents.train`` interrupted and resumed: SIGINT / SIGTERM checkpoint, print the resume command and exit
130 / 143; ``--resume`` finishes with exactly an uninterrupted run's numbers; a bad --resume exits 2."""
from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.checkpoint import CHECKPOINT_FILE, DamagedCheckpointError, read_checkpoint
from agents.config import AgentConfig
from agents.run import AgentRun, RunInterrupted, RunOptions
from agents.train import main

REPO = Path(__file__).resolve().parents[2]
# ~47 rollouts of 128 steps: a signal sent after the first one lands well before the end.
ARGV = ["CartPole-v1", "--n-envs", "2", "--algo-kwargs", '{"n_steps": 64, "batch_size": 64, "n_epochs": 1}',
        "--timesteps", "6000", "--eval-freq", "1024", "--eval-episodes", "3", "--no-progress-bar", "--device", "cpu"]
RESUME_LINE = re.compile(r"Resume with: python -m agents\.train --resume (\S+)")


def _train(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "agents.train", *argv], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _interrupt_after_first_rollout(process: subprocess.Popen, csv_glob: str, root: Path, sig: int) -> tuple[str, str]:
    """Send ``sig`` once the run has logged a rollout (a row in its progress CSV); the process's output."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        rows = [len(p.read_text().splitlines()) for p in root.glob(csv_glob)]
        if rows and max(rows) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the run ended before it was interrupted:\n{process.communicate()[1]}"
    process.send_signal(sig)
    return process.communicate(timeout=180)


def _assert_interrupted(process: subprocess.Popen, out_err: tuple[str, str], code: int, name: str) -> Path:
    err = out_err[1]
    assert process.returncode == code, err
    assert f"{name}: stopping after this rollout" in err and "Traceback" not in err
    resume = RESUME_LINE.search(err)
    assert resume, err
    run_dir = Path(resume.group(1))
    assert (run_dir / CHECKPOINT_FILE).exists() and not (run_dir / "results.json").exists()
    assert not (run_dir / "model.zip").exists()  # nothing that looks finished
    return run_dir


def _comparable(record: dict) -> dict:
    strip = lambda point: {k: v for k, v in point.items() if k != "wall_time_s"}  # noqa: E731
    return {"curve": [strip(p) for p in record["curve"]], "final": strip(record["final"]),
            **{k: record[k] for k in ("steps", "episodes", "updates", "metric", "final_metric", "config")}}


def test_sigint_then_sigterm_then_resume_ends_exactly_as_an_uninterrupted_run(tmp_path):
    runs = tmp_path / "interrupted"
    first = _train(*ARGV, "--runs-dir", str(runs))
    run_dir = _assert_interrupted(first, _interrupt_after_first_rollout(first, "*/*/progress.csv", runs, signal.SIGINT),
                                  130, "SIGINT")
    assert run_dir.parent.parent == runs and run_dir.parent.name == "CartPole-v1"

    second = _train("--resume", str(run_dir))  # interrupted again, by SIGTERM this time
    out_err = _interrupt_after_first_rollout(second, "progress.resume1.csv", run_dir, signal.SIGTERM)
    assert _assert_interrupted(second, out_err, 143, "SIGTERM") == run_dir

    resumed = main(["--resume", str(run_dir)])  # in this process: the same code path, one interpreter start less
    assert json.loads((run_dir / "results.json").read_text()) == resumed
    assert [r["exact"] for r in resumed["resumes"]] == [True, True]
    steps = [r["steps"] for r in resumed["resumes"]]
    assert 0 < steps[0] < steps[1] < 6000 and all(s % 128 == 0 for s in steps)  # between rollouts
    assert not (run_dir / CHECKPOINT_FILE).exists() and (run_dir / "model.zip").exists()

    expected = main([*ARGV, "--runs-dir", str(tmp_path / "whole")])  # the same seed (1), never interrupted
    assert _comparable(resumed) == _comparable(expected)
    # the two stopped processes' time is kept for the run's cost (an experiment adds it to its job's times)
    assert resumed["earlier_segments"]["cpu_time_s"] > 0 and resumed["earlier_segments"]["wall_time_s"] > 0
    assert expected["earlier_segments"] == {"wall_time_s": 0.0, "cpu_time_s": 0.0}
    assert [p["steps"] for p in resumed["curve"]] == [0, 1024, 2048, 3072, 4096, 5120, 6016]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The resume.pkl of a run stopped after its first rollout."""
    run_dir = tmp_path_factory.mktemp("stopped") / "run"

    class StopAtOnce(AgentRun):
        def on_progress(self, steps: int, total: int) -> None:
            self.request_stop()

    config = AgentConfig("CartPole-v1", algo_kwargs=dict(n_steps=32, batch_size=32, n_epochs=1), timesteps=256,
                         eval_episodes=1)
    with pytest.raises(RunInterrupted):
        StopAtOnce(config, run_dir, RunOptions(device="cpu", checkpoint_every_s=0)).run()
    return run_dir / CHECKPOINT_FILE


def _damage(how: str, good: Path, run_dir: Path) -> None:
    run_dir.mkdir()
    data = good.read_bytes()
    damaged = {"empty": b"", "truncated": data[: len(data) // 2], "garbage": os.urandom(256),
               "not-a-checkpoint": pickle.dumps({"model": b"?"})}[how]
    (run_dir / CHECKPOINT_FILE).write_bytes(damaged)


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage", "not-a-checkpoint"])
def test_resuming_from_a_damaged_checkpoint_exits_2_naming_the_file(how, checkpoint, tmp_path, capsys):
    run_dir = tmp_path / "run"
    _damage(how, checkpoint, run_dir)
    with pytest.raises(SystemExit) as exit_info:
        main(["--resume", str(run_dir)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert str(run_dir / CHECKPOINT_FILE) in err and ("damaged" in err or "not a resume checkpoint" in err)
    assert "Traceback" not in err and len(err.splitlines()) == 1  # one paragraph
    assert sorted(p.name for p in run_dir.iterdir()) == [CHECKPOINT_FILE]  # nothing started


@pytest.mark.parametrize("argv,match", [
    (["--resume", "{missing}"], "resume.pkl"),
    (["--resume", "{good}", "--seed", "3"], "drop --seed"),
    (["--resume", "{good}", "--timesteps", "512"], "drop --timesteps"),
    (["CartPole-v1", "--resume", "{good}"], "drop --env-id"),
])
def test_a_missing_run_or_resume_with_other_options_exits_2(argv, match, checkpoint, tmp_path, capsys):
    paths = {"missing": str(tmp_path / "no-such-run"), "good": str(checkpoint.parent)}
    before = sorted(p.name for p in checkpoint.parent.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        main([arg.format(**paths) for arg in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == before and not (tmp_path / "no-such-run").exists()


def test_a_damaged_checkpoint_is_named_in_one_line_whatever_pickle_says(tmp_path):
    # pickle's "persistent id" error spans two lines; which error a truncated file gives depends on where it is cut
    path = tmp_path / CHECKPOINT_FILE
    path.write_bytes(b"\x80\x04P0\n.")  # protocol 4, then a persistent id: pickle.load has no persistent_load
    with pytest.raises(DamagedCheckpointError) as error:
        read_checkpoint(path)
    assert str(path) in str(error.value) and len(str(error.value).splitlines()) == 1
