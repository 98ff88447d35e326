"""The offline experiment's plan (:mod:`experiments.offline`): behaviour policies' episodes, their mixtures as Minari
datasets, then per seed BC, %BC and a Decision Transformer on each mixture, and PPO online as the reference."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from envs.registration import BABYAI_LEVELS
from experiments.engine.jobs import Job
from experiments import babyai_recipe as recipe
from experiments.offline.variants import MIXTURES, dataset_name, method_variant
from experiments.runs.baselines import UNTRAINED_BC, score_untrained_bc
from experiments.runs.bc import train_bc
from experiments.runs.offline import EARLY_PPO, build_dataset, collect_source, train_dt, use_dataset
from experiments.runs.rl import train_agent
from experiments.runs.supervised import GPU_SHARE
from supervised.babyai_bc import BabyAIBCConfig, BCDataConfig
from supervised.babyai_dt import BabyAIDTConfig, DTEvalConfig, DTModelConfig

DATA_SEED = 0  # one collection per source, shared by every seed (the seeds vary the learners, as in experiment 2)


@dataclass
class OfflineBudget:
    """What each run gets. ``None`` fields take the mode's value (quick / full)."""

    level: str = "BabyAI-GoToRedBallGrey-v0"
    """BabyAI level of the data, the learners and the evaluation"""
    episodes: int | None = None
    """episodes per dataset (quick 600, full 4000)"""
    mixtures: tuple[str, ...] = tuple(MIXTURES)
    """datasets, from expert-only to mostly noise (experiments.offline.variants.MIXTURES)"""
    top_fraction: float = 0.1
    """%BC: the fraction of episodes, highest return first, that filtered behaviour cloning keeps"""
    epochs: float | None = None
    """passes over each dataset of every BC, %BC and DT run, at least min_steps optimizer steps (quick 4, full 10)"""
    min_steps: int | None = None
    """minimum optimizer steps of every offline run (quick 60, full 1000)"""
    early_rl_steps: int | None = None
    """PPO steps of the early checkpoint that logs the 'ppo-early' episodes (quick 4096, full 16384)"""
    rl_steps: int | None = None
    """PPO environment steps of the online reference (quick 16384, full 250000)"""
    eval_every: int | None = None
    """PPO environment steps between evaluations (quick 4096, full 16384)"""
    eval_episodes: int | None = None
    """fresh episodes per evaluation of every learner (quick 100, full 500)"""
    dt_targets: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """returns the Decision Transformer is asked for, as fractions of the best return in its data"""
    minari_datasets: tuple[str, ...] = ()
    """Minari datasets of your own to learn from besides the mixtures (ids under MINARI_DATASETS_PATH or
    directories), e.g. one made with minari's DataCollector; their spaces must fit (envs.minari_io)"""

    def resolve(self, full: bool) -> OfflineBudget:
        if full:
            defaults = dict(episodes=4000, epochs=10, min_steps=1000, early_rl_steps=16_384, rl_steps=250_000,
                            eval_every=16_384, eval_episodes=500)
        else:
            defaults = dict(episodes=600, epochs=4, min_steps=60, early_rl_steps=4096, rl_steps=16_384,
                            eval_every=4096, eval_episodes=100)
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def check(self) -> None:
        if self.level not in BABYAI_LEVELS:
            raise ValueError(f"unknown level {self.level!r}; choose one of {', '.join(BABYAI_LEVELS)}")
        unknown = [m for m in self.mixtures if m not in MIXTURES]
        if unknown or not self.mixtures:
            raise ValueError(f"mixtures must be among {', '.join(MIXTURES)}; got {self.mixtures}")
        for name in ("episodes", "min_steps", "early_rl_steps", "rl_steps", "eval_every", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if not 0 < self.top_fraction <= 1:
            raise ValueError(f"top_fraction must lie in (0, 1], got {self.top_fraction}")
        if len(set(map(dataset_name, self.minari_datasets))) != len(self.minari_datasets):
            raise ValueError(f"minari_datasets must have distinct names, got {self.minari_datasets}")
        if len(self.dt_targets) < 1 or any(t < 0 for t in self.dt_targets):
            raise ValueError(f"dt_targets must be fractions >= 0 of the best return, got {self.dt_targets}")

    def counts(self) -> dict[str, dict[str, int]]:
        """Per mixture, episodes of each source (the fractions of MIXTURES, rounded, summing to ``episodes``)."""
        out = {}
        for mixture in self.mixtures:
            shares = MIXTURES[mixture]
            counts = {s: math.floor(f * self.episodes) for s, f in shares.items()}
            first = next(iter(shares))
            counts[first] += self.episodes - sum(counts.values())
            out[mixture] = {s: n for s, n in counts.items() if n > 0}
        return out


def dataset_id(budget: OfflineBudget, mixture: str) -> str:
    return f"lab/{budget.level.removeprefix('BabyAI-').removesuffix('-v0')}/{mixture}-v0"


def bc_config(budget: OfflineBudget, seed: int, top_fraction: float = 1.0) -> BabyAIBCConfig:
    """``babyai_bc``'s recipe on the shared encoder; the data is set by the run (the dependency's dataset)."""
    return recipe.bc_config(budget.level, budget.episodes, seed, steps=budget.min_steps,
                            eval_episodes=budget.eval_episodes, top_fraction=top_fraction)


def dt_config(budget: OfflineBudget, seed: int) -> BabyAIDTConfig:
    """``babyai_dt``'s recipe with the shared encoder as its state encoder, asked for the best return in its data."""
    config = BabyAIDTConfig(model=DTModelConfig(encoder=recipe.ENCODER))
    train = replace(config.train, max_steps=budget.min_steps, log_every=min(10, budget.min_steps), seed=seed,
                    quiet=True, device="auto", num_threads=1)
    data = BCDataConfig(level=budget.level, demos=budget.episodes, action_history=0)  # actions are DT's tokens
    evaluation = DTEvalConfig(episodes=budget.eval_episodes, greedy=False,
                              num_envs=min(budget.eval_episodes, recipe.EVAL_ENVS))
    return replace(config, train=train, data=data, eval=evaluation)


def jobs(budget: OfflineBudget, seeds: list[int], exp: str = "offline") -> list[Job]:
    counts = budget.counts()
    needed: dict[str, int] = {}
    for parts in counts.values():
        for source, n in parts.items():
            needed[source] = max(needed.get(source, 0), n)
    out = []
    if EARLY_PPO in needed:  # an RL checkpoint early in training, as a behaviour policy
        early = ppo_config(budget, budget.early_rl_steps, budget.early_rl_steps)
        out.append(Job(f"{exp}/ppo-checkpoint", train_agent,
                       dict(variant="ppo-checkpoint", seed=DATA_SEED + 1, config=early, log_every=2048),
                       cost=budget.early_rl_steps / 400, resumable=True))
    for source, n in needed.items():
        policy_from = f"{exp}/ppo-checkpoint" if source == EARLY_PPO else None
        out.append(Job(f"{exp}/source-{source}", collect_source,
                       dict(level=budget.level, source=source, episodes=n, seed=DATA_SEED, policy_from=policy_from,
                            action_history=recipe.ACTION_HISTORY), deps=(policy_from,) if policy_from else (),
                       cost=n / 150))
    for mixture, parts in counts.items():
        share = ", ".join(f"{n} {source}" for source, n in parts.items())
        out.append(Job(f"{exp}/dataset-{mixture}", build_dataset,
                       dict(variant=f"dataset-{mixture}", level=budget.level, dataset_id=dataset_id(budget, mixture),
                            parts={f"{exp}/source-{s}": n for s, n in parts.items()},
                            description=f"{budget.level}: {share} episodes (the DL-vs-RL lab's offline experiment)"),
                       deps=tuple(f"{exp}/source-{s}" for s in parts), cost=budget.episodes / 500))
    for dataset in budget.minari_datasets:
        out.append(Job(f"{exp}/dataset-{dataset_name(dataset)}", use_dataset,
                       dict(variant=f"dataset-{dataset_name(dataset)}", level=budget.level, dataset=dataset)))
    names = [*budget.mixtures, *map(dataset_name, budget.minari_datasets)]
    for seed in seeds:
        first = f"{exp}/dataset-{names[0]}"
        out.append(Job(f"{exp}/{UNTRAINED_BC}/seed{seed}", score_untrained_bc,
                       dict(seed=seed, config=bc_config(budget, seed), demos_from=first), deps=(first,),
                       cost=budget.eval_episodes / 30))
        out.append(Job(f"{exp}/ppo/seed{seed}", train_agent,
                       dict(variant="ppo", seed=seed, config=ppo_config(budget, budget.rl_steps, budget.eval_every),
                            log_every=min(2048, budget.rl_steps)),
                       cost=budget.rl_steps / 400 + 3 * budget.rl_steps / budget.eval_every, resumable=True))
        for mixture in names:
            data = f"{exp}/dataset-{mixture}"
            bc_cost = budget.epochs * budget.episodes * 6 / 256 / 20 + budget.eval_episodes / 30
            for method, fraction in (("bc", 1.0), ("pbc", budget.top_fraction)):
                v = method_variant(method, mixture)
                out.append(Job(f"{exp}/{v}/seed{seed}", train_bc,
                               dict(variant=v, seed=seed, config=bc_config(budget, seed, fraction), demos_from=data,
                                    min_epochs=budget.epochs), deps=(data,), cost=bc_cost * fraction,
                               gpus=GPU_SHARE))
            v = method_variant("dt", mixture)
            out.append(Job(f"{exp}/{v}/seed{seed}", train_dt,
                           dict(variant=v, seed=seed, config=dt_config(budget, seed), dataset_from=data,
                                min_epochs=budget.epochs, targets=tuple(budget.dt_targets)), deps=(data,),
                           cost=3 * bc_cost + len(budget.dt_targets) * budget.eval_episodes / 20, gpus=GPU_SHARE))
    return out


def ppo_config(budget: OfflineBudget, steps: int, eval_every: int) -> Any:
    """The agents' BabyAI PPO recipe on the shared encoder, for ``steps`` steps: the online reference, and the early
    checkpoint that logs the 'ppo-early' episodes."""
    return recipe.ppo_config(budget.level, steps, eval_every, budget.eval_episodes)


def settings(budget: OfflineBudget) -> dict[str, Any]:
    """What the analysis reads besides the budget: every dataset's composition and id."""
    return {"datasets": {m: {"id": dataset_id(budget, m), "sources": parts} for m, parts in budget.counts().items()}}
