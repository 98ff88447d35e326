"""Scoring SB3 agents with the lab's one evaluation protocol (:mod:`envs.evaluation`).

- classification bandits (``lab/DigitsBandit-v0``, ...): exact greedy accuracy on the whole *test* split, in one
  batch (the same meaning as a supervised test accuracy);
- every other env: fresh episodes reset with the seeds ``episode_seed(base, i)``, played in lockstep, with
  greedy (argmax) and / or sampled actions. ``base`` is ``EVAL_SEED + step`` (``eval_seeds="fresh"``: the
  evaluation at each step plays episodes no other one plays, so a threshold read at one point is checked on other
  episodes at the next) or ``EVAL_SEED`` (``"fixed"``: the same episodes at every point). BabyAI levels are thereby scored on exactly the episodes and action
  rule behaviour cloning is (``supervised.babyai_bc.evaluate_policy``).

Sampled actions come from a generator of the evaluation's own (discrete actions: the policy's logits;
otherwise SB3's ``predict`` inside a torch random stream of its own, CPU and GPU), so an evaluation never
changes the global random state and so never changes how training continues. A ``VecNormalize``-d agent sees its observations
normalised with the training statistics of the moment.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.config import AgentConfig
from agents.finite import NonFiniteError, non_finite_rows
from agents.memory import STATEFUL
from envs.bandit import ClassificationBanditEnv
from envs.evaluation import EVAL_SEED, Act, StatefulAct, bandit_accuracy, evaluate, logits_actor
from envs.make import is_minigrid, make_env


class EvaluationStopped(Exception):
    """An evaluation gave up on request (``Evaluator.should_stop``), between two steps of its episodes."""


class Evaluator:
    """``evaluator(model) -> metrics`` for the env of ``config`` (module docstring).

    ``actions``: ``config.eval_actions``, or "both" on BabyAI (sampled headline, as the BabyAI paper counts,
    and ``*_greedy`` keys) and "greedy" elsewhere. ``metric`` names the headline key: ``accuracy`` (bandits),
    ``success_rate`` (envs that report success) or ``mean_return``. ``should_stop``, when it turns True, makes a
    running evaluation raise :class:`EvaluationStopped` at its next step (a long evaluation does not hold up
    Ctrl-C or SIGTERM). A NaN / inf observation raises :class:`agents.finite.NonFiniteError` naming it, before the
    policy sees it.
    """

    def __init__(self, config: AgentConfig, seed: int = EVAL_SEED) -> None:
        self.should_stop: Callable[[], bool] = lambda: False
        self.env_id, self.env_kwargs, self.seed = config.env_id, dict(config.env_kwargs), seed
        self.episodes, self.eval_envs = config.eval_episodes, config.eval_envs
        self.final_episodes = config.final_eval_episodes or config.eval_episodes
        self.fresh = config.eval_seeds == "fresh"
        probe = make_env(config.env_id, **self.env_kwargs)
        self.test_split: Any = None
        if isinstance(probe.unwrapped, ClassificationBanditEnv):
            self.kind, self.metric = "bandit", "accuracy"
            self.test_split = make_env(config.env_id, **{**self.env_kwargs, "split": "test"})
        elif is_minigrid(probe):
            self.kind, self.metric = "babyai", "success_rate"
        else:
            self.kind, self.metric = "control", "mean_return"
        probe.close()
        self.actions = "greedy" if self.kind == "bandit" else (
            config.eval_actions or ("both" if self.kind == "babyai" else "greedy"))

    def __call__(self, model: BaseAlgorithm, step: int = 0, final: bool = False) -> dict[str, float]:
        """Metrics of ``model`` evaluated at environment step ``step`` (the final evaluation: ``final``)."""
        policy = model.policy
        was_training = policy.training
        policy.set_training_mode(False)
        try:
            if self.kind == "bandit":
                return bandit_accuracy(sb3_actor(model, greedy=True, seed=self.seed), self.test_split)
            seed = self.seed + step if self.fresh else self.seed
            episodes = self.final_episodes if final else self.episodes
            out = self._episodes(model, greedy=self.actions == "greedy", seed=seed, episodes=episodes)
            if self.actions == "both":
                greedy = self._episodes(model, greedy=True, seed=seed, episodes=episodes)
                out.update({f"{key}_greedy": greedy[key] for key in ("mean_return", "success_rate") if key in greedy})
            return out
        finally:
            policy.set_training_mode(was_training)

    def _episodes(self, model: BaseAlgorithm, greedy: bool, seed: int, episodes: int) -> dict[str, float]:
        result = evaluate(lambda: make_env(self.env_id, **self.env_kwargs),
                          self._guarded(sb3_actor(model, greedy, seed)), episodes,
                          seed=seed, num_envs=min(self.eval_envs, episodes), greedy=greedy, env_id=self.env_id)
        metrics = result.metrics()
        metrics.pop("eval_wall_time_s")  # the run's clock accounts for evaluation time itself
        if "success_rate" not in metrics and self.metric == "success_rate":
            raise ValueError(f"{self.env_id} did not report info['is_success'] at episode ends")
        return metrics

    def _guarded(self, act: Act | StatefulAct) -> Act | StatefulAct:
        """``act``, but a stop request or a non-finite observation first raises."""
        def check(observations: Any) -> None:
            if self.should_stop():
                raise EvaluationStopped()
            bad = non_finite_rows(observations, "observations")
            if bad:
                raise NonFiniteError(f"{bad} of {self.env_id} in an evaluation episode")

        if isinstance(act, StatefulAct):
            return _CheckedStateful(act, check)

        def checked(observations: Any) -> Any:
            check(observations)
            return act(observations)

        return checked

    def close(self) -> None:
        if self.test_split is not None:
            self.test_split.close()


def sb3_actor(model: BaseAlgorithm, greedy: bool, seed: int) -> Act | StatefulAct:
    """Batched actions of an SB3 model on raw env observations (see the module docstring)."""
    policy = model.policy
    stats = model.get_vec_normalize_env()
    normalize: Callable[[Any], Any] = stats.normalize_obs if stats is not None else (lambda obs: obs)
    if isinstance(model, STATEFUL):
        return _RecurrentActor(model, greedy, seed, normalize)
    if isinstance(model.action_space, spaces.Discrete) and hasattr(policy, "get_distribution"):
        def logits(observations: Any) -> torch.Tensor:
            return policy.get_distribution(policy.obs_to_tensor(normalize(observations))[0]).distribution.logits

        return logits_actor(logits, greedy, seed, device=None)
    rng = OwnRandomStream(seed, model.device)

    def act(observations: Any) -> np.ndarray:
        with rng.active():
            return model.predict(normalize(observations), deterministic=greedy)[0]

    return act


class _CheckedStateful(StatefulAct):
    """A :class:`StatefulAct` whose every call first passes ``check(observations)``."""

    def __init__(self, act: StatefulAct, check: Callable[[Any], None]) -> None:
        self.act, self.check = act, check

    def reset(self, n: int) -> None:
        self.act.reset(n)

    def __call__(self, observations: Any, episode_start: np.ndarray) -> Any:
        self.check(observations)
        return self.act(observations, episode_start)


class _RecurrentActor(StatefulAct):
    """``model.predict(obs, state, episode_start)`` (RecurrentPPO's API, MemoryPPO's too), sampling from a torch
    random state of its own."""

    def __init__(self, model: BaseAlgorithm, greedy: bool, seed: int, normalize: Callable[[Any], Any]) -> None:
        self.model, self.greedy, self.normalize = model, greedy, normalize
        self.rng, self.state = OwnRandomStream(seed, model.device), None

    def reset(self, n: int) -> None:
        self.state = None  # predict starts every env's memory empty

    def __call__(self, observations: Any, episode_start: np.ndarray) -> np.ndarray:
        with self.rng.active():
            actions, self.state = self.model.predict(self.normalize(observations), state=self.state,
                                                     episode_start=episode_start, deterministic=self.greedy)
        return actions


class OwnRandomStream:
    """A torch random stream of its own, seeded ``seed``: inside ``active()`` torch draws from it (on the CPU
    and, for a policy on CUDA, on the GPUs, where SB3 samples its actions), and the global states are back as
    they were afterwards."""

    def __init__(self, seed: int, device: torch.device | str) -> None:
        on_cuda = torch.device(device).type == "cuda"
        self.devices = list(range(torch.cuda.device_count())) if on_cuda else []
        with torch.random.fork_rng(devices=self.devices):
            torch.manual_seed(seed)
            self.states = self._current()

    def _current(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in self.devices]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=self.devices):
            cpu, gpus = self.states
            torch.set_rng_state(cpu)
            for index, state in zip(self.devices, gpus):
                torch.cuda.set_rng_state(state, index)
            yield
            self.states = self._current()
