import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.preprocessing import is_image_space, preprocess_obs
from stable_baselines3.common.vec_env import DummyVecEnv

import envs  # noqa: F401  (registers lab/*)
from envs.babyai import IMAGE_HIGH, BabyAIObservation, is_success, make_babyai_env
from envs.tokenizer import DEFAULT_MAX_LEN, VOCAB_SIZE, MissionTokenizer

LEVEL = "BabyAI-GoToRedBallGrey-v0"
NOISY_LEVEL, NOISY_SEED = "BabyAI-PutNextLocal-v0", 4  # prints "Sampling rejected: ..." while generating


def test_wrapper_passes_both_env_checkers(check_env_both):
    check_env_both(make_babyai_env(LEVEL))
    check_env_both(make_babyai_env(LEVEL, action_history=4))


def test_spaces_and_observation():
    env = make_babyai_env(LEVEL)
    space = env.observation_space
    assert space["image"].shape == (7, 7, 3) and space["image"].dtype == np.uint8
    np.testing.assert_array_equal(space["image"].high[0, 0], IMAGE_HIGH)
    assert space["direction"] == gym.spaces.Discrete(4)
    assert space["mission"].shape == (DEFAULT_MAX_LEN,) and space["mission"].dtype == np.int64
    assert space["mission"].high.max() == VOCAB_SIZE - 1
    obs, _ = env.reset(seed=0)
    raw = env.unwrapped.gen_obs()
    np.testing.assert_array_equal(obs["image"], raw["image"])  # raw symbolic indices, untouched
    assert obs["direction"] == raw["direction"]
    assert MissionTokenizer().decode(obs["mission"]) == env.unwrapped.mission == "go to the red ball"
    assert space.contains(obs)


def test_sb3_does_not_treat_the_symbolic_image_as_pixels():
    env = make_babyai_env(LEVEL)
    assert not is_image_space(env.observation_space["image"])  # so no /255 and no VecTransposeImage
    obs, _ = env.reset(seed=0)
    batch = {key: torch.as_tensor(np.asarray(value))[None] for key, value in obs.items()}
    processed = preprocess_obs(batch, env.observation_space, normalize_images=True)
    np.testing.assert_array_equal(processed["image"][0].numpy(), obs["image"].astype(np.float32))
    np.testing.assert_array_equal(processed["mission"][0].long().numpy(), obs["mission"])
    assert processed["direction"].shape == (1, 4)  # SB3 one-hot encodes Discrete


def test_mission_ids_follow_the_episode_through_a_vec_env_auto_reset():
    vec = DummyVecEnv([lambda: make_babyai_env("BabyAI-GoToLocal-v0")])
    vec.seed(1)
    obs = vec.reset()
    tok = MissionTokenizer()
    missions = {tok.decode(obs["mission"][0])}
    for _ in range(300):  # random actions: episodes end by time-out (64 steps) or by luck
        obs, _, dones, _ = vec.step(np.array([vec.action_space.sample()]))
        assert tok.decode(obs["mission"][0]) == vec.envs[0].unwrapped.mission
        missions.add(tok.decode(obs["mission"][0]))
    assert len(missions) > 1


def test_generation_noise_never_reaches_stdout(capsys):
    raw = gym.make(NOISY_LEVEL)
    raw.reset(seed=NOISY_SEED)
    assert "Sampling rejected" in capsys.readouterr().out  # the level really is noisy

    env = make_babyai_env(NOISY_LEVEL)
    for seed in range(NOISY_SEED + 1):
        env.reset(seed=seed)
    registered = gym.make("lab/BabyAI-GoToLocal-v0")
    registered.reset(seed=0)
    assert capsys.readouterr().out == ""


def test_is_success_and_time_limit():
    assert is_success(0.9, True)
    assert not is_success(0.0, True)  # failure termination (strict levels)
    assert not is_success(0.0, False)  # time-out truncation
    env = make_babyai_env(LEVEL)
    env.reset(seed=0)
    assert env.unwrapped.max_steps == 64
    terminated = truncated = False
    steps = 0
    while not (terminated or truncated):
        _, reward, terminated, truncated, _ = env.step(env.unwrapped.actions.done)  # a no-op in BabyAI
        steps += 1
    assert truncated and not terminated and steps == 64 and not is_success(reward, terminated)


def test_bad_input_fails_clearly():
    with pytest.raises(gym.error.Error, match="is not registered"):
        make_babyai_env("BabyAI-NoSuchLevel-v0")
    with pytest.raises(TypeError, match="MiniGrid Dict observation"):
        BabyAIObservation(gym.make("CartPole-v1"))
    with pytest.raises(Exception, match="max_len"):
        make_babyai_env("BabyAI-BossLevel-v0", max_len=3).reset(seed=0)
