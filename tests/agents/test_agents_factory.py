"""make_agent: SB3 parity of the default optimizers, every lab optimizer, save/load, and early errors."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DQN, PPO

import envs  # noqa: F401  (registers lab/*)
from agents.callbacks import save_model_atomic
from agents.config import AgentConfig
from agents.extractors import ObservationSpaceError
from agents.factory import make_agent
from lab.optim import OPTIMIZERS, optimizer_names


def _params(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.policy.parameters()]


# ------------------------------------------------------------------------------------------ SB3's defaults
@pytest.mark.parametrize("algo,sb3_class", [("a2c", A2C), ("ppo", PPO)])
def test_default_optimizer_reproduces_sb3s_own_agent_exactly(algo, sb3_class, tiny_algo_kwargs):
    """optimizer=None maps to SB3's choice (A2C: RMSprop alpha 0.99 eps 1e-5; PPO: Adam eps 1e-5): same updates."""
    ours = make_agent(AgentConfig("CartPole-v1", algo, algo_kwargs=tiny_algo_kwargs[algo]), seed=3, device="cpu")
    theirs = sb3_class("MlpPolicy", ours.get_env(), seed=3, device="cpu", **tiny_algo_kwargs[algo])
    expected_class = torch.optim.RMSprop if algo == "a2c" else torch.optim.Adam
    assert type(theirs.policy.optimizer) is expected_class and isinstance(ours.policy.optimizer, expected_class)
    for a, b in zip(_params(ours), _params(theirs)):
        torch.testing.assert_close(a, b)  # same seed, same initial weights
    for model in (ours, theirs):  # the same env object, re-seeded (torch, numpy, env) before each run
        model.set_random_seed(3)
        model.learn(64)
    for a, b in zip(_params(ours), _params(theirs)):
        torch.testing.assert_close(a, b)


def test_rmsprop_on_a2c_is_sb3s_default_and_adam_family_on_policy_gets_eps_1e5():
    a2c = make_agent(AgentConfig("CartPole-v1", "a2c", optimizer="rmsprop"), device="cpu")
    assert a2c.policy.optimizer_kwargs == {"alpha": 0.99, "eps": 1e-5, "weight_decay": 0.0}
    ppo = make_agent(AgentConfig("CartPole-v1", optimizer="adamw", weight_decay=0.01), device="cpu")
    assert ppo.policy.optimizer_kwargs == {"eps": 1e-5, "weight_decay": 0.01}
    dqn = make_agent(AgentConfig("CartPole-v1", "dqn", optimizer="adam"), device="cpu")
    assert dqn.policy.optimizer_kwargs == {"weight_decay": 0.0}  # SB3's DQN keeps torch's eps


@pytest.mark.parametrize("name", optimizer_names())
def test_every_lab_optimizer_trains_a_transformer_policy(name, tiny_transformer, tiny_algo_kwargs, track):
    config = AgentConfig("CartPole-v1", "ppo", "transformer", optimizer=name, weight_decay=0.01,
                         encoder_kwargs=tiny_transformer, algo_kwargs=tiny_algo_kwargs["ppo"])
    model = make_agent(config, device="cpu", seed=0)
    assert type(model.policy.optimizer) is OPTIMIZERS[name].lab_cls
    tracker = track(model.policy)
    model.learn(32)
    assert any(tracker.changed().values())
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())


# ---------------------------------------------------------------------------------------------- save / load
def _observation_after(env_id: str, steps: int):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=steps)
    env.action_space.seed(steps)
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            break
    return obs


SAVE_CASES = [
    ("ppo", "CartPole-v1", "transformer", PPO),
    ("a2c", "lab/CartPoleNoVelHistory-v1", "transformer", A2C),
    ("dqn", "lab/DigitsBandit-v0", "conv", DQN),
    ("ppo", "lab/BabyAI-GoToRedBallGrey-v0", "fusion", PPO),
]


@pytest.mark.parametrize("algo,env_id,encoder,cls", SAVE_CASES, ids=[f"{c[0]}-{c[2]}" for c in SAVE_CASES])
def test_saved_agents_load_and_predict_identically(algo, env_id, encoder, cls, tmp_path, tiny_algo_kwargs):
    kwargs = {"channels": (8, 16), "strides": (1, 2)} if encoder == "conv" else {"d_model": 16, "num_heads": 2}
    model = make_agent(AgentConfig(env_id, algo, encoder, encoder_kwargs=kwargs, algo_kwargs=tiny_algo_kwargs[algo]),
                       seed=0, device="cpu")
    model.learn(32)
    path = save_model_atomic(model, tmp_path / "model.zip")
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"]  # no temporary file left behind
    loaded = cls.load(path, device="cpu")
    observations = [_observation_after(env_id, steps) for steps in range(8)]  # episode starts and later steps
    batch = (
        {k: np.stack([o[k] for o in observations]) for k in observations[0]} if isinstance(observations[0], dict)
        else np.stack(observations)
    )
    actions, _ = model.predict(batch, deterministic=True)
    loaded_actions, _ = loaded.predict(batch, deterministic=True)
    np.testing.assert_array_equal(actions, loaded_actions)
    obs_tensor, _ = model.policy.obs_to_tensor(batch)
    with torch.no_grad():  # the numbers behind the actions, not only their argmax
        scores = (lambda m: m.policy.q_net(obs_tensor)) if algo == "dqn" else (
            lambda m: m.policy.get_distribution(obs_tensor).distribution.logits)
        torch.testing.assert_close(scores(model), scores(loaded), rtol=0, atol=0)
    model.get_env().close()


