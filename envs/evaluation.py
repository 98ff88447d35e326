"""One evaluation protocol for every policy of the lab, cloned or trained with rewards.

- :func:`evaluate`: ``episodes`` fresh episodes, reset with the seeds ``episode_seed(seed, i)`` for i = 0, 1, ...
  (the demo collection's seed rule with another base) minus ``exclude_seeds`` (e.g. the training demos'), played
  in lockstep by up to ``num_envs`` envs, one batched ``act`` call per step over the episodes still running.
  Episodes run in groups of ``num_envs``: the next group starts when the whole group has ended, so which
  episodes share a batch (and so the draws of sampled actions) depends only on the arguments.
- :func:`logits_actor`: the greedy (argmax) or sampled action rule over a policy's logits, sampling with a torch
  generator of its own: an evaluation never touches the global random state, so evaluating (or not) cannot
  change how training goes on.
- :func:`bandit_accuracy`: a classification bandit's exact accuracy on a whole split, in one batch.

Success is the env's ``info["is_success"]`` at the end of an episode (BabyAI levels and the bandits say it);
envs that do not report one have ``success_rate`` None. ``supervised.babyai_bc`` scores behaviour cloning and
``agents.evaluation`` scores SB3 agents with these functions, so both paradigms meet the same episodes.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from envs.demos import episode_seed

EVAL_SEED = 1_000_003  # base seed of evaluation episodes: far from the small demo base seeds (0, 1, 2, ...)

Act = Callable[[Any], Sequence[Any]]  # stacked observations (an array, or a dict of arrays) -> one action each


@dataclass(frozen=True)
class EpisodeResult:
    seed: int  # reset seed of the episode
    success: bool | None  # info["is_success"] of its last step; None when the env does not say
    length: int  # steps taken
    reward: float  # return
    actions: tuple[Any, ...]  # the policy's actions, in order


@dataclass(frozen=True)
class RolloutResult:
    """Every episode of one evaluation, in seed order, and the numbers over them."""

    env_id: str
    greedy: bool
    episodes: tuple[EpisodeResult, ...]
    skipped_seeds: int  # seeds of the rule left out because they were excluded (demo seeds)
    wall_time_s: float

    @property
    def success_rate(self) -> float | None:
        flags = [e.success for e in self.episodes if e.success is not None]
        return float(np.mean(flags)) if flags else None

    @property
    def success_stderr(self) -> float | None:
        """Binomial standard error of the success rate."""
        p = self.success_rate
        return None if p is None else math.sqrt(p * (1 - p) / len(self.episodes))

    @property
    def mean_length(self) -> float:
        return float(np.mean([e.length for e in self.episodes]))

    @property
    def mean_return(self) -> float:
        return float(np.mean([e.reward for e in self.episodes]))

    @property
    def failed_seeds(self) -> list[int]:
        return [e.seed for e in self.episodes if e.success is False]

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.success_rate is not None:
            out.update(success_rate=self.success_rate, success_rate_stderr=self.success_stderr)
        return {**out, "mean_length": self.mean_length, "mean_return": self.mean_return,
                "eval_episodes": len(self.episodes), "eval_wall_time_s": self.wall_time_s}

    def to_dict(self) -> dict[str, Any]:
        return {"env_id": self.env_id, "greedy": self.greedy, **self.metrics(), "skipped_seeds": self.skipped_seeds,
                "episodes": [asdict(e) for e in self.episodes]}


def evaluation_seeds(episodes: int, base_seed: int = EVAL_SEED, exclude: Iterable[int] = ()) -> tuple[list[int], int]:
    """The reset seeds ``episode_seed(base_seed, i)``, i = 0, 1, ..., that are not in ``exclude``, until there
    are ``episodes`` of them; returns ``(seeds, number skipped)``."""
    excluded, seeds, index = set(exclude), [], 0
    while len(seeds) < episodes:
        seed = episode_seed(base_seed, index)
        index += 1
        if seed not in excluded:
            seeds.append(seed)
    return seeds, index - episodes


def evaluate(make_env: Callable[[], gym.Env], act: Act | StatefulAct, episodes: int, *, seed: int = EVAL_SEED,
             exclude_seeds: Iterable[int] = (), num_envs: int = 100, greedy: bool = True,
             env_id: str = "") -> RolloutResult:
    """Play ``episodes`` fresh episodes with ``act`` and return every episode's result (module docstring).

    ``greedy`` only labels the result: the action rule is ``act``'s (see :func:`logits_actor`).
    """
    if episodes < 1 or num_envs < 1:
        raise ValueError(f"episodes and num_envs must be >= 1, got {episodes} and {num_envs}")
    excluded = set(exclude_seeds)
    seeds, skipped = evaluation_seeds(episodes, seed, excluded)
    envs = [make_env() for _ in range(min(num_envs, episodes))]
    start, results = time.perf_counter(), []
    try:
        for first in range(0, episodes, len(envs)):
            results += play(envs, act, seeds[first:first + len(envs)])
    finally:
        for env in envs:
            env.close()
    return RolloutResult(env_id, greedy, tuple(results), skipped, time.perf_counter() - start)


class StatefulAct:
    """An actor with memory (an LSTM's state, a transformer's episode memory): :func:`play` calls
    ``reset(n)`` before a group of ``n`` episodes, then ``act(observations, episode_start)`` on every env of the
    group each step (finished ones included, their actions ignored), so the state keeps one row per env, and
    ``observe(rewards)`` after each step with every env's reward (0 for envs already finished)."""

    def reset(self, n: int) -> None:
        raise NotImplementedError

    def __call__(self, observations: Any, episode_start: np.ndarray) -> Sequence[Any]:
        raise NotImplementedError

    def observe(self, rewards: np.ndarray) -> None:
        """The rewards (n,) of the actions just taken; an actor conditioned on returns (a Decision Transformer)
        subtracts them from the return it still asks for. Default: ignored."""


