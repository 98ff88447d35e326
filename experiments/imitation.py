"""Experiment 2, *imitation vs RL* on BabyAI: behaviour cloning from the bot vs PPO, the same fusion encoder.

Behaviour cloning is the supervised task ``babyai_bc`` (:mod:`supervised.babyai_bc`): the bot's action at every
step of its demonstrations is a label. PPO learns from the level's reward alone, with the agents' BabyAI recipe
(``agents.presets.PRESETS["babyai-gotoredballgrey"]``: 16 envs, lr 5e-4 -> 0, entropy 0.005, MLP heads of 64
on the CLS + image-cell states, the readout that reached 99% in the RL spike) but with behaviour cloning's
encoder: the same ``lab.FusionTransformer`` options (width, heads, layers, activation) over the same inputs
(view, direction, mission and the previous actions). ``--budget.rl-readout cls`` gives PPO exactly the cloned
policy's architecture instead (CLS state -> linear action head). Both are scored by the success rate on the
same fresh episodes, never a demonstration's (``supervised.babyai_bc.evaluate_policy``'s seed rule), with
actions sampled from the policy by default (a greedy policy can loop forever in a partially observed maze).

The BabyAI paper's sample-efficiency table reports the minimum number of demonstrations (imitation) or of
episodes (RL) to reach 99% success. Here BC is trained on growing prefixes of one demo collection and PPO's
success is tracked against its training episodes, so both numbers are measured the same way; the paper's
ranges sit in their own column and on the plot.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from experiments.common import find_row, first_crossing, markdown_table, mean_curve, rows_of, summary_row
from experiments.runner import Job

LEVELS = ("BabyAI-GoToRedBallGrey-v0", "BabyAI-GoToRedBall-v0", "BabyAI-GoToLocal-v0")
# BabyAI paper (Chevalier-Boisvert et al., ICLR 2019), sample efficiency: minimum demonstrations (IL) and
# episodes (RL) for 99% success, as ranges over their runs. Published numbers, not measured here.
PAPER = {
    "BabyAI-GoToRedBallGrey-v0": {"il": (8_430, 12_400), "rl": (15_900, 17_400)},
    "BabyAI-GoToRedBall-v0": {"il": (49_700, 62_000), "rl": (261_000, 334_000)},
    "BabyAI-GoToLocal-v0": {"il": (148_000, 193_000), "rl": (903_000, 1_114_000)},
}
TARGET = 0.99  # the paper's success threshold
HEADLINE = ("final success rate", f"minimum demonstrations to {TARGET:.0%} success",
            f"training episodes to {TARGET:.0%} success")
READOUTS = ("flat", "cls")


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
    """PPO environment steps per run (quick 8192, full 1000000)"""
    eval_every: int | None = None
    """PPO environment steps between evaluations (quick 4096, full 32768)"""
    eval_episodes: int | None = None
    """fresh episodes per success-rate evaluation (quick 100, full 500)"""
    greedy: bool = False
    """evaluate with argmax actions instead of sampling from the policy"""
    rl_readout: str = "flat"
    """PPO's readout of the shared encoder: flat (the agents' BabyAI recipe: CLS + image cells -> MLP heads) or
    cls (the cloned policy's own: CLS -> linear heads)"""
    thresholds: tuple[float, ...] = (0.5, 0.9, TARGET)
    """success rates for 'demonstrations / episodes to threshold' (the paper's is 0.99)"""
    demos_dir: str | None = None
    """reuse (and extend) a demonstration directory across invocations; default: a fresh one in the output"""

    def resolve(self, full: bool) -> ImitationBudget:
        if full:
            defaults = dict(level=LEVELS[1], demo_counts=(1000, 4000, 16000, 64000), bc_steps=1000, bc_epochs=5,
                            rl_steps=1_000_000, eval_every=32_768, eval_episodes=500)
        else:
            defaults = dict(level=LEVELS[0], demo_counts=(50, 200, 800), bc_steps=30, bc_epochs=8, rl_steps=8192,
                            eval_every=4096, eval_episodes=100)
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def check(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"unknown level {self.level!r}; choose one of {', '.join(LEVELS)}")
        if not self.demo_counts or min(self.demo_counts) < 1:
            raise ValueError(f"demo_counts must be positive numbers of demonstrations, got {self.demo_counts}")
        for name in ("bc_steps", "rl_steps", "eval_every", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.bc_epochs < 0:
            raise ValueError(f"bc_epochs must be >= 0, got {self.bc_epochs}")
        if self.rl_readout not in READOUTS:
            raise ValueError(f"unknown rl_readout {self.rl_readout!r}; choose one of {', '.join(READOUTS)}")


def bc_config(budget: ImitationBudget, num_demos: int, seed: int):
    """``babyai_bc``'s own recipe (model, optimizer, action history) with the budget's steps and evaluation."""
    from supervised.babyai_bc import BabyAIBCConfig, BCDataConfig, BCEvalConfig

    config = BabyAIBCConfig()
    train = replace(config.train, max_steps=budget.bc_steps, log_every=min(10, budget.bc_steps), seed=seed,
                    quiet=True, device="cpu", num_threads=1)
    data = BCDataConfig(level=budget.level, demos=num_demos)  # demo_dir: set by the run to the shared collection
    evaluation = BCEvalConfig(episodes=budget.eval_episodes, greedy=budget.greedy,
                              num_envs=min(budget.eval_episodes, 100))
    return replace(config, train=train, data=data, eval=evaluation)


def ppo_agent(budget: Any, rl_steps: int, readout: str) -> dict[str, Any]:
    """``make_agent`` arguments: the agents' BabyAI PPO recipe with behaviour cloning's fusion encoder.

    ``readout="flat"``: the recipe's MLP heads (64) on the CLS + image-cell states; ``"cls"``: linear action and
    value heads on the CLS state, the cloned policy's own architecture (its head then loads too).
    """
    from agents.presets import PRESETS
    from supervised.babyai_bc import BCDataConfig, BCModelConfig

    model, data = BCModelConfig(), BCDataConfig()
    encoder = dict(d_model=model.d_model, num_heads=model.num_heads, num_layers=model.num_layers,
                   dim_feedforward=model.dim_feedforward, dropout=model.dropout, activation=model.activation,
                   pooling="flat" if readout == "flat" else model.pooling)
    preset = PRESETS["babyai-gotoredballgrey"]
    n_steps = max(1, min(preset.algo_kwargs["n_steps"], rl_steps // preset.n_envs))
    algo_kwargs = dict(n_steps=n_steps, batch_size=min(preset.algo_kwargs["batch_size"], n_steps * preset.n_envs))
    overrides = dict(env_id=f"lab/{budget.level}", encoder_kwargs=encoder, algo_kwargs=algo_kwargs,
                     env_kwargs=dict(action_history=data.action_history))
    agent = preset.agent_kwargs(**overrides)
    agent["encoder_kwargs"] = encoder  # all of the encoder is behaviour cloning's, none of the preset's
    if readout == "cls":
        agent["policy_kwargs"] = {**agent["policy_kwargs"], "net_arch": dict(pi=[], vf=[])}
    return agent


def rl_job(exp: str, budget: Any, seed: int, readout: str, variant: str = "ppo", finetune: str | None = None,
           pretrained_from: str | None = None, load_head: bool = False) -> Job:
    """A PPO run of the budget (``finetune``: a strategy of ``agents.finetune`` for a pretrained encoder)."""
    from experiments.rl_runs import train_agent

    agent = ppo_agent(budget, budget.rl_steps, readout)
    if finetune is not None:
        agent["finetune"] = finetune
    return Job(f"{exp}/{variant}/seed{seed}", train_agent,
               dict(variant=variant, seed=seed, timesteps=budget.rl_steps, agent=agent,
                    pretrained_from=pretrained_from, load_head=load_head, eval_every=budget.eval_every,
                    eval_episodes=budget.eval_episodes, greedy_eval=budget.greedy,
                    log_every=min(2048, budget.rl_steps)),
               deps=(pretrained_from,) if pretrained_from else (),
               cost=budget.rl_steps / 100 + 3 * budget.rl_steps / budget.eval_every)


def demos_job(exp: str, budget: ImitationBudget) -> Job:
    from experiments.bc import collect

    count = max(budget.demo_counts)
    return Job(f"{exp}/demos", collect, dict(level=budget.level, episodes=count, demos_dir=budget.demos_dir),
               label=f"{exp}/demos ({count} bot demonstrations)", cost=count / 150)


def bc_steps_estimate(budget: ImitationBudget, demos: int, steps_per_demo: float = 6.0) -> int:
    """Roughly how many steps ``train_bc`` will take (the real count uses the demonstrations' length)."""
    return max(budget.bc_steps, int(budget.bc_epochs * demos * steps_per_demo / 256))


def bc_variant(n: int) -> str:
    return f"bc-{n}demos"


def jobs(budget: ImitationBudget, seeds: list[int], exp: str = "imitation") -> list[Job]:
    from experiments.bc import train_bc

    demos = demos_job(exp, budget)
    out = [demos]
    for seed in seeds:
        out.append(rl_job(exp, budget, seed, budget.rl_readout))
        for n in budget.demo_counts:
            out.append(Job(f"{exp}/{bc_variant(n)}/seed{seed}", train_bc,
                           dict(variant=bc_variant(n), seed=seed, config=bc_config(budget, n, seed),
                                demos_from=demos.id, min_epochs=budget.bc_epochs), deps=(demos.id,),
                           cost=bc_steps_estimate(budget, n) * 256 / 700 + budget.eval_episodes / 30))
    return out


# ------------------------------------------------------------------------------------------------ analysis
def _bc_curve(runs: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """One seed's BC success against its number of demonstrations (one BC run per point)."""
    points = [r for r in runs if r["paradigm"] == "imitation" and r["seed"] == seed]
    return [{"demos": r["demos"], "success_rate": r["success_rate"], "samples": r["samples"],
             "wall_time_s": r["train_wall_time_s"]} for r in sorted(points, key=lambda r: r["demos"])]


def summarize(runs: list[dict[str, Any]], budget: dict[str, Any]) -> list[dict[str, Any]]:
    level = budget["level"]
    paper = PAPER[level]
    runs = [r for r in runs if r.get("paradigm") in ("imitation", "rl")]
    seeds = sorted({r["seed"] for r in runs})
    rows: list[dict[str, Any]] = []
    bc_variants = [bc_variant(n) for n in budget["demo_counts"]]

    def per(variant: str) -> list[dict[str, Any]]:
        return sorted((r for r in runs if r["variant"] == variant), key=lambda r: r["seed"])

    def add(section, quantity, variant, values, fmt="{:.3f}", unit="", reference=None):
        rows.append(summary_row(section, quantity, variant, values, fmt, unit, reference))

    for v in [*bc_variants, "ppo"]:
        rs = per(v)
        if not rs:
            continue
        add("goal", "final success rate", v, [r["final_metric"] for r in rs])
        add("signal", "demonstrations used", v, [r.get("demos", 0) for r in rs], "{:,.0f}")
        add("signal", "distinct expert actions (labelled steps) in the training set", v,
            [r.get("demo_steps", 0) for r in rs], "{:,.0f}")
        add("signal", "expert actions (labels) consumed", v, [r["labels_seen"] for r in rs], "{:,.0f}")
        add("signal", "environment episodes played", v, [r.get("episodes", 0) if r["paradigm"] == "rl" else 0
                                                          for r in rs], "{:,.0f}")
        add("signal", "reward signals consumed (environment steps)", v, [r["rewards_seen"] for r in rs], "{:,.0f}")
        add("complexity", "parameters", v, [r["params"] for r in rs], "{:,.0f}")
        add("complexity", "of which the shared fusion encoder", v, [r["encoder_params"] for r in rs], "{:,.0f}")
        add("complexity", "FLOPs per forward pass, one observation", v, [r["flops"] for r in rs], "{:,.0f}")
        add("complexity", "gradient updates", v, [r["updates"] for r in rs], "{:,.0f}")
        add("complexity", "training wall time", v, [r["train_wall_time_s"] for r in rs], "{:.1f}", "s")
        add("complexity", "run CPU time (incl. evaluation)", v, [r["job_cpu_time_s"] for r in rs], "{:.1f}", "s")
    ppo = per("ppo")
    il_ref = f"BabyAI paper, {level}: {paper['il'][0]:,}-{paper['il'][1]:,} demos (IL)"
    rl_ref = f"BabyAI paper, {level}: {paper['rl'][0]:,}-{paper['rl'][1]:,} episodes (RL)"
    for t in budget["thresholds"]:
        target = t == TARGET
        if any(per(v) for v in bc_variants):
            add("efficiency", f"minimum demonstrations to {t:.0%} success", "bc",
                [first_crossing(_bc_curve(runs, s), "demos", "success_rate", t) for s in seeds], "{:,.0f}",
                reference=il_ref if target else None)
        if ppo:
            add("efficiency", f"training episodes to {t:.0%} success", "ppo",
                [first_crossing(r["curve"], "episodes", "success_rate", t) for r in ppo], "{:,.0f}",
                reference=rl_ref if target else None)
            add("efficiency", f"environment steps to {t:.0%} success", "ppo",
                [first_crossing(r["curve"], "steps", "success_rate", t) for r in ppo], "{:,.0f}")
    return rows


def plot(results: dict[str, Any], plot_dir: Path) -> list[Path]:
    from experiments import plots

    budget, runs = results["budget"], results["runs"]
    level, mode = budget["level"], results["mode"]
    paper = PAPER[level]
    seeds = sorted({r["seed"] for r in runs if r.get("paradigm") == "imitation"})
    series = {}
    if seeds:
        series["behaviour cloning: x = demonstrations"] = mean_curve([_bc_curve(runs, s) for s in seeds],
                                                                     "demos", "success_rate")
    ppo = [r["curve"] for r in runs if r["variant"] == "ppo"]
    if ppo:
        series["PPO: x = training episodes"] = mean_curve(ppo, "episodes", "success_rate")
    spans = [(*paper["il"], "paper: IL demos to 99%"), (*paper["rl"], "paper: RL episodes to 99%")]
    out = [plots.curves(series, plot_dir / "success_vs_demos_or_episodes.png", "demonstrations (BC) / episodes (PPO)",
                        "success rate (fresh episodes)", f"{level}: imitation vs RL ({mode} mode, 95% CI)",
                        hlines=[(TARGET, "99% (paper's target)")], spans=spans, logx=True, ylim=(0, 1.02))]
    summary = results["summary"]
    variants = [bc_variant(n) for n in budget["demo_counts"]] + ["ppo"]
    variants = [v for v in variants if any(r["variant"] == v for r in runs)]
    quantities = ["expert actions (labels) consumed", "reward signals consumed (environment steps)"]
    out.append(plots.bars(["expert actions (labels)", "reward signals"],
                          {v: [find_row(summary, q, v) for q in quantities] for v in variants},
                          plot_dir / "labels_vs_rewards.png", "count over one run",
                          f"{level}: what each run was told ({mode} mode)"))
    return out


def report(results: dict[str, Any], plot_paths: list[str]) -> str:
    budget, summary, mode = results["budget"], results["summary"], results["mode"]
    demos = next((r for r in results["runs"] if r.get("paradigm") == "expert"), None)
    sampling = "argmax actions" if budget["greedy"] else "actions sampled from the policy"
    readout = ("CLS + image-cell states -> MLP heads of 64 (the agents' BabyAI recipe)" if budget["rl_readout"] == "flat"
               else "CLS state -> linear heads (the cloned policy's architecture)")
    note = (f"**{mode.capitalize()}-mode budget**: level {budget['level']}; behaviour cloning (`babyai_bc`'s recipe) "
            f"on the first {', '.join(f'{n:,}' for n in budget['demo_counts'])} bot demonstrations, batch 256, "
            f"{budget['bc_epochs']:g} passes over the demonstrations but at least {budget['bc_steps']:,} optimizer "
            f"steps; PPO for {budget['rl_steps']:,} environment steps, evaluated every {budget['eval_every']:,}, "
            f"readout {readout}; success rates over {budget['eval_episodes']} fresh episodes with {sampling}; "
            f"seeds {', '.join(map(str, results['seeds']))}.")
    if mode == "quick":
        full = ImitationBudget().resolve(True)
        note += (f" Quick mode is orders of magnitude below the paper's budgets and cannot reach 99% success: it "
                 f"shows the trend. `--full` runs {full.level} with up to {max(full.demo_counts):,} demos and "
                 f"{full.rl_steps:,} PPO steps per seed.")
    if demos:
        note += (f" The bot's demonstrations: {demos['collected']:,} collected in {demos['collect_wall_time_s']:.1f} s"
                 + (f", {demos['reused']:,} reused from `{demos['demos_dir']}`" if demos["reused"] else "") + ".")
    labels = {bc_variant(n): f"BC, {n:,} demos" for n in budget["demo_counts"]} | {"ppo": "PPO (reward)"}
    return "\n".join([
        "## Experiment 2: imitation vs RL (BabyAI)",
        "",
        "Behaviour cloning copies the bot's action at every step of its demonstrations (cross-entropy on "
        "labelled steps); PPO only sees the level's reward (1 - 0.9 x steps / max_steps on success, else 0). "
        "Both read the observation (view, direction, mission, previous actions) with the same fusion-transformer "
        "encoder.",
        "",
        note,
        "",
        "### 1. Definition and goal",
        "Imitation fits the expert's labelled actions; RL maximises the return. Both are judged by the success "
        "rate on fresh episodes:",
        "",
        markdown_table(rows_of(summary, "goal"), labels=labels),
        "",
        "### 2. How each learns: demonstrations vs episodes",
        markdown_table(rows_of(summary, "signal"), labels=labels),
        "",
        "Samples to a success rate, next to the BabyAI paper's minimum for 99% (published, not measured here):",
        "",
        markdown_table(rows_of(summary, "efficiency"), labels={"bc": "behaviour cloning", "ppo": "PPO"}),
        "",
        "### 3. Where each applies",
        "Imitation needs an expert that can act (here a scripted bot; in general people or a planner) and "
        "copies it; RL needs only a reward and an environment it may try things in, and pays in episodes.",
        "",
        "### 4. Model complexity and iterations needed",
        markdown_table(rows_of(summary, "complexity"), labels=labels),
        "",
        "Plots: " + ", ".join(f"[{Path(p).name}]({p})" for p in plot_paths),
    ])
