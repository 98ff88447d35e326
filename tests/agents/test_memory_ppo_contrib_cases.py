"""MemoryPPO in RecurrentPPO's place: every case of sb3-contrib's ``tests/test_lstm.py`` (2.9), in our words.

Each test names the case it mirrors. Only what a user would change is changed: the class, the policy names
(``MlpLstmPolicy`` -> ``MlpPolicy`` ...) and the LSTM options, mapped as ``agents.memory.policy.LSTM_EQUIVALENTS``
says: ``lstm_hidden_size`` -> ``memory_kwargs["d_model"]``, ``n_lstm_layers`` -> ``num_layers``, ``lstm_kwargs``'
dropout -> ``dropout``, ``enable_critic_lstm=True`` -> ``share_features_extractor=False`` (the critic's own
extractor and memory), ``shared_lstm=True`` -> the default (one memory). ``enable_critic_lstm=False`` without
``shared_lstm`` (a critic with no memory at all) has no equivalent: those cases run with the shared memory. PPO's
defaults stay (no ``segment_len``: the peer's ``n_steps=16`` must just work).

Dropped: ``test_check`` asserts that two LSTM options contradict each other; without LSTM options there is nothing
to contradict, so its mirror asserts that an LSTM option fails early and names its equivalent. The slow
``test_ppo_lstm_performance`` (CartPoleNoVel, 50k steps, evaluate_policy >= 450) is a benchmark, not a test:
``python -m benchmarks.memory --tasks contrib_performance`` (BENCHMARKS.md).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.wrappers import TransformObservation
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.evaluation import evaluate_policy

import envs  # noqa: F401  (registers lab/*)
from agents.memory.policy import LSTM_EQUIVALENTS
from agents.memory.ppo import MemoryPPO

# The peer's policy_kwargs cases, LSTM options mapped (id: the LSTM case).
_SMALL_TWO_LAYERS = dict(d_model=4, num_layers=2, dropout=0.5)  # lstm_hidden_size=4, n_lstm_layers=2, dropout 0.5
POLICY_CASES = {
    "default": {},
    "shared_lstm": {},  # shared_lstm=True, enable_critic_lstm=False: one memory, as the default
    "critic_lstm-small-2-layers": dict(share_features_extractor=False, memory_kwargs=_SMALL_TWO_LAYERS),
    "no_critic_lstm-small-2-layers": dict(memory_kwargs=_SMALL_TWO_LAYERS),  # no memoryless critic: shared
}
CNN_CASES = {
    **POLICY_CASES,
    "own_extractor": dict(share_features_extractor=False),  # RecurrentPPO's default critic LSTM comes with it
    "no_critic_lstm-own_extractor": dict(share_features_extractor=False, memory_kwargs=dict(d_model=4)),
}


def _memory_changed(model: MemoryPPO, learn: int) -> dict[str, bool]:
    """Learn ``learn`` steps; which memories' parameters moved: {"actor": .., "critic": ..}."""
    memories = {"actor": model.policy.memory, "critic": model.policy.critic_memory}
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in memories.items() if m is not None}
    model.learn(learn)
    return {k: any(not np.array_equal(a.numpy(), p.detach().numpy()) for a, p in zip(before[k], m.parameters()))
            for k, m in memories.items() if m is not None}


def test_cartpole_without_velocities_is_a_valid_env():
    """test_env: the peer checks its own CartPoleNoVelEnv; ours is lab/CartPoleNoVel-v1."""
    env = gym.make("lab/CartPoleNoVel-v1")
    check_env(env.unwrapped)
    assert env.observation_space.shape == (2,)  # cart position and pole angle, no velocities


@pytest.mark.parametrize("kwargs", CNN_CASES.values(), ids=CNN_CASES.keys())
def test_cnn_policy_learns_on_images_with_16_step_rollouts(kwargs):
    """test_cnn: CnnPolicy on 40x40x3 images, n_steps=16, NatureCNN of 32 features, 2 epochs."""
    model = MemoryPPO("CnnPolicy", FakeImageEnv(screen_height=40, screen_width=40, n_channels=3), n_steps=16,
                      n_epochs=2, seed=0, device="cpu",
                      policy_kwargs=dict(**kwargs, features_extractor_kwargs=dict(features_dim=32)))
    assert model.segment_len == 16  # fitted to n_steps: PPO's arguments need no memory-specific companion
    separate = not kwargs.get("share_features_extractor", True)
    assert (model.policy.critic_memory is not None) == separate
    assert (model.policy.vf_features_extractor is not model.policy.pi_features_extractor) == separate
    changed = _memory_changed(model, 32)
    assert model.num_timesteps == 32 and all(changed.values()), changed  # every memory was trained


