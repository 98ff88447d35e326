"""Gymnasium tasks registered under ``lab/``, wrappers, the BabyAI mission tokenizer and expert demos.

Importing ``envs`` registers the ids (idempotent), so do it before ``gym.make``::

    import gymnasium as gym
    import envs  # noqa: F401  (registers lab/*)

    env = gym.make("lab/DigitsBandit-v0", split="test", sequential=True)
    env = gym.make("envs:lab/CartPoleNoVel-v1")  # or let gymnasium import the package for you

Registered ids (see :data:`envs.registration.ENV_SPECS`):

- ``lab/DigitsBandit-v0``, ``lab/Mnist1dBandit-v0``: classification as a one-step bandit (:mod:`envs.bandit`);
- ``lab/CartPoleNoVel-v1``: CartPole-v1 observing only position and angle; ``lab/CartPoleNoVelHistory-v1``
  the same through :class:`HistoryWrapper` (kwarg ``k``, default 8) (:mod:`envs.cartpole`);
- ``lab/RepeatFirst-v0`` (+ ``History`` K = 8), ``lab/PopgymRepeatFirstEasy-v0`` (+ ``History``): memory tasks
  longer than an 8-step window (:mod:`envs.memory_tasks`);
- ``lab/BabyAI-GoToRedBallGrey-v0``, ``lab/BabyAI-GoToRedBall-v0``, ``lab/BabyAI-GoToLocal-v0``: BabyAI with
  token-id missions (:mod:`envs.babyai`; :func:`make_babyai_env` takes any level id).

Trajectories: the bot's demonstrations and episodes of other behaviour policies (:mod:`envs.demos`,
:mod:`envs.behaviour`), stored as npz shards (:mod:`envs.trajectories`) and written to / read from Minari datasets
(:mod:`envs.minari_io`).

The bandit and BabyAI names are imported lazily (on first attribute access), so ``import envs`` imports
neither ``lab`` (torch) nor minigrid.
"""
from __future__ import annotations

import importlib
from typing import Any

from envs.cartpole import CartPoleNoVelEnv
from envs.history import HistoryWrapper
from envs.memory_tasks import RepeatFirstEnv, register_memory_envs
from envs.registration import ENV_SPECS, register_envs
from envs.tokenizer import DEFAULT_MAX_LEN, VOCAB_SIZE, MissionTokenizer, MissionTooLongError

register_envs()
register_memory_envs()  # lab/RepeatFirst*, lab/Popgym* (envs.memory_tasks)

_LAZY = {
    "ClassificationBanditEnv": "envs.bandit",
    "DigitsBanditEnv": "envs.bandit",
    "Mnist1dBanditEnv": "envs.bandit",
    "BabyAIObservation": "envs.babyai",
    "IMAGE_HIGH": "envs.babyai",
    "is_success": "envs.babyai",
    "make_babyai_env": "envs.babyai",
    "silence_stdout": "envs.babyai",
    "collect_demos": "envs.demos",
    "collect_trajectories": "envs.demos",
    "BotPolicy": "envs.behaviour",
    "CallablePolicy": "envs.behaviour",
    "RandomPolicy": "envs.behaviour",
    "DemoSet": "envs.trajectories",
    "concat_demos": "envs.trajectories",
    "load_demos": "envs.trajectories",
    "top_episodes": "envs.trajectories",
}

__all__ = [
    "CartPoleNoVelEnv", "HistoryWrapper", "RepeatFirstEnv",
    "ENV_SPECS", "register_envs", "DEFAULT_MAX_LEN", "VOCAB_SIZE", "MissionTokenizer", "MissionTooLongError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'envs' has no attribute {name!r}")
