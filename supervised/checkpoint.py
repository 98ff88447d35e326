"""Checkpoints that survive a crash mid-write, and the random-number state that makes a resume exact.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and tuples, so it loads with
``torch.load(weights_only=True)``: loading one never runs code from the file.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from supervised.configs import ConfigError

LAST = "last.pt"  # the most recent checkpoint of a run: what --train.resume DIR continues from
BEST = "best.pt"  # the checkpoint with the best validation accuracy so far
FORMAT_VERSION = 1
KEYS = ("format_version", "task", "experiment", "model", "optimizer", "scheduler", "step", "samples", "progress",
        "rng")  # what the trainer writes into every checkpoint


class CheckpointError(ConfigError):
    """A checkpoint that cannot be loaded (empty, truncated, not a checkpoint); the message names the run's
    checkpoints that are intact, if any, so the user can resume from one of them."""


def resolve_checkpoint(path_or_run_dir: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory meaning its ``last.pt``; FileNotFoundError naming what is missing."""
    path = Path(path_or_run_dir)
    if path.is_dir():
        path = path / LAST
        if not path.is_file():
            raise FileNotFoundError(f"no {LAST} in run directory {path.parent}: nothing to resume from. "
                                    f"{_alternatives(path)}")
    elif not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (pass a .pt file or a run directory)")
    return path


def load_checkpoint(path: str | os.PathLike, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by the trainer (weights only: no code from the file is run).

    A file that is empty, truncated or not a checkpoint of this trainer raises CheckpointError: one paragraph
    naming the file, what is wrong with it and which other checkpoint of the run is intact, if any.
    """
    try:
        return _read(Path(path), map_location)
    except CheckpointError as error:
        raise CheckpointError(f"{error} {_alternatives(Path(path))}") from None


def _read(path: Path, map_location: torch.device | str) -> dict[str, Any]:
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):  # not damage; the OS message says which
        raise
    except Exception as error:  # noqa: BLE001 - torch.load raises RuntimeError, EOFError, UnpicklingError, ...
        size = path.stat().st_size
        what = "it is empty (0 bytes)" if size == 0 else f"torch.load cannot read its {size:,} bytes ({_gist(error)})"
        raise CheckpointError(f"checkpoint {path} is damaged: {what}; it was probably cut short by a crash, a full "
                              f"disk or an incomplete copy.") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a checkpoint of this trainer (format version {FORMAT_VERSION}).")
    missing = [key for key in KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {path} is damaged: it lacks {', '.join(missing)}.")
    return checkpoint


def _gist(error: BaseException) -> str:
    """The first sentence of an exception's message (torch's can run to several)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".")


def _alternatives(path: Path) -> str:
    """A sentence naming the other checkpoints in ``path``'s run directory that load, with their steps."""
    intact = []
    for other in sorted(path.parent.glob("*.pt")):  # lab.io's temporary files (".last.pt.*.tmp") do not match
        if other.name != path.name:
            try:
                intact.append((other, _read(other, "cpu")["step"]))
            except (CheckpointError, OSError):
                pass
    if not intact:
        return (f"No other checkpoint in {path.parent} can be loaded: start a new run (without --train.resume); "
                f"this run directory is left as it is.")
    listed = ", ".join(f"{other.name} (step {step})" for other, step in intact)
    latest, step = max(intact, key=lambda item: item[1])
    return (f"Intact checkpoint{'s' if len(intact) > 1 else ''} of this run: {listed}; continue from step {step} "
            f"with --train.resume {latest} (what was logged after step {step} is dropped and trained again).")


# ---------------------------------------------------------------------------------------------------- RNG state
def rng_state(data_generator: torch.Generator) -> dict[str, Any]:
    """Every random stream training draws from: python, numpy, torch (CPU and CUDA) and the data generator."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))  # weights_only-safe
    return {
        "python": random.getstate(),
        "numpy": numpy_state,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "data": data_generator.get_state(),
    }


def set_rng_state(state: dict[str, Any], data_generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only when the same number of GPUs is present)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {**numpy_state["state"], "key": state["numpy"]["state"]["key"].numpy().astype(np.uint32)}
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    data_generator.set_state(state["data"].cpu())
