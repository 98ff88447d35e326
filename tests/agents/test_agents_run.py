"""AgentRun, the one RL run routine: results.json, hooks, evaluations that never change training, stop and resume
in process (bit-identical with in-process envs), bad options before any run directory."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agents.checkpoint import CHECKPOINT_FILE
from agents.config import AgentConfig
from agents.run import AgentRun, RunInterrupted, RunOptions

# CartPole, 2 envs x 64 steps per rollout, 2 minibatches x 1 epoch = 2 updates per rollout.
CONFIG = AgentConfig("CartPole-v1", n_envs=2, algo_kwargs=dict(n_steps=64, batch_size=64, n_epochs=1),
                     timesteps=1024, eval_freq=256, eval_episodes=3, eval_envs=3)
OPTIONS = dict(seed=3, device="cpu", checkpoint_every_s=0.0)


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}


def _assert_same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def _without_wall_time(curve: list[dict]) -> list[dict]:
    return [{k: v for k, v in point.items() if k != "wall_time_s"} for point in curve]


class RecordingRun(AgentRun):
    """The experiments' hooks: progress and extra results.json fields; stops itself at ``stop_at`` steps."""

    def __init__(self, *args, stop_at: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reported: list[tuple[int, int]] = []
        self.stop_at = stop_at

    def on_progress(self, steps: int, total: int) -> None:
        self.reported.append((steps, total))
        if self.stop_at is not None and steps >= self.stop_at:
            self.request_stop()

    def extra_record(self, model) -> dict:
        return {"variant": "hooked", "num_timesteps": model.num_timesteps}


def test_a_run_writes_its_record_with_the_curve_from_step_0_and_calls_its_hooks(tmp_path):
    run = RecordingRun(CONFIG, tmp_path / "run", RunOptions(**OPTIONS))
    record = run.run()
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == json.loads(json.dumps(record))
    assert [p["steps"] for p in record["curve"]] == [0, 256, 512, 768, 1024] and record["final"] == record["curve"][-1]
    assert record["curve"][0]["episodes"] == 0 and record["final"]["eval_episodes"] == 3
    assert record["steps"] == record["samples"] == 1024 and record["updates"] == 2 * 1024 // 128
    assert record["metric"] == "mean_return" and record["final_metric"] == record["final"]["mean_return"]
    assert record["episodes"] == record["final"]["episodes"] > 0 and record["resumes"] == []
    assert record["config"] == CONFIG.to_dict() and record["seed"] == 3
    assert record["variant"] == "hooked" and record["num_timesteps"] == 1024  # extra_record
    steps = [s for s, _ in run.reported]
    assert steps == sorted(steps) and steps[-1] == 1024 and {t for _, t in run.reported} == {1024}
    assert run.progress.curve == record["curve"] and run.progress.updates == record["updates"]  # the run's state
    assert not (tmp_path / "run" / CHECKPOINT_FILE).exists() and (tmp_path / "run" / "model.zip").exists()
    assert not AgentRun.can_resume(tmp_path / "run")


@pytest.mark.parametrize("between_rollouts", [False, True], ids=["mid-rollout", "between-rollouts"])
def test_training_is_identical_with_and_without_evaluations(between_rollouts, tmp_path):
    """Sampled evaluations of a VecNormalize-d agent draw from their own generator and envs: the policy trains the
    same whether it is evaluated every 256 steps or never."""
    config = CONFIG.merged(normalize_obs=True, eval_actions="sampled")
    quiet = AgentRun(config.merged(eval_freq=0), tmp_path / "quiet", RunOptions(**OPTIONS))
    evaluated = AgentRun(config, tmp_path / "evaluated", RunOptions(**OPTIONS, eval_between_rollouts=between_rollouts))
    quiet_record, evaluated_record = quiet.run(), evaluated.run()
    assert [p["steps"] for p in quiet_record["curve"]] == [0, 1024]
    assert [p["steps"] for p in evaluated_record["curve"]] == [0, 256, 512, 768, 1024]  # 256 = two rollouts
    _assert_same_params(_params(quiet.model), _params(evaluated.model))
    stats = quiet.model.get_vec_normalize_env().obs_rms, evaluated.model.get_vec_normalize_env().obs_rms
    assert (stats[0].mean == stats[1].mean).all() and stats[0].count == stats[1].count
    assert quiet_record["final"] == {**evaluated_record["final"], "wall_time_s": quiet_record["final"]["wall_time_s"]}


RESUMABLE = CONFIG.merged(normalize_obs=True, eval_actions="sampled")  # VecNormalize statistics and sampling RNG too


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, dict[str, torch.Tensor]]:
    run = AgentRun(RESUMABLE, tmp_path_factory.mktemp("whole") / "run", RunOptions(**OPTIONS))
    return run.run(), _params(run.model)


def _assert_same_run(record: dict, model, uninterrupted) -> None:
    expected, params = uninterrupted
    assert _without_wall_time(record["curve"]) == _without_wall_time(expected["curve"])
    for key in ("steps", "episodes", "updates", "final_metric"):
        assert record[key] == expected[key], key
    _assert_same_params(params, _params(model))


