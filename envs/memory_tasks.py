"""Memory tasks whose needed memory is provably longer than a K-step window.

- :class:`RepeatFirstEnv` (``lab/RepeatFirst-v0``): each step shows a random symbol (one-hot); the action is
  scored against the episode's *first* symbol. Symbols are drawn independently and uniformly, so once the first
  one has left a K-step window nothing in the window says anything about it: a policy seeing only the last K
  observations scores at most ``(K + (length - K) / n) / length`` (K = 8, length 12, n = 4: **0.75**), a
  policy with memory of the episode 1.0, a random one ``1 / n``.
- :class:`OneHotObservation` (``lab/PopgymRepeatFirstEasy-v0``, ``...History-v0`` with K = 8): POPGym's card
  games with Discrete observations turned into one-hot Boxes, so Box extractors (and ``HistoryWrapper``)
  apply. RepeatFirstEasy is 51 steps of "name the first card's suit" (return in [-1, 1]; a K = 8 window can
  be sure of the suit only for the first 8 steps).
- More POPGym levels the memory benchmarks compare on (``lab/Popgym<Name>-v0``, :data:`POPGYM_LEVELS`):
  RepeatPrevious (name the suit of the card dealt k steps ago; Easy k = 4 over 51 steps, Medium k = 32 over 103)
  and CountRecall (how often has the queried card been dealt so far; Easy: 2 colours over 51 steps, Medium:
  4 suits over 103; MultiDiscrete observations, one one-hot per component). Returns in [-1, 1].
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class RepeatFirstEnv(gym.Env):
    """Observation one-hot (n,) float32 of this step's symbol; action Discrete(n); reward ``1 / length`` when the
    action equals the first symbol of the episode, else 0; the episode lasts exactly ``length`` steps (return in
    [0, 1])."""

    metadata = {"render_modes": []}

    def __init__(self, num_symbols: int = 4, length: int = 12) -> None:
        if num_symbols < 2 or length < 1:
            raise ValueError(f"need num_symbols >= 2 and length >= 1, got {num_symbols} and {length}")
        self.num_symbols, self.length = int(num_symbols), int(length)
        self.observation_space = spaces.Box(0.0, 1.0, (self.num_symbols,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.num_symbols)
        self._first = 0
        self._t = 0

    def window_bound(self, k: int) -> float:
        """Best expected return of a policy that sees only the last ``k`` observations (see the module docstring)."""
        seen = min(k, self.length)
        return (seen + (self.length - seen) / self.num_symbols) / self.length

    def _observe(self) -> np.ndarray:
        symbol = int(self.np_random.integers(self.num_symbols))
        if self._t == 0:
            self._first = symbol
        obs = np.zeros(self.num_symbols, dtype=np.float32)
        obs[symbol] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        return self._observe(), {}

    def step(self, action):
        reward = 1.0 / self.length if int(action) == self._first else 0.0
        self._t += 1
        terminated = self._t >= self.length
        return self._observe(), reward, terminated, False, {}


class OneHotObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Discrete(n) observations -> one-hot float32 Box (n,); MultiDiscrete([n1, n2, ...]) -> the components' one-hots
    concatenated, Box (n1 + n2 + ...,)."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if isinstance(space, spaces.Discrete):
            sizes = [int(space.n)]
        elif isinstance(space, spaces.MultiDiscrete) and space.nvec.ndim == 1:
            sizes = [int(n) for n in space.nvec]
        else:
            raise TypeError(f"OneHotObservation needs a Discrete or a 1-d MultiDiscrete observation space, got {space}")
        self.offsets = np.cumsum([0, *sizes[:-1]])  # where each component's one-hot starts
        self.n = int(sum(sizes))
        self.observation_space = spaces.Box(0.0, 1.0, (self.n,), dtype=np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        out = np.zeros(self.n, dtype=np.float32)
        out[self.offsets + np.asarray(observation, dtype=np.int64).reshape(-1)] = 1.0
        return out


class FreshInfo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Copies the arrays of ``info``: CountRecall hands out its live ``counts`` array at every step, so an info a
    user kept would change under them (Gymnasium's checker refuses that)."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    @staticmethod
    def _fresh(info: dict[str, Any]) -> dict[str, Any]:
        return {k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in info.items()}

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return obs, self._fresh(info)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._fresh(info)


def make_popgym(name: str, history: int = 0) -> gym.Env:
    """POPGym env ``name`` (e.g. ``"RepeatFirstEasy"``) with one-hot observations, optionally seen through a
    ``HistoryWrapper(k=history)``."""
    import popgym.envs  # imported here: popgym is only needed by these ids

    from envs.history import HistoryWrapper

    env: gym.Env = OneHotObservation(FreshInfo(getattr(popgym.envs, name)()))
    return HistoryWrapper(env, history) if history else env


def make_repeat_first_history(k: int = 8, **kwargs: Any) -> gym.Env:
    """``lab/RepeatFirstHistory-v0``: :class:`RepeatFirstEnv` through a K-step ``HistoryWrapper``."""
    from envs.history import HistoryWrapper

    return HistoryWrapper(RepeatFirstEnv(**kwargs), k)


# Registered on `import envs` (envs/__init__.py calls register_memory_envs).
MEMORY_ENV_SPECS: dict[str, dict[str, Any]] = {
    "lab/RepeatFirst-v0": {"entry_point": "envs.memory_tasks:RepeatFirstEnv",
                           "kwargs": {"num_symbols": 4, "length": 12}},
    "lab/RepeatFirstHistory-v0": {"entry_point": "envs.memory_tasks:make_repeat_first_history",
                                  "kwargs": {"k": 8, "num_symbols": 4, "length": 12}},
    "lab/PopgymRepeatFirstEasy-v0": {"entry_point": "envs.memory_tasks:make_popgym",
                                     "kwargs": {"name": "RepeatFirstEasy"}},
    "lab/PopgymRepeatFirstEasyHistory-v0": {"entry_point": "envs.memory_tasks:make_popgym",
                                            "kwargs": {"name": "RepeatFirstEasy", "history": 8}},
}
POPGYM_LEVELS = ("RepeatPreviousEasy", "RepeatPreviousMedium", "CountRecallEasy", "CountRecallMedium")
MEMORY_ENV_SPECS.update({f"lab/Popgym{name}-v0": {"entry_point": "envs.memory_tasks:make_popgym", "kwargs": {"name": name}}
                         for name in POPGYM_LEVELS})


def register_memory_envs() -> list[str]:
    """Register the ids above (idempotent)."""
    for env_id, spec in MEMORY_ENV_SPECS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, **spec)
    return list(MEMORY_ENV_SPECS)
