"""Learning from logged trajectories (the offline experiment, issue 20): the data, and the Decision Transformer.

- :func:`collect_source`: the episodes of one behaviour policy (the bot, the bot with some random actions, a
  random policy, or the PPO checkpoint a dependency trained), with their returns, seeded and resumable;
- :func:`build_dataset`: a mixture of sources written as a Minari dataset in the job's run directory (it travels
  with the job's artifacts; dependants read it relative to ``deps[id]["run_dir"]``);
- :func:`train_dt`: ``supervised.babyai_dt`` on such a dataset, scored at the best return in the data and at
  other asked returns (return achieved against return asked).

Behaviour cloning and %BC on a dataset are :func:`experiments.runs.bc.train_bc` (``config.data.top_fraction``).
"""
from __future__ import annotations

import collections
import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.behaviour import CallablePolicy, policy_from_name
from envs.demos import collect_trajectories
from envs.minari_io import open_minari, read_minari, write_minari
from envs.trajectories import concat_demos, load_demos
from experiments.engine.jobs import Report
from experiments.runs.bc import reading
from experiments.runs.supervised import ExperimentTrainer
from lab.io import write_json
from supervised.babyai_dt import BabyAIDTTask, evaluate_dt

EARLY_PPO = "ppo-early"  # the source whose policy is a dependency's PPO checkpoint (model.zip)


def collect_source(run_dir: Path, report: Report | None, deps: dict[str, Any], *, level: str, source: str,
                   episodes: int, seed: int, policy_from: str | None = None,
                   action_history: int = 0) -> dict[str, Any]:
    """``episodes`` episodes of ``source`` on ``level`` (every outcome kept, with its return) into ``run_dir``.
    ``policy_from``: a dependency whose record has a PPO ``model.zip`` in its run directory (RL checkpoints as a
    behaviour policy, acting on observations with ``action_history`` previous actions, sampling)."""
    torch.set_num_threads(1)
    policy: Any = source
    if policy_from is not None:
        from stable_baselines3 import PPO

        model = PPO.load(Path(deps[policy_from]["run_dir"]) / "model.zip", device="cpu")
        policy = CallablePolicy(lambda batch: model.predict(batch, deterministic=False)[0], source,
                                action_history=action_history, reseed=torch.manual_seed)
    else:
        policy = policy_from_name(source)
    start = time.perf_counter()
    manifest = collect_trajectories(level, episodes, run_dir, policy, seed=seed, progress=False)
    return {"paradigm": "data", "variant": f"source-{source}", "run_dir": str(run_dir), "source": source,
            "episodes": manifest["episodes"], "steps": manifest["steps"], "mean_return": manifest["mean_return"],
            "success_rate": manifest["stored_success_rate"], "seed": seed,
            "collect_wall_time_s": time.perf_counter() - start}


@contextlib.contextmanager
def minari_root(path: Path) -> Iterator[None]:
    """Minari writes datasets under ``MINARI_DATASETS_PATH``: here, the job's own directory."""
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = before


def build_dataset(run_dir: Path, report: Report | None, deps: dict[str, Any], *, variant: str, level: str,
                  dataset_id: str, parts: Mapping[str, int], description: str) -> dict[str, Any]:
    """The first ``parts[job]`` episodes of each source dependency, in order, as the Minari dataset
    ``dataset_id`` in ``run_dir`` (its path relative to ``run_dir`` in the record: ``dataset_path``)."""
    demos = concat_demos([load_demos(deps[job]["run_dir"], max_episodes=n) for job, n in parts.items()])
    run_dir = Path(run_dir)
    with minari_root(run_dir):
        write_minari(dataset_id, demos, level=level, description=description)
    success = demos.success.astype(float)
    return {"paradigm": "data", "variant": variant, "run_dir": str(run_dir),
            "dataset_id": dataset_id, "dataset_path": dataset_id, "episodes": demos.num_episodes,
            "steps": demos.num_steps, "mean_return": float(np.mean(demos.reward)),
            "success_rate": float(success.mean()), "best_return": float(np.max(demos.reward)),
            "sources": {str(deps[job]["source"]): n for job, n in parts.items()}}


