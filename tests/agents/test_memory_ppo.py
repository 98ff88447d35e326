"""MemoryPPO and the SB3 contract: learning a memory task, predict with state, save/load, evaluate_policy,
VecEnvs, lab extractors and optimizers, early errors."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.save_util import load_from_zip_file, save_to_zip_file
from stable_baselines3.common.vec_env import SubprocVecEnv

import envs  # noqa: F401  (registers lab/*)
from agents.extractors import TransformerExtractor
from agents.memory.policy import MemoryActorCriticPolicy
from agents.finetune import FinetuneMemoryPolicy
from agents.memory.ppo import MemoryPPO, default_segment_len
from agents.memory.transformer import MemoryConfig
from envs.memory_tasks import RepeatFirstEnv
from lab.optim import sb3_optimizer

TINY_MEMORY = dict(memory_length=8, d_model=16, num_heads=2, dim_feedforward=32)
TINY_PPO = dict(n_steps=16, batch_size=32, segment_len=8, n_epochs=2)


def _tiny(env="lab/CartPoleNoVel-v1", n_envs=2, seed=0, **policy_kwargs):
    vec = make_vec_env(env, n_envs=n_envs, seed=seed) if isinstance(env, str) else env
    return MemoryPPO("MlpPolicy", vec, seed=seed, device="cpu", **TINY_PPO,
                     policy_kwargs=dict(memory_kwargs=dict(TINY_MEMORY), **policy_kwargs))


def test_learns_repeat_first_where_an_8_step_window_provably_cannot():
    """lab/RepeatFirst-v0 (12 steps, 4 symbols): a policy seeing the last 8 observations scores at most 0.75
    (envs.memory_tasks); with the episode in memory and absolute time to find its first step (the relative-only
    default has to learn that from the observations), 15k steps (a few seconds) reach ~1.0."""
    bound = RepeatFirstEnv(num_symbols=4, length=12).window_bound(8)
    assert bound == pytest.approx(0.75)
    env = make_vec_env("lab/RepeatFirst-v0", n_envs=8, seed=0)
    model = MemoryPPO("MlpPolicy", env, n_steps=48, batch_size=96, segment_len=12, n_epochs=4, learning_rate=1e-3,
                      ent_coef=0.01, gamma=0.9, seed=0, device="cpu",
                      policy_kwargs=dict(net_arch=[64], memory_kwargs=dict(memory_length=12, d_model=32,
                                                                           num_heads=2, dim_feedforward=64,
                                                                           positional="sinusoidal")))
    before, _ = evaluate_policy(model, make_vec_env("lab/RepeatFirst-v0", n_envs=4, seed=100), n_eval_episodes=40)
    model.learn(15_000)
    after, _ = evaluate_policy(model, make_vec_env("lab/RepeatFirst-v0", n_envs=4, seed=100), n_eval_episodes=100)
    assert before < 0.6 and after > bound + 0.15, (before, after)


def test_a_saved_model_states_every_memory_option_so_new_defaults_cannot_change_it(tmp_path):
    """Built with the defaults, saved: the zip holds the whole MemoryConfig, so loading rebuilds that memory
    even after MemoryConfig's defaults change (they did: 64 steps and a sinusoid became 16 steps, relative only)."""
    model = MemoryPPO("MlpPolicy", make_vec_env("lab/CartPoleNoVel-v1", n_envs=2, seed=0), n_steps=16,
                      batch_size=32, device="cpu", seed=0)
    model.save(tmp_path / "default_memory.zip")
    data, _, _ = load_from_zip_file(tmp_path / "default_memory.zip")
    assert data["policy_kwargs"]["memory_kwargs"] == dataclasses.asdict(MemoryConfig())
    assert MemoryConfig(**data["policy_kwargs"]["memory_kwargs"]) == model.policy.memory_config


