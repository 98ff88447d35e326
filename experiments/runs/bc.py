"""BabyAI for experiments 2 and 4: bot demonstrations, behaviour cloning (the supervised task ``babyai_bc``)
and one rollout protocol that scores cloned and RL policies alike.

- :func:`collect`: the bot's demonstrations, collected once per invocation (or reused from a cache directory)
  and shared by every behaviour-cloning run;
- :func:`train_bc`: ``supervised.babyai_bc.BabyAIBCTask`` trained by the experiments' trainer into its run
  directory (its ``encoder.pt`` / ``head.pt`` are what experiment 4 fine-tunes);
- :func:`search_demos`: the fewest demonstrations (on a grid) with which behaviour cloning reaches a success rate
  and keeps it at the next size (the ladder).

Both paradigms are scored by :mod:`envs.evaluation` (fresh episodes, lockstep envs): BC through
``supervised.babyai_bc.evaluate_policy`` (the demo seeds excluded), PPO through ``agents.evaluation``.
"""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.demos import collect_demos, read_manifest
from envs.make import first_observation
from experiments.engine.jobs import Report
from experiments.runs.supervised import ExperimentTrainer
from lab.conv import count_flops
from lab.io import write_json
from supervised.babyai_bc import BabyAIBCTask, load_bc_demos, training_episodes


