"""Tiny budgets for every experiment: seconds per run, so the whole suite stays well under two minutes.

``flagship_run`` runs the README's main command once per session (2 seeds, 2 worker processes, tiny nets and
step counts); the smoke, report and TensorBoard tests all read its output.
"""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from experiments.cli import main

TINY_DIGITS = ["--digits.samples", "256", "--digits.eval-every", "128", "--digits.channels", "8", "16",
               "--digits.strides", "1", "2"]
TINY_IMITATION = ["--imitation.demo-counts", "8", "16", "--imitation.bc-steps", "4", "--imitation.bc-epochs", "0",
                  "--imitation.rl-steps", "256", "--imitation.eval-every", "128", "--imitation.eval-episodes", "4"]


@pytest.fixture
def tiny_digits_budget() -> list[str]:
    """The flagship's tiny ``--digits.x`` options as a single experiment's ``--budget.x``."""
    return [a.replace("--digits.", "--budget.") for a in TINY_DIGITS]


@pytest.fixture(scope="session")
def flagship_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("flagship") / "runs"
    code = main(["flagship", "--seeds", "2", "--workers", "2", "--no-progress", "--out", str(out),
                 *TINY_DIGITS, *TINY_IMITATION])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def signal_handlers_restored():
    """For a fixture that starts Ray's ``cluster_utils.Cluster``: its head node runs in this process and sets a
    SIGTERM handler of its own (which exits); the SIGINT / SIGTERM handlers found are put back after the module."""
    found = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in found.items():
        signal.signal(signum, handler)
