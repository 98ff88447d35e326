"""A job's state on disk, which is what ``--resume`` trusts: a finished job's directory holds ``job.json`` (its
record, written atomically, last); a directory without it is unfinished, and one an interrupt stopped also gets
an ``INCOMPLETE`` note for the reader.
"""
from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.engine.jobs import Job
from lab.io import atomic_write_text, write_json

MARKER = "job.json"  # in a run directory: the job finished, and this is its record
INCOMPLETE = "INCOMPLETE"  # in a run directory: the job was interrupted (also implied by a missing MARKER)


class ResumeMismatchError(ValueError):
    """``resume`` found a finished job made with other arguments than the job of the same id now."""


def finish(job: Job, record: dict[str, Any], out: Path) -> dict[str, Any]:
    """The record as JSON stores it (a loaded record and a fresh one are then equal), made final on disk."""
    record = json.loads(json.dumps(record, default=str))
    write_json(out / job.id / MARKER, {"job": job.id, "fingerprint": job.fingerprint(), "record": record})
    return record


def load_finished(jobs: Sequence[Job], out: Path) -> dict[str, dict[str, Any]]:
    """Records of the jobs an earlier invocation finished; unfinished run dirs are prepared for a new attempt.
    :class:`ResumeMismatchError` when a finished job was run with other arguments (a resume must repeat the same
    command). A marker that cannot be read (truncated, not a record) is set aside as ``job.json.damaged``, said
    on stderr, and its job runs again."""
    records = {}
    for job in jobs:
        run_dir = out / job.id
        marker = run_dir / MARKER
        saved = read_marker(marker) if marker.is_file() else None
        if saved is not None:
            if saved.get("fingerprint") != job.fingerprint():
                raise ResumeMismatchError(f"{run_dir} was run with other settings than this command's; resume with "
                                          "the command that started it, or choose a new --out")
            records[job.id] = saved["record"]
        elif run_dir.exists():
            (run_dir / INCOMPLETE).unlink(missing_ok=True)
    return records


def read_marker(marker: Path) -> dict[str, Any] | None:
    """The saved marker, or None (after saying so) when it is damaged: its job is then unfinished."""
    try:
        saved = json.loads(marker.read_text())
        if isinstance(saved, dict) and isinstance(saved.get("record"), dict):
            return saved
        problem = "it holds no job record"
    except (OSError, ValueError) as error:
        problem = f"{type(error).__name__}: {' '.join(str(error).split())}"
    damaged = marker.with_name(marker.name + ".damaged")
    marker.replace(damaged)
    print(f"--resume: ignored {marker} ({problem}; kept as {damaged.name}): that run runs again", file=sys.stderr)
    return None


def mark_incomplete(jobs: Sequence[Job], out: Path) -> int:
    """Mark every started, unfinished run; the number of finished ones (a marker can arrive after the driver
    stopped listening: the disk, not the driver's view, says what is finished)."""
    finished = 0
    for job in jobs:
        run_dir = out / job.id
        if (run_dir / MARKER).is_file():
            finished += 1
        elif run_dir.is_dir():
            atomic_write_text(run_dir / INCOMPLETE, f"interrupted before this run finished (no {MARKER}): "
                              "run the same command with --resume to finish it\n")
    return finished


def clear(run_dir: Path) -> None:
    """Remove a partial run directory (a job that cannot continue from a checkpoint starts from scratch)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
