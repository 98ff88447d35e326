"""One factory for the SB3 agents of the lab: algorithm x encoder x optimizer, checked before anything trains.

    model = make_agent(AgentConfig("CartPole-v1", "ppo", "transformer", optimizer="adamw", weight_decay=0.01))
    model = make_agent(AgentConfig("lab/DigitsBandit-v0", "a2c", "conv", n_envs=8, vec_env="subproc"), seed=1)
    model = make_agent(AgentConfig("lab/BabyAI-GoToRedBallGrey-v0", encoder="fusion", finetune="frozen",
                                   encoder_kwargs=dict(config=bc_model.encoder.config.transformer)),
                       pretrained=bc_model.encoder.state_dict())
    model = make_agent(PRESETS["cartpole-novel"].merged(n_envs=4))   # a preset is an AgentConfig

Hyperparameters as RL Zoo writes them are accepted: ``lr="lin_1e-3"`` and ``algo_kwargs=dict(clip_range="lin_0.2")``
(linear from the value to 0 over training), ``policy_kwargs=dict(activation_fn="relu")``. Named recipes live in
:mod:`agents.presets`. ``normalize_obs=True`` wraps the training envs in SB3's ``VecNormalize`` (observations
only); :func:`agents.callbacks.save_model_atomic` saves its statistics beside the model and :func:`load_agent`
restores them.

Optimizers come from :func:`lab.optim.sb3_optimizer` (``Lab*`` classes: rank-based weight decay, per-group
``lr_scale``), passed as SB3's ``optimizer_class`` / ``optimizer_kwargs``. ``optimizer=None`` picks what SB3
itself would use, so the "mlp" encoder with default arguments *is* SB3's default agent:

- PPO: Adam with ``eps=1e-5`` (SB3's ``ActorCriticPolicy`` default); A2C: RMSprop with ``alpha=0.99,
  eps=1e-5, weight_decay=0`` (A2C's ``use_rms_prop=True`` default; giving A2C any ``optimizer_class``
  turns that default off, so "rmsprop" here reproduces it and A2C's own ``use_rms_prop`` / ``rms_prop_eps``
  arguments are refused); DQN: Adam with torch's defaults.
- Named optimizers on PPO / A2C get ``eps=1e-5`` when they take an ``eps`` and are of the Adam family or
  RMSprop (the optimizers SB3 itself uses on-policy); everything else keeps the registry's defaults.
  ``optimizer_kwargs`` overrides any of these.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize
from torch import nn

from agents.callbacks import vecnormalize_path
from agents.config import AgentConfig
from agents.extractors import EXTRACTORS
from agents.finetune import FinetuneConfig, load_pretrained, policy_class_for
from agents.memory import MemoryPPO, RecurrentPPO
from envs.make import make_env, resolve_id
from lab.optim import get_optimizer_info, sb3_optimizer
from lab.runtime import select_device

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO, "a2c": A2C, "dqn": DQN,
    "memory-ppo": MemoryPPO,  # PPO + a transformer over the episode (agents.memory.ppo)
    "recurrent-ppo": RecurrentPPO,  # sb3-contrib's PPO + LSTM: the memory MemoryPPO is measured against
}
# SB3's policy names by algorithm (flat, Dict observations); RecurrentPPO names its LSTM policies itself.
POLICY_NAMES = {"recurrent-ppo": ("MlpLstmPolicy", "MultiInputLstmPolicy")}
ENCODERS = ("mlp", *EXTRACTORS)  # "mlp": SB3's own default extractor (Flatten / CombinedExtractor), the baseline
VEC_ENVS: dict[str, type] = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}
SB3_DEFAULT_LR = {"ppo": 3e-4, "a2c": 7e-4, "dqn": 1e-4, "memory-ppo": 3e-4, "recurrent-ppo": 3e-4}  # SB3's own
SB3_DEFAULT_OPTIMIZER = {"ppo": "adam", "a2c": "rmsprop", "dqn": "adam", "memory-ppo": "adam", "recurrent-ppo": "adam"}
ON_POLICY_EPS = 1e-5  # SB3's eps for Adam (PPO/A2C policies) and RMSprop (A2C)
SCHEDULE_KEYS = ("clip_range", "clip_range_vf")  # algo_kwargs that take an SB3 schedule (besides lr)
ORTHO_INITS = ("all", "heads", "none")
# policy_kwargs["activation_fn"] by name, so JSON (the CLI, presets) can choose one
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU,
}


def make_agent(
    config: AgentConfig,
    *,
    seed: int | None = 0,
    device: str = "auto",
    pretrained: Any = None,
    pretrained_head: Mapping[str, Any] | None = None,
    verbose: int = 0,
    tensorboard_log: str | None = None,
) -> BaseAlgorithm:
    """Build the SB3 agent ``config`` describes; every option is checked (with a message naming what would
    work) before any env starts. See :class:`agents.config.AgentConfig` for the options.

    Args:
        config: the agent (algorithm, env, encoder, optimizer, envs, ...); ``config.encoder`` may also be any
            ``BaseFeaturesExtractor`` subclass (e.g. a reference model for a benchmark).
        seed: seeds SB3 (torch, numpy, envs); None for no seeding.
        device: "auto" (CUDA > MPS > CPU), "cpu", "cuda", ... (lab.runtime.select_device).
        pretrained: the encoder's pretrained ``lab`` state dict (or a path), loaded into ``extractor.backbone``.
        pretrained_head: an ``nn.Linear`` state dict for SB3's ``action_net`` (PPO/A2C).
        verbose: SB3's verbosity.
        tensorboard_log: SB3's TensorBoard folder (:class:`agents.run.AgentRun` sets its own logger instead).

    ``lr`` and ``algo_kwargs["clip_range" / "clip_range_vf"]`` may be RL Zoo's ``"lin_<value>"``;
    ``policy_kwargs["activation_fn"]`` a name of :data:`ACTIVATIONS`; ``normalize_obs`` True normalises a float
    Box or every float Box key of a Dict (``agents.evaluation`` normalises what the agent sees the same way);
    ``ortho_init="heads"`` gives SB3's orthogonal init to the MLP heads only (the lab blocks keep their own init).
    """
    algo, encoder, optimizer = config.algo, config.encoder, config.optimizer
    encoder_kwargs, optimizer_kwargs, n_envs = config.encoder_kwargs, config.optimizer_kwargs, config.n_envs
    finetune, ortho_init, normalize_obs = config.finetune, config.ortho_init, config.normalize_obs
    algo_class, finetune_config = _check_names(algo, encoder, optimizer, config.vec_env, finetune, pretrained,
                                               pretrained_head)
    algo_kwargs = dict(config.algo_kwargs)
    policy_kwargs = dict(config.policy_kwargs)
    _check_kwargs(algo, encoder, encoder_kwargs, algo_kwargs, policy_kwargs)
    lr = SB3_DEFAULT_LR[algo] if config.lr is None else parse_schedule(config.lr, "lr")
    for key in SCHEDULE_KEYS:
        if key in algo_kwargs:
            algo_kwargs[key] = parse_schedule(algo_kwargs[key], key)
    _resolve_activation(policy_kwargs)
    _apply_ortho_init(algo, ortho_init, policy_kwargs)
    torch_device = select_device(device)  # an unavailable device fails here, before any env starts
    resolve_id(config.env_id)  # an unknown id fails here, with gymnasium's suggestions, not in a worker
    env = make_vec_env(functools.partial(make_env, config.env_id, **config.env_kwargs), n_envs=n_envs,
                       seed=seed, vec_env_cls=VEC_ENVS[config.vec_env])
    try:
        _check_spaces(algo, encoder, env.observation_space, env.action_space, policy_kwargs, encoder_kwargs)
        if normalize_obs or config.normalize_reward:
            keys = normalized_obs_keys(env.observation_space, normalize_obs) if normalize_obs else None
            env = VecNormalize(env, norm_obs=bool(normalize_obs), norm_reward=config.normalize_reward,
                               norm_obs_keys=keys, gamma=algo_kwargs.get("gamma", 0.99))
        name = optimizer or SB3_DEFAULT_OPTIMIZER[algo]
        optimizer_class, optimizer_kw = sb3_optimizer(
            name, config.weight_decay, **{**_sb3_optimizer_defaults(algo, name), **optimizer_kwargs}
        )
        policy_kwargs.update(optimizer_class=optimizer_class, optimizer_kwargs=optimizer_kw)
        if encoder != "mlp":
            extractor_kwargs = dict(encoder_kwargs)
            if encoder == "conv" and policy_kwargs.get("normalize_images") is False:
                extractor_kwargs.setdefault("normalized_image", True)  # what SB3 does for its NatureCNN
            policy_kwargs.update(
                features_extractor_class=_extractor_class(encoder), features_extractor_kwargs=extractor_kwargs
            )
        dict_obs = isinstance(env.observation_space, spaces.Dict)
        if finetune_config is not None:
            policy: Any = policy_class_for(algo_class)
            policy_kwargs["finetune"] = finetune_config.to_dict()
        else:
            policy = POLICY_NAMES.get(algo, ("MlpPolicy", "MultiInputPolicy"))[dict_obs]
        model = algo_class(
            policy, env, learning_rate=lr, policy_kwargs=policy_kwargs,
            seed=seed, tensorboard_log=tensorboard_log, device=torch_device, verbose=verbose, **algo_kwargs,
        )
        if ortho_init == "heads":
            init_heads(model.policy)
        if pretrained is not None or pretrained_head is not None:
            load_pretrained(model, pretrained, pretrained_head)
    except BaseException:
        env.close()
        raise
    return model


def parse_schedule(value: Any, name: str = "lr") -> float | Callable[[float], float]:
    """A number, an SB3 schedule (a callable of the remaining progress 1 -> 0) or RL Zoo's ``"lin_<start>"``
    (linear from start to 0 over training, as SB3's picklable ``LinearSchedule``)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, a schedule or 'lin_<value>', got {value!r}")
    if isinstance(value, (int, float)) or callable(value):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.startswith("lin_"):
                return LinearSchedule(float(text[4:]), 0.0, 1.0)
            return float(text)
        except ValueError:
            pass
    raise ValueError(f"{name} must be a number, a schedule or 'lin_<value>' (e.g. 'lin_1e-3', linear to 0), got {value!r}")


def normalized_obs_keys(space: spaces.Space, normalize_obs: bool | Sequence[str] = True) -> list[str] | None:
    """The ``norm_obs_keys`` for ``VecNormalize``: None for a Box; for a Dict the float Box keys, or the keys
    asked for. Images and integer data (token ids, masks, BabyAI's grid) are refused: SB3 scales images
    itself, and ids must stay ids."""
    if isinstance(space, spaces.Dict):
        floats = [k for k, s in space.spaces.items() if isinstance(s, spaces.Box) and np.issubdtype(s.dtype, np.floating)]
        keys = floats if normalize_obs is True else list(normalize_obs)
        bad = sorted(set(keys) - set(floats))
        if bad or not keys:
            raise ValueError(f"normalize_obs: VecNormalize normalises float Box keys; this Dict has {floats or 'none'}"
                             + (f", not {bad}" if bad else "") + " (token ids, masks and images must stay as they are)")
        return keys
    if normalize_obs is not True:
        raise ValueError("normalize_obs takes a list of keys only for Dict observations; use True for a Box")
    if not isinstance(space, spaces.Box) or is_image_space(space, check_channels=False) \
            or not np.issubdtype(space.dtype, np.floating):
        raise ValueError(f"normalize_obs needs a float Box (or Dict) observation, got {space}; SB3 already scales "
                         "uint8 images by 1/255")
    return None


def load_agent(
    algo: str, path: str | os.PathLike, env_id: str | None = None, *, n_envs: int = 1,
    env_kwargs: Mapping[str, Any] | None = None, seed: int | None = None, vec_env: str = "dummy",
    device: str = "auto", training: bool = False,
) -> BaseAlgorithm:
    """``Algo.load(path)`` with its env and, if it was saved with them, its ``VecNormalize`` statistics.

    The statistics file (:func:`agents.callbacks.vecnormalize_path`) wraps a fresh ``env_id`` vec env, with
    ``training=False`` unless asked (to continue training, pass ``training=True``). Predict on observations
    from ``model.get_env()``, or normalise raw ones first with
    ``model.get_vec_normalize_env().normalize_obs(obs)``, as the agent saw them in training.
    """
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algo {algo!r}; choose one of {', '.join(ALGORITHMS)}")
    stats = vecnormalize_path(path)
    if env_id is None:
        if stats.exists():
            raise ValueError(f"{path} was saved with VecNormalize statistics ({stats.name}); pass env_id so they wrap "
                             "its env, or the agent would see unnormalised observations")
        return ALGORITHMS[algo].load(path, device=select_device(device))
    env: VecEnv = make_vec_env(functools.partial(make_env, env_id, **(env_kwargs or {})), n_envs=n_envs, seed=seed,
                               vec_env_cls=VEC_ENVS[vec_env])
    if stats.exists():
        env = VecNormalize.load(str(stats), env)
        env.training = training
    return ALGORITHMS[algo].load(path, env=env, device=select_device(device))


def init_heads(policy: ActorCriticPolicy) -> None:
    """SB3's orthogonal init (gains sqrt 2 for the MLPs, 0.01 for the action layer, 1 for the value layer,
    zero biases) on everything after the features extractor, which keeps the lab blocks' own init."""
    if not isinstance(policy, ActorCriticPolicy):
        raise TypeError(f"ortho_init='heads' applies to PPO / A2C's actor-critic policies, not {type(policy).__name__}")
    gains = {policy.mlp_extractor: np.sqrt(2), policy.action_net: 0.01, policy.value_net: 1.0}
    for module, gain in gains.items():
        module.apply(functools.partial(ActorCriticPolicy.init_weights, gain=gain))


def _resolve_activation(policy_kwargs: dict[str, Any]) -> None:
    name = policy_kwargs.get("activation_fn")
    if isinstance(name, str):
        if name.lower() not in ACTIVATIONS:
            raise ValueError(f"unknown activation_fn {name!r}; choose one of {', '.join(ACTIVATIONS)} (or pass a class)")
        policy_kwargs["activation_fn"] = ACTIVATIONS[name.lower()]


def _apply_ortho_init(algo: str, ortho_init: str | None, policy_kwargs: dict[str, Any]) -> None:
    if ortho_init is None:
        return
    if ortho_init not in ORTHO_INITS:
        raise ValueError(f"unknown ortho_init {ortho_init!r}; choose one of {', '.join(ORTHO_INITS)}")
    if "ortho_init" in policy_kwargs:
        raise ValueError("set either ortho_init= or policy_kwargs['ortho_init'], not both")
    if algo == "dqn":
        if ortho_init != "none":
            raise ValueError("ortho_init applies to PPO / A2C; DQN's Q-network keeps torch's default init")
        return
    policy_kwargs["ortho_init"] = ortho_init == "all"  # "heads": SB3's off, init_heads() after construction


def _check_names(algo, encoder, optimizer, vec_env, finetune, pretrained, pretrained_head):
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algo {algo!r}; choose one of {', '.join(ALGORITHMS)}")
    is_class = isinstance(encoder, type) and issubclass(encoder, BaseFeaturesExtractor)
    if not is_class and encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)} "
                         "(or pass a BaseFeaturesExtractor subclass)")
    if optimizer is not None:
        get_optimizer_info(optimizer)  # ValueError listing the registered names
    if vec_env not in VEC_ENVS:
        raise ValueError(f"unknown vec_env {vec_env!r}; choose one of {', '.join(VEC_ENVS)}")
    config = FinetuneConfig.coerce(finetune)
    if config is not None:
        if encoder == "mlp":
            raise ValueError(f"fine-tuning strategy {config.strategy!r} needs a lab encoder: "
                             f"choose encoder {', '.join(EXTRACTORS)}")
        has_weights = pretrained is not None or pretrained_head is not None
        if config.strategy == "scratch" and has_weights:
            raise ValueError("strategy 'scratch' trains from random weights: drop pretrained / pretrained_head, "
                             "or choose 'full', 'frozen', 'top' or 'discriminative'")
        if config.strategy != "scratch" and pretrained is None:
            raise ValueError(f"strategy {config.strategy!r} fine-tunes a pretrained encoder: pass pretrained= "
                             "(a state dict or path), or use strategy 'scratch'")
    return ALGORITHMS[algo], config


