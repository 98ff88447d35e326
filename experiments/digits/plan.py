"""Experiment 1's plan (:mod:`experiments.digits`): the budget, and one supervised run and one run per RL
algorithm per seed, all on the same conv net and the same data."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agents.config import AgentConfig
from experiments.engine.jobs import Job
from experiments.runs.rl import train_agent
from experiments.runs.supervised import GPU_SHARE, train_supervised
from supervised.digits import DigitsConfig, DigitsDataConfig, DigitsNetConfig

ENV_ID = "lab/DigitsBandit-v0"
NUM_CLASSES = 10
BATCH_SIZE = 64  # the supervised digits recipe's batch
N_ENVS = 16  # parallel bandit envs: the policy acts on batches of 16 images


@dataclass
class DigitsBudget:
    """How much each run trains. ``None`` fields take the mode's value (quick / full)."""

    samples: int | None = None
    """training samples per run: supervised examples seen = RL environment steps = reward signals (quick
    10240, full 102400)"""
    eval_every: int | None = None
    """samples between two test-split evaluations (quick 1024, full 4096)"""
    channels: tuple[int, ...] = (32, 64, 128, 128, 256)
    """conv stages of the shared net (the supervised digits default: 67k parameters)"""
    strides: tuple[int, ...] = (1, 1, 2, 1, 2)
    """one stride per stage (8x8 -> 8 -> 8 -> 4 -> 4 -> 2)"""
    algos: tuple[str, ...] = ("ppo", "a2c")
    """RL algorithms trained on the bandit"""
    thresholds: tuple[float, ...] = (0.9, 0.95, 0.98)
    """test accuracies for 'samples / wall time to threshold'"""

    def resolve(self, full: bool) -> DigitsBudget:
        defaults = dict(samples=102_400, eval_every=4096) if full else dict(samples=10_240, eval_every=1024)
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def check(self) -> None:
        if self.samples < BATCH_SIZE:
            raise ValueError(f"samples must be >= {BATCH_SIZE} (one supervised batch), got {self.samples}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")
        unknown = [a for a in self.algos if a not in ("ppo", "a2c")]
        if unknown or not self.algos:
            raise ValueError(f"algos must be a non-empty subset of ppo, a2c; got {self.algos}")
        if len(self.channels) != len(self.strides):
            raise ValueError(f"one stride per stage: channels {self.channels} vs strides {self.strides}")


def net_config(budget: DigitsBudget) -> DigitsNetConfig:
    return DigitsNetConfig(channels=tuple(budget.channels), strides=tuple(budget.strides), norm="group",
                           dropout=0.0)


def supervised_job(exp: str, variant: str, seed: int, budget: DigitsBudget, optimizer: str | None = None,
                   lr: float | None = None) -> Job:
    config = DigitsConfig(model=net_config(budget), data=DigitsDataConfig(shift=0))
    steps = max(1, budget.samples // BATCH_SIZE)
    train = replace(config.train, max_steps=steps, eval_every=max(1, budget.eval_every // BATCH_SIZE),
                    log_every=min(10, steps), seed=seed, quiet=True, num_threads=1, device="auto")
    if optimizer is not None:  # the optimizer experiment: the registry's own learning rate for each
        train = replace(train, optimizer=optimizer, lr=lr)
    config = replace(config, train=train)
    return Job(f"{exp}/{variant}/seed{seed}", train_supervised, dict(config=config, variant=variant, seed=seed),
               cost=budget.samples / 1500, gpus=GPU_SHARE)


def rl_job(exp: str, variant: str, algo: str, seed: int, budget: DigitsBudget, optimizer: str | None = None,
           lr: float | None = None, weight_decay: float = 0.0) -> Job:
    if algo == "ppo":
        # 16 envs x 64 steps = 1024 samples per rollout, 4 epochs of batch 256: 16 gradient steps per 1024
        # samples, as many as the supervised run takes (batch 64, one pass). lr 1e-3 (Adam's registry default)
        # instead of SB3's 3e-4: a bandit has no long-horizon credit assignment to be careful about.
        n_steps = max(1, min(64, budget.samples // N_ENVS))
        algo_kwargs = dict(n_steps=n_steps, batch_size=min(256, n_steps * N_ENVS), n_epochs=4)
        lr = 1e-3 if lr is None else lr
    else:
        # One-step episodes: a rollout of n_steps=1 per env updates after every 16 answers (SB3's n_steps=5 only
        # delays the updates; nothing is gained from longer rollouts of a bandit). SB3's A2C lr and RMSprop.
        algo_kwargs = dict(n_steps=1)
    # ortho_init "heads": the conv body keeps the lab's own (Kaiming) init, as in the supervised net; SB3's
    # orthogonal init goes to the heads only. Linear heads on the extractor (net_arch empty), like the
    # supervised net's single linear head.
    # The supervised net's own ConvNetConfig: the same conv body, layer for layer (the module docstring).
    config = AgentConfig(ENV_ID, algo, "conv", encoder_kwargs=dict(config=net_config(budget).conv_config()),
                         n_envs=N_ENVS, lr=lr, optimizer=optimizer, weight_decay=weight_decay, algo_kwargs=algo_kwargs,
                         policy_kwargs=dict(net_arch=dict(pi=[], vf=[])), ortho_init="heads",
                         timesteps=budget.samples, eval_freq=budget.eval_every)
    return Job(f"{exp}/{variant}/seed{seed}", train_agent,
               dict(variant=variant, seed=seed, config=config, log_every=min(1000, budget.samples)),
               cost=budget.samples / 400, resumable=True)


def jobs(budget: DigitsBudget, seeds: list[int], exp: str = "digits") -> list[Job]:
    out = []
    for seed in seeds:  # seed-major order: an interrupted run still has every variant for the first seeds
        out.append(supervised_job(exp, "supervised", seed, budget))
        out += [rl_job(exp, algo, algo, seed, budget) for algo in budget.algos]
    return out

