"""TensorBoard scalars under the shared ``lab.tags`` names plus a machine-readable ``metrics.jsonl``.

Every record is logged at global step = training samples seen. ``metrics.jsonl`` holds one JSON object per
record: ``{"kind": "train" | "val" | "final", "step": optimizer steps, "samples": ..., <metric>: value}``.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab import tags
from lab.io import atomic_write_text
from supervised.configs import ConfigError

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
        records, cut = _parse_metrics(self.metrics_path)
        if cut:  # it was logged after the checkpoint (records are written before the checkpoint of their step)
            print(f"note: the last line of {self.metrics_path} was cut off mid-write when the run stopped; dropped "
                  f"it ({cut[:60]!r}), kept the complete records before it", file=sys.stderr)
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
    """The records of a run's ``metrics.jsonl``, optionally only those of one kind (a last line cut off by a
    crash mid-write is left out)."""
    records, _ = _parse_metrics(Path(run_dir) / METRICS_FILE)
    return [r for r in records if kind is None or r["kind"] == kind]


def _parse_metrics(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The records of a ``metrics.jsonl`` and its last line if that was cut off mid-write ("" if not).

    Only the last line can be partial (records are appended one whole line at a time); an unreadable line
    anywhere else is damage this code did not make, so it is an error naming the line rather than guessed away.
    """
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                return records, line
            raise ConfigError(f"{path} line {number} is not a JSON record ({error}); remove or repair that line "
                              f"(the others are intact)") from None
    return records, ""