def test_a_zip_saved_before_memory_options_were_recorded_is_refused_with_the_way_to_load_it(tmp_path):
    """Such a zip has empty memory_kwargs and a memory of the old defaults (64 steps, a sinusoid): loading builds
    today's 16-step memory, and the size mismatch says how to load it; done that way, it loads."""
    old_defaults = dict(memory_length=64, positional="sinusoidal")
    model = MemoryPPO("MlpPolicy", make_vec_env("lab/CartPoleNoVel-v1", n_envs=2, seed=0), n_steps=16,
                      batch_size=32, device="cpu", seed=0, policy_kwargs=dict(memory_kwargs=old_defaults))
    model.save(tmp_path / "new.zip")
    data, params, variables = load_from_zip_file(tmp_path / "new.zip")
    data["policy_kwargs"]["memory_kwargs"] = {}  # as saved before the options were recorded
    save_to_zip_file(tmp_path / "old.zip", data=data, params=params, pytorch_variables=variables)
    with pytest.raises(RuntimeError, match=r"(?s)size mismatch for memory\..*custom_objects"):
        MemoryPPO.load(tmp_path / "old.zip", device="cpu")
    custom = {"policy_kwargs": {**data["policy_kwargs"], "memory_kwargs": old_defaults}}
    loaded = MemoryPPO.load(tmp_path / "old.zip", device="cpu", custom_objects=custom)
    assert loaded.policy.memory_config == model.policy.memory_config
    for name, tensor in model.policy.state_dict().items():
        torch.testing.assert_close(loaded.policy.state_dict()[name], tensor, rtol=0, atol=0)


def test_predict_with_state_and_save_load_round_trip(tmp_path):
    model = _tiny()
    model.learn(64)
    path = tmp_path / "memory_ppo.zip"
    model.save(path)
    loaded = MemoryPPO.load(path, device="cpu")
    assert loaded.policy.memory_config == model.policy.memory_config  # the memory configuration travels
    assert loaded.segment_len == model.segment_len
    env = make_vec_env("lab/CartPoleNoVel-v1", n_envs=2, seed=5)
    obs = env.reset()
    states = {"a": None, "b": None}
    starts = np.ones(2, dtype=bool)
    for _ in range(30):
        a, states["a"] = model.predict(obs, states["a"], starts, deterministic=True)
        b, states["b"] = loaded.predict(obs, states["b"], starts, deterministic=True)
        np.testing.assert_array_equal(a, b)
        for x, y in zip(states["a"], states["b"]):
            np.testing.assert_array_equal(x, y)
        obs, _, starts, _ = env.step(a)
    assert states["a"][2].max() > 0  # the state carried time (memory) through the steps


def test_predict_state_carries_memory_and_episode_start_clears_it():
    model = _tiny()
    obs = np.array([[0.01, 0.02]], dtype=np.float32)
    _, fresh = model.predict(obs, None, np.array([True]))
    _, state = model.predict(obs, fresh, np.array([False]))
    assert state[2].tolist() == [2]
    _, restarted = model.predict(obs, state, np.array([True]))
    for x, y in zip(restarted, fresh):
        np.testing.assert_allclose(x, y, atol=1e-6)
    dist_mem = model.policy.get_distribution(torch.as_tensor(obs), model.policy.initial_state(1))
    assert dist_mem.distribution.probs.shape == (1, 2)
    with pytest.raises(ValueError, match="state.s keys have shape .* for 3 env"):
        model.predict(np.zeros((3, 2), dtype=np.float32), state, np.zeros(3, dtype=bool))


def test_evaluate_policy_and_callbacks_and_tensorboard(tmp_path):
    class Count(BaseCallback):
        steps = rollouts = 0

        def _on_step(self) -> bool:
            Count.steps += 1
            return True

        def _on_rollout_end(self) -> None:
            Count.rollouts += 1

    model = MemoryPPO("MlpPolicy", make_vec_env("lab/CartPoleNoVel-v1", n_envs=2, seed=0), seed=0, device="cpu",
                      tensorboard_log=str(tmp_path), **TINY_PPO, policy_kwargs=dict(memory_kwargs=dict(TINY_MEMORY)))
    model.learn(64, callback=Count())
    assert Count.steps == 32 and Count.rollouts == 2
    assert list(tmp_path.glob("MemoryPPO_1/events.out.tfevents*"))
    mean, std = evaluate_policy(model, make_vec_env("lab/CartPoleNoVel-v1", n_envs=2, seed=1), n_eval_episodes=4)
    assert mean > 0 and std >= 0