def test_a_stopped_run_checkpoints_and_resumes_bit_identically(tmp_path, uninterrupted):
    stopped = RecordingRun(RESUMABLE, tmp_path / "stopped", RunOptions(**OPTIONS), stop_at=300)
    with pytest.raises(RunInterrupted) as interrupted:
        stopped.run()
    run_dir = tmp_path / "stopped"
    assert interrupted.value.run_dir == run_dir and interrupted.value.total == 1024
    assert (run_dir / CHECKPOINT_FILE).exists() and AgentRun.can_resume(run_dir)
    assert not (run_dir / "results.json").exists() and not (run_dir / "model.zip").exists()  # nothing looks finished
    resumed = AgentRun.resume(run_dir)
    assert resumed.config == RESUMABLE and resumed.options == RunOptions(**OPTIONS)
    record = resumed.run()
    assert record["resumes"] == [{"steps": 384, "exact": True}]  # the rollout in progress at 300 finished first
    assert (run_dir / "progress.resume1.csv").exists() and not (run_dir / CHECKPOINT_FILE).exists()
    _assert_same_run(record, resumed.model, uninterrupted)


class CrashingRun(AgentRun):
    def on_progress(self, steps: int, total: int) -> None:
        if steps >= 300:
            raise RuntimeError("the machine went down")


def test_a_crashed_run_resumes_from_its_last_periodic_checkpoint_bit_identically(tmp_path, uninterrupted):
    options = RunOptions(**{**OPTIONS, "checkpoint_every_s": 1e-9})  # a checkpoint before every rollout
    with pytest.raises(RuntimeError, match="went down"):
        CrashingRun(RESUMABLE, tmp_path / "run", options).run()
    assert AgentRun.can_resume(tmp_path / "run") and not (tmp_path / "run" / "results.json").exists()
    resumed = AgentRun.resume(tmp_path / "run")
    record = resumed.run()
    assert record["resumes"] == [{"steps": 256, "exact": True}]  # the rollout in progress at the crash is redone
    _assert_same_run(record, resumed.model, uninterrupted)


def test_a_subprocess_env_run_resumes_with_fresh_envs_and_says_it_was_not_exact(tmp_path):
    config = CONFIG.merged(vec_env="subproc", timesteps=512, eval_freq=0)
    with pytest.raises(RunInterrupted):
        RecordingRun(config, tmp_path / "run", RunOptions(**OPTIONS), stop_at=1).run()
    record = AgentRun.resume(tmp_path / "run").run()
    assert record["resumes"] == [{"steps": 128, "exact": False}] and record["steps"] == 512
    assert [p["steps"] for p in record["curve"]] == [0, 512]


def test_bad_options_and_existing_directories_fail_in_prepare_before_any_run_directory(tmp_path):
    with pytest.raises(ValueError, match="needs an image"):
        AgentRun(CONFIG.merged(encoder="conv"), tmp_path / "bad", RunOptions(**OPTIONS)).prepare()
    with pytest.raises(ValueError, match="DQN needs a Discrete"):
        AgentRun(AgentConfig("Pendulum-v1", "dqn"), tmp_path / "bad", RunOptions(**OPTIONS)).prepare()
    assert not (tmp_path / "bad").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "results.json").write_text("{}")
    with pytest.raises(FileExistsError, match="never overwritten"):
        AgentRun(CONFIG, taken, RunOptions(**OPTIONS)).prepare()
    assert [p.name for p in taken.iterdir()] == ["results.json"]
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty directory (e.g. made by a scheduler) is fine
    AgentRun(CONFIG.merged(timesteps=128, eval_freq=0, eval_episodes=1), empty, RunOptions(**OPTIONS)).run()
    assert (Path(empty) / "results.json").exists()


def test_a_run_ends_once_its_metric_held_at_two_evaluations_and_evaluates_a_last_time(tmp_path):
    """stop_at_metric (issue 19's ladder: no PPO run trains on after it reached 99% and kept it)."""
    config = CONFIG.merged(timesteps=4096, eval_freq=256, stop_at_metric=9.0, final_eval_episodes=5)
    record = AgentRun(config, tmp_path / "run", RunOptions(**OPTIONS, eval_between_rollouts=True)).run()
    curve = record["curve"]
    held = next(i for i in range(1, len(curve)) if curve[i - 1]["mean_return"] >= 9 and curve[i]["mean_return"] >= 9)
    assert record["stopped_early"] and record["steps"] < 4096
    assert curve[-1]["steps"] == record["steps"] > curve[held]["steps"] and len(curve) == held + 2
    assert record["final"]["eval_episodes"] == 5 and curve[held]["eval_episodes"] == 3
    whole = AgentRun(config.merged(stop_at_metric=None), tmp_path / "whole", RunOptions(**OPTIONS)).run()
    assert not whole["stopped_early"] and whole["steps"] == 4096