def _check_kwargs(algo, encoder, encoder_kwargs, algo_kwargs, policy_kwargs) -> None:
    if encoder == "mlp" and encoder_kwargs:
        raise ValueError("encoder 'mlp' takes no encoder_kwargs (it is SB3's default extractor); set its hidden "
                         "layers with policy_kwargs=dict(net_arch=...)")
    taken = {"optimizer_class", "optimizer_kwargs", "features_extractor_class", "features_extractor_kwargs", "finetune"}
    clash = sorted(taken & set(policy_kwargs))
    if clash:
        raise ValueError(f"policy_kwargs {clash} are set by make_agent: use optimizer= / optimizer_kwargs= / "
                         "encoder= / encoder_kwargs= / finetune= instead")
    own = {"policy", "env", "learning_rate", "policy_kwargs", "seed", "tensorboard_log", "device", "verbose"}
    clash = sorted(own & set(algo_kwargs))
    if clash:
        raise ValueError(f"algo_kwargs {clash} are arguments of make_agent itself (learning_rate is lr=)")
    if algo == "a2c" and {"use_rms_prop", "rms_prop_eps"} & set(algo_kwargs):
        raise ValueError("A2C's use_rms_prop / rms_prop_eps are replaced by optimizer='rmsprop' (SB3's A2C "
                         "default: alpha 0.99, eps 1e-5) and optimizer_kwargs=dict(eps=...)")


