"""Device choice, mixed precision, seeding, parameter counting and run naming.

One place for each of these concerns: every trainer, agent and experiment calls these helpers instead of
re-deciding them.
"""
from __future__ import annotations

import contextlib
import os
import random
import re
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def select_device(preference: str | torch.device = "auto") -> torch.device:
    """Return the device to run on: CUDA > MPS > CPU for ``"auto"``, else the one asked for.

    Asking for an accelerator that is not present is an error rather than a silent fallback, so a user who
    typed ``--device cuda`` never trains on the CPU by accident.
    """
    if isinstance(preference, torch.device):
        preference = str(preference)
    kind = preference.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {preference!r}; choose one of {', '.join(DEVICE_CHOICES)} (e.g. 'cuda:1')")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch.cuda.is_available() is False; use 'auto' or 'cpu'")
    if kind == "mps" and not _mps_available():
        raise RuntimeError("device 'mps' was requested but MPS is not available; use 'auto' or 'cpu'")
    return torch.device(preference)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def autocast(device: torch.device | str, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16); a no-op context elsewhere.

    CPU autocast is left off on purpose: for the small models here bf16 on CPU is slower than fp32 and
    changes the numbers that the CPU tests compare exactly.
    """
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices). ``deterministic`` also asks torch for deterministic kernels."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # affects subprocesses started after this call
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+-]+")


def run_name(*parts: object, seed: int | None = None, timestamp: bool = True) -> str:
    """CleanRL-style run name: ``part1__part2__seed__unixtime`` with path-unsafe characters replaced.

    >>> run_name("lab/CartPoleNoVel-v1", "ppo_transformer", seed=1, timestamp=False)
    'lab_CartPoleNoVel-v1__ppo_transformer__1'
    """
    fields = [_UNSAFE.sub("_", str(p)).strip("_") for p in parts if p is not None and str(p) != ""]
    if seed is not None:
        fields.append(str(seed))
    if timestamp:
        fields.append(str(int(time.time())))
    if not fields:
        raise ValueError("run_name needs at least one part, a seed or a timestamp")
    return "__".join(fields)


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (small models are often fastest with 1)."""
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
