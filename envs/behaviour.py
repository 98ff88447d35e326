"""Behaviour policies that collect BabyAI trajectories of known quality (:func:`envs.demos.collect_trajectories`).

- :class:`BotPolicy`: minigrid's scripted bot; with ``noise=p`` each action is replaced, with probability p, by
  one drawn uniformly from the 7 actions (the bot replans from wherever that leaves it);
- :class:`RandomPolicy`: uniformly random actions;
- :class:`CallablePolicy`: any ``act(observation_batch) -> actions`` callable over the lab's BabyAI observations
  (:class:`envs.babyai.BabyAIObservation`: view, direction, mission token ids and, with ``action_history=k``,
  the k previous actions), e.g. an RL checkpoint. ``envs`` never imports ``agents``: the caller (the experiments)
  wraps an SB3 model into such a callable.

A policy's ``name`` is each collected episode's ``source`` and part of a collection directory's identity, so a
directory never mixes policies. The collector calls ``start(env, rng)`` before every episode with a generator
seeded from the episode (base seed, attempt): every random draw of a policy comes from it, so a collection is a
pure function of its base seed and an interrupted one resumes identically.
"""
from __future__ import annotations

import abc
import re
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from minigrid.utils.baby_ai_bot import BabyAIBot

from envs.babyai import NUM_ACTIONS

Observation = dict[str, Any]  # one observation of BabyAIObservation
ObservationBatch = dict[str, np.ndarray]  # the same, each value stacked along a new first axis (batch of 1)


class PolicyGaveUp(Exception):
    """The policy cannot go on in this episode (the bot asserts on situations it cannot handle, e.g. KeyInBox);
    the collector skips the episode and counts the reason."""


class BehaviourPolicy(abc.ABC):
    """One behaviour policy. ``action_history``: previous actions its observations carry (``prev_actions``)."""

    name: str
    action_history: int = 0

    def start(self, env: gym.Env, rng: np.random.Generator) -> None:
        """A new episode of ``env`` (just reset) begins; draw every random number of the episode from ``rng``."""

    @abc.abstractmethod
    def act(self, observation: Observation) -> int:
        """The action for ``observation``."""


class BotPolicy(BehaviourPolicy):
    """minigrid's ``BabyAIBot``; ``noise`` in [0, 1]: the probability that a step's action is a random one."""

    def __init__(self, noise: float = 0.0) -> None:
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must lie in [0, 1], got {noise}")
        self.noise = float(noise)
        self.name = "bot" if noise == 0 else f"bot-noise{noise:g}"
        self._bot: BabyAIBot | None = None
        self._rng = np.random.default_rng(0)
        self._deviation: int | None = None

    def start(self, env: gym.Env, rng: np.random.Generator) -> None:
        self._bot, self._rng, self._deviation = BabyAIBot(env.unwrapped), rng, None

    def act(self, observation: Observation) -> int:
        assert self._bot is not None, "start() an episode first"
        try:
            # The bot must be told an action it did not suggest (None: its own suggestion was taken), or it plans
            # from where it believes it is.
            suggested = int(self._bot.replan(self._deviation))
        except Exception as error:  # the bot asserts on states it cannot handle (e.g. a box a random toggle opened)
            raise PolicyGaveUp(f"bot {type(error).__name__}") from error
        action = suggested
        if self.noise and self._rng.random() < self.noise:
            action = int(self._rng.integers(NUM_ACTIONS))
        self._deviation = None if action == suggested else action
        return action


class RandomPolicy(BehaviourPolicy):
    """Uniformly random actions over the 7 of minigrid (the return of a random policy: a dataset's floor)."""

    name = "random"

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)

    def start(self, env: gym.Env, rng: np.random.Generator) -> None:
        self._rng = rng

    def act(self, observation: Observation) -> int:
        return int(self._rng.integers(NUM_ACTIONS))


class CallablePolicy(BehaviourPolicy):
    """``act(batch) -> actions`` on a batch of one observation, e.g. a trained RL policy. An SB3 checkpoint
    trained on ``make_babyai_env(level, action_history=4)`` (built by the caller: envs never imports agents)::

        model = PPO.load(path, device="cpu")
        policy = CallablePolicy(lambda batch: model.predict(batch, deterministic=False)[0], "ppo-20k",
                                action_history=4, reseed=torch.manual_seed)

    Args:
        act: stacked observations (each value with a leading batch axis of 1) -> a sequence of one action.
        name: the episodes' source, e.g. ``"ppo-20k"`` (a directory holds one policy's episodes).
        action_history: previous actions in the observations the policy was trained on.
        reseed: called with a seed drawn from the episode's generator before each episode, so a sampling
            policy (e.g. SB3's ``predict(deterministic=False)``, which draws from torch's global generator) collects
            reproducibly: pass ``torch.manual_seed`` or a function reseeding the policy's own generator.
    """

    def __init__(self, act: Callable[[ObservationBatch], Sequence[Any]], name: str, action_history: int = 0,
                 reseed: Callable[[int], Any] | None = None) -> None:
        if not name or "/" in name:
            raise ValueError(f"name must be a non-empty label without '/', got {name!r}")
        if action_history < 0:
            raise ValueError(f"action_history must be >= 0, got {action_history}")
        self._act, self.name, self.action_history, self._reseed = act, name, action_history, reseed

    def start(self, env: gym.Env, rng: np.random.Generator) -> None:
        if self._reseed is not None:
            self._reseed(int(rng.integers(2**31)))

    def act(self, observation: Observation) -> int:
        actions = self._act({key: np.asarray(value)[None] for key, value in observation.items()})
        if len(actions) != 1:
            raise ValueError(f"policy {self.name!r} returned {len(actions)} actions for a batch of one observation")
        return int(np.asarray(actions[0]).reshape(()))


_NOISY_BOT = re.compile(r"bot-noise(\d*\.?\d+)")
POLICY_NAMES = "bot, random, bot-noiseP (the bot with a fraction P in [0, 1] of random actions, e.g. bot-noise0.25)"


def policy_from_name(name: str) -> BehaviourPolicy:
    """The scripted policy called ``name`` (see :data:`POLICY_NAMES`); callables are built with CallablePolicy."""
    if name == "bot":
        return BotPolicy()
    if name == "random":
        return RandomPolicy()
    match = _NOISY_BOT.fullmatch(name)
    if match and 0 <= float(match.group(1)) <= 1:
        return BotPolicy(float(match.group(1)))
    raise ValueError(f"unknown behaviour policy {name!r}; choose one of {POLICY_NAMES}")
