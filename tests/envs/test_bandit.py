import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers lab/*)
from envs.bandit import DigitsBanditEnv, Mnist1dBanditEnv
from lab.data import digits_splits, mnist1d_splits


def test_observation_space_is_the_stored_uint8_image():
    env = gym.make("lab/DigitsBandit-v0")
    space = env.observation_space
    assert (space.shape, space.dtype) == ((1, 8, 8), np.uint8)
    assert space.low.min() == 0 and space.high.max() == 255
    assert env.action_space == gym.spaces.Discrete(10)


def test_reward_is_one_exactly_for_the_true_label():
    env = gym.make("lab/DigitsBandit-v0")
    env.reset(seed=0)
    for _ in range(20):
        _, info = env.reset()
        for action in range(10):
            _, again = env.reset(options={"index": info["index"]})  # same question, every label
            assert again == info
            _, reward, terminated, truncated, step_info = env.step(action)
            assert reward == (1.0 if action == info["label"] else 0.0)
            assert terminated and not truncated
            assert step_info["is_success"] == (action == info["label"])
            assert step_info["label"] == info["label"]


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_splits_are_exactly_lab_data_splits(split):
    env = DigitsBanditEnv(split=split, sequential=True)
    expected = digits_splits().split(split)
    np.testing.assert_array_equal(env.x, expected.x)
    np.testing.assert_array_equal(env.y, expected.y)
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(obs, expected.x[0])
    assert info == {"label": int(expected.y[0]), "index": 0}


def test_sequential_sweep_visits_every_test_image_once_and_gives_exact_accuracy():
    env = gym.make("lab/DigitsBandit-v0", split="test", sequential=True)
    test = digits_splits().test
    n = len(env.unwrapped)
    assert n == len(test) == 359
    env.reset(seed=0)
    env.step(0)
    seen, correct = [], 0.0
    for i in range(n):
        obs, info = env.reset(seed=0) if i == 0 else env.reset()  # a seeded reset restarts the sweep
        np.testing.assert_array_equal(obs, test.x[info["index"]])
        seen.append(info["index"])
        right = i % 2 == 0  # answer every other image correctly
        _, reward, *_ = env.step(info["label"] if right else (info["label"] + 1) % 10)
        correct += reward
    assert seen == list(range(n))
    assert correct == (n + 1) // 2
    _, info = env.reset()  # the sweep wraps around
    assert info["index"] == 0


def test_uniform_sampling_is_seeded():
    def indices(seed):
        env = DigitsBanditEnv()
        env.reset(seed=seed)
        return [env.reset()[1]["index"] for _ in range(30)]

    assert indices(1) == indices(1)
    assert indices(1) != indices(2)
    assert len(set(indices(1))) > 20  # draws spread over the 1259 training images


def test_options_index_selects_an_example():
    env = DigitsBanditEnv(split="val")
    obs, info = env.reset(options={"index": 5})
    np.testing.assert_array_equal(obs, digits_splits().val.x[5])
    assert info["index"] == 5
    with pytest.raises(IndexError, match="outside the val split"):
        env.reset(options={"index": 10_000})


def test_observation_is_a_copy():
    env = DigitsBanditEnv(split="test", sequential=True)
    obs, _ = env.reset(seed=0)
    obs[:] = 0
    assert env.x[0].any()


def test_unknown_split_and_bad_usage_fail_clearly():
    with pytest.raises(ValueError, match="unknown split 'testing'; choose one of train, val, test"):
        gym.make("lab/DigitsBandit-v0", split="testing")
    env = DigitsBanditEnv()
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be an int in"):
        env.step(10)
    env.step(0)
    with pytest.raises(RuntimeError, match="call reset"):  # one step per episode
        env.step(0)


def test_mnist1d_bandit_serves_the_mnist1d_splits():
    env = gym.make("lab/Mnist1dBandit-v0", split="test", sequential=True)
    test = mnist1d_splits().test
    assert (env.observation_space.shape, env.observation_space.dtype) == ((40,), np.float32)
    assert len(env.unwrapped) == len(test) == 1000
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(obs, test.x[0])
    _, reward, terminated, _, _ = env.step(info["label"])
    assert reward == 1.0 and terminated
    splits = mnist1d_splits()
    for split in (splits.train, splits.val, splits.test):
        assert env.observation_space.contains(split.x.min(0)) and env.observation_space.contains(split.x.max(0))
    np.testing.assert_array_equal(Mnist1dBanditEnv(split="train").x, splits.train.x)


@pytest.mark.parametrize("env_id", ["lab/DigitsBandit-v0", "lab/Mnist1dBandit-v0"])
def test_sequential_evaluation_env_passes_both_env_checkers(env_id, check_env_both):
    check_env_both(gym.make(env_id, split="test", sequential=True))
