"""Experiment 3, *the optimizers in both paradigms*: every optimizer of ``lab.optim`` trains the same digits net
with labels (supervised task ``digits``) and as a PPO policy on ``lab/DigitsBandit-v0`` (reward only).

Each optimizer uses its registry learning rate (``lab.optim.OPTIMIZERS[name].default_lr``) and the same weight
decay (5e-4 on matrices and kernels) in both paradigms, so neither side gets tuned rates; everything else is experiment 1's setup (:mod:`experiments.digits`): the
same conv net, data, PPO settings, evaluation on the same test split.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from experiments import digits
from experiments.runner import Job
from lab.optim import get_optimizer_info, optimizer_names

PARADIGMS = ("supervised", "ppo")
WEIGHT_DECAY = 5e-4  # the supervised digits recipe's, given to PPO too (else AdamW would be Adam there)
HEADLINE = ("final test accuracy",)


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


# The analysis (summary rows, plots, report, TensorBoard layout) lives in experiments.analysis.optimizers.
from experiments.analysis.optimizers import plot, report, summarize, tensorboard_layout  # noqa: E402,F401
