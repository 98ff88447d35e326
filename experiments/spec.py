"""What an experiment is, as the pipeline and the command line see it: one typed :class:`Experiment` record per
experiment package (``experiments/<name>/__init__.py``), listed in one place (:mod:`experiments.registry`).

An experiment has two halves that never import each other:

- its *plan* (``<name>/plan.py``): a budget dataclass (:class:`Budget`: quick / full defaults, checks) and
  ``jobs(budget, seeds, exp)``, the engine's :class:`~experiments.engine.Job` list; ``settings(budget)``, the
  constants the analysis needs besides the budget, written to ``results.json`` when the run is planned;
- its *analysis* (``<name>/analysis.py``, an :class:`Analysis`): summary rows, plots, report and TensorBoard
  layout computed from ``results.json`` alone (``python -m experiments report DIR`` re-renders them).

``extra`` adds jobs that need work before the plan is complete, e.g. experiment 3's learning rates tuned by
Ray Tune (:class:`ExtraJobs`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from experiments.engine.connect import CONNECT_TIMEOUT_S
from experiments.engine.jobs import Job


class Budget(Protocol):
    """How much each run of an experiment gets; ``None`` fields take the mode's value."""

    def resolve(self, full: bool) -> Any:
        """A copy with every ``None`` field set to the quick (or full) mode's value."""

    def check(self) -> None:
        """ValueError naming the bad field (before any work)."""


class Analysis(Protocol):
    """An experiment's analysis module: everything from ``results.json`` (its ``budget``, ``full_budget``,
    ``settings``, ``runs``, ``summary``)."""

    HEADLINE: tuple[str, ...]  # the quantities of the closing summary table

    def summarize(self, runs: list[dict[str, Any]], budget: dict[str, Any]) -> list[dict[str, Any]]: ...

    def plot(self, results: dict[str, Any], plot_dir: Path) -> list[Path]: ...

    def report(self, results: dict[str, Any], plot_paths: list[str]) -> str: ...

    def tensorboard_layout(self, results: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ExtraContext:
    """What :class:`ExtraJobs` get: the planned experiment and where and how the engine will run."""

    name: str
    budget: Any
    seeds: list[int]
    exp_dir: Path
    workers: int
    address: str | None
    resume: bool
    options: dict[str, Any]
    connect_timeout: float = CONNECT_TIMEOUT_S  # seconds to join the cluster at ``address``


class ExtraJobs(Protocol):
    """Jobs an experiment adds once work before the engine has run (e.g. a Ray Tune search), and what that
    work adds to ``results.json``."""

    def check(self, options: dict[str, Any]) -> None:
        """ValueError on a bad option (before any work)."""

    def __call__(self, context: ExtraContext) -> tuple[list[Job], dict[str, Any]]: ...


def no_settings(budget: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Experiment:
    """One experiment: its name (``python -m experiments NAME``, ``OUT/NAME``), budget, jobs and analysis."""

    name: str
    budget: type  # a Budget dataclass; Budget() are the defaults, .resolve(full) the mode's values
    jobs: Callable[[Any, list[int], str], list[Job]]
    analysis: Analysis
    settings: Callable[[Any], dict[str, Any]] = no_settings
    extra: ExtraJobs | None = None  # its options are the command's own fields (e.g. optimizers' --tune-trials)
