"""Experiment 3's plan (:mod:`experiments.optimizers`): the budget, and per seed and optimizer one supervised run and
one PPO run of experiment 1's setup at the optimizer's registry learning rate."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from experiments.digits import plan as digits
from experiments.engine.jobs import Job
from experiments.optimizers.variants import PARADIGMS
from lab.optim import get_optimizer_info, optimizer_names

WEIGHT_DECAY = 5e-4  # the supervised digits recipe's, given to PPO too (else AdamW would be Adam there)


@dataclass
class OptimizersBudget:
    """How much each run trains; ``None`` fields take the mode's value (quick / full)."""

    samples: int | None = None
    """training samples per run (supervised examples = PPO environment steps; quick 6144, full 51200)"""
    eval_every: int | None = None
    """samples between two test-split evaluations (quick 1024, full 4096)"""
    optimizers: tuple[str, ...] = field(default_factory=optimizer_names)
    """names from lab.optim.optimizer_names()"""
    threshold: float = 0.9
    """test accuracy for 'samples / wall time to threshold'"""
    channels: tuple[int, ...] = (32, 64, 128, 128, 256)
    """conv stages of the shared net (as experiment 1)"""
    strides: tuple[int, ...] = (1, 1, 2, 1, 2)
    """one stride per stage"""

    def resolve(self, full: bool) -> OptimizersBudget:
        defaults = dict(samples=51_200, eval_every=4096) if full else dict(samples=6144, eval_every=1024)
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def check(self) -> None:
        for name in self.optimizers:
            get_optimizer_info(name)  # ValueError listing the valid names
        if not self.optimizers:
            raise ValueError(f"optimizers must name at least one of {', '.join(optimizer_names())}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be a test accuracy in (0, 1], got {self.threshold}")
        self.digits_budget().check()

    def digits_budget(self) -> digits.DigitsBudget:
        return digits.DigitsBudget(samples=self.samples, eval_every=self.eval_every, channels=self.channels,
                                   strides=self.strides, algos=("ppo",), thresholds=(self.threshold,))


def jobs(budget: OptimizersBudget, seeds: list[int], exp: str = "optimizers") -> list[Job]:
    base = budget.digits_budget()
    out = []
    for seed in seeds:
        for name in budget.optimizers:
            lr = get_optimizer_info(name).default_lr
            out.append(digits.supervised_job(exp, f"supervised-{name}", seed, base, optimizer=name, lr=lr))
            out.append(digits.rl_job(exp, f"ppo-{name}", "ppo", seed, base, optimizer=name, lr=lr,
                                     weight_decay=WEIGHT_DECAY))
    return out



def settings(budget: OptimizersBudget) -> dict[str, Any]:
    """What the analysis reads besides the budget: the weight decay both paradigms use."""
    return {"weight_decay": WEIGHT_DECAY}
