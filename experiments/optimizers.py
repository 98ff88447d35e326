"""Experiment 3, *the optimizers in both paradigms*: every optimizer of ``lab.optim`` trains the same digits net
with labels (supervised task ``digits``) and as a PPO policy on ``lab/DigitsBandit-v0`` (reward only).

Each optimizer uses its registry learning rate (``lab.optim.OPTIMIZERS[name].default_lr``) and the same weight
decay (5e-4 on matrices and kernels) in both paradigms, so neither side gets tuned rates; everything else is experiment 1's setup (:mod:`experiments.digits`): the
same conv net, data, PPO settings, evaluation on the same test split.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from experiments import digits
from experiments.common import find_row, first_crossing, markdown_table, mean_curve, rows_of, summary_row
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


def summarize(runs: list[dict[str, Any]], budget: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    t = budget["threshold"]
    quantities = [
        ("final", "final test accuracy", lambda r: r["curve"][-1]["accuracy"], "{:.3f}", ""),
        ("final", "best test accuracy during training", lambda r: max(p["accuracy"] for p in r["curve"]), "{:.3f}",
         ""),
        ("threshold", f"samples to {t:.0%} test accuracy",
         lambda r: first_crossing(r["curve"], "samples", "accuracy", t), "{:,.0f}", ""),
        ("threshold", f"wall time to {t:.0%} test accuracy",
         lambda r: first_crossing(r["curve"], "wall_time_s", "accuracy", t), "{:.1f}", "s"),
        ("cost", "training wall time", lambda r: r["train_wall_time_s"], "{:.1f}", "s"),
        ("cost", "run CPU time (incl. evaluation)", lambda r: r["job_cpu_time_s"], "{:.1f}", "s"),
    ]
    for section, quantity, value, fmt, unit in quantities:
        for paradigm in PARADIGMS:
            for name in budget["optimizers"]:
                variant = f"{paradigm}-{name}"
                rs = sorted((r for r in runs if r["variant"] == variant), key=lambda r: r["seed"])
                if rs:
                    lr = get_optimizer_info(name).default_lr
                    rows.append(summary_row(section, quantity, variant, [value(r) for r in rs], fmt, unit,
                                            note=f"lr {lr:g}"))
    return rows


def plot(results: dict[str, Any], plot_dir: Path) -> list[Path]:
    from experiments import plots

    budget, summary, runs = results["budget"], results["summary"], results["runs"]
    names = budget["optimizers"]
    t = budget["threshold"]

    def series(quantity: str) -> dict[str, list]:
        out = {}
        for paradigm in PARADIGMS:
            rows = []
            for name in names:
                try:
                    rows.append(find_row(summary, quantity, f"{paradigm}-{name}"))
                except KeyError:
                    rows.append(None)
            out[digits.VARIANT_LABELS[paradigm]] = rows
        return out

    mode = results["mode"]
    paths = [
        plots.bars(list(names), series("final test accuracy"), plot_dir / "final_accuracy.png", "final test accuracy",
                   f"Optimizers: final test accuracy, labels vs rewards ({mode} mode, 95% CI)"),
        plots.bars(list(names), series(f"samples to {t:.0%} test accuracy"), plot_dir / "samples_to_threshold.png",
                   "training samples", f"Optimizers: samples to {t:.0%} test accuracy ({mode} mode; n/a = not reached)"),
    ]
    for paradigm in PARADIGMS:
        curves = {name: mean_curve([r["curve"] for r in runs if r["variant"] == f"{paradigm}-{name}"],
                                   "samples", "accuracy") for name in names}
        paths.append(plots.curves(curves, plot_dir / f"curves_{paradigm}.png", "training samples", "test accuracy",
                                  f"{digits.VARIANT_LABELS[paradigm]}: test accuracy per optimizer ({mode} mode)",
                                  hlines=[(t, f"{t:.0%}")], ylim=(0, 1.02)))
    return paths


def report(results: dict[str, Any], plot_paths: list[str]) -> str:
    budget, summary = results["budget"], results["summary"]
    lrs = ", ".join(f"{n} {get_optimizer_info(n).default_lr:g}" for n in budget["optimizers"])
    mode = results["mode"]
    note = (f"**{mode.capitalize()}-mode budget**: {budget['samples']:,} samples per run, test accuracy every "
            f"{budget['eval_every']:,} samples, seeds {', '.join(map(str, results['seeds']))}.")
    if mode == "quick":
        full = OptimizersBudget().resolve(True)
        note += f" The full mode trains {full.samples:,} samples with 5 seeds; quick numbers show the trend only."
    return "\n".join([
        "## Experiment 3: the optimizers in both paradigms (digits, labels vs rewards)",
        "",
        "The same separable-conv net as experiment 1, trained with labels (supervised) and as a PPO policy on the "
        f"digits bandit (reward only), once per optimizer, each at its registry learning rate ({lrs}) and weight "
        f"decay {WEIGHT_DECAY:g} in both paradigms.",
        "",
        note,
        "",
        *_tables(summary, "final"),
        f"### Samples and wall time to {budget['threshold']:.0%} test accuracy",
        *_tables(summary, "threshold"),
        "### Cost",
        *_tables(summary, "cost"),
        "Plots: " + ", ".join(f"[{Path(p).name}]({p})" for p in plot_paths),
    ])


def _tables(summary: list[dict[str, Any]], section: str) -> list[str]:
    """One table per quantity: a line per optimizer, a column per paradigm."""
    out = []
    rows = rows_of(summary, section)
    for quantity in dict.fromkeys(r["quantity"] for r in rows):
        chosen = [r for r in rows if r["quantity"] == quantity]
        unit = f" ({chosen[0]['unit']})" if chosen[0]["unit"] else ""
        out += [f"**{quantity}{unit}**", "",
                markdown_table(chosen, columns=PARADIGMS, labels=digits.COLUMN_LABELS, corner="optimizer (lr)",
                               row_of=lambda r: f"{r['variant'].split('-', 1)[1]} ({r['note'][3:]})",
                               column_of=lambda r: r["variant"].split("-", 1)[0]), ""]
    return out
