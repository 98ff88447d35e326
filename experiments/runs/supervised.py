"""Supervised runs for the experiments: ``supervised.Trainer`` writing into one given run directory, with a test curve.

:class:`ExperimentTrainer` is the supervised trainer with three additions, through its public hooks:

- the run directory is exactly the one given (``runs/<experiment>/<variant>/seed<N>``), never an existing one;
- at step 0 and at every validation it also evaluates the *test* split and logs it under ``lab.tags.ACCURACY``
  at global step = samples seen, the tag and x-axis RL runs use for the same test accuracy, so the curves
  overlay in TensorBoard; the points are kept (with the training wall time) for the plots and the report;
- it reports its progress (optimizer steps) to the experiment's display.

Training wall time excludes these evaluations, as the RL runs' does, so "accuracy against wall time" compares
training cost only.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from experiments.engine.jobs import Report
from supervised.logger import RunLogger
from supervised.task import Task
from supervised.train import task_for
from supervised.trainer import Trainer, evaluate

# Supervised and BC jobs take this share of a GPU where the cluster has one (device "auto" then picks it, with bf16
# autocast); RL rollouts stay on CPUs, where SB3's small per-step batches are fastest. Without a GPU: the CPU.
GPU_SHARE = 0.5


class ExperimentTrainer(Trainer):
    """``supervised.Trainer`` into ``run_dir`` with a test-split curve; see the module docstring."""

    def __init__(self, task: Task, run_dir: str | Path, report: Report | None = None, test_curve: bool = True) -> None:
        super().__init__(task, run_dir=run_dir)
        self.report = report
        self.test_curve = test_curve
        self.curve: list[dict[str, float]] = []
        self.eval_seconds = 0.0

    @property
    def train_wall_time_s(self) -> float:
        return self.progress.wall_time_s - self.eval_seconds

    def on_train_start(self, logger: RunLogger) -> None:
        if self.test_curve:  # the untrained net: every curve starts at samples = 0 (before the clock starts)
            self._test_point(logger)

    def on_step(self) -> None:
        if self.report is not None:
            self.report(self.progress.step, self.total_steps)

    def validate(self, logger: RunLogger) -> bool:
        start = time.perf_counter()
        improved = super().validate(logger)
        if self.test_curve:
            self._test_point(logger)
        self.eval_seconds += time.perf_counter() - start
        return improved

    def _test_point(self, logger: RunLogger) -> None:
        p = self.progress
        if self.data.test is None:
            return
        metrics = evaluate(self.model, self.data.test, self.config.eval_batch_size, self.config.amp)
        point = {"samples": self.samples, "step": p.step, "wall_time_s": self.train_wall_time_s,
                 "accuracy": metrics["accuracy"], "loss": metrics["loss"]}
        self.curve.append(point)
        if p.step != self.total_steps:  # the final test accuracy is logged once, by the trainer's final record
            logger.log("test", p.step, self.samples, {"test_accuracy": metrics["accuracy"],
                                                      "test_loss": metrics["loss"]})


def train_supervised(run_dir: Path, report: Report | None, deps: dict[str, dict[str, Any]], *, config: Any,
                     variant: str, seed: int, test_curve: bool = True) -> dict[str, Any]:
    """Train one supervised experiment config into ``run_dir``; the record the experiment analyses.

    ``config`` is an experiment config of one of ``supervised.train.TASKS`` (its ``train.seed`` must be
    ``seed``); ``deps`` is unused (supervised runs depend on nothing).
    """
    if config.train.seed != seed:
        raise ValueError(f"config.train.seed {config.train.seed} != seed {seed}")
    task = task_for(config)
    trainer = ExperimentTrainer(task, run_dir, report=report, test_curve=test_curve)
    result = trainer.fit()
    metrics = result.metrics
    return {
        "paradigm": "supervised", "variant": variant, "seed": seed, "run_dir": str(result.run_dir),
        "task": task.name, "curve": trainer.curve, "metrics": _scalars(metrics),
        "samples": metrics["samples_seen"], "labels_seen": metrics["samples_seen"], "rewards_seen": 0,
        "updates": metrics["steps"], "train_wall_time_s": trainer.train_wall_time_s,
        "params": metrics.get("params"), "flops": metrics.get("flops"),
        "checkpoint": str(result.run_dir / "last.pt"), "metric": "accuracy",
        "final_metric": trainer.curve[-1]["accuracy"] if trainer.curve else metrics.get("test_accuracy"),
    }


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """The numeric entries of a supervised results.json (the config and paths stay in that file)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