@pytest.mark.parametrize("kwargs", POLICY_CASES.values(), ids=POLICY_CASES.keys())
def test_mlp_policy_takes_the_mapped_options(kwargs):
    """test_policy_kwargs: MlpPolicy on CartPole-v1, n_steps=16, the LSTM's size / layers / dropout mapped."""
    model = MemoryPPO("MlpPolicy", "CartPole-v1", n_steps=16, seed=0, device="cpu", policy_kwargs=kwargs)
    memory = kwargs.get("memory_kwargs", {})
    config = model.policy.memory.config
    assert (config.d_model, config.num_layers, config.dropout) == (
        memory.get("d_model", 64), memory.get("num_layers", 1), memory.get("dropout", 0.0))
    layers = config.num_layers * (1 if model.policy.critic_memory is None else 2)
    assert model.rollout_buffer.num_layers == layers == model.policy.initial_state(1).keys.shape[0]
    model.learn(32)
    assert model.num_timesteps == 32


@pytest.mark.parametrize("option", LSTM_EQUIVALENTS)
def test_lstm_options_fail_early_naming_their_equivalent(option):
    """test_check (dropped as LSTM-only, see the module docstring): an LSTM option is refused before any step,
    with the memory option to use instead."""
    with pytest.raises(TypeError, match=f"{option} is an option of RecurrentPPO.*equivalent: "):
        MemoryPPO("MlpPolicy", "CartPole-v1", n_steps=16, device="cpu", policy_kwargs={option: True})
    with pytest.raises(TypeError, match="unexpected option"):
        MemoryPPO("MlpPolicy", "CartPole-v1", n_steps=16, device="cpu", policy_kwargs=dict(lstm_hiden_size=4))


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_runs_on_continuous_and_discrete_actions(env_id):
    """test_run: Pendulum (Box actions) and CartPole (Discrete), n_steps=16, PPO's defaults otherwise."""
    model = MemoryPPO("MlpPolicy", env_id, n_steps=16, seed=0, device="cpu")
    model.learn(32)
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    action, state = model.predict(obs, None, np.array([True]))
    assert env.action_space.contains(action) and state[2].tolist() == [1]


def test_state_dependent_exploration_with_clipped_values():
    """test_run_sde: Pendulum with gSDE (noise resampled every 4 steps) and a clipped value loss."""
    model = MemoryPPO("MlpPolicy", "Pendulum-v1", n_steps=16, seed=0, device="cpu", use_sde=True, sde_sample_freq=4,
                      clip_range_vf=0.1)
    log_std = model.policy.log_std.detach().clone()
    model.learn(200)
    assert not np.array_equal(log_std.numpy(), model.policy.log_std.detach().numpy())  # gSDE's noise scale learned
    obs = np.zeros((1, 3), dtype=np.float32)
    greedy = [model.predict(obs, None, np.array([True]), deterministic=True)[0] for _ in range(2)]
    np.testing.assert_array_equal(*greedy)
    sampled = {float(model.predict(obs, None, np.array([True]))[0][0, 0]) for _ in range(3)}
    model.policy.reset_noise(1)
    sampled |= {float(model.predict(obs, None, np.array([True]))[0][0, 0])}
    assert len(sampled) > 1  # exploration is on where it should be


def _cartpole_in_a_dict() -> gym.Env:
    env = gym.make("CartPole-v1")
    return TransformObservation(env, lambda obs: {"obs": obs}, spaces.Dict({"obs": env.observation_space}))


@pytest.mark.parametrize("kwargs", POLICY_CASES.values(), ids=POLICY_CASES.keys())
def test_dict_observations_learn_and_evaluate(kwargs):
    """test_dict_obs: CartPole's observation inside a Dict, MultiInputPolicy, n_steps=32, then evaluate_policy
    (which carries the state between steps)."""
    env = make_vec_env(_cartpole_in_a_dict, n_envs=1, seed=0)
    model = MemoryPPO("MultiInputPolicy", env, n_steps=32, seed=0, device="cpu", policy_kwargs=kwargs).learn(64)
    rewards, lengths = evaluate_policy(model, env, n_eval_episodes=3, return_episode_rewards=True, warn=False)
    assert len(rewards) == 3 and rewards == [float(n) for n in lengths]  # CartPole: one point per step


class _MatrixActionEnv(gym.Env):
    """Random 10-d observations, 2x2 Box actions, episodes that end at random."""

    observation_space = spaces.Box(-1.0, 1.0, (10,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (2, 2), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        assert action.shape == (2, 2)
        return self.observation_space.sample(), 1.0, bool(self.np_random.random() < 0.2), False, {}


def test_matrix_shaped_actions():
    """test_ppo_multi_dimensional_action_space: Box actions of shape (2, 2), n_steps=64, 2 epochs."""
    model = MemoryPPO("MlpPolicy", _MatrixActionEnv(), n_steps=64, n_epochs=2, seed=0, device="cpu").learn(64)
    mean, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=3)
    assert mean >= 1.0
    actions, _ = model.predict(np.zeros((3, 10), dtype=np.float32))
    assert actions.shape == (3, 2, 2) and np.abs(actions).max() <= 1.0
