"""Algorithms whose policies remember the episode, beside PPO's memoryless ones.

- :mod:`~agents.memory.ppo`: ``MemoryPPO``, PPO with a Transformer-XL-style memory over the episode;
  :mod:`~agents.memory.policy` its policies, :mod:`~agents.memory.transformer` the memory itself,
  :mod:`~agents.memory.buffer` the rollout buffer of segments;
- :mod:`~agents.memory.recurrent`: sb3-contrib's ``RecurrentPPO`` (LSTM), the baseline MemoryPPO is measured
  against.

Both act through ``predict(obs, state, episode_start)`` (:data:`STATEFUL`) and declare the memory of the episodes
in progress that their zips leave out (:class:`EpisodeState`), which the lab's resume checkpoints save.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from sb3_contrib import RecurrentPPO as ContribRecurrentPPO

from agents.memory.ppo import MemoryPPO
from agents.memory.recurrent import RecurrentPPO

# Algorithms whose policies act with a state, one row per env: predict(obs, state, episode_start). sb3-contrib's
# own class counts (a model loaded with it, not through the lab, acts the same way).
STATEFUL = (MemoryPPO, ContribRecurrentPPO)


@runtime_checkable
class EpisodeState(Protocol):
    """An algorithm that keeps the memory of its envs' episodes in progress outside its saved parameters."""

    def episode_state(self) -> dict[str, Any]: ...

    def set_episode_state(self, state: dict[str, Any]) -> None: ...


__all__ = ["STATEFUL", "EpisodeState", "MemoryPPO", "RecurrentPPO"]
