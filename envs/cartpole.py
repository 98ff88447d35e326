"""CartPole with the velocities hidden: a small partially observable control task.

``lab/CartPoleNoVel-v1`` is the RL Zoo's ``CartPoleNoVel-v1``: gymnasium's CartPole-v1 dynamics, reward,
termination and 500-step truncation, but the observation is only ``[cart position, pole angle]``. A
memoryless policy cannot tell which way the pole is moving, so the agent needs a history
(:class:`envs.history.HistoryWrapper`, registered as ``lab/CartPoleNoVelHistory-v1``) or a recurrent policy.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from envs.history import HistoryWrapper

VISIBLE = (0, 2)  # indices of CartPole's state kept: x (cart position) and theta (pole angle)


class CartPoleNoVelEnv(CartPoleEnv):
    """CartPole-v1 observing ``[x, theta]`` float32 (2,); bounds are CartPole's own for those two entries.

    For the same seed and actions, the observations equal CartPole-v1's ``obs[[0, 2]]`` and rewards,
    termination and truncation are identical (the 500-step limit is added by ``gym.make``).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        full = self.observation_space
        self.observation_space = spaces.Box(
            full.low[list(VISIBLE)], full.high[list(VISIBLE)], dtype=np.float32
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        return obs[list(VISIBLE)], info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs[list(VISIBLE)], reward, terminated, truncated, info


def make_cartpole_novel_history(k: int = 8, **kwargs: Any) -> gym.Env:
    """Entry point of ``lab/CartPoleNoVelHistory-v1``: :class:`CartPoleNoVelEnv` seen through a K-history.

    ``gym.make`` adds the 500-step ``TimeLimit`` outside the history wrapper, so truncation matches
    CartPole-v1. ``k=8`` by default: eight frames (0.16 s) are plenty to estimate both velocities.
    """
    return HistoryWrapper(CartPoleNoVelEnv(**kwargs), k)
