"""The offline experiment's datasets and learners, and their names in reports.

A dataset is a mixture of behaviour policies' episodes (shares of ``episodes``): the bot (the expert), the bot with
a quarter or half of its actions replaced by random ones, a random policy, and an early PPO checkpoint. From
expert-only to mostly noise (10% bot, 90% random: the Decision Transformer paper's Key-to-Door setting had 1k random
trajectories, a few of them successes).
"""
from __future__ import annotations

from typing import Any

MIXTURES: dict[str, dict[str, float]] = {
    "expert": {"bot": 1.0},
    "mixed": {"bot": 0.2, "bot-noise0.25": 0.2, "bot-noise0.5": 0.2, "ppo-early": 0.2, "random": 0.2},
    "noisy": {"bot": 0.1, "random": 0.9},
}
METHODS = {"bc": "BC (every episode)", "pbc": "%BC (top episodes by return)", "dt": "Decision Transformer"}


def method_variant(method: str, mixture: str) -> str:
    """The variant of a learner on a dataset, e.g. ``dt-noisy``."""
    return f"{method}-{mixture}"


def dataset_name(dataset: str) -> str:
    """The name a user's Minari dataset (an id or a directory) gets among the datasets, e.g. ``minari-my-set-v0``."""
    return "minari-" + dataset.rstrip("/").rsplit("/", 1)[-1]


def datasets(budget: dict[str, Any]) -> list[str]:
    """Every dataset of a results file's budget: the lab's mixtures, then the user's Minari datasets."""
    return [*budget["mixtures"], *(dataset_name(d) for d in budget.get("minari_datasets", ()))]
