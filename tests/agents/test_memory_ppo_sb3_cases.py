"""MemoryPPO in PPO's place: the PPO cases of Stable-Baselines3's ``tests/test_predict.py`` and
``tests/test_dict_env.py`` (2.9), in our words, each test naming the case it mirrors. PPO's arguments as the peer
passes them (its defaults otherwise: MemoryPPO fits its segments to them); the save/load cases are in
``test_memory_ppo_sb3_save_load.py``. Not mirrored: ``test_dqn_epsilon_greedy`` (DQN only),
``test_vec_normalize_image`` (checks VecNormalize's spaces; no algorithm involved).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.wrappers import FlattenObservation, TimeLimit, TransformObservation
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import BitFlippingEnv, SimpleMultiObsEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack, VecNormalize

from agents.memory.ppo import MemoryPPO

DEVICES = ["cpu", "auto"] + (["cuda"] if torch.cuda.is_available() else [])


# --------------------------------------------------------------------------------------------- test_predict.py
def test_a_gymnasium_env_is_wrapped_and_ppo_defaults_learn():
    """test_auto_wrap: a plain Gymnasium env (wrapped into a VecEnv), every PPO default (n_steps 2048)."""
    model = MemoryPPO("MlpPolicy", gym.make("Pendulum-v1"), device="cpu")
    assert model.segment_len == 32 and model.n_steps == 2048 and model.batch_size == 64
    model.learn(100)
    assert model.num_timesteps == 2048  # one whole rollout, then its update


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_predict_takes_one_observation_or_a_batch(env_id, device):
    """test_predict: one observation -> one action of the action space's shape; a VecEnv's batch -> one per env."""
    model = MemoryPPO("MlpPolicy", env_id, n_steps=64, device=device)
    assert model.policy.device.type == model.device.type == torch.device(
        "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu").type
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    action, state = model.predict(obs)
    assert isinstance(action, np.ndarray) and action.shape == env.action_space.shape
    assert env.action_space.contains(action) and state[2].shape == (1,)
    batch = DummyVecEnv([lambda: gym.make(env_id)] * 2).reset()
    actions, state = model.predict(batch)
    assert actions.shape[0] == 2 and state[2].shape == (2,)


class _SubclassedBox(spaces.Box):
    """A Box by inheritance only: SB3 must treat it as a Box."""


class _SubclassedSpacesEnv(gym.Env):
    observation_space = _SubclassedBox(-1.0, 1.0, (2,), np.float32)
    action_space = _SubclassedBox(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, bool(self.np_random.random() < 0.5), False, {}


def test_subclassed_spaces():
    """test_subclassed_space_env: observation and action spaces that subclass Box."""
    env = _SubclassedSpacesEnv()
    model = MemoryPPO("MlpPolicy", env, n_steps=64, device="cpu", policy_kwargs=dict(net_arch=[32])).learn(300)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs)
    assert env.action_space.contains(action)


def test_gymnasium_reset_tuple_is_explained():
    """test_mixing_gym_vecenv_api: predict((obs, info)) says the Gym and VecEnv APIs are mixed, not numpy's
    "inhomogeneous shape"."""
    env = gym.make("CartPole-v1")
    model = MemoryPPO("MlpPolicy", env, n_steps=64, device="cpu")
    with pytest.raises(ValueError, match="mixing Gym API"):
        model.predict(env.reset(seed=0))


# ------------------------------------------------------------------------------------------- test_dict_env.py
class _MixedObsEnv(gym.Env):
    """Dict observations of an image (36x36, one channel, first or last), a vector and a discrete value."""

    def __init__(self, discrete_actions: bool = True, channel_last: bool = False, nested: bool = False) -> None:
        image = (36, 36, 1) if channel_last else (1, 36, 36)
        self.observation_space = spaces.Dict({"img": spaces.Box(0, 255, image, np.uint8),
                                              "vec": spaces.Box(-1.0, 1.0, (2,), np.float32),
                                              "discrete": spaces.Discrete(4)})
        if nested:
            self.observation_space.spaces["inner"] = spaces.Dict({"discrete": spaces.Discrete(4)})
        self.action_space = spaces.Discrete(3) if discrete_actions else spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.observation_space.seed(seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


SMALL_DICT = dict(n_steps=64, n_epochs=1, policy_kwargs=dict(net_arch=[16], features_extractor_kwargs=dict(
    cnn_output_dim=16)))


@pytest.mark.parametrize("policy", ["MlpPolicy", "CnnPolicy"])
def test_a_dict_space_needs_the_multi_input_policy(policy):
    """test_policy_hint: MlpPolicy / CnnPolicy on Dict observations fail early (SB3's hint)."""
    with pytest.raises(ValueError, match="MultiInputPolicy"):
        MemoryPPO(policy, BitFlippingEnv(n_bits=4), device="cpu")


def test_goal_env():
    """test_goal_env: BitFlippingEnv's Dict (observation, achieved and desired goal)."""
    model = MemoryPPO("MultiInputPolicy", BitFlippingEnv(n_bits=4), n_steps=64, n_epochs=1, device="cpu").learn(250)
    rewards, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=2, return_episode_rewards=True)
    assert len(rewards) == 2


