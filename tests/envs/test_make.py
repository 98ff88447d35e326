"""envs.make: every Gymnasium id the lab trains on (lab/ ids, raw MiniGrid / BabyAI levels, module:Id forms)."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs.babyai import BabyAIObservation
from envs.make import first_observation, is_minigrid, make_env, resolve_id


@pytest.mark.parametrize("env_id", ["BabyAI-GoToLocal-v0", "MiniGrid-Empty-5x5-v0"])
def test_raw_minigrid_ids_come_wrapped_with_token_missions_like_the_lab_ids(env_id):
    lab = make_env("lab/BabyAI-GoToRedBallGrey-v0")
    env = make_env(env_id)
    assert isinstance(env, BabyAIObservation) and is_minigrid(env) and is_minigrid(env_id)
    assert set(env.observation_space.spaces) == set(lab.observation_space.spaces)
    assert env.observation_space["mission"] == lab.observation_space["mission"]  # token ids, not text
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    history = make_env(env_id, action_history=3)  # the wrapper's options pass through
    assert history.observation_space["prev_actions"].shape == (3,)
    for e in (lab, env, history):
        e.close()


def test_minigrid_levels_report_success_at_episode_ends_only():
    env = make_env("MiniGrid-Empty-5x5-v0", max_steps=12)
    env.reset(seed=0)
    ends = []
    for _ in range(12):
        _, reward, terminated, truncated, info = env.step(2 if len(ends) % 2 else 1)  # forward / right: wanders
        if terminated or truncated:
            ends.append(info)
            break
        assert "is_success" not in info
    assert ends and ends[0]["is_success"] is False  # timed out without reaching the goal
    env.close()
    solved = make_env("MiniGrid-Empty-5x5-v0")  # start (1, 1) facing right, goal (3, 3)
    solved.reset(seed=0)
    for action in (2, 2, 1, 2, 2):  # forward, forward, turn right, forward, forward
        _, reward, terminated, _, info = solved.step(action)
    assert terminated and reward > 0 and info["is_success"] is True
    solved.close()


@pytest.mark.parametrize("env_id,registered", [
    ("gymnasium.envs.classic_control:CartPole-v1", "CartPole-v1"),
    ("envs:lab/CartPoleNoVel-v1", "lab/CartPoleNoVel-v1"),
    ("lab/DigitsBandit-v0", "lab/DigitsBandit-v0"),
    ("BabyAI-GoToLocal-v0", "BabyAI-GoToLocal-v0"),
])
def test_module_colon_id_forms_resolve_to_the_registered_level(env_id, registered):
    assert resolve_id(env_id) == registered
    env = make_env(env_id)
    assert env.spec.id == registered
    env.close()


def test_an_unknown_id_fails_with_gymnasiums_suggestions():
    with pytest.raises(gym.error.NameNotFound, match="Did you mean"):
        resolve_id("lab/CartPole-v1")
    with pytest.raises(gym.error.Error):
        resolve_id("BabyAI-NoSuchLevel-v0")
    with pytest.raises(gym.error.Error, match="cannot import module 'no_such_lab_module'"):
        resolve_id("no_such_lab_module:CartPole-v1")


def test_first_observation_is_the_seed_0_reset():
    obs = first_observation("lab/BabyAI-GoToRedBallGrey-v0")
    again = make_env("lab/BabyAI-GoToRedBallGrey-v0").reset(seed=0)[0]
    for key in obs:
        np.testing.assert_array_equal(obs[key], again[key])
