"""Experiment 2's plan (:mod:`experiments.imitation`): the budget; per seed one RL run per variant, the untrained
BC policy and behaviour cloning on growing prefixes of one demonstration collection (a job of its own)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agents.config import AgentConfig
from experiments import babyai_recipe as recipe
from envs.babyai import PAPER_TARGET
from envs.registration import BABYAI_LEVELS
from experiments.engine.jobs import Job
from experiments.imitation.variants import RL_NAMES
from experiments.runs.baselines import untrained_bc_job
from experiments.runs.bc import collect, train_bc
from experiments.runs.rl import train_agent
from experiments.runs.supervised import GPU_SHARE
from supervised.babyai_bc import BabyAIBCConfig

LEVELS = BABYAI_LEVELS  # the BabyAI paper's levels registered under lab/
TARGET = PAPER_TARGET  # the paper's success threshold
READOUTS = recipe.READOUTS
RL_ALGOS = tuple(RL_NAMES)
MEMORY_KWARGS = dict(memory_length=64, d_model=64, num_heads=4, num_layers=1, dim_feedforward=128,
                     positional="sinusoidal")


@dataclass
class ImitationBudget:
    """What each run gets. ``None`` fields take the mode's value (quick / full)."""

    level: str | None = None
    """BabyAI level: quick BabyAI-GoToRedBallGrey-v0, full BabyAI-GoToRedBall-v0 (or BabyAI-GoToLocal-v0)"""
    demo_counts: tuple[int, ...] | None = None
    """behaviour cloning training-set sizes, one BC run each (quick 50 200 800; full 1000 4000 16000 64000)"""
    bc_steps: int | None = None
    """minimum optimizer steps of each BC run, batch 256 (quick 30, full 1000)"""
    bc_epochs: float | None = None
    """minimum passes over the demonstrations of each BC run: larger sets get more steps (quick 8, full 5)"""
    rl_steps: int | None = None
    """PPO environment steps per run (quick 32768: with fresh episodes at every evaluation, 16384 left PPO within
    its untrained success's interval on 3 seeds; the faster recipe pays for the doubling; full 1000000)"""
    eval_every: int | None = None
    """PPO environment steps between evaluations (quick 8192, full 32768)"""
    eval_episodes: int | None = None
    """fresh episodes per PPO evaluation, other ones at every evaluation (quick 100, full 500)"""
    final_episodes: int | None = None
    """fresh episodes of PPO's last evaluation and of every BC run's one (quick 100, full 2000)"""
    greedy: bool = False
    """evaluate with argmax actions instead of sampling from the policy"""
    rl_readout: str = "flat"
    """PPO's readout of the shared encoder: flat (the agents' BabyAI recipe: summary + patches -> MLP heads) or
    cls (the cloned policy's own: CLS -> linear heads)"""
    thresholds: tuple[float, ...] = (0.5, 0.9, TARGET)
    """success rates for 'demonstrations / episodes to threshold' (the paper's is 0.99)"""
    demos_dir: str | None = None
    """reuse (and extend) a demonstration directory across invocations; default: a fresh one in the output"""
    rl_algos: tuple[str, ...] = ("ppo",)
    """RL variants, one run per seed each: ppo (the agents' BabyAI recipe), memory-ppo (the same PPO with a
    transformer memory over the episode, agents.MemoryPPO); e.g. --budget.rl-algos ppo memory-ppo"""

    def resolve(self, full: bool) -> ImitationBudget:
        if full:
            defaults = dict(level=LEVELS[1], demo_counts=(1000, 4000, 16000, 64000), bc_steps=1000, bc_epochs=5,
                            rl_steps=1_000_000, eval_every=32_768, eval_episodes=500, final_episodes=2000)
        else:
            defaults = dict(level=LEVELS[0], demo_counts=(50, 200, 800), bc_steps=30, bc_epochs=8, rl_steps=32_768,
                            eval_every=8192, eval_episodes=100, final_episodes=100)
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def check(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"unknown level {self.level!r}; choose one of {', '.join(LEVELS)}")
        if not self.demo_counts or min(self.demo_counts) < 1:
            raise ValueError(f"demo_counts must be positive numbers of demonstrations, got {self.demo_counts}")
        for name in ("bc_steps", "rl_steps", "eval_every", "eval_episodes", "final_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.bc_epochs < 0:
            raise ValueError(f"bc_epochs must be >= 0, got {self.bc_epochs}")
        unknown = [a for a in self.rl_algos if a not in RL_ALGOS]
        if unknown or not self.rl_algos or len(set(self.rl_algos)) < len(self.rl_algos):
            raise ValueError(f"rl_algos must be distinct names among {', '.join(RL_ALGOS)}; got {self.rl_algos}")
        if self.rl_readout not in READOUTS:
            raise ValueError(f"unknown rl_readout {self.rl_readout!r}; choose one of {', '.join(READOUTS)}")
        if self.demos_dir is not None and Path(self.demos_dir).exists() and not Path(self.demos_dir).is_dir():
            raise ValueError(f"demos_dir {self.demos_dir} is a file, not a directory of demonstrations")


def bc_config(budget: ImitationBudget, num_demos: int, seed: int) -> BabyAIBCConfig:
    """``babyai_bc``'s recipe on the shared encoder (``experiments.babyai_recipe``) with the budget's steps and
    evaluation (``final_episodes`` fresh episodes: a behaviour-cloning run is scored once)."""
    return recipe.bc_config(budget.level, num_demos, seed, steps=budget.bc_steps, eval_episodes=budget.final_episodes,
                            greedy=budget.greedy)


def ppo_config(budget: Any, rl_steps: int, readout: str, algo: str = "ppo") -> AgentConfig:
    """The agents' BabyAI PPO recipe on the shared encoder (``experiments.babyai_recipe``).

    ``readout="flat"``: the recipe's MLP heads (64) on the summary and patch states; ``"cls"``: linear action and
    value heads on the summary state, the cloned policy's own architecture (its head then loads too). Evaluated
    like behaviour cloning: fresh episodes (other ones at every evaluation), sampled actions unless
    ``budget.greedy``; the last evaluation on ``budget.final_episodes``.
    """
    config = recipe.ppo_config(budget.level, rl_steps, budget.eval_every, budget.eval_episodes, readout=readout,
                               final_episodes=budget.final_episodes, greedy=budget.greedy)
    if algo == "memory-ppo":  # rollout segments of at most 32 steps that tile both the rollout and the batches
        n_steps, batch = config.algo_kwargs["n_steps"], config.algo_kwargs["batch_size"]
        config = config.merged(algo="memory-ppo", algo_kwargs=dict(segment_len=math.gcd(32, n_steps, batch)),
                               policy_kwargs=dict(memory_kwargs=MEMORY_KWARGS))
    return config


def rl_job(exp: str, budget: Any, seed: int, readout: str, variant: str = "ppo", finetune: str | None = None,
           pretrained_from: str | None = None, load_head: bool = False, algo: str = "ppo") -> Job:
    """A PPO (or MemoryPPO) run of the budget (``finetune``: a strategy of ``agents.finetune`` for a pretrained
    encoder)."""
    config = ppo_config(budget, budget.rl_steps, readout, algo)
    if finetune is not None:
        config = config.merged(finetune=finetune)
    return Job(f"{exp}/{variant}/seed{seed}", train_agent,
               dict(variant=variant, seed=seed, config=config, pretrained_from=pretrained_from, load_head=load_head,
                    log_every=min(2048, budget.rl_steps)),
               deps=(pretrained_from,) if pretrained_from else (),
               cost=budget.rl_steps / 100 + 3 * budget.rl_steps / budget.eval_every, resumable=True)


def demos_job(exp: str, budget: ImitationBudget) -> Job:
    count = max(budget.demo_counts)
    return Job(f"{exp}/demos", collect, dict(level=budget.level, episodes=count, demos_dir=budget.demos_dir),
               label=f"{exp}/demos ({count} bot demonstrations)", cost=count / 150)


def bc_steps_estimate(budget: ImitationBudget, demos: int, steps_per_demo: float = 6.0) -> int:
    """Roughly how many steps ``train_bc`` will take (the real count uses the demonstrations' length)."""
    return max(budget.bc_steps, int(budget.bc_epochs * demos * steps_per_demo / 256))


def bc_variant(n: int) -> str:
    return f"bc-{n}demos"


def jobs(budget: ImitationBudget, seeds: list[int], exp: str = "imitation") -> list[Job]:
    demos = demos_job(exp, budget)
    out = [demos]
    for seed in seeds:
        out += [rl_job(exp, budget, seed, budget.rl_readout, variant=algo, algo=algo) for algo in budget.rl_algos]
        # the BC policy as initialised: the untrained point (0 demos) every BC variant is compared with
        out.append(untrained_bc_job(exp, bc_config(budget, max(budget.demo_counts), seed), seed, demos.id))
        for n in budget.demo_counts:
            out.append(Job(f"{exp}/{bc_variant(n)}/seed{seed}", train_bc,
                           dict(variant=bc_variant(n), seed=seed, config=bc_config(budget, n, seed),
                                demos_from=demos.id, min_epochs=budget.bc_epochs), deps=(demos.id,),
                           cost=bc_steps_estimate(budget, n) * 256 / 700 + budget.final_episodes / 30,
                           gpus=GPU_SHARE))
    return out



def settings(budget: ImitationBudget) -> dict[str, Any]:
    """What the analysis reads besides the budget (MemoryPPO's memory, for the report's recipe note)."""
    return {"memory_kwargs": MEMORY_KWARGS}
