"""Untrained baselines the reports compare every variant with: what a policy scores before it learned anything.

The supervised and RL runs evaluate their own step 0 (``experiments.runs.supervised`` / ``experiments.runs.rl``);
a behaviour-cloning run is scored once, after training. :func:`score_untrained_bc` scores the BC policy as
initialised with the run's seed (the point "0 demonstrations" of the success-vs-demos curve), on exactly the
episodes and action rule the trained BC runs are scored with (``supervised.babyai_bc.evaluate_policy``).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from experiments.engine.jobs import Job, Report
from experiments.runs.bc import reading
from lab import tags
from lab.io import write_json
from lab.runtime import seed_everything
from supervised.babyai_bc import BabyAIBCTask, evaluate_policy

UNTRAINED_BC = "bc-untrained"  # variant name of the untrained behaviour-cloning policy


def score_untrained_bc(run_dir: Path, report: Report | None, deps: dict[str, Any], *, seed: int, config: Any,
                       demos_from: str) -> dict[str, Any]:
    """Success of ``BCPolicy(config.model)`` initialised under ``seed``, before any training step."""
    torch.set_num_threads(1)
    with reading(config.data, deps[demos_from]) as data:
        return _score(Path(run_dir), replace(config, data=data), seed)


def _score(run_dir: Path, config: Any, seed: int) -> dict[str, Any]:
    data = config.data
    task = BabyAIBCTask(config)
    seed_everything(seed)
    model = task.build_model()
    e = config.eval
    start = time.perf_counter()
    result = evaluate_policy(model, data.level, e.episodes, action_history=data.action_history, seed=e.seed,
                             exclude_seeds=task.demo_seeds(), greedy=e.greedy, num_envs=e.num_envs)
    m = result.metrics()
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with SummaryWriter(str(run_dir)) as writer:  # the step-0 point of the BC runs' success curve
        writer.add_scalar(tags.SUCCESS_RATE, m["success_rate"], 0)
        writer.add_scalar(tags.MEAN_RETURN, m["mean_return"], 0)
    record = {"paradigm": "imitation", "variant": UNTRAINED_BC, "seed": seed, "run_dir": str(run_dir), "demos": 0,
              "demo_steps": 0, "samples": 0, "labels_seen": 0, "rewards_seen": 0, "episodes": 0, "updates": 0,
              "success_rate": m["success_rate"], "mean_return": m["mean_return"], "mean_length": m["mean_length"],
              "eval_episodes": m["eval_episodes"], "train_wall_time_s": 0.0,
              "eval_wall_time_s": time.perf_counter() - start, "metric": "success_rate",
              "final_metric": m["success_rate"]}
    write_json(Path(run_dir) / "record.json", record)
    return record


def untrained_bc_job(exp: str, config: Any, seed: int, demos_id: str) -> Job:
    """The job scoring the untrained BC policy of ``seed`` (``config``: a BC config of the experiment, whose
    demonstration count sets the demo seeds excluded from the episodes)."""
    return Job(f"{exp}/{UNTRAINED_BC}/seed{seed}", score_untrained_bc,
               dict(seed=seed, config=config, demos_from=demos_id), deps=(demos_id,),
               cost=config.eval.episodes / 30)