def test_a_dict_of_one_vector_acts_as_the_flat_vector():
    """test_consistency: a Dict holding one vector and the flat vector build the same network (the same seed ->
    the same parameters and actions; the peer also compares actions after learning, which its envs' episodes
    decide as much as the networks: here each model just learns)."""
    def as_dict() -> gym.Env:
        env = gym.make("CartPole-v1")
        return TransformObservation(env, lambda o: {"vec": o}, spaces.Dict({"vec": env.observation_space}))

    kwargs = dict(n_steps=64, n_epochs=1, gamma=0.5, seed=1, device="cpu", policy_kwargs=dict(net_arch=[8, 8]))
    dict_model = MemoryPPO("MultiInputPolicy", as_dict(), **kwargs)
    flat_model = MemoryPPO("MlpPolicy", FlattenObservation(as_dict()), **kwargs)
    dict_params, flat_params = dict_model.policy.state_dict(), flat_model.policy.state_dict()
    assert list(dict_params) == list(flat_params)
    for name in dict_params:
        torch.testing.assert_close(dict_params[name], flat_params[name], atol=0, rtol=0)
    obs = np.array([[0.01, -0.02, 0.03, 0.04], [0.1, 0.2, -0.1, -0.2]], dtype=np.float32)
    np.testing.assert_array_equal(dict_model.predict({"vec": obs}, deterministic=True)[0],
                                  flat_model.predict(obs, deterministic=True)[0])
    assert dict_model.learn(128).num_timesteps == flat_model.learn(128).num_timesteps == 128


@pytest.mark.parametrize("channel_last", [False, True])
def test_mixed_dict_observations(channel_last):
    """test_dict_spaces: image (channels first or last) + vector + discrete through CombinedExtractor."""
    env = TimeLimit(_MixedObsEnv(channel_last=channel_last), 100)
    model = MemoryPPO("MultiInputPolicy", env, gamma=0.5, seed=1, device="cpu", **SMALL_DICT).learn(128)
    _, lengths = evaluate_policy(model, env, n_eval_episodes=2, return_episode_rewards=True, warn=False)
    assert lengths == [100, 100]


def test_dict_observations_from_subprocesses():
    """test_multiprocessing: Dict observations through SubprocVecEnv."""
    env = make_vec_env(lambda: TimeLimit(_MixedObsEnv(), 50), n_envs=2, vec_env_cls=SubprocVecEnv)
    try:
        model = MemoryPPO("MultiInputPolicy", env, gamma=0.5, seed=1, device="cpu", **SMALL_DICT).learn(128)
        assert model.num_timesteps == 128
    finally:
        env.close()


@pytest.mark.parametrize("channel_last", [False, True])
def test_dict_observations_frame_stacked(channel_last):
    """test_dict_vec_framestack: VecFrameStack over a Dict (image stacked along its channel axis)."""
    env = DummyVecEnv([lambda: SimpleMultiObsEnv(random_start=True, discrete_actions=True,
                                                 channel_last=channel_last)])
    env = VecFrameStack(env, n_stack=3, channels_order={"vec": None, "img": "last" if channel_last else "first"})
    model = MemoryPPO("MultiInputPolicy", env, gamma=0.5, seed=1, device="cpu", n_steps=64, n_epochs=1,
                      policy_kwargs=dict(net_arch=[8], features_extractor_kwargs=dict(cnn_output_dim=8))).learn(128)
    rewards, _ = evaluate_policy(model, env, n_eval_episodes=2, return_episode_rewards=True, warn=False)
    assert len(rewards) == 2


def test_dict_observations_with_some_keys_normalized():
    """test_vec_normalize: VecNormalize on the vector key of a Dict only."""
    env = VecNormalize(DummyVecEnv([lambda: TimeLimit(_MixedObsEnv(discrete_actions=False), 100)]),
                       norm_obs_keys=["vec"])
    model = MemoryPPO("MultiInputPolicy", env, gamma=0.5, seed=1, device="cpu", **SMALL_DICT).learn(128)
    assert env.obs_rms["vec"].count > 128  # the statistics were updated during the rollouts
    _, lengths = evaluate_policy(model, env, n_eval_episodes=2, return_episode_rewards=True, warn=False)
    assert lengths == [100, 100]


def test_nested_dicts_are_refused():
    """test_dict_nested: a Dict inside the Dict fails as in SB3 (NotImplementedError), with or without a VecEnv."""
    with pytest.raises(NotImplementedError):
        MemoryPPO("MultiInputPolicy", _MixedObsEnv(nested=True), device="cpu")
    with pytest.raises(NotImplementedError):
        DummyVecEnv([lambda: _MixedObsEnv(nested=True)])
