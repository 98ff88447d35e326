"""Checkpoints that survive a crash mid-write, and the random-number state that makes a resume exact.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and tuples, so it loads with
``torch.load(weights_only=True)``: loading one never runs code from the file.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from supervised.configs import ConfigError

LAST = "last.pt"  # the most recent checkpoint of a run: what --train.resume DIR continues from
BEST = "best.pt"  # the checkpoint with the best validation accuracy so far
FORMAT_VERSION = 1


def resolve_checkpoint(path_or_run_dir: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory meaning its ``last.pt``; FileNotFoundError naming what is missing."""
    path = Path(path_or_run_dir)
    if path.is_dir():
        path = path / LAST
        if not path.is_file():
            raise FileNotFoundError(f"no {LAST} in run directory {path.parent}: nothing to resume from")
    elif not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (pass a .pt file or a run directory)")
    return path


def load_checkpoint(path: str | os.PathLike, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by the trainer (weights only: no code from the file is run)."""
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{path} is not a checkpoint of this trainer (format version {FORMAT_VERSION})")
    return checkpoint


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