# ------------------------------------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(
    "args,kwargs,error,match",
    [
        (("ppo", "CartPole-v1", "lstm"), {}, ValueError, "choose one of mlp, transformer, conv, fusion"),
        (("sac", "CartPole-v1"), {}, ValueError, "choose one of ppo, a2c, dqn"),
        (("ppo", "CartPole-v1"), {"optimizer": "lion"}, ValueError, "choose one of sgd, .*nadam"),
        (("ppo", "CartPole-v1"), {"vec_env": "ray"}, ValueError, "choose one of dummy, subproc"),
        (("ppo", "CartPole-v1", "conv"), {}, ObservationSpaceError, "needs an image"),
        (("ppo", "CartPole-v1", "fusion"), {}, ObservationSpaceError, "needs a Dict .* use encoder 'transformer'"),
        (("ppo", "lab/DigitsBandit-v0", "transformer"), {}, ObservationSpaceError, "for images use encoder 'conv'"),
        (("dqn", "Pendulum-v1"), {}, ValueError, "DQN needs a Discrete action space.*use 'ppo' or 'a2c'"),
        (("ppo", "CartPole-v1"), {"encoder_kwargs": {"d_model": 8}}, ValueError, "'mlp' takes no encoder_kwargs"),
        (("ppo", "CartPole-v1", "transformer"), {"encoder_kwargs": {"layers": 2}}, TypeError, "valid: d_model"),
        (("ppo", "CartPole-v1"), {"policy_kwargs": {"optimizer_class": torch.optim.SGD}}, ValueError, "use optimizer="),
        (("a2c", "CartPole-v1"), {"algo_kwargs": {"use_rms_prop": False}}, ValueError, "optimizer='rmsprop'"),
        (("ppo", "CartPole-v1"), {"optimizer_kwargs": {"momentun": 0.9}}, TypeError, "does not accept 'momentun'"),
        (("ppo", "CartPole-v1"), {"n_envs": 0}, ValueError, "n_envs must be a positive int"),
        (("ppo", "lab/CartPole-v1"), {"vec_env": "subproc"}, gym.error.NameNotFound, "Did you mean"),
    ],
)
def test_bad_arguments_fail_before_training_with_a_message_saying_what_works(args, kwargs, error, match, monkeypatch):
    monkeypatch.setattr(PPO, "learn", lambda *a, **k: pytest.fail("trained despite a bad argument"))
    algo, env_id, *encoder = args
    with pytest.raises(error, match=match):  # the config or make_agent refuses it
        make_agent(AgentConfig(env_id, algo, *encoder, **kwargs), device="cpu")


def test_subprocess_envs_register_the_lab_ids_themselves(tiny_algo_kwargs):
    config = AgentConfig("lab/CartPoleNoVelHistory-v1", "a2c", "transformer", n_envs=2, vec_env="subproc",
                         encoder_kwargs={"d_model": 16, "num_heads": 2}, algo_kwargs=tiny_algo_kwargs["a2c"])
    model = make_agent(config, device="cpu")
    try:
        model.learn(32)
        assert model.num_timesteps >= 32
    finally:
        model.get_env().close()


# ------------------------------------------------------------------------ normalisation, init, RL Zoo strings
def test_normalize_obs_normalises_the_history_but_not_its_mask_and_refuses_ids_and_images():
    from stable_baselines3.common.vec_env import VecNormalize

    model = make_agent(AgentConfig("lab/CartPoleNoVelHistory-v1", "ppo", "transformer", normalize_obs=True,
                                   encoder_kwargs={"d_model": 16, "num_heads": 2}), device="cpu")
    env = model.get_env()
    assert isinstance(env, VecNormalize) and env.norm_obs_keys == ["obs"] and not env.norm_reward
    assert model.get_vec_normalize_env() is env
    with pytest.raises(ValueError, match="float Box keys"):
        make_agent(AgentConfig("lab/BabyAI-GoToRedBallGrey-v0", "ppo", "fusion", normalize_obs=True), device="cpu")
    with pytest.raises(ValueError, match="not \\['mask'\\]"):
        make_agent(AgentConfig("lab/CartPoleNoVelHistory-v1", normalize_obs=["obs", "mask"]), device="cpu")
    with pytest.raises(ValueError, match="already scales"):
        make_agent(AgentConfig("lab/DigitsBandit-v0", "ppo", "conv", normalize_obs=True), device="cpu")


