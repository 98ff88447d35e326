"""Classification as a one-step contextual bandit: the RL twin of the supervised classifiers.

Each episode shows one example of a fixed dataset split from :mod:`lab.data`; the action is a class label,
the reward is 1.0 if it is the true label and 0.0 otherwise, and the episode ends after that one step. The
observation is the stored array row itself, so an agent sees exactly what the supervised model sees:

- ``lab/DigitsBandit-v0``: uint8 image Box(0, 255, (1, 8, 8)), channel-first. Stable-Baselines3 treats it as
  an image and divides by 255, which is the supervised input ``x / 255``.
- ``lab/Mnist1dBandit-v0``: float32 Box (40,), the MNIST-1D signal.

Sampling: by default each reset draws an example uniformly with the env's seeded ``np_random``. With
``sequential=True`` resets walk the split in stored order (wrapping around after the last example; a reset
with a seed restarts at 0), so ``len(env.unwrapped)`` episodes visit every example exactly once and the
accuracy over them is the exact split accuracy. ``reset(options={"index": i})`` shows example ``i``.
``info`` carries ``label`` and ``index`` at reset and step; step's info also has ``is_success``.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lab.data import SPLIT_NAMES, DatasetSplits, digits_splits, mnist1d_splits


class ClassificationBanditEnv(gym.Env[np.ndarray, np.int64]):
    """One-step bandit over ``splits.split(split)``; the observation space is given by the subclass.

    Args:
        splits: the dataset with its fixed train / val / test splits.
        observation_space: a Box that contains every row of the split's ``x``.
        split: ``"train"`` while training, ``"val"`` or ``"test"`` for evaluation.
        sequential: walk the split in order instead of sampling uniformly (exact evaluation sweeps).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        splits: DatasetSplits,
        observation_space: spaces.Box,
        split: str = "train",
        sequential: bool = False,
    ) -> None:
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_NAMES)}")
        data = splits.split(split)
        if len(data) == 0:
            raise ValueError(f"split {split!r} of {splits.name} is empty; choose one of {', '.join(SPLIT_NAMES)}")
        if data.x.shape[1:] != observation_space.shape:
            raise ValueError(f"rows of x have shape {data.x.shape[1:]}, observation space {observation_space.shape}")
        self.dataset_name = splits.name
        self.split = split
        self.sequential = bool(sequential)
        self.x, self.y = data.x, data.y
        self.observation_space = observation_space
        self.action_space = spaces.Discrete(splits.num_classes)
        self._cursor = 0  # next index of a sequential sweep
        self._index: int | None = None  # example shown in the current episode; None once answered

    def __len__(self) -> int:
        """Number of examples in the split (episodes in one sequential sweep)."""
        return len(self.y)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "index" in options:
            index = int(options["index"])
            if not 0 <= index < len(self):
                raise IndexError(f"options['index']={index} is outside the {self.split} split [0, {len(self)})")
        elif self.sequential:
            if seed is not None:
                self._cursor = 0
            index = self._cursor
            self._cursor = (self._cursor + 1) % len(self)
        else:
            index = int(self.np_random.integers(len(self)))
        self._index = index
        return self.x[index].copy(), self._info(index)

    def step(self, action):
        if self._index is None:
            raise RuntimeError("call reset() before step(): each episode is a single step")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.action_space.n}), got {action!r}")
        index, self._index = self._index, None
        correct = int(action) == int(self.y[index])
        info = self._info(index)
        info["is_success"] = correct
        # The next observation is irrelevant (the episode is over); repeat the current one, as is customary.
        return self.x[index].copy(), float(correct), True, False, info

    def _info(self, index: int) -> dict[str, Any]:
        return {"label": int(self.y[index]), "index": index}


class DigitsBanditEnv(ClassificationBanditEnv):
    """``lab/DigitsBandit-v0``: scikit-learn digits, observation uint8 (1, 8, 8), action Discrete(10)."""

    def __init__(self, split: str = "train", sequential: bool = False) -> None:
        splits = digits_splits()
        space = spaces.Box(0, 255, shape=splits.train.x.shape[1:], dtype=np.uint8)
        super().__init__(splits, space, split=split, sequential=sequential)


class Mnist1dBanditEnv(ClassificationBanditEnv):
    """``lab/Mnist1dBandit-v0``: MNIST-1D, observation float32 (40,), action Discrete(10).

    The Box bounds are the data's own range over all splits, rounded outwards to integers.
    """

    def __init__(self, split: str = "train", sequential: bool = False) -> None:
        splits = mnist1d_splits()
        x_all = np.concatenate([splits.train.x, splits.val.x, splits.test.x])
        low, high = np.floor(x_all.min()), np.ceil(x_all.max())
        space = spaces.Box(low, high, shape=x_all.shape[1:], dtype=np.float32)
        super().__init__(splits, space, split=split, sequential=sequential)