def _check_spaces(algo, encoder, obs_space, action_space, policy_kwargs, encoder_kwargs) -> None:
    if algo == "dqn" and not isinstance(action_space, spaces.Discrete):
        raise ValueError(f"DQN needs a Discrete action space, got {action_space}; use 'ppo' or 'a2c' instead")
    if encoder == "conv":
        normalized = (encoder_kwargs or {}).get("normalized_image", policy_kwargs.get("normalize_images") is False)
        EXTRACTORS["conv"].check_observation_space(obs_space, normalized)
    elif encoder != "mlp" and hasattr(_extractor_class(encoder), "check_observation_space"):
        _extractor_class(encoder).check_observation_space(obs_space)


def _extractor_class(encoder: str | type[BaseFeaturesExtractor]) -> type[BaseFeaturesExtractor]:
    return encoder if isinstance(encoder, type) else EXTRACTORS[encoder]


def _sb3_optimizer_defaults(algo: str, name: str) -> dict[str, Any]:
    """Keyword defaults that make a named optimizer behave as SB3's own choice for ``algo`` (module docstring)."""
    info = get_optimizer_info(name)
    if algo == "dqn" or not info.has_eps:
        return {}
    if name == "rmsprop":
        return {"alpha": 0.99, "eps": ON_POLICY_EPS}
    return {"eps": ON_POLICY_EPS} if info.has_betas else {}


__all__ = [
    "ACTIVATIONS", "ALGORITHMS", "ENCODERS", "ORTHO_INITS", "SB3_DEFAULT_LR", "SB3_DEFAULT_OPTIMIZER",
    "init_heads", "load_agent", "make_agent", "make_env", "normalized_obs_keys", "parse_schedule",
]
