"""MemoryPPO in PPO's place: the PPO cases of Stable-Baselines3's ``tests/test_save_load.py`` (2.9), in our words,
each test naming the case it mirrors. Not mirrored: the cases of off-policy algorithms only (replay buffers, SAC's
entropy coefficient, DQN's q-net and target update, the > 2 GB TD3 model, gSDE-free TD3), SB3's own ``open_path``
helpers (no algorithm involved) and ``test_save_load_env_cnn`` (A2C / TD3 only; the CnnPolicy case of
``test_save_load_policy`` below loads a MemoryPPO CnnPolicy).
"""
from __future__ import annotations

import base64
import json
import warnings
import zipfile
from copy import deepcopy

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.envs import FakeImageEnv, IdentityEnvBox
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, get_device
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.memory.ppo import MemoryPPO

DEVICES = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SMALL = dict(n_steps=64, n_epochs=1, learning_rate=1e-3)
SMALL_MEMORY = dict(memory_length=8, d_model=16, num_heads=2, dim_feedforward=32)


def _box_env(n_envs: int = 1) -> DummyVecEnv:
    return DummyVecEnv([lambda: IdentityEnvBox(-10, 10)] * n_envs)


def _observations(env: DummyVecEnv, n: int = 10) -> np.ndarray:
    env.reset()
    return np.concatenate([env.step([env.action_space.sample()])[0] for _ in range(n)])


@pytest.mark.parametrize("share", [True, False], ids=["one-memory", "critic-own-memory"])
def test_parameters_save_load_and_set(tmp_path, share):
    """test_save_load: get/set_parameters (and their errors), save, load on every device with the same parameters
    and actions, learning after a load, and saving a torch.compile-d policy."""
    env = _box_env()
    model = MemoryPPO("MlpPolicy", env, **SMALL, policy_kwargs=dict(net_arch=[16], share_features_extractor=share))
    model.learn(128)
    observations = _observations(env)
    original = deepcopy(model.get_parameters())
    with pytest.raises(ValueError):  # an object the model does not have
        model.set_parameters({**original, "not_an_object": {}}, exact_match=False)
    with pytest.raises(ValueError):  # an object left out
        model.set_parameters(dict(list(original.items())[:-1]), exact_match=True)
    with pytest.raises(RuntimeError):  # a tensor left out of a state dict (torch's strict load)
        model.set_parameters({k: dict(list(v.items())[:-1]) for k, v in original.items()}, exact_match=True)
    randomized = {k: v if "optim" in k else {name: torch.rand_like(t) for name, t in list(v.items())[:-1]}
                  for k, v in original.items()}
    model.set_parameters(randomized, exact_match=False)
    params = model.get_parameters()
    for name, tensors in params.items():
        if "optim" not in name:
            *changed, kept = tensors
            assert all(not torch.equal(tensors[k], original[name][k]) for k in changed)
            assert torch.equal(tensors[kept], original[name][kept])
    actions, _ = model.predict(observations, deterministic=True)
    model.save(tmp_path / "model.zip")
    for device in DEVICES:
        loaded = MemoryPPO.load(tmp_path / "model.zip", env=env, device=device)
        assert loaded.policy.device.type == get_device(device).type
        assert (loaded.policy.critic_memory is None) == share  # the critic's memory travels with the model
        for name, tensors in loaded.get_parameters().items():
            if "optim" not in name:
                for key, tensor in tensors.items():
                    assert torch.equal(tensor.cpu(), params[name][key].cpu()), (name, key)
        np.testing.assert_allclose(loaded.predict(observations, deterministic=True)[0], actions, atol=1e-4)
        assert loaded.learn(128).num_timesteps == 128
    compiled = MemoryPPO.load(tmp_path / "model.zip")
    compiled.policy = torch.compile(compiled.policy)  # SB3 saves a compiled policy's original module
    compiled.save(tmp_path / "compiled.zip")
    MemoryPPO.load(tmp_path / "compiled.zip")


