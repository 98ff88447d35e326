"""One way to make any environment the lab trains on: ``lab/`` ids, every Gymnasium id, ``module:Id`` forms.

    env = make_env("lab/BabyAI-GoToRedBallGrey-v0", action_history=4)
    env = make_env("BabyAI-GoToLocal-v0")           # any of minigrid's 96 BabyAI levels, same observations
    env = make_env("MiniGrid-MemoryS7-v0")
    env = make_env("my_package.envs:MyEnv-v0")      # gymnasium imports my_package first

MiniGrid / BabyAI levels (raw ids) come wrapped in :class:`envs.babyai.BabyAIObservation` (token-id missions,
``info["is_success"]`` at episode ends), exactly like the ``lab/BabyAI-*`` ids, so SB3 can consume every level;
``action_history`` / ``max_len`` go to that wrapper. A module-level function, so
``functools.partial(make_env, env_id)`` pickles by reference into SB3's ``SubprocVecEnv`` workers.
"""
from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym

from envs.registration import register_envs

MINIGRID_PREFIXES = ("MiniGrid-", "BabyAI-")


def make_env(env_id: str, **env_kwargs: Any) -> gym.Env:
    """``gym.make(env_id, **env_kwargs)`` with the ``lab/`` ids registered (and minigrid's, for its levels)."""
    register_envs()
    if is_minigrid(env_id) and env_id.split(":")[-1].startswith(MINIGRID_PREFIXES):  # a raw level id
        # Imported here, not at module level: importing minigrid costs ~0.3 s, and it registers its ids.
        from envs.babyai import make_babyai_env

        return make_babyai_env(resolve_id(env_id), **env_kwargs)
    return gym.make(env_id, **env_kwargs)


def is_minigrid(env_or_id: gym.Env | str) -> bool:
    """Whether an env, or an id, is a MiniGrid / BabyAI level (raw, or wrapped by the lab): the one place the lab
    decides it (success rates, BabyAI's evaluation protocol and the wrapping above depend on it)."""
    if isinstance(env_or_id, str):
        name = env_or_id.split(":")[-1]
        return name.startswith(MINIGRID_PREFIXES) or name.startswith("lab/BabyAI-")
    return type(env_or_id.unwrapped).__module__.startswith("minigrid.")


def resolve_id(env_id: str) -> str:
    """The registered id ``env_id`` names (``module:Id`` imports the module first); a bad id raises gymnasium's
    error with its suggestions."""
    register_envs()
    module, _, name = env_id.rpartition(":")
    if module:  # what gym.make does for this form (gym.spec does not)
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise gym.error.Error(f"{env_id!r}: cannot import module {module!r} ({error}); the form is "
                                  "module:EnvId, with a module that registers EnvId") from None
    if name.startswith(MINIGRID_PREFIXES):
        import minigrid  # noqa: F401  (registers every MiniGrid-* and BabyAI-* id; see make_env)
    return gym.spec(name).id


def first_observation(env_id: str, **env_kwargs: Any) -> Any:
    """The observation of ``env_id`` reset with seed 0: a real one (a BabyAI mission's token count, and so a
    policy's FLOPs, depend on it; a random sample of the space has a random mission length)."""
    env = make_env(env_id, **env_kwargs)
    try:
        return env.reset(seed=0)[0]
    finally:
        env.close()
