"""Faults an RL run meets (issue 18): NaN / inf from the env or the loss, a stop requested in the final evaluation,
another run's checkpoint in a run directory, MemoryPPO given another model's state, a disk that refuses a write.
Each one stops with one clear message and keeps what was there before."""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import agents.evaluation
import lab.io
from agents.checkpoint import CHECKPOINT_FILE
from agents.config import AgentConfig
from agents.memory import MemoryPPO
from agents.finite import NonFiniteError
from agents.run import (
    CONFIG_FILE, FAILED_FILE, RESULTS_FILE, AgentRun, CheckpointMismatchError, RunInterrupted, RunOptions,
)

REPO = Path(__file__).resolve().parents[2]
CONFIG = AgentConfig("CartPole-v1", n_envs=2, algo_kwargs=dict(n_steps=64, batch_size=64, n_epochs=1),
                     timesteps=512, eval_freq=256, eval_episodes=3, eval_envs=3)
OPTIONS = dict(seed=3, device="cpu", checkpoint_every_s=0.0)
# A CartPole whose observation (or reward) turns non-finite at a given step: importable as faulty_envs:Id.
FAULTY_ENVS = '''
import gymnasium as gym
import numpy as np

class Faulty(gym.Wrapper):
    \"\"\"CartPole whose observation or reward turns to ``value`` from step ``at`` of an episode, in training
    episodes only (evaluation episodes reset with seeds from 1,000,003 on) unless ``in_evaluation``.\"\"\"

    def __init__(self, env, at, field, value, in_evaluation=False):
        super().__init__(env)
        self.at, self.field, self.value, self.in_evaluation = at, field, value, in_evaluation
        self.steps, self.evaluating = 0, False

    def reset(self, seed=None, **kwargs):
        if seed is not None:
            self.evaluating = seed >= 1_000_000
        self.steps = 0
        return self.env.reset(seed=seed, **kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps >= self.at and (self.in_evaluation or not self.evaluating):
            if self.field == "obs":
                obs = np.full_like(obs, self.value)
            else:
                reward = self.value
        return obs, reward, terminated, truncated, info

for name, field, value, in_evaluation in (("NanObs", "obs", np.nan, False), ("InfReward", "reward", np.inf, False),
                                          ("HugeReward", "reward", 1e30, False), ("NanEval", "obs", np.nan, True)):
    gym.register(f"{name}-v0", entry_point=lambda field=field, value=value, in_evaluation=in_evaluation, **kw: Faulty(
        gym.make("CartPole-v1"), 5, field, value, in_evaluation))
'''


@pytest.fixture
def faulty_envs(tmp_path, monkeypatch) -> Path:
    (tmp_path / "faulty_envs.py").write_text(FAULTY_ENVS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("env_id, what", [("faulty_envs:NanObs-v0", r"nan in the observations \(envs 0, 1\)"),
                                          ("faulty_envs:InfReward-v0", r"inf in the rewards \(env"),
                                          ("faulty_envs:HugeReward-v0", r"a non-finite loss \(train/value_loss = inf"),
                                          ("faulty_envs:NanEval-v0", "nan in the observations .* evaluation episode")])
def test_a_non_finite_observation_reward_or_gradient_stops_the_run_before_an_update(faulty_envs, tmp_path, env_id,
                                                                                     what):
    """(Before: NaN observations ended in a 40-line torch ValueError about logits inside SB3.) A reward of 1e30 is
    finite, but its squared value error is not: an inf loss whose clipped gradients are finite (zero)."""
    run = AgentRun(CONFIG.merged(env_id=env_id, timesteps=4096), tmp_path / "run",
                   RunOptions(**{**OPTIONS, "checkpoint_every_s": 1e-9}))
    with pytest.raises(NonFiniteError, match=what) as stopped:
        run.run()
    message = str(stopped.value)
    assert env_id in message and "environment step" in message and "\n" not in message
    assert (tmp_path / "run" / FAILED_FILE).read_text().strip() == message
    assert not (tmp_path / "run" / RESULTS_FILE).exists()  # nothing looks finished
    # the checkpoint from before is kept and named (none at the untrained policy's evaluation)
    assert ("resume with" in message) == (tmp_path / "run" / CHECKPOINT_FILE).exists() == ("Eval" not in env_id)
    params = run.model.policy.parameters()
    assert all(np.isfinite(p.detach().numpy()).all() for p in params)  # the policy was not updated from it


def test_a_non_finite_gradient_stops_before_the_optimizer_step(tmp_path):
    run = AgentRun(CONFIG, tmp_path / "run", RunOptions(**OPTIONS))
    run.run()
    optimizer = run.model.policy.optimizer
    for p in run.model.policy.parameters():
        p.grad = torch.zeros_like(p)
    next(run.model.policy.parameters()).grad[0] = float("nan")
    before = [p.detach().clone() for p in run.model.policy.parameters()]
    with pytest.raises(NonFiniteError, match="a non-finite gradient .* the parameters were not updated"):
        optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, run.model.policy.parameters()))


