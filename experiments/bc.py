"""BabyAI for experiments 2 and 4: bot demonstrations, behaviour cloning (the supervised task ``babyai_bc``)
and one rollout protocol that scores cloned and RL policies alike.

- :func:`collect`: the bot's demonstrations, collected once per invocation (or reused from a cache directory)
  and shared by every behaviour-cloning run;
- :func:`train_bc`: ``supervised.babyai_bc.BabyAIBCTask`` trained by the experiments' trainer into its run
  directory (its ``encoder.pt`` / ``head.pt`` are what experiment 4 fine-tunes);
- :class:`BabyAIEvaluator`: ``supervised.babyai_bc.evaluate_policy`` (fresh episodes, lockstep envs, the demo
  seeds excluded) for an SB3 policy, so PPO is scored on exactly the episodes and action rule BC is.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.runner import Report


def collect(run_dir: Path, report: Report | None, deps: dict[str, Any], *, level: str, episodes: int,
            demos_dir: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Collect (or extend, or reuse) ``episodes`` bot demos of ``level``; ``demos_dir`` defaults to ``run_dir``."""
    from envs.demos import collect_demos, read_manifest

    out = Path(demos_dir) if demos_dir else Path(run_dir)
    before = (read_manifest(out) or {}).get("episodes", 0)
    start, cpu = time.perf_counter(), time.process_time()
    manifest = collect_demos(level, episodes, out, seed=seed, progress=False)
    return {"paradigm": "expert", "variant": "demos", "demos_dir": str(out), "demo_seed": seed,
            "episodes": manifest["episodes"], "steps": manifest["steps"],
            "bot_success_rate": manifest["success_rate"], "reused": min(before, episodes),
            "collected": max(manifest["episodes"] - before, 0), "collect_wall_time_s": time.perf_counter() - start,
            "collect_cpu_time_s": time.process_time() - cpu}


def train_bc(run_dir: Path, report: Report | None, deps: dict[str, Any], *, variant: str, seed: int, config: Any,
             demos_from: str, min_epochs: float = 0.0) -> dict[str, Any]:
    """Behaviour cloning (``babyai_bc``) on the first ``config.data.demos`` demos of the dependency ``demos_from``.

    Trains ``config.train.max_steps`` steps, or more if that is fewer than ``min_epochs`` passes over the
    demonstrations (a larger training set then also gets the updates to use it).
    """
    from envs.demos import load_demos
    from experiments.rl_runs import example_observation
    from experiments.supervised_runs import ExperimentTrainer
    from lab.conv import count_flops
    from lab.io import write_json
    from supervised.babyai_bc import BabyAIBCTask

    torch.set_num_threads(1)
    demos = deps[demos_from]
    data = replace(config.data, demo_dir=demos["demos_dir"], demo_seed=demos["demo_seed"])
    transitions = load_demos(data.resolved_demo_dir(), max_episodes=data.demos).num_steps
    batch = min(config.train.batch_size, transitions)  # a few demos can hold fewer steps than one batch
    steps = max(config.train.max_steps, math.ceil(min_epochs * transitions / batch))
    config = replace(config, data=data, train=replace(config.train, batch_size=batch, max_steps=steps, seed=seed))
    task = BabyAIBCTask(config)
    trainer = ExperimentTrainer(task, run_dir, report=report, test_curve=False)
    result = trainer.fit()
    m = result.metrics
    # FLOPs on the observation the RL runs count theirs on (experiments.rl_runs.example_observation)
    observation = example_observation(f"lab/{data.level}", action_history=data.action_history)
    example = {k: torch.as_tensor(np.asarray(v))[None] for k, v in observation.items()}
    record = {
        "paradigm": "imitation", "variant": variant, "seed": seed, "run_dir": str(result.run_dir),
        "demos": data.demos, "demo_steps": m["train_transitions"], "samples": m["samples_seen"],
        "labels_seen": m["samples_seen"], "rewards_seen": 0, "episodes": 0, "updates": m["steps"],
        "success_rate": m["success_rate"], "mean_return": m["mean_return"], "mean_length": m["mean_length"],
        "eval_episodes": m["eval_episodes"], "train_wall_time_s": trainer.train_wall_time_s,
        "params": m["params"], "encoder_params": m["encoder_params"], "flops": count_flops(trainer.model, example),
        "encoder": str(result.run_dir / m["encoder_file"]), "head": str(result.run_dir / m["head_file"]),
        "metric": "success_rate", "final_metric": m["success_rate"],
    }
    write_json(Path(run_dir) / "record.json", record)
    return record


class BabyAIEvaluator:
    """Success rate of an SB3 policy under ``supervised.babyai_bc.evaluate_policy``'s protocol: the same fresh
    episodes (seed rule of ``eval_seed``), the same lockstep envs, greedy or sampled actions as BC uses."""

    kind = "babyai"
    metric = "success_rate"

    def __init__(self, level: str, episodes: int, eval_seed: int, greedy: bool, action_history: int) -> None:
        self.level, self.episodes, self.eval_seed = level, episodes, eval_seed
        self.greedy, self.action_history = greedy, action_history

    def __call__(self, model: Any) -> dict[str, float]:
        from supervised.babyai_bc import evaluate_policy

        policy = model.policy

        def logits(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return policy.get_distribution(batch).distribution.logits  # (B, 7): SB3 preprocesses the raw batch

        was_training = policy.training
        policy.set_training_mode(False)
        try:
            result = evaluate_policy(logits, self.level, self.episodes, action_history=self.action_history,
                                     seed=self.eval_seed, greedy=self.greedy, num_envs=min(self.episodes, 100))
        finally:
            policy.set_training_mode(was_training)
        return {k: v for k, v in result.metrics().items() if k != "eval_wall_time_s"}