def test_set_env_and_load_with_other_envs(tmp_path):
    """test_set_env: set_env with and without a reset, a plain env wrapped, another env count refused by set_env
    but taken by load (the episode memory then has a row per new env)."""
    model = MemoryPPO("MlpPolicy", _box_env(), n_steps=64, policy_kwargs=dict(net_arch=[16])).learn(64)
    model.set_env(_box_env(), force_reset=True)
    assert model._last_obs is None
    assert model.learn(64, reset_num_timesteps=True).num_timesteps == 64
    model.set_env(IdentityEnvBox(-10, 10))  # wrapped into a VecEnv
    model.learn(64)
    with pytest.raises(AssertionError):
        model.set_env(_box_env(2))
    model.set_env(model.get_env(), force_reset=False)
    assert model._last_obs is not None
    assert model.learn(64, reset_num_timesteps=False).num_timesteps == 128
    current = model.get_env()
    model.save(tmp_path / "model.zip")
    kept = MemoryPPO.load(tmp_path / "model.zip", env=current, force_reset=False)
    assert kept._last_obs is not None and kept.learn(64, reset_num_timesteps=False).num_timesteps == 192
    reset = MemoryPPO.load(tmp_path / "model.zip", env=IdentityEnvBox(-10, 10), force_reset=True)
    assert reset._last_obs is None and reset.learn(64, reset_num_timesteps=False).num_timesteps == 192
    two = MemoryPPO.load(tmp_path / "model.zip", env=_box_env(2))
    assert two.episode_state()["memory_state"].time.shape == (2,)
    assert two.learn(64).num_timesteps == 128  # one rollout of 64 steps in each of the 2 envs


def test_exclude_include_and_custom_objects(tmp_path):
    """test_exclude_include_saved_params: save(exclude=...), save(include=...) and load(custom_objects=...)."""
    model = MemoryPPO("MlpPolicy", _box_env(), n_steps=64, verbose=2, policy_kwargs=dict(net_arch=[16]))
    model.save(tmp_path / "model", exclude=["verbose"])
    assert MemoryPPO.load(tmp_path / "model.zip").verbose != 2
    model.save(tmp_path / "model", exclude=["verbose"], include=["verbose"])
    loaded = MemoryPPO.load(tmp_path / "model.zip", custom_objects=dict(learning_rate=2e-5, not_an_attribute=1.0))
    assert loaded.verbose == 2 and loaded.learning_rate == 2e-5 and not hasattr(loaded, "not_an_attribute")
    assert loaded.segment_len == model.segment_len == 32  # the fitted segment length is saved too


@pytest.mark.parametrize("use_sde", [False, True])
@pytest.mark.parametrize("policy", ["MlpPolicy", "CnnPolicy"])
def test_policy_alone_saves_and_loads(tmp_path, policy, use_sde):
    """test_save_load_policy: policy.save / Policy.load keep every parameter (memory options included) and the
    actions, for an MlpPolicy and a CnnPolicy, with and without gSDE."""
    env = _box_env() if policy == "MlpPolicy" else DummyVecEnv(
        [lambda: FakeImageEnv(screen_height=40, screen_width=40, n_channels=2, discrete=False)])
    model = MemoryPPO(policy, env, **SMALL, use_sde=use_sde,
                      policy_kwargs=dict(net_arch=[16], memory_kwargs=SMALL_MEMORY)).learn(128)
    observations = _observations(env)
    policy_module = model.policy
    policy_module.load_state_dict({k: torch.rand_like(v) for k, v in policy_module.state_dict().items()})
    params = deepcopy(policy_module.state_dict())
    actions, _ = policy_module.predict(observations, deterministic=True)
    policy_module.save(tmp_path / "policy.pkl")
    loaded = type(policy_module).load(tmp_path / "policy.pkl")
    assert loaded.memory_config == policy_module.memory_config
    for key, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, params[key]), key
    np.testing.assert_allclose(loaded.predict(observations, deterministic=True)[0], actions, atol=1e-4)


