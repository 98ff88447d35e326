"""Let a policy see the last K observations of the current episode, with a mask of the real ones."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class HistoryWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Observation ``{"obs": (K, *obs_shape), "mask": (K,)}``: the last K observations, most recent last.

    ``mask[i]`` is 1 where ``obs[i]`` is a real observation of the current episode and 0 for the zero
    padding before the first one; after ``t`` steps the last ``min(t + 1, K)`` slots are real. ``reset()``
    clears the history, so an episode never sees its predecessor (vectorised envs auto-reset through this
    ``reset()``, so this holds inside SB3's ``DummyVecEnv`` / ``SubprocVecEnv`` too).

    The mask is 1 for *real* slots; an attention block wants ``key_padding_mask = mask == 0`` (True =
    padding, the ``torch.nn.MultiheadAttention`` convention). It is a ``MultiBinary(K)`` space rather than a
    Box so that ``VecNormalize`` refuses to normalise it unless told ``norm_obs_keys=["obs"]``; SB3's
    ``preprocess_obs`` hands it to the policy as float 0/1.

    The ``obs`` Box bounds are the wrapped env's bounds, widened to include 0 (the padding value).

    Args:
        env: an env with a Box observation space.
        k: number of observations kept (K >= 1).
    """

    def __init__(self, env: gym.Env, k: int) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, k=k)  # lets env.spec re-create the wrapper
        gym.Wrapper.__init__(self, env)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k (history length) must be a positive int, got {k!r}")
        inner = env.observation_space
        if not isinstance(inner, spaces.Box):
            raise TypeError(f"HistoryWrapper needs a Box observation space, got {inner}")
        self.k = int(k)
        shape = (self.k, *inner.shape)
        low = np.broadcast_to(np.minimum(inner.low, 0), shape)
        high = np.broadcast_to(np.maximum(inner.high, 0), shape)
        self.observation_space = spaces.Dict(
            {"obs": spaces.Box(low, high, shape=shape, dtype=inner.dtype), "mask": spaces.MultiBinary(self.k)}
        )
        self._history = np.zeros(shape, dtype=inner.dtype)
        self._mask = np.zeros(self.k, dtype=np.int8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._history[:] = 0
        self._mask[:] = 0
        self._push(obs)
        return self._observation(), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._push(obs)
        return self._observation(), reward, terminated, truncated, info

    def _push(self, obs: np.ndarray) -> None:
        # Shift one slot towards the past (numpy copes with the overlap), newest observation in the last slot.
        self._history[:-1] = self._history[1:]
        self._history[-1] = obs
        self._mask[:-1] = self._mask[1:]
        self._mask[-1] = 1

    def _observation(self) -> dict[str, np.ndarray]:
        # Copies: callers (replay buffers, tests) may keep the dict while the wrapper keeps shifting.
        return {"obs": self._history.copy(), "mask": self._mask.copy()}