def collect(run_dir: Path, report: Report | None, deps: dict[str, Any], *, level: str, episodes: int,
            demos_dir: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Collect (or extend, or reuse) ``episodes`` bot demos of ``level``; ``demos_dir`` defaults to ``run_dir``."""
    out = Path(demos_dir) if demos_dir else Path(run_dir)
    before = (read_manifest(out) or {}).get("episodes", 0)
    start, cpu = time.perf_counter(), time.process_time()
    manifest = collect_demos(level, episodes, out, seed=seed, progress=False)
    return {"paradigm": "expert", "variant": "demos", "run_dir": str(run_dir), "demos_dir": str(out),
            "demos_in_run_dir": not demos_dir, "demo_seed": seed,
            "episodes": manifest["episodes"], "steps": manifest["steps"],
            "bot_success_rate": manifest["success_rate"], "reused": min(before, episodes),
            "collected": max(manifest["episodes"] - before, 0), "collect_wall_time_s": time.perf_counter() - start,
            "collect_cpu_time_s": time.process_time() - cpu}


def demos_location(demos: dict[str, Any]) -> str:
    """Where the demonstrations of a :func:`collect` record are on the node reading it: the engine puts a
    dependency's artifacts in its (local) ``run_dir``; a ``--budget.demos-dir`` is the user's own path."""
    return str(demos["run_dir"] if demos.get("demos_in_run_dir") else demos["demos_dir"])


@contextlib.contextmanager
def reading(data: Any, record: dict[str, Any]) -> Iterator[Any]:
    """``data`` (a ``BCDataConfig``) reading the trajectories of a dependency's ``record``: a collection of the
    bot's demos, or a Minari dataset in its run directory (``dataset_path``, :mod:`experiments.runs.offline`),
    decoded into a cache of this job's own (runs reading one dataset run at once), removed afterwards."""
    if "dataset_path" not in record:
        yield replace(data, demo_dir=demos_location(record), demo_seed=record["demo_seed"])
        return
    with tempfile.TemporaryDirectory(prefix="lab-minari-cache-") as cache:
        yield replace(data, minari_dataset=str(Path(record["run_dir"]) / record["dataset_path"]), minari_cache=cache)


def train_bc(run_dir: Path, report: Report | None, deps: dict[str, Any], *, variant: str, seed: int, config: Any,
             demos_from: str, min_epochs: float = 0.0) -> dict[str, Any]:
    """Behaviour cloning (``babyai_bc``) on the first ``config.data.demos`` demos (or episodes of a dataset) of the
    dependency ``demos_from``.

    Trains ``config.train.max_steps`` steps, or more if that is fewer than ``min_epochs`` passes over the
    demonstrations (a larger training set then also gets the updates to use it).
    """
    torch.set_num_threads(1)
    with reading(config.data, deps[demos_from]) as data:
        return _train_bc(Path(run_dir), report, replace(config, data=data), variant, seed, min_epochs)


def _train_bc(run_dir: Path, report: Report | None, config: Any, variant: str, seed: int,
              min_epochs: float) -> dict[str, Any]:
    data = config.data
    kept, _ = training_episodes(load_bc_demos(data, progress=False), data)  # %BC: the top episodes only
    transitions = kept.num_steps
    batch = min(config.train.batch_size, transitions)  # a few demos can hold fewer steps than one batch
    steps = max(config.train.max_steps, math.ceil(min_epochs * transitions / batch))
    config = replace(config, data=data, train=replace(config.train, batch_size=batch, max_steps=steps, seed=seed))
    task = BabyAIBCTask(config)
    trainer = ExperimentTrainer(task, run_dir, report=report, test_curve=False)
    result = trainer.fit()
    m = result.metrics
    # FLOPs on the observation the RL runs count theirs on
    observation = first_observation(f"lab/{data.level}", action_history=data.action_history)
    example = {k: torch.as_tensor(np.asarray(v))[None] for k, v in observation.items()}
    record = {
        "paradigm": "imitation", "variant": variant, "seed": seed, "run_dir": str(result.run_dir),
        "demos": data.demos, "kept_episodes": m["kept_episodes"], "demo_steps": m["train_transitions"],
        "samples": m["samples_seen"],
        "labels_seen": m["samples_seen"], "rewards_seen": 0, "episodes": 0, "updates": m["steps"],
        "success_rate": m["success_rate"], "mean_return": m["mean_return"], "mean_length": m["mean_length"],
        "eval_episodes": m["eval_episodes"], "train_wall_time_s": trainer.train_wall_time_s,
        "params": m["params"], "encoder_params": m["encoder_params"], "flops": count_flops(trainer.model, example),
        "encoder_file": m["encoder_file"], "head_file": m["head_file"],  # in run_dir, wherever it is
        "metric": "success_rate", "final_metric": m["success_rate"],
    }
    write_json(Path(run_dir) / "record.json", record)
    return record


def search_demos(run_dir: Path, report: Report | None, deps: dict[str, Any], *, variant: str, seed: int,
                 config: Any, grid: tuple[int, ...], target: float, min_epochs: float = 0.0) -> dict[str, Any]:
    """Behaviour cloning on growing sets of the bot's demonstrations (``grid``, e.g. doubling sizes) until the
    success rate holds at ``target`` at two consecutive sizes (``experiments.curves``' rule), or the grid ends.

    The demonstrations are this seed's own (``demo_seed=seed``), collected into ``run_dir/demos`` and extended
    as the sizes grow; each size is one :func:`train_bc` run in ``run_dir/<n>demos``, scored on fresh episodes
    (``config.eval``). A size whose ``record.json`` exists is loaded, so an interrupted search continues where it
    was (the job is resumable).
    """
    run_dir = Path(run_dir)
    demos = {"run_dir": str(run_dir), "demos_dir": str(run_dir / "demos"), "demos_in_run_dir": False,
             "demo_seed": seed}
    points: list[dict[str, Any]] = []
    for i, n in enumerate(grid):
        size_dir = run_dir / f"{n}demos"
        saved = size_dir / "record.json"
        if saved.is_file():
            point = json.loads(saved.read_text())
        else:
            if size_dir.exists():  # cut short before its record: trained again from scratch
                shutil.rmtree(size_dir)
            collect_demos(config.data.level, n, run_dir / "demos", seed=seed, progress=False)
            point = train_bc(size_dir, None, {"demos": demos}, variant=f"{variant}-{n}demos", seed=seed,
                             config=replace(config, data=replace(config.data, demos=n)), demos_from="demos",
                             min_epochs=min_epochs)
        points.append(point)
        if report is not None:
            report(i + 1, len(grid))
        if len(points) >= 2 and all(p["success_rate"] >= target for p in points[-2:]):
            break
    last = points[-1]
    return {"paradigm": "imitation", "variant": variant, "seed": seed, "run_dir": str(run_dir), "grid": list(grid),
            "points": [{k: p[k] for k in ("demos", "demo_steps", "success_rate", "mean_return", "eval_episodes",
                                          "labels_seen", "updates", "train_wall_time_s")} for p in points],
            "demos": last["demos"], "demo_steps": last["demo_steps"], "labels_seen": last["labels_seen"],
            "samples": last["samples"], "rewards_seen": 0, "episodes": 0, "updates": last["updates"],
            "params": last["params"], "encoder_params": last["encoder_params"], "flops": last["flops"],
            "success_rate": last["success_rate"], "eval_episodes": last["eval_episodes"],
            "train_wall_time_s": sum(p["train_wall_time_s"] for p in points), "metric": "success_rate",
            "final_metric": last["success_rate"], "target": target}