def test_subproc_vec_env_smoke():
    # "envs:" makes each worker process import envs (and so register lab/*) before gym.make
    vec = make_vec_env("envs:lab/CartPoleNoVel-v1", n_envs=2, seed=0, vec_env_cls=SubprocVecEnv)
    try:
        model = _tiny(vec)
        model.learn(64)
        assert model.num_timesteps == 64
    finally:
        vec.close()


def test_lab_extractor_and_optimizer_apply(track):
    cls, kwargs = sb3_optimizer("adamw", weight_decay=0.01)
    model = _tiny(features_extractor_class=TransformerExtractor,
                  features_extractor_kwargs=dict(d_model=16, num_heads=2, dim_feedforward=32),
                  optimizer_class=cls, optimizer_kwargs=kwargs)
    assert type(model.policy.optimizer) is cls
    optimized = {id(p) for g in model.policy.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in optimized for p in model.policy.memory.parameters())  # the memory is trained too
    tracker = track(model.policy)
    model.learn(32)
    changed = tracker.changed()
    assert changed["features_extractor.classifier.embed.value_weight"]
    assert changed["memory.layers.0.self_attn.in_proj_weight"]


def test_dict_observations_through_multi_input_policy():
    model = MemoryPPO("MultiInputPolicy", make_vec_env("lab/CartPoleNoVelHistory-v1", n_envs=2, seed=0), seed=0,
                      device="cpu", **TINY_PPO, policy_kwargs=dict(memory_kwargs=dict(TINY_MEMORY)))
    model.learn(32)
    assert model.num_timesteps == 32


def test_bad_settings_fail_early():
    vec = make_vec_env("lab/CartPoleNoVel-v1", n_envs=1, seed=0)
    with pytest.raises(ValueError, match="multiple of segment_len"):
        MemoryPPO("MlpPolicy", vec, n_steps=20, batch_size=16, segment_len=8)
    with pytest.raises(ValueError, match="batch_size .* multiple of segment_len"):
        MemoryPPO("MlpPolicy", vec, n_steps=16, batch_size=12, segment_len=8)
    with pytest.raises(TypeError, match="unknown memory option"):
        MemoryPPO("MlpPolicy", vec, n_steps=16, batch_size=16, segment_len=8,
                  policy_kwargs=dict(memory_kwargs=dict(memory_len=8)))
    with pytest.raises(ValueError, match="memory_length must be >= 1"):
        MemoryPPO("MlpPolicy", vec, n_steps=16, batch_size=16, segment_len=8,
                  policy_kwargs=dict(memory_kwargs=dict(memory_length=0)))
    with pytest.raises(ValueError, match="segment_len must be a positive int"):
        MemoryPPO("MlpPolicy", vec, n_steps=16, batch_size=16, segment_len=0)
    assert MemoryPPO.policy_aliases["MlpPolicy"] is MemoryActorCriticPolicy


@pytest.mark.parametrize("n_steps,batch_size,expected", [(2048, 64, 32), (128, 256, 32), (16, 64, 16), (48, 96, 24),
                                                         (100, 50, 25), (20, 16, 4), (7, 64, 1)])
def test_default_segment_len_fits_any_rollout_and_batch(n_steps, batch_size, expected):
    """PPO's arguments alone: the longest segment (up to 32 steps) that tiles each env's rollout and every batch."""
    assert default_segment_len(n_steps, batch_size) == expected
    assert n_steps % expected == 0 and batch_size % expected == 0


