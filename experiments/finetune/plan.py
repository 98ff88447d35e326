"""Experiment 4's plan (:mod:`experiments.finetune`): the budget; per seed one behaviour-cloning pretraining, the
untrained BC policy, and one PPO run per strategy, all with experiment 2's recipe and evaluation."""
from __future__ import annotations

from dataclasses import dataclass, replace

from agents.finetune import STRATEGIES as KNOWN
from experiments.engine.jobs import Job
from experiments.imitation import plan as imitation
from experiments.runs.baselines import untrained_bc_job
from experiments.runs.bc import train_bc
from experiments.runs.supervised import GPU_SHARE

STRATEGIES = ("frozen", "top", "discriminative", "full", "scratch")


@dataclass
class FinetuneBudget:
    """What each run gets. ``None`` fields take the mode's value (quick / full)."""

    level: str | None = None
    """BabyAI level: quick BabyAI-GoToRedBallGrey-v0, full BabyAI-GoToRedBall-v0"""
    pretrain_demos: int | None = None
    """demonstrations for the behaviour-cloning pretraining (quick 400, full 4000)"""
    bc_steps: int | None = None
    """optimizer steps of the pretraining, batch 256 (quick 50, full 2000)"""
    rl_steps: int | None = None
    """PPO environment steps per fine-tuning run (quick 8192, full 200000)"""
    eval_every: int | None = None
    """environment steps between evaluations (quick 2048, full 16384)"""
    eval_episodes: int | None = None
    """fresh episodes per success-rate evaluation (quick 100, full 500)"""
    strategies: tuple[str, ...] = STRATEGIES
    """fine-tuning strategies (agents.finetune.STRATEGIES)"""
    load_head: bool = True
    """also start PPO's action head from the cloned policy's (else only the encoder is pretrained)"""
    greedy: bool = False
    """evaluate with argmax actions instead of sampling from the policy"""
    thresholds: tuple[float, ...] = (0.5, 0.9, 0.99)
    """success rates for 'episodes to threshold'"""
    demos_dir: str | None = None
    """reuse (and extend) a demonstration directory across invocations; default: a fresh one in the output"""

    def resolve(self, full: bool) -> FinetuneBudget:
        if full:
            defaults = dict(level=imitation.LEVELS[1], pretrain_demos=4000, bc_steps=2000, rl_steps=200_000,
                            eval_every=16_384, eval_episodes=500)
        else:
            defaults = dict(level=imitation.LEVELS[0], pretrain_demos=400, bc_steps=50, rl_steps=8192,
                            eval_every=2048, eval_episodes=100)
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def check(self) -> None:
        unknown = [s for s in self.strategies if s not in KNOWN]
        if unknown or not self.strategies:
            raise ValueError(f"strategies must be a non-empty subset of {', '.join(KNOWN)}; got {self.strategies}")
        self.imitation_budget().check()

    def imitation_budget(self) -> imitation.ImitationBudget:
        return imitation.ImitationBudget(level=self.level, demo_counts=(self.pretrain_demos,),
                                         bc_steps=self.bc_steps, bc_epochs=0, rl_steps=self.rl_steps,
                                         eval_every=self.eval_every, eval_episodes=self.eval_episodes,
                                         final_episodes=self.eval_episodes, greedy=self.greedy,
                                         demos_dir=self.demos_dir)


def jobs(budget: FinetuneBudget, seeds: list[int], exp: str = "finetune") -> list[Job]:
    base = budget.imitation_budget()
    demos = imitation.demos_job(exp, base)
    out = [demos]
    for seed in seeds:
        pretrain = Job(f"{exp}/bc-pretrain/seed{seed}", train_bc,
                       dict(variant="bc-pretrain", seed=seed, demos_from=demos.id,
                            config=imitation.bc_config(base, budget.pretrain_demos, seed)),
                       deps=(demos.id,), cost=budget.bc_steps * 256 / 700, gpus=GPU_SHARE)
        out.append(pretrain)
        # the BC policy as initialised: the untrained point of the pretraining
        out.append(untrained_bc_job(exp, imitation.bc_config(base, budget.pretrain_demos, seed), seed, demos.id))
        for strategy in budget.strategies:
            # The cloned policy's architecture (CLS -> linear heads), so its action head loads too.
            pretrained = {} if strategy == "scratch" else dict(pretrained_from=pretrain.id, load_head=budget.load_head)
            out.append(imitation.rl_job(exp, base, seed, "cls", variant=strategy, finetune=strategy, **pretrained))
    return out