def use_dataset(run_dir: Path, report: Report | None, deps: dict[str, Any], *, variant: str, level: str,
                dataset: str) -> dict[str, Any]:
    """A Minari dataset the user named (an id under ``MINARI_DATASETS_PATH`` or a directory), checked to fit the
    lab's models and ``level``, as a dataset record the learners read (``dataset_path``: its directory)."""
    opened = open_minari(dataset)
    demos = read_minari(opened)  # SpaceMismatchError names a space that does not fit
    collected_on = demos.manifest.get("level")
    if collected_on is not None and collected_on != level:
        raise ValueError(f"Minari dataset {dataset!r} was collected on {collected_on}, not on {level}")
    return {"paradigm": "data", "variant": variant, "run_dir": str(run_dir), "dataset_id": opened.id,
            "dataset_path": str(Path(opened.storage.data_path).resolve().parent), "episodes": demos.num_episodes,
            "steps": demos.num_steps, "mean_return": float(np.mean(demos.reward)),
            "success_rate": float(demos.success.astype(float).mean()), "best_return": float(np.max(demos.reward)),
            "sources": dict(collections.Counter(demos.source.tolist()))}


def train_dt(run_dir: Path, report: Report | None, deps: dict[str, Any], *, variant: str, seed: int, config: Any,
             dataset_from: str, min_epochs: float = 0.0, targets: Sequence[float] = ()) -> dict[str, Any]:
    """A Decision Transformer on the dataset of ``dataset_from``, trained ``config.train.max_steps`` steps or
    ``min_epochs`` passes over its windows, scored at the best return in the data and at each of ``targets``
    (fractions of that best return): the return it achieves against the return it is asked for."""
    torch.set_num_threads(1)
    with reading(config.data, deps[dataset_from]) as data:
        return _train_dt(Path(run_dir), report, replace(config, data=data), variant, seed, min_epochs, targets)


def _train_dt(run_dir: Path, report: Report | None, config: Any, variant: str, seed: int, min_epochs: float,
              targets: Sequence[float]) -> dict[str, Any]:
    data = config.data
    probe = BabyAIDTTask(config)
    windows = len(probe.load_data().train)
    batch = min(config.train.batch_size, windows)  # a small dataset can hold fewer windows than one batch
    steps = max(config.train.max_steps, int(np.ceil(min_epochs * windows / batch)))
    config = replace(config, data=data, train=replace(config.train, batch_size=batch, max_steps=steps, seed=seed))
    task = BabyAIDTTask(config)
    trainer = ExperimentTrainer(task, run_dir, report=report, test_curve=False)
    m = trainer.fit().metrics
    model, best, e = trainer.model, float(m["best_return"]), config.eval
    asked = []
    for fraction in targets:
        result = evaluate_dt(model, data.level, e.episodes, target_return=fraction * best, seed=e.seed,
                             exclude_seeds=task.demo_seeds(), greedy=e.greedy, num_envs=e.num_envs)
        metrics = result.metrics()
        asked.append({"fraction": fraction, "target_return": fraction * best, "success_rate": metrics["success_rate"],
                      "mean_return": metrics["mean_return"]})
    passes = m["steps"] * batch / max(windows, 1)  # every real step is a label once per pass
    record = {
        "paradigm": "offline", "variant": variant, "seed": seed, "run_dir": str(run_dir), "method": "dt",
        "demos": m["demo_episodes"], "kept_episodes": m["kept_episodes"], "demo_steps": m["train_transitions"],
        "samples": m["samples_seen"], "labels_seen": round(m["train_transitions"] * passes), "rewards_seen": 0,
        "episodes": 0, "updates": m["steps"], "success_rate": m["success_rate"], "mean_return": m["mean_return"],
        "eval_episodes": m["eval_episodes"], "target_return": m["target_return"], "best_return": best,
        "targets": asked, "train_wall_time_s": trainer.train_wall_time_s, "params": m["params"],
        "encoder_params": m.get("encoder_params"), "metric": "success_rate", "final_metric": m["success_rate"],
    }
    write_json(Path(run_dir) / "record.json", record)
    return record