def play(envs: Sequence[gym.Env], act: Act | StatefulAct, seeds: Sequence[int]) -> list[EpisodeResult]:
    """One episode per seed on ``envs[:len(seeds)]``; each step, one ``act`` call over the envs still running
    (a :class:`StatefulAct` over all of them)."""
    observations = [env.reset(seed=s)[0] for env, s in zip(envs, seeds)]
    actions: list[list[Any]] = [[] for _ in seeds]
    returns, success = [0.0] * len(seeds), [None] * len(seeds)
    active = list(range(len(seeds)))
    stateful = isinstance(act, StatefulAct)
    if stateful:
        act.reset(len(seeds))
    starts = np.ones(len(seeds), dtype=bool)
    while active:
        if stateful:
            every = act(stack(observations), starts)
            starts = np.zeros(len(seeds), dtype=bool)
            chosen = [every[i] for i in active]
        else:
            chosen = act(stack([observations[i] for i in active]))
        if len(chosen) != len(active):
            raise ValueError(f"act returned {len(chosen)} actions for {len(active)} observations")
        running, rewards = [], np.zeros(len(seeds))
        for i, action in zip(active, chosen):
            obs, reward, terminated, truncated, info = envs[i].step(action)
            actions[i].append(action)
            returns[i] += float(reward)
            rewards[i] = float(reward)
            if terminated or truncated:
                success[i] = bool(info["is_success"]) if "is_success" in info else None
            else:
                observations[i] = obs
                running.append(i)
        if stateful:
            act.observe(rewards)
        active = running
    return [EpisodeResult(s, success[i], len(actions[i]), returns[i], tuple(actions[i])) for i, s in enumerate(seeds)]


def stack(observations: Sequence[Any]) -> Any:
    """A batch of observations: one array, or a dict of arrays for Dict observations."""
    if isinstance(observations[0], dict):
        return {key: np.stack([np.asarray(o[key]) for o in observations]) for key in observations[0]}
    return np.stack([np.asarray(o) for o in observations])


def logits_actor(logits: Callable[[Any], Tensor], greedy: bool, seed: int,
                 device: torch.device | str | None = "cpu") -> Act:
    """Actions from a policy's logits (B, A): argmax, or draws from their softmax with a generator seeded
    ``seed`` (its own, so the global random state is untouched). Observations go to ``device`` as tensors
    (``device=None``: ``logits`` gets the numpy batch and converts it itself)."""
    generator = None if greedy else torch.Generator().manual_seed(seed)

    def act(observations: Any) -> list[int]:
        if device is None:
            batch: Any = observations
        elif isinstance(observations, dict):
            batch = {key: torch.as_tensor(value).to(device) for key, value in observations.items()}
        else:
            batch = torch.as_tensor(observations).to(device)
        with torch.no_grad():
            scores = logits(batch)
        return choose_actions(scores, generator)

    return act


def choose_actions(scores: Tensor, generator: torch.Generator | None) -> list[int]:
    """The action rule over logits (B, A): argmax when ``generator`` is None, else one draw per row from their
    softmax with that (CPU) generator."""
    if generator is None:
        return scores.argmax(dim=-1).tolist()
    probs = torch.softmax(scores.float().cpu(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1).tolist()


def bandit_accuracy(act: Act, env: gym.Env) -> dict[str, float]:
    """Exact accuracy of ``act`` over a classification bandit's whole split (``env.unwrapped.x`` / ``.y``): the
    mean return of one greedy episode per image, computed in one batch."""
    x, y = env.unwrapped.x, env.unwrapped.y
    accuracy = float(np.mean(np.asarray(act(x)).reshape(-1) == y))
    return {"accuracy": accuracy, "mean_return": accuracy, "eval_episodes": len(y)}