def test_vecnormalize_statistics_are_saved_beside_the_model_and_restored_so_the_loaded_agent_acts_the_same(
    tmp_path, tiny_algo_kwargs
):
    from agents.callbacks import vecnormalize_path
    from agents.factory import load_agent

    env_id = "lab/CartPoleNoVelHistory-v1"
    config = AgentConfig(env_id, "ppo", "transformer", n_envs=2, normalize_obs=True,
                         encoder_kwargs={"d_model": 16, "num_heads": 2, "pooling": "flatten"},
                         algo_kwargs=tiny_algo_kwargs["ppo"])
    model = make_agent(config, seed=0, device="cpu")
    model.learn(128)
    path = save_model_atomic(model, tmp_path / "model.zip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.vecnormalize.pkl", "model.zip"]
    assert vecnormalize_path(path) == tmp_path / "model.vecnormalize.pkl"
    loaded = load_agent("ppo", path, env_id, device="cpu")
    stats, restored = model.get_vec_normalize_env(), loaded.get_vec_normalize_env()
    assert restored is not None and not restored.training and restored.norm_obs_keys == ["obs"]
    np.testing.assert_array_equal(restored.obs_rms["obs"].mean, stats.obs_rms["obs"].mean)
    np.testing.assert_array_equal(restored.obs_rms["obs"].var, stats.obs_rms["obs"].var)

    observations = [_observation_after(env_id, steps) for steps in range(8)]
    raw = {k: np.stack([o[k] for o in observations]) for k in observations[0]}

    def logits(m, obs):
        tensor, _ = m.policy.obs_to_tensor(obs)
        with torch.no_grad():
            return m.policy.get_distribution(tensor).distribution.logits

    torch.testing.assert_close(logits(model, stats.normalize_obs(raw)), logits(loaded, restored.normalize_obs(raw)),
                               rtol=0, atol=0)
    assert not torch.allclose(logits(loaded, raw), logits(loaded, restored.normalize_obs(raw)))  # stats matter
    with pytest.raises(ValueError, match="pass env_id"):
        load_agent("ppo", path)
    model.get_env().close()
    loaded.get_env().close()


def test_ortho_init_heads_keeps_the_extractors_own_init_and_gives_the_heads_sb3s_gains():
    config = AgentConfig("CartPole-v1", "ppo", "transformer", encoder_kwargs={"d_model": 16, "num_heads": 2})
    heads, none, every = (make_agent(config.merged(ortho_init=init), device="cpu", seed=0).policy
                          for init in ("heads", "none", "all"))
    for (name, a), b in zip(heads.features_extractor.state_dict().items(), none.features_extractor.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)  # the lab init, untouched
    linear = "classifier.encoder.layers.0.linear1.weight"  # SB3 re-initialises every nn.Linear it reaches
    assert not torch.equal(every.features_extractor.state_dict()[linear], none.features_extractor.state_dict()[linear])
    w = heads.action_net.weight  # (2, 64): orthogonal rows of norm 0.01
    torch.testing.assert_close(w @ w.T, 1e-4 * torch.eye(2), rtol=0, atol=1e-9)
    assert not torch.equal(heads.action_net.weight, none.action_net.weight)
    with pytest.raises(ValueError, match="choose one of all, heads, none"):
        make_agent(AgentConfig("CartPole-v1", ortho_init="some"), device="cpu")
    with pytest.raises(ValueError, match="not both"):
        make_agent(AgentConfig("CartPole-v1", ortho_init="none", policy_kwargs={"ortho_init": True}), device="cpu")


def test_rl_zoo_schedule_strings_and_activation_names():
    model = make_agent(AgentConfig("CartPole-v1", lr="lin_1e-3", algo_kwargs={"clip_range": "lin_0.2"},
                                   policy_kwargs={"activation_fn": "relu"}), device="cpu")
    assert model.lr_schedule(1.0) == pytest.approx(1e-3) and model.lr_schedule(0.25) == pytest.approx(2.5e-4)
    assert model.clip_range(0.5) == pytest.approx(0.1)
    assert model.policy.activation_fn is torch.nn.ReLU
    with pytest.raises(ValueError, match="'lin_<value>'"):
        make_agent(AgentConfig("CartPole-v1", lr="linear_1e-3"), device="cpu")
    with pytest.raises(ValueError, match="choose one of tanh, relu"):
        make_agent(AgentConfig("CartPole-v1", policy_kwargs={"activation_fn": "swish"}), device="cpu")
