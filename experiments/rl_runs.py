"""RL runs for the experiments: an ``agents.make_agent`` model trained into one given run directory.

Like ``agents.train`` (SB3's TensorBoard keys plus the shared ``lab.tags``, hyperparameters as a markdown table,
an atomic ``model.zip``, ``results.json``), with what the comparisons need on top:

- the run directory is exactly the one given, never an existing one;
- evaluations at step 0, between rollouts every ``eval_every`` environment steps and at the end, with batched
  evaluators: :class:`BanditTestEvaluator` scores the whole test split in one forward pass (exactly the
  accuracy of ``agents.train``'s sequential sweep), :class:`experiments.bc.BabyAIEvaluator` plays the fresh
  episodes behaviour cloning is scored on, :class:`RolloutEvaluator` any other env; all logged under
  ``lab.tags`` at global step = environment steps;
- each point records environment steps, episodes, reward signals and training wall time (evaluation excluded);
- the number of optimizer steps is counted exactly (SB3's ``n_updates`` counts PPO epochs, not minibatches).
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from experiments.runner import Report

Act = Callable[[Any], np.ndarray]  # batched observations (an array or a dict of arrays) -> actions (B,)


def sb3_act(model: Any, deterministic: bool = True) -> Act:
    """Batched actions of an SB3 model: greedy, or sampled from the policy."""
    return lambda obs: model.predict(obs, deterministic=deterministic)[0]


# ------------------------------------------------------------------------------------------------- evaluators
class BanditTestEvaluator:
    """Greedy accuracy of a classification bandit's policy on the env's *test* split, in one batch.

    One-step episodes with a deterministic policy: the sequential sweep of ``agents.train.make_eval_env``
    gives ``mean(action(x_i) == y_i)`` over the split, which is what this computes with one forward pass.
    """

    kind = "bandit"
    metric = "accuracy"

    def __init__(self, env_id: str) -> None:
        from agents.factory import make_env

        env = make_env(env_id, split="test")
        self.x, self.y = env.unwrapped.x, env.unwrapped.y
        env.close()

    def __call__(self, model: Any) -> dict[str, float]:
        actions = np.asarray(sb3_act(model)(self.x)).reshape(-1)
        accuracy = float(np.mean(actions == self.y))
        return {"accuracy": accuracy, "mean_return": accuracy, "eval_episodes": len(self.y)}


class RolloutEvaluator:
    """Rollouts of ``episodes`` fixed episodes (reset seeds ``seed, seed + 1, ...`` minus ``exclude_seeds``) in
    ``n_envs`` envs, one batched ``act`` call per step (:meth:`play`); calling it plays an SB3 model.

    Every evaluation plays the same episodes, and sampled actions draw from a torch generator seeded with
    ``seed`` (the caller's random state is saved and restored), so curves are comparable point by point and
    reproducible. Reports the mean return and length, and the success rate when the env says ``is_success``.
    """

    kind = "rollout"

    def __init__(self, env_id: str, episodes: int, seed: int = 10_000, n_envs: int = 16, greedy: bool = True,
                 env_kwargs: Mapping[str, Any] | None = None, exclude_seeds: Iterable[int] = ()) -> None:
        from agents.factory import make_env

        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        self.seed, self.greedy = seed, greedy
        excluded = set(exclude_seeds)  # e.g. the seeds of the demonstrations a cloned policy was trained on
        self.episode_seeds = list(itertools.islice((s for s in itertools.count(seed) if s not in excluded), episodes))
        self.envs = [make_env(env_id, **dict(env_kwargs or {})) for _ in range(min(n_envs, episodes))]
        self.metric = "success_rate" if type(self.envs[0].unwrapped).__module__.startswith("minigrid.") else "mean_return"

    def __call__(self, model: Any) -> dict[str, float]:
        return self.play(sb3_act(model, deterministic=self.greedy))

    def play(self, act: Act) -> dict[str, float]:
        returns, lengths, successes = [], [], []
        queue = iter(self.episode_seeds)
        with torch.random.fork_rng(devices=[]):  # sampled actions: reproducible, and the caller's RNG is untouched
            torch.manual_seed(self.seed)
            live: dict[int, list] = {}  # env index -> [observation, return so far, length so far]
            for i in range(len(self.envs)):
                self._start(i, queue, live)
            while live:
                active = sorted(live)
                actions = np.asarray(act(_stack([live[i][0] for i in active]))).reshape(-1)
                for i, action in zip(active, actions):
                    obs, reward, terminated, truncated, info = self.envs[i].step(action.item())
                    live[i] = [obs, live[i][1] + float(reward), live[i][2] + 1]
                    if terminated or truncated:
                        returns.append(live[i][1])
                        lengths.append(live[i][2])
                        if "is_success" in info:
                            successes.append(float(info["is_success"]))
                        del live[i]
                        self._start(i, queue, live)
        out = {"mean_return": float(np.mean(returns)), "mean_length": float(np.mean(lengths)),
               "eval_episodes": len(returns)}
        if successes:
            out["success_rate"] = float(np.mean(successes))
        return out

    def _start(self, i: int, queue: Any, live: dict[int, list]) -> None:
        seed = next(queue, None)
        if seed is not None:
            obs, _ = self.envs[i].reset(seed=seed)
            live[i] = [obs, 0.0, 0]

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _stack(observations: list[Any]) -> Any:
    if isinstance(observations[0], dict):
        return {key: np.stack([np.asarray(o[key]) for o in observations]) for key in observations[0]}
    return np.stack(observations)


def make_evaluator(env_id: str, episodes: int, seed: int, greedy: bool = True,
                   env_kwargs: Mapping[str, Any] | None = None) -> Any:
    """The classification bandits are scored on their test split, BabyAI levels on behaviour cloning's
    episodes (:class:`experiments.bc.BabyAIEvaluator`), every other env with :class:`RolloutEvaluator`."""
    from agents.factory import make_env
    from envs.bandit import ClassificationBanditEnv

    env_kwargs = dict(env_kwargs or {})
    probe = make_env(env_id, **env_kwargs)
    bandit = isinstance(probe.unwrapped, ClassificationBanditEnv)
    babyai = type(probe.unwrapped).__module__.startswith("minigrid.")
    probe.close()
    if bandit:
        return BanditTestEvaluator(env_id)
    if babyai:
        from experiments.bc import BabyAIEvaluator
        from supervised.babyai_bc import EVAL_SEED

        return BabyAIEvaluator(env_id.removeprefix("lab/"), episodes, EVAL_SEED, greedy,
                               env_kwargs.get("action_history", 0))
    return RolloutEvaluator(env_id, episodes, seed, greedy=greedy, env_kwargs=env_kwargs)


# ------------------------------------------------------------------------------------------------- callbacks
def _callbacks(evaluator: Any, eval_every: int, report: Report | None, timesteps: int, log_every: int):
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.callbacks import LabTagsCallback, tensorboard_writer
    from lab import tags

    lab_tags = LabTagsCallback(log_every=log_every)

    class EvalCurve(BaseCallback):
        """Evaluates at step 0, between rollouts once ``eval_every`` more steps were taken, and at the end."""

        def __init__(self) -> None:
            super().__init__()
            self.curve: list[dict[str, float]] = []
            self.eval_seconds = 0.0
            self.start = 0.0
            self.last_eval = -1

        def _on_training_start(self) -> None:
            self.start = time.perf_counter()
            self.evaluate()

        @property
        def train_wall_time_s(self) -> float:
            return time.perf_counter() - self.start - self.eval_seconds

        def evaluate(self) -> None:
            if self.num_timesteps == self.last_eval:
                return
            began = time.perf_counter()
            self.last_eval = step = self.num_timesteps
            result = evaluator(self.model)
            point = {**result, "steps": step, "samples": step, "episodes": lab_tags.episodes, "rewards_seen": step,
                     "wall_time_s": began - self.start - self.eval_seconds}
            self.curve.append(point)
            writer = tensorboard_writer(self.logger)
            if writer is not None:
                writer.add_scalar(tags.MEAN_RETURN, result["mean_return"], step)
                writer.add_scalar(tags.WALL_TIME, point["wall_time_s"], step)
                writer.add_scalar(tags.EPISODES_SEEN, point["episodes"], step)
                if "accuracy" in result:
                    writer.add_scalar(tags.ACCURACY, result["accuracy"], step)
                if "success_rate" in result:
                    writer.add_scalar(tags.SUCCESS_RATE, result["success_rate"], step)
            self.eval_seconds += time.perf_counter() - began

        def _on_rollout_start(self) -> None:
            # On-policy algorithms update between rollouts: evaluating here (not in the middle of a rollout)
            # scores the policy after every update that used the samples counted so far.
            if eval_every > 0 and self.num_timesteps - max(self.last_eval, 0) >= eval_every:
                self.evaluate()

        def _on_step(self) -> bool:
            if report is not None:
                report(self.num_timesteps, timesteps)
            return True

    return lab_tags, EvalCurve()


# ------------------------------------------------------------------------------------------------------ runs
def train_agent(run_dir: Path, report: Report | None, deps: dict[str, dict[str, Any]], *, variant: str, seed: int,
                timesteps: int, agent: dict[str, Any], pretrained_from: str | None = None, load_head: bool = False,
                eval_every: int = 1000, eval_episodes: int = 50, greedy_eval: bool = True,
                log_every: int = 1000) -> dict[str, Any]:
    """Train ``make_agent(**agent, seed=seed)`` for ``timesteps`` into ``run_dir``; the record the experiment
    analyses (also written to ``results.json``).

    ``pretrained_from`` names a dependency job whose record has an ``encoder`` state dict file (behaviour
    cloning); it loads into the policy's encoder, and with ``load_head`` the record's ``head`` into PPO/A2C's
    action head. ``greedy_eval=False`` evaluates rollouts with actions sampled from the policy (bandits are
    always scored greedily).
    """
    from stable_baselines3.common.logger import configure

    from agents.callbacks import save_model_atomic, tensorboard_writer
    from agents.factory import make_agent
    from agents.finetune import read_state_dict
    from lab.io import write_json
    from lab.runtime import count_parameters
    from lab.tags import hparams_markdown

    torch.set_num_threads(1)
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"run directory {run_dir} already exists and is not empty")
    pretrained = head = None
    if pretrained_from is not None:
        pretrained = read_state_dict(deps[pretrained_from]["encoder"])
        head = read_state_dict(deps[pretrained_from]["head"]) if load_head else None
    model = make_agent(**agent, seed=seed, device="cpu", pretrained=pretrained, pretrained_head=head)
    env_id, env_kwargs = agent["env_id"], agent.get("env_kwargs") or {}
    evaluator = make_evaluator(env_id, eval_episodes, seed=10_000 + 1000 * seed, greedy=greedy_eval,
                               env_kwargs=env_kwargs)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        model.set_logger(configure(str(run_dir), ["tensorboard", "csv"]))
        hparams = {"variant": variant, "seed": seed, "timesteps": timesteps, **agent,
                   "resolved_learning_rate": float(model.lr_schedule(1.0)), "pretrained_from": pretrained_from,
                   "load_head": load_head, "greedy_eval": greedy_eval, "eval_episodes": eval_episodes}
        writer = tensorboard_writer(model.logger)
        writer.add_text("hyperparameters", hparams_markdown({k: str(v) for k, v in hparams.items()}))
        lab_tags, curve = _callbacks(evaluator, eval_every, report, timesteps, log_every)
        updates = [0]  # optimizer steps (SB3's n_updates counts PPO epochs, not minibatch steps)
        model.policy.optimizer.register_step_post_hook(lambda *_: updates.__setitem__(0, updates[0] + 1))
        model.learn(timesteps, callback=[lab_tags, curve], progress_bar=False)
        train_wall = curve.train_wall_time_s
        curve.evaluate()  # the final model (skipped if the last evaluation was at this very step)
        writer.flush()
        save_model_atomic(model, run_dir / "model.zip")
    finally:
        model.get_env().close()
        if hasattr(evaluator, "close"):
            evaluator.close()
    policy = model.policy
    extractor = policy.features_extractor
    final = curve.curve[-1]
    record = {
        "paradigm": "rl", "variant": variant, "seed": seed, "run_dir": str(run_dir), "env_id": env_id,
        "algo": agent["algo"], "encoder": agent.get("encoder"), "curve": curve.curve, "final": final,
        "samples": model.num_timesteps, "steps": model.num_timesteps, "episodes": lab_tags.episodes,
        "rewards_seen": model.num_timesteps, "labels_seen": 0, "updates": updates[0],
        "train_wall_time_s": train_wall, "params": count_parameters(policy),
        "trainable_params": count_parameters(policy, trainable_only=True),
        "encoder_params": count_parameters(getattr(extractor, "backbone", extractor)),
        "flops": policy_flops(model, example_observation(env_id, **env_kwargs)), "hyperparameters": hparams,
        "metric": evaluator.metric, "final_metric": final.get(evaluator.metric),
    }
    write_json(run_dir / "results.json", record)
    return record


def example_observation(env_id: str, **env_kwargs: Any) -> Any:
    """The first observation of ``env_id`` reset with seed 0: a real one (a BabyAI mission's token count, and so
    the FLOPs, depend on it; a random sample of the space would have a random mission length)."""
    from agents.factory import make_env

    env = make_env(env_id, **env_kwargs)
    try:
        return env.reset(seed=0)[0]
    finally:
        env.close()


def policy_flops(model: Any, observation: Any) -> int:
    """FLOPs of one policy forward pass on one observation: features, actor and critic heads."""
    from lab.conv import count_flops

    policy = model.policy
    obs, _ = policy.obs_to_tensor(observation)

    class Forward(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.policy = policy  # a submodule, so count_flops' eval() / train() reach it

        def forward(self, x):
            features = self.policy.extract_features(x)
            latent_pi, latent_vf = self.policy.mlp_extractor(features)
            return self.policy.action_net(latent_pi), self.policy.value_net(latent_vf)

    return count_flops(Forward().train(policy.training), obs)
