"""The SB3 callback that writes the lab's shared TensorBoard training tags, and atomic model saving.

SB3 logs its own keys (``rollout/ep_rew_mean``, ``train/value_loss``, ``eval/mean_reward``, ...). The
callbacks here add the :mod:`lab.tags` names that supervised runs write too, so both paradigms overlay in one
TensorBoard view, always keyed by environment steps (``model.num_timesteps``). They write into the same event
file as SB3, through the ``SummaryWriter`` of the model's TensorBoard logger.
"""
from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat

from lab import tags
from lab.io import atomic_write
from lab.optim import effective_lrs


def tensorboard_writer(logger: Logger) -> Any | None:
    """The ``SummaryWriter`` behind an SB3 logger's TensorBoard output, or None when it has none."""
    for output in logger.output_formats:
        if isinstance(output, TensorBoardOutputFormat):
            return output.writer
    return None


def save_model_atomic(model: BaseAlgorithm, path: str | os.PathLike) -> Path:
    """``model.save(path)``, atomically (SB3 writes its zip into an open file object without closing it).

    A model trained on ``VecNormalize``-d observations cannot act without the statistics, so they are written
    first, atomically too, to :func:`vecnormalize_path` beside the zip (``agents.factory.load_agent`` reads
    them back).
    """
    stats = model.get_vec_normalize_env()
    if stats is not None:
        atomic_write(vecnormalize_path(path), lambda f: pickle.dump(stats, f))  # what VecNormalize.save writes
    return atomic_write(path, model.save)


def vecnormalize_path(model_path: str | os.PathLike) -> Path:
    """Where the ``VecNormalize`` statistics of a saved model live: ``model.zip`` -> ``model.vecnormalize.pkl``."""
    path = Path(model_path)
    stem = path.name[: -len(".zip")] if path.name.endswith(".zip") else path.name
    return path.with_name(stem + ".vecnormalize.pkl")


class LabTagsCallback(BaseCallback):
    """Training curves under the lab's tag names, keyed by environment steps.

    At most once per ``log_every`` environment steps (checked when a rollout ends, and at the end of
    training) it writes the mean return and length of the episodes finished since the last write
    (``EPISODIC_RETURN``, ``EPISODIC_LENGTH``), the running counts ``EPISODES_SEEN`` and ``REWARDS_SEEN``
    (one reward signal per environment step), ``SPS`` (steps/s since training started) and
    ``LEARNING_RATE``: the rate SB3's schedule sets, plus ``LEARNING_RATE/group_i`` for each layer group
    when per-group ``lr_scale`` makes them differ.
    """

    def __init__(self, log_every: int = 1000, episodes: int = 0) -> None:
        super().__init__()
        self.log_every = log_every
        self.episodes = episodes  # episodes finished before (a resumed run's)
        self._returns: list[float] = []
        self._lengths: list[float] = []
        self._last_write = -1
        self._start_time = 0.0
        self._start_steps = 0
        self.writer: Any | None = None

    def _on_training_start(self) -> None:
        self.writer = tensorboard_writer(self.logger)
        self._start_time, self._start_steps = time.perf_counter(), self.num_timesteps

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            episode = info.get("episode")  # added by SB3's Monitor when an episode ends
            if episode is not None:
                self.episodes += 1
                self._returns.append(float(episode["r"]))
                self._lengths.append(float(episode["l"]))
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps - self._last_write >= self.log_every:
            self.write()

    def _on_training_end(self) -> None:
        if self.num_timesteps != self._last_write:
            self.write()

    @property
    def steps_per_second(self) -> float:
        return (self.num_timesteps - self._start_steps) / max(time.perf_counter() - self._start_time, 1e-9)

    def write(self) -> None:
        self._last_write = step = self.num_timesteps
        returns, lengths = self._returns, self._lengths
        self._returns, self._lengths = [], []
        if self.writer is None:
            return
        scalars = {
            tags.EPISODES_SEEN: self.episodes,
            tags.REWARDS_SEEN: step,
            tags.SPS: self.steps_per_second,
            tags.LEARNING_RATE: float(self.model.lr_schedule(self.model._current_progress_remaining)),
        }
        if returns:
            scalars[tags.EPISODIC_RETURN] = float(np.mean(returns))
            scalars[tags.EPISODIC_LENGTH] = float(np.mean(lengths))
        scalars.update(group_learning_rates(self.model.policy.optimizer))
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)


def group_learning_rates(optimizer: Any) -> dict[str, float]:
    """``{LEARNING_RATE/group_i: effective lr}`` per layer group when the groups' effective rates differ."""
    rates = effective_lrs(optimizer)
    if len(set(rates)) <= 1:
        return {}
    out = {}
    for index, (group, rate) in enumerate(zip(optimizer.param_groups, rates)):
        out[f"{tags.LEARNING_RATE}/group_{group.get('layer_group', index)}"] = rate
    return out
