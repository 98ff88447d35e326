import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

import envs  # noqa: F401  (registers lab/*)
from envs.cartpole import CartPoleNoVelEnv
from envs.history import HistoryWrapper


def _actions(n, seed=0):
    return np.random.default_rng(seed).integers(0, 2, size=n).tolist()


def test_observation_is_cartpole_position_and_angle_for_same_seed_and_actions():
    full, novel = gym.make("CartPole-v1"), gym.make("lab/CartPoleNoVel-v1")
    for episode_seed in (0, 1):
        obs_full, _ = full.reset(seed=episode_seed)
        obs, _ = novel.reset(seed=episode_seed)
        np.testing.assert_array_equal(obs, obs_full[[0, 2]])
        for action in _actions(500, episode_seed):
            step_full, step = full.step(action), novel.step(action)
            np.testing.assert_array_equal(step[0], step_full[0][[0, 2]])
            assert step[1:4] == step_full[1:4]  # reward, terminated, truncated
            if step[2] or step[3]:
                break
        assert step[2]  # random actions drop the pole well before 500 steps


def test_space_bounds_and_time_limit_match_cartpole_v1():
    full, novel = gym.make("CartPole-v1"), gym.make("lab/CartPoleNoVel-v1")
    np.testing.assert_array_equal(novel.observation_space.low, full.observation_space.low[[0, 2]])
    np.testing.assert_array_equal(novel.observation_space.high, full.observation_space.high[[0, 2]])
    assert novel.observation_space.dtype == np.float32
    assert novel.spec.max_episode_steps == full.spec.max_episode_steps == 500
    assert novel.spec.reward_threshold == full.spec.reward_threshold


def test_truncates_at_500_steps():
    env = gym.make("lab/CartPoleNoVel-v1")
    env.reset(seed=0)
    env.unwrapped.theta_threshold_radians = np.inf  # keep the pole "up" so only the time limit can end it
    env.unwrapped.x_threshold = np.inf
    for t in range(1, 501):
        _, reward, terminated, truncated, _ = env.step(t % 2)
        assert reward == 1.0 and not terminated
        assert truncated == (t == 500)


def test_history_mask_counts_real_steps_and_shifts_most_recent_last():
    k = 4
    env = HistoryWrapper(CartPoleNoVelEnv(), k)
    obs, _ = env.reset(seed=0)
    raw = [env.unwrapped.state[[0, 2]].astype(np.float32)]
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["mask"], [0, 0, 0, 1])
    np.testing.assert_array_equal(obs["obs"][:-1], 0)
    np.testing.assert_array_equal(obs["obs"][-1], raw[0])
    for t in range(1, 7):
        obs, *_ = env.step(t % 2)
        raw.append(env.unwrapped.state[[0, 2]].astype(np.float32))
        real = min(t + 1, k)
        np.testing.assert_array_equal(obs["mask"], [0] * (k - real) + [1] * real)
        np.testing.assert_array_equal(obs["obs"][k - real:], np.stack(raw[-real:]))  # oldest first, newest last
        np.testing.assert_array_equal(obs["obs"][: k - real], 0)


def test_history_is_cleared_at_reset_so_nothing_leaks_from_the_previous_episode():
    env = gym.make("lab/CartPoleNoVelHistory-v1", k=5)
    obs, _ = env.reset(seed=3)
    terminated = truncated = False
    while not (terminated or truncated):
        last, _, terminated, truncated, _ = env.step(0)  # always push left: terminates quickly
    assert last["mask"].all()  # the history was full at the end
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs["mask"], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(obs["obs"][:-1], 0)
    assert not np.isin(obs["obs"][-1], last["obs"]).all()


def test_history_space_includes_zero_padding_and_rejects_bad_arguments():
    env = HistoryWrapper(gym.make("Pendulum-v1"), 3)  # bounds already include 0
    assert env.observation_space["obs"].shape == (3, 3)
    assert env.observation_space["mask"] == gym.spaces.MultiBinary(3)
    with pytest.raises(ValueError, match="positive int"):
        HistoryWrapper(CartPoleNoVelEnv(), 0)
    with pytest.raises(TypeError, match="needs a Box observation space"):
        HistoryWrapper(gym.make("FrozenLake-v1"), 2)


def test_history_works_across_an_sb3_dummy_vec_env_auto_reset():
    k = 3
    vec = DummyVecEnv([lambda: gym.make("lab/CartPoleNoVelHistory-v1", k=k)])
    vec.seed(0)
    obs = vec.reset()
    np.testing.assert_array_equal(obs["mask"][0], [0, 0, 1])
    steps = 0
    while True:
        obs, _, dones, infos = vec.step(np.array([1]))
        steps += 1
        if dones[0]:
            break
        np.testing.assert_array_equal(obs["mask"][0], [0] * max(k - steps - 1, 0) + [1] * min(steps + 1, k))
    terminal = infos[0]["terminal_observation"]
    assert terminal["mask"].all()
    np.testing.assert_array_equal(obs["mask"][0], [0, 0, 1])  # the auto-reset observation starts afresh
    np.testing.assert_array_equal(obs["obs"][0][:-1], 0)
    assert np.abs(obs["obs"][0][-1]).max() <= 0.05  # a fresh CartPole state, not the falling pole
    obs, *_ = vec.step(np.array([0]))
    np.testing.assert_array_equal(obs["mask"][0], [0, 1, 1])


def test_history_wrapper_on_a_made_env_passes_both_env_checkers(check_env_both):
    check_env_both(HistoryWrapper(gym.make("lab/CartPoleNoVel-v1"), 4))


def test_vec_normalize_must_be_told_to_leave_the_mask_alone():
    from stable_baselines3.common.vec_env import VecNormalize

    vec = DummyVecEnv([lambda: gym.make("lab/CartPoleNoVelHistory-v1", k=4)])
    with pytest.raises(ValueError, match="mask is of type MultiBinary"):
        VecNormalize(vec)
    obs = VecNormalize(vec, norm_obs_keys=["obs"]).reset()
    np.testing.assert_array_equal(obs["mask"], [[0, 0, 0, 1]])