def test_an_unreadable_saved_object_warns_and_custom_objects_replace_it(tmp_path):
    """test_load_invalid_object: a learning rate that cannot be deserialised warns (naming custom_objects) and
    loads; given in custom_objects, it loads silently."""
    path = tmp_path / "model.zip"
    MemoryPPO("MlpPolicy", "Pendulum-v1", learning_rate=lambda _: 1.0).save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    pickled = base64.b64decode(data["learning_rate"][":serialized:"])
    data["learning_rate"][":serialized:"] = base64.b64encode(pickled.replace(b"CodeType", b"CodeTyps")).decode()
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.warns(UserWarning, match="custom_objects"):
        MemoryPPO.load(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MemoryPPO.load(path, custom_objects=dict(learning_rate=lambda _: 1.0))
    assert not caught


@pytest.mark.filterwarnings("error")
def test_save_and_load_close_their_files(tmp_path):
    """test_no_resource_warning (its PPO part): paths are closed after save / load, open file objects are not."""
    for path in (tmp_path / "model", str(tmp_path / "model_str")):
        MemoryPPO("MlpPolicy", "CartPole-v1", device="cpu").save(path)
        MemoryPPO.load(path, device="cpu")
    with (tmp_path / "model_file").open("w+b") as handle:
        MemoryPPO("MlpPolicy", "CartPole-v1", device="cpu").save(handle)
        MemoryPPO.load(handle, device="cpu")
        assert not handle.closed


def test_schedules_survive_save_and_load(tmp_path):
    """test_cast_lr_schedule, test_save_load_backward_compatible, test_save_load_clip_range_portable: a callable
    learning rate gives floats, lambdas load back as lambdas, the default clip range as a ConstantSchedule."""
    model = MemoryPPO("MlpPolicy", "Pendulum-v1", learning_rate=lambda t: t * np.sin(1.0))
    assert type(model.lr_schedule(1.0)) is float
    model.save(tmp_path / "cast.zip")
    loaded = MemoryPPO.load(tmp_path / "cast.zip")
    assert type(loaded.lr_schedule(1.0)) is float and np.isclose(loaded.lr_schedule(0.5), 0.5 * np.sin(1.0))

    env = DummyVecEnv([lambda: IdentityEnvBox(-1, 1)])
    model = MemoryPPO("MlpPolicy", env, n_steps=64, learning_rate=lambda _: 0.001, clip_range=lambda _: 0.3)
    model.learn(100).save(tmp_path / "lambdas.zip")
    loaded = MemoryPPO.load(tmp_path / "lambdas.zip", env=env)
    assert loaded.learning_rate(0) == 0.001 and loaded.learning_rate.__name__ == "<lambda>"
    assert isinstance(loaded.clip_range, FloatSchedule) and loaded.clip_range.value_schedule(0) == 0.3

    model = MemoryPPO("MlpPolicy", env, n_epochs=1, n_steps=64).learn(128)
    model.save(tmp_path / "portable.zip")
    for m in (model, MemoryPPO.load(tmp_path / "portable.zip", env=env)):
        assert isinstance(m.clip_range, FloatSchedule) and isinstance(m.clip_range.value_schedule, ConstantSchedule)
        assert m.clip_range.value_schedule.val == 0.2


def test_net_arch_none_loads_with_the_default(tmp_path):
    """test_save_load_net_arch_none: net_arch=None is saved as None and loads as the default architecture."""
    MemoryPPO("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=None)).save(tmp_path / "model.zip")
    assert MemoryPPO.load(tmp_path / "model.zip").policy.net_arch is not None


def test_memory_state_is_left_out_of_the_zip_but_the_run_continues(tmp_path):
    """Ours (no peer case): the zip holds no episode memory, as RecurrentPPO's holds no LSTM states; a loaded model
    starts its envs' episodes afresh and learns on."""
    env = gym.make("Pendulum-v1")
    model = MemoryPPO("MlpPolicy", env, n_steps=32, batch_size=32, policy_kwargs=dict(memory_kwargs=SMALL_MEMORY))
    model.learn(64).save(tmp_path / "model.zip")
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        assert "_memory_state" not in json.loads(archive.read("data"))
    loaded = MemoryPPO.load(tmp_path / "model.zip", env=env)
    assert loaded.episode_state()["memory_state"].time.tolist() == [0]
    assert loaded.learn(64, reset_num_timesteps=False).num_timesteps == 128