def test_the_cli_exits_1_naming_the_non_finite_value_and_the_env(faulty_envs, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(faulty_envs), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "agents.train", "faulty_envs:NanObs-v0", "--n-envs", "2",
                           "--timesteps", "2048", "--runs-dir", str(tmp_path / "runs"), "--no-progress-bar",
                           "--device", "cpu"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "nan in the observations (envs 0, 1) of faulty_envs:NanObs-v0" in line and "environment step" in line
    assert "Traceback" not in done.stderr


class StopDuringFinalEvaluation(AgentRun):
    """Requests a stop from inside the final evaluation, after its second batch of actions."""

    def prepare(self) -> None:
        super().prepare()
        actor = agents.evaluation.sb3_actor
        calls = []

        def counting(model, greedy, seed):
            act = actor(model, greedy, seed)

            def counted(observations):
                if model.num_timesteps == self.config.timesteps:
                    calls.append(1)
                    if len(calls) == 2:
                        self.request_stop()
                return act(observations)
            return counted

        agents.evaluation.sb3_actor = counting  # restored by the test


def test_a_stop_during_the_final_evaluation_checkpoints_and_the_resume_finishes_identically(tmp_path, monkeypatch):
    """(Before: SIGTERM during the final evaluation was ignored: the evaluation finished, results were written,
    exit 0.)"""
    whole = AgentRun(CONFIG, tmp_path / "whole", RunOptions(**OPTIONS)).run()
    monkeypatch.setattr(agents.evaluation, "sb3_actor", agents.evaluation.sb3_actor)
    stopped = StopDuringFinalEvaluation(CONFIG, tmp_path / "run", RunOptions(**OPTIONS))
    with pytest.raises(RunInterrupted):
        stopped.run()
    assert not (tmp_path / "run" / RESULTS_FILE).exists() and AgentRun.can_resume(tmp_path / "run")
    monkeypatch.undo()
    resumed = AgentRun.resume(tmp_path / "run").run()
    strip = lambda curve: [{k: v for k, v in p.items() if k != "wall_time_s"} for p in curve]  # noqa: E731
    assert strip(resumed["curve"]) == strip(whole["curve"]) and resumed["updates"] == whole["updates"]


def test_sigterm_during_an_evaluation_exits_143_at_once_and_the_run_resumes(tmp_path):
    """The untrained policy's evaluation of 3,000 CartPole episodes takes many seconds; SIGTERM in it stops the
    command within a few, with the resume line."""
    runs = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "agents.train", "CartPole-v1", "--n-envs", "2", "--timesteps", "256",
         "--algo-kwargs", '{"n_steps": 64, "batch_size": 64, "n_epochs": 1}', "--eval-episodes", "3000",
         "--eval-envs", "8", "--eval-freq", "0", "--runs-dir", str(runs), "--no-progress-bar", "--device", "cpu"],
        cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(runs.glob(f"*/*/{CONFIG_FILE}")) and time.monotonic() < deadline:  # the run has started
        time.sleep(0.05)
    time.sleep(1.0)  # inside the step-0 evaluation
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert time.monotonic() - sent < 30  # not the rest of a 3,000-episode evaluation
    assert "Resume with: python -m agents.train --resume" in err and "Traceback" not in err
    [run_dir] = runs.glob("*/*")
    assert not (run_dir / RESULTS_FILE).exists() and (run_dir / CHECKPOINT_FILE).exists()


def _stopped_run(config: AgentConfig, run_dir: Path) -> None:
    class StopAt(AgentRun):
        def on_progress(self, steps: int, total: int) -> None:
            if steps >= 128:
                self.request_stop()

    with pytest.raises(RunInterrupted):
        StopAt(config, run_dir, RunOptions(**OPTIONS)).run()


