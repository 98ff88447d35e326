"""Experiment 3, *the optimizers in both paradigms*: every optimizer of ``lab.optim`` trains the same digits net
with labels (supervised task ``digits``) and as a PPO policy on ``lab/DigitsBandit-v0`` (reward only).

Each optimizer uses its registry learning rate (``lab.optim.OPTIMIZERS[name].default_lr``) and the same weight
decay (5e-4 on matrices and kernels) in both paradigms, so neither side gets tuned rates; everything else is experiment 1's setup (:mod:`experiments.digits`): the
same conv net, data, PPO settings, evaluation on the same test split.
"""
from experiments.optimizers import analysis
from experiments.optimizers.plan import OptimizersBudget, jobs, settings
from experiments.optimizers.tuning import TUNING
from experiments.spec import Experiment

EXPERIMENT = Experiment("optimizers", OptimizersBudget, jobs, analysis, settings, extra=TUNING)
