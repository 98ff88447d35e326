"""Memory tasks: RepeatFirst's rules and window bound, POPGym through one-hot observations."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers lab/*)
from envs.memory_tasks import MEMORY_ENV_SPECS, OneHotObservation, RepeatFirstEnv


def _play(env: RepeatFirstEnv, policy, seed: int | None = None) -> float:
    obs, _ = env.reset(seed=seed)
    history, total, done = [obs], 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy(history))
        history.append(obs)
        total += reward
        done = terminated or truncated
    return total


def test_repeat_first_rewards_the_first_symbol_for_exactly_length_steps():
    env = RepeatFirstEnv(num_symbols=4, length=12)
    assert _play(env, lambda h: int(np.argmax(h[0])), seed=0) == pytest.approx(1.0)  # perfect memory
    repeat_current = np.mean([_play(env, lambda h: int(np.argmax(h[-1]))) for _ in range(200)])
    assert 0.25 < repeat_current < 0.4  # step 0 right, then 1/4 by chance: (1 + 11 / 4) / 12 = 0.3125
    assert env.window_bound(8) == pytest.approx(0.75) and env.window_bound(12) == 1.0


def test_window_policy_cannot_beat_the_bound_on_average():
    """The best K-window policy (the first symbol while still in view, a guess after) scores the bound."""
    env = RepeatFirstEnv(num_symbols=4, length=12)
    env.reset(seed=1)

    def window_policy(history):
        return int(np.argmax(history[0])) if len(history) <= 8 else 0  # guessing: 1/4 right in expectation

    mean = np.mean([_play(env, window_policy) for _ in range(2000)])
    assert abs(mean - env.window_bound(8)) < 0.01


@pytest.mark.parametrize("env_id", sorted(MEMORY_ENV_SPECS))
def test_memory_ids_pass_the_checkers(env_id, check_env_both):
    env = gym.make(env_id)
    check_env_both(env)
    env.close()


def test_one_hot_needs_discrete():
    with pytest.raises(TypeError, match="Discrete"):
        OneHotObservation(gym.make("CartPole-v1"))
    env = gym.make("lab/PopgymRepeatFirstEasy-v0")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4,) and obs.sum() == 1.0


def test_one_hot_of_multi_discrete_concatenates_each_components_one_hot():
    """CountRecall observes (dealt card, queried card): two one-hots side by side, each summing to one."""
    env = gym.make("lab/PopgymCountRecallMedium-v0")  # MultiDiscrete([4, 4])
    assert env.observation_space.shape == (8,)
    env.reset(seed=0)
    for _ in range(5):
        obs, *_ = env.step(0)
        dealt, queried = env.unwrapped.last_obs  # POPGym's own MultiDiscrete observation
        assert obs[:4].sum() == obs[4:].sum() == 1.0 and obs[dealt] == obs[4 + queried] == 1.0
