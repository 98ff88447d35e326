"""The ladder's plan (:mod:`experiments.ladder`): per level and seed, one behaviour-cloning search over demonstration
counts and one PPO run that ends once it held the target; both on the same fusion encoder."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from agents.config import AgentConfig
from envs.babyai import PAPER_99, PAPER_TARGET
from envs.registration import BABYAI_LEVELS
from experiments import babyai_recipe as recipe
from experiments.engine.jobs import Job
from experiments.runs.bc import search_demos
from experiments.runs.rl import train_agent
from experiments.runs.supervised import GPU_SHARE
from supervised.babyai_bc import BabyAIBCConfig

LEVELS = tuple(level for level in BABYAI_LEVELS if level in PAPER_99)
PARADIGMS = ("bc", "ppo")
# Per level in full mode: PPO's step budget (it stops earlier once it held the target) and evaluation interval.
FULL_RL = {
    "BabyAI-GoToRedBallGrey-v0": (500_000, 16_384),
    "BabyAI-GoToRedBall-v0": (2_000_000, 32_768),
    "BabyAI-GoToLocal-v0": (10_000_000, 65_536),
    "BabyAI-PickupLoc-v0": (10_000_000, 65_536),
    "BabyAI-PutNextLocal-v0": (20_000_000, 131_072),
    "BabyAI-GoTo-v0": (20_000_000, 131_072),
}


@dataclass
class LadderBudget:
    """What each level gets. ``None`` fields take the mode's value (quick / full)."""

    levels: tuple[str, ...] | None = None
    """BabyAI levels, easiest first (quick: GoToRedBallGrey; full: GoToRedBallGrey, GoToRedBall, GoToLocal,
    PickupLoc, PutNextLocal)"""
    demo_grid: tuple[int, ...] | None = None
    """demonstration counts BC tries in order, until success holds at the target at two consecutive counts
    (quick 50 100 200 400; full 1000 2000 ... 256000)"""
    bc_epochs: float | None = None
    """passes over the demonstrations of each BC run, at least bc_steps optimizer steps (quick 8, full 5)"""
    bc_steps: int | None = None
    """minimum optimizer steps of each BC run, batch 256 (quick 30, full 1000)"""
    rl_steps: int | None = None
    """PPO environment steps per run at most, every level (quick 32768; full: per level, 500k to 20M); PPO stops
    once it held the target at two consecutive evaluations"""
    eval_every: int | None = None
    """PPO environment steps between evaluations (quick 4096; full: per level, 16k to 131k)"""
    eval_episodes: int | None = None
    """fresh episodes per PPO evaluation (quick 100, full 500)"""
    final_episodes: int | None = None
    """fresh episodes of PPO's last evaluation and of every BC run's (quick 200, full 2000)"""
    target: float = PAPER_TARGET
    """the success rate to reach and hold (the BabyAI paper's 0.99)"""
    paradigms: tuple[str, ...] = PARADIGMS
    """the sides that run: bc (the demonstration search), ppo, or both; a side run alone is joined by the other
    later with --resume in the same --out (its finished runs load)"""

    def resolve(self, full: bool) -> LadderBudget:
        if full:
            defaults = dict(levels=LEVELS[:5], demo_grid=tuple(1000 * 2 ** i for i in range(9)), bc_epochs=5,
                            bc_steps=1000, eval_episodes=500, final_episodes=2000)
        else:
            defaults = dict(levels=LEVELS[:1], demo_grid=(50, 100, 200, 400), bc_epochs=8, bc_steps=30,
                            rl_steps=32_768, eval_every=4096, eval_episodes=100, final_episodes=200)
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def check(self) -> None:
        unknown = [level for level in self.levels if level not in LEVELS]
        if unknown or not self.levels:
            raise ValueError(f"levels must be among {', '.join(LEVELS)}; got {self.levels}")
        if not self.demo_grid or min(self.demo_grid) < 1 or list(self.demo_grid) != sorted(set(self.demo_grid)):
            raise ValueError(f"demo_grid must be increasing positive counts, got {self.demo_grid}")
        for name in ("bc_steps", "eval_episodes", "final_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("rl_steps", "eval_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (or left to the level's default), got {getattr(self, name)}")
        if self.bc_epochs < 0:
            raise ValueError(f"bc_epochs must be >= 0, got {self.bc_epochs}")
        if not 0 < self.target <= 1:
            raise ValueError(f"target must be a success rate in (0, 1], got {self.target}")
        if not self.paradigms or not set(self.paradigms) <= set(PARADIGMS):
            raise ValueError(f"paradigms must be a non-empty subset of {', '.join(PARADIGMS)}; got {self.paradigms}")

    def rl_budget(self, level: str) -> tuple[int, int]:
        """(PPO steps at most, steps between evaluations) on ``level``: the budget's, else the level's."""
        steps, every = FULL_RL[level]
        return self.rl_steps or steps, self.eval_every or every


def bc_config(budget: LadderBudget, level: str, seed: int) -> BabyAIBCConfig:
    """``babyai_bc``'s recipe on the shared encoder, scored on ``final_episodes`` fresh episodes, each seed on its
    own demonstrations (``demo_seed=seed``)."""
    return recipe.bc_config(level, min(budget.demo_grid), seed, steps=budget.bc_steps,
                            eval_episodes=budget.final_episodes, demo_seed=seed)


def ppo_config(budget: LadderBudget, level: str) -> AgentConfig:
    """The agents' BabyAI PPO recipe on the shared encoder, stopping once it held the target."""
    steps, every = budget.rl_budget(level)
    return recipe.ppo_config(level, steps, every, budget.eval_episodes, final_episodes=budget.final_episodes,
                             stop_at_metric=budget.target)


def short(level: str) -> str:
    return level.removeprefix("BabyAI-").removesuffix("-v0")


def jobs(budget: LadderBudget, seeds: list[int], exp: str = "ladder") -> list[Job]:
    out = []
    for level in budget.levels:
        steps, every = budget.rl_budget(level)
        for seed in seeds:
            if "bc" in budget.paradigms:
                out.append(Job(f"{exp}/{short(level)}/bc/seed{seed}", search_demos,
                               dict(variant=f"bc-{short(level)}", seed=seed, config=bc_config(budget, level, seed),
                                    grid=tuple(budget.demo_grid), target=budget.target, min_epochs=budget.bc_epochs),
                               label=f"{exp}/{short(level)}/bc/seed{seed} (demos search)",
                               cost=sum(budget.demo_grid[:4]) * budget.bc_epochs / 40, gpus=GPU_SHARE, resumable=True))
            if "ppo" in budget.paradigms:
                out.append(Job(f"{exp}/{short(level)}/ppo/seed{seed}", train_agent,
                               dict(variant=f"ppo-{short(level)}", seed=seed, config=ppo_config(budget, level),
                                    log_every=min(2048, steps)),
                               cost=steps / 400 + 10 * steps / every, resumable=True))
    return out


def settings(budget: LadderBudget) -> dict[str, Any]:
    """What the analysis reads besides the budget: each level's PPO budget and the shared encoder."""
    e = recipe.ENCODER
    return {"rl_budget": {level: list(budget.rl_budget(level)) for level in budget.levels},
            "encoder": {"d_model": e.d_model, "num_heads": e.num_heads, "num_layers": e.num_layers,
                        "view_stem": list(e.view_stem), "history_as_one_token": e.history_as_one_token}}
