"""TensorBoard scalars under the shared ``lab.tags`` names plus a machine-readable ``metrics.jsonl``.

Every record is logged at global step = training samples seen. ``metrics.jsonl`` holds one JSON object per
record: ``{"kind": "train" | "val" | "final", "step": optimizer steps, "samples": ..., <metric>: value}``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab import tags
from lab.io import atomic_write_text

METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
CONFIG_FILE = "config.json"

# Metric name (in metrics.jsonl and results.json) -> TensorBoard tag.
TAGS = {
    "train_loss": tags.TRAIN_LOSS,
    "train_accuracy": tags.TRAIN_ACCURACY,
    "learning_rate": tags.LEARNING_RATE,
    "grad_norm": tags.GRAD_NORM,
    "sps": tags.SPS,
    "labels_seen": tags.LABELS_SEEN,
    "wall_time_s": tags.WALL_TIME,
    "epoch": tags.EPOCH,
    "val_loss": tags.VAL_LOSS,
    "val_accuracy": tags.VAL_ACCURACY,
}
TIMING_METRICS = ("sps", "wall_time_s")  # the only logged values that differ between identical runs


class RunLogger:
    """Writes TensorBoard events and ``metrics.jsonl`` into ``run_dir``.

    ``resume_step`` (optimizer steps of the checkpoint being resumed) drops what a crashed run logged after its
    checkpoint: those ``metrics.jsonl`` lines are removed and TensorBoard purges the events, so the curves of a
    resumed run equal those of an uninterrupted one.
    """

    def __init__(self, run_dir: Path, extra_tags: Mapping[str, str] = (), resume: tuple[int, int] | None = None):
        from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard is only needed once training starts

        self.run_dir = Path(run_dir)
        self.tags = {**TAGS, **dict(extra_tags)}
        self.metrics_path = self.run_dir / METRICS_FILE
        purge_step = None
        if resume is not None:
            step, samples = resume
            self._truncate_metrics(step)
            purge_step = samples + 1  # events at the checkpoint's own step were logged before it was written
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge_step)
        self._metrics = open(self.metrics_path, "a", encoding="utf-8")

    def _truncate_metrics(self, step: int) -> None:
        if not self.metrics_path.exists():
            return
        with open(self.metrics_path, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
        kept = [r for r in records if r["step"] <= step and r["kind"] != "final"]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def log(self, kind: str, step: int, samples: int, values: Mapping[str, float]) -> None:
        """One record: each value with a known tag goes to TensorBoard, all of them to ``metrics.jsonl``."""
        for name, value in values.items():
            if name in self.tags:
                self.writer.add_scalar(self.tags[name], value, global_step=samples)
        record = {"kind": kind, "step": step, "samples": samples, **values}
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()

    def hyperparameters(self, flat_config: Mapping[str, Any]) -> None:
        self.writer.add_text("hyperparameters", tags.hparams_markdown({k: str(v) for k, v in flat_config.items()}))

    def close(self) -> None:
        self.writer.close()
        self._metrics.close()


def read_metrics(run_dir: str | os.PathLike, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl``, optionally only those of one kind."""
    with open(Path(run_dir) / METRICS_FILE, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if kind is None or r["kind"] == kind]
