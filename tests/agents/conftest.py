"""Shared fixtures for the agents tests: tiny SB3 settings so every learn() takes well under a second."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

# Enough for real updates (rollout -> minibatch gradient steps) and nothing more.
TINY_ALGO_KWARGS = {
    "ppo": dict(n_steps=32, batch_size=32, n_epochs=2),
    "a2c": dict(n_steps=8),
    "dqn": dict(learning_starts=16, buffer_size=256, batch_size=16, train_freq=4, target_update_interval=32),
}
# The transformer code path at a fraction of the default's cost.
TINY_TRANSFORMER = dict(d_model=16, num_heads=2, dim_feedforward=32)


@pytest.fixture(autouse=True)
def _quiet_expected_warnings():
    with warnings.catch_warnings():
        # SB3's env checker style warning for 8x8 digits / 7x7 BabyAI: custom extractors handle them by design.
        warnings.filterwarnings("ignore", message=".*minimal resolution for an image.*")
        yield


@pytest.fixture
def tiny_algo_kwargs() -> dict[str, dict]:
    return {algo: dict(kwargs) for algo, kwargs in TINY_ALGO_KWARGS.items()}


@pytest.fixture
def tiny_transformer() -> dict:
    return dict(TINY_TRANSFORMER)


class ParamTracker:
    """Snapshots a module's parameters and reports which ones changed since."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.before = {name: p.detach().clone() for name, p in module.named_parameters()}

    def changed(self) -> dict[str, bool]:
        return {name: not torch.equal(self.before[name], p.detach()) for name, p in self.module.named_parameters()}


@pytest.fixture
def track():
    """``track(module)`` -> :class:`ParamTracker`."""
    return ParamTracker