def test_a_fitted_segment_len_learns_and_an_explicit_one_is_kept():
    vec = make_vec_env("lab/CartPoleNoVel-v1", n_envs=2, seed=0)
    model = MemoryPPO("MlpPolicy", vec, n_steps=6, batch_size=9, n_epochs=1, seed=0, device="cpu",
                      policy_kwargs=dict(memory_kwargs=dict(TINY_MEMORY)))
    assert model.segment_len == 3 and model.rollout_buffer.segment_len == 3
    assert model.learn(24).num_timesteps == 24
    assert MemoryPPO("MlpPolicy", vec, n_steps=16, batch_size=32, segment_len=8).segment_len == 8


def test_a_critic_with_its_own_memory_reads_only_that_memory():
    """share_features_extractor=False (RecurrentPPO's enable_critic_lstm): the values depend on the critic's
    extractor and memory only, the actions on the actor's only; both train, the state holds both."""
    model = _tiny(share_features_extractor=False)
    policy = model.policy
    assert policy.critic_memory is not None and policy.memory_layers == 2 * policy.memory_config.num_layers
    model.learn(64)
    batch = next(model.rollout_buffer.get(32))
    actions = batch.actions.long().flatten()

    def outputs() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            values, log_prob, _ = policy.evaluate_actions(batch.observations, actions)
        return values, log_prob

    values, log_prob = outputs()
    with torch.no_grad():
        for p in policy.memory.parameters():
            p.add_(0.1)
    moved_values, moved_log_prob = outputs()
    torch.testing.assert_close(moved_values, values, atol=0, rtol=0)
    assert not torch.allclose(moved_log_prob, log_prob)
    with torch.no_grad():
        for p in policy.critic_memory.parameters():
            p.add_(0.1)
    torch.testing.assert_close(outputs()[1], moved_log_prob, atol=0, rtol=0)
    obs = np.zeros((3, 2), dtype=np.float32)
    _, state = model.predict(obs)
    assert state[0].shape[0] == policy.memory_config.num_layers  # predict carries the actor's memory only


def test_discriminative_fine_tuning_sees_the_memory():
    """agents.finetune rebuilds the optimizer after the policy's _build: the memory must exist by then, or the
    strategy's parameter groups are silently replaced by one plain group."""
    cls, kwargs = sb3_optimizer("adamw")
    model = MemoryPPO(FinetuneMemoryPolicy, make_vec_env("lab/CartPoleNoVel-v1", n_envs=2, seed=0), seed=0,
                      device="cpu", **TINY_PPO,
                      policy_kwargs=dict(finetune="discriminative", features_extractor_class=TransformerExtractor,
                                         features_extractor_kwargs=dict(d_model=16, num_heads=2, dim_feedforward=32),
                                         optimizer_class=cls, optimizer_kwargs=kwargs, memory_kwargs=TINY_MEMORY))
    groups = model.policy.optimizer.param_groups
    assert len(groups) > 1 and groups[-1]["lr_scale"] == 1.0 > groups[0]["lr_scale"]
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.policy.parameters())  # each once, memory in the heads'
    assert {id(p) for p in model.policy.memory.parameters()} <= {id(p) for p in groups[-1]["params"]}


def test_babyai_through_the_fusion_extractor():
    """The imitation-vs-RL BabyAI setting: Dict observations -> FusionExtractor per step -> memory."""
    from agents.extractors import FusionExtractor

    env = make_vec_env("lab/BabyAI-GoToRedBallGrey-v0", n_envs=2, seed=0)
    model = MemoryPPO("MultiInputPolicy", env, seed=0, device="cpu", **TINY_PPO,
                      policy_kwargs=dict(features_extractor_class=FusionExtractor,
                                         features_extractor_kwargs=dict(d_model=16, num_heads=2, dim_feedforward=32),
                                         memory_kwargs=dict(TINY_MEMORY)))
    model.learn(32)
    obs = env.reset()
    actions, state = model.predict(obs, None, np.ones(2, dtype=bool))
    assert actions.shape == (2,) and state[2].tolist() == [1, 1]