def test_a_checkpoint_of_another_run_is_refused_naming_both(tmp_path):
    """(Before: a PPO run's resume.pkl copied into a MemoryPPO run's directory was resumed, as PPO, silently.)"""
    memory = CONFIG.merged(algo="memory-ppo", policy_kwargs=dict(memory_kwargs=dict(
        memory_length=8, d_model=16, num_heads=2, dim_feedforward=32)))
    _stopped_run(CONFIG, tmp_path / "ppo")
    _stopped_run(memory, tmp_path / "memory")
    shutil.copy(tmp_path / "ppo" / CHECKPOINT_FILE, tmp_path / "memory" / CHECKPOINT_FILE)
    with pytest.raises(CheckpointMismatchError) as refused:
        AgentRun.resume(tmp_path / "memory")
    message = str(refused.value)
    assert str(tmp_path / "memory" / CHECKPOINT_FILE) in message and CONFIG_FILE in message
    assert "algo: checkpoint 'ppo', directory 'memory-ppo'" in message
    AgentRun.resume(tmp_path / "ppo")  # its own checkpoint is fine


def test_memory_ppo_checks_the_state_and_episode_starts_it_is_given():
    """(Before: another model's state failed inside the transformer with a torch shape error, an episode_start
    of the wrong length inside numpy.)"""
    tiny = dict(memory_length=8, d_model=16, num_heads=2, dim_feedforward=32)
    model = MemoryPPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, seed=0,
                      policy_kwargs=dict(memory_kwargs=tiny))
    other = MemoryPPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, seed=0,
                      policy_kwargs=dict(memory_kwargs=dict(tiny, memory_length=16)))
    obs = np.zeros((2, 4), dtype=np.float32)
    starts = np.ones(2, dtype=bool)
    _, theirs = other.predict(obs, episode_start=starts)
    with pytest.raises(ValueError, match=r"state's keys have shape \(1, 2, 2, 16, 8\).*\(1, 2, 2, 8, 8\)"):
        model.predict(obs, state=theirs, episode_start=starts)
    _, mine = model.predict(obs, episode_start=starts)
    with pytest.raises(ValueError, match="state's keys have shape .* for 3 env"):
        model.predict(np.zeros((3, 4), dtype=np.float32), state=mine, episode_start=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="episode_start has 3 entries for 2 observation"):
        model.predict(obs, state=mine, episode_start=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match=r"\(keys, values, time\) tuple"):
        model.predict(obs, state=mine[:2], episode_start=starts)
    model.predict(obs, state=mine, episode_start=np.zeros(2, dtype=bool))  # its own state is fine


def test_a_checkpoint_the_disk_refuses_leaves_the_previous_one_and_names_the_file(tmp_path, monkeypatch):
    """An injected ENOSPC on the second checkpoint: WriteError naming resume.pkl and the errno; the first
    checkpoint is intact and resumes."""
    _stopped_run(CONFIG, tmp_path / "run")
    before = (tmp_path / "run" / CHECKPOINT_FILE).read_bytes()
    real = lab.io.os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    run = AgentRun.resume(tmp_path / "run")
    run.options = RunOptions(**{**OPTIONS, "checkpoint_every_s": 1e-9})
    monkeypatch.setattr(lab.io.os, "fsync", full)
    with pytest.raises(lab.io.WriteError) as refused:
        run.run()
    monkeypatch.setattr(lab.io.os, "fsync", real)
    assert refused.value.errno == errno.ENOSPC and refused.value.filename == str(tmp_path / "run" / CHECKPOINT_FILE)
    assert "No space left on device (ENOSPC, errno 28)" in str(refused.value)
    assert (tmp_path / "run" / CHECKPOINT_FILE).read_bytes() == before
    assert not list((tmp_path / "run").glob(f".*{lab.io.TMP_SUFFIX}"))  # nothing half-written left
    AgentRun.resume(tmp_path / "run").run()


def test_a_full_disk_exits_74_naming_the_file_and_errno(tmp_path, user_namespace_mounts):
    """A real full disk: agents.train on a 300 KiB tmpfs (in a user namespace) fills it with its first checkpoint.
    (Before: a traceback through save_checkpoint.)"""
    mount = tmp_path / "small"
    mount.mkdir()
    script = textwrap.dedent(f"""
        mount -t tmpfs -o size=300k tmpfs {mount} && exec {sys.executable} -m agents.train CartPole-v1 \\
            --encoder transformer --timesteps 4096 --runs-dir {mount} --checkpoint-minutes 0.001 \\
            --no-progress-bar --device cpu""")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 74, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "could not write" in line and "No space left on device (ENOSPC, errno 28)" in line
    assert "Traceback" not in done.stderr
