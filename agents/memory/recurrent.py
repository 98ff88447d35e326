"""sb3-contrib's ``RecurrentPPO`` (LSTM) as the lab runs it: the same algorithm, plus the episode-state methods
every algorithm with a memory offers the lab's resume checkpoints (:mod:`agents.checkpoint`)."""
from __future__ import annotations

from typing import Any

from sb3_contrib import RecurrentPPO as ContribRecurrentPPO


class RecurrentPPO(ContribRecurrentPPO):
    """``sb3_contrib.RecurrentPPO``, unchanged but for :meth:`episode_state` / :meth:`set_episode_state`."""

    def episode_state(self) -> dict[str, Any]:
        """The LSTM states of the episodes in progress, which the zip leaves out (a resume checkpoint saves it)."""
        return {"lstm_states": self._last_lstm_states}

    def set_episode_state(self, state: dict[str, Any]) -> None:
        self._last_lstm_states = state["lstm_states"]
