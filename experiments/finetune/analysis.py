"""Experiment 4's analysis (:mod:`experiments.finetune`): summary rows, plots, report and TensorBoard layout.

Three baselines: the BC policy as initialised (``bc-untrained``), the cloned policy every fine-tuning run starts
from (its step 0) and PPO from scratch (whose step 0 is an untrained policy).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.curves import first_crossing
from experiments.report import budget_note, closing_lines, join, learning_sentence, ranking
from experiments.runs.baselines import UNTRAINED_BC
from experiments.summary import (
    COUNT, RATE, UNTRAINED, cost_rows, find, learning_rows, markdown_table, not_improved, rows_of, summary_row, value,
)

METRIC = "success rate"
HEADLINE = ("final success rate",)  # the closing table puts each at step 0 next to it
START = "at step 0 (before RL; scratch: untrained)"
CLONED = "success rate of the cloned policy"


def summarize(runs: list[dict[str, Any]], budget: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    untrained = {r["seed"]: r["success_rate"] for r in runs if r["variant"] == UNTRAINED_BC}
    pre = sorted((r for r in runs if r["variant"] == "bc-pretrain"), key=lambda r: r["seed"])
    if pre:
        rows.append(summary_row("pretrain", CLONED, "bc-pretrain", [r["success_rate"] for r in pre], bounds=RATE))
        rows += learning_rows("pretrain", METRIC, "bc-pretrain", [untrained.get(r["seed"]) for r in pre],
                              [r["success_rate"] for r in pre])
        rows.append(summary_row("pretrain", "expert actions (labels) consumed, with repeats", "bc-pretrain",
                                [r["labels_seen"] for r in pre], "{:,.0f}", bounds=COUNT))
        rows.append(summary_row("pretrain", "training wall time", "bc-pretrain",
                                [r["train_wall_time_s"] for r in pre], "{:.1f}", "s", bounds=COUNT))
    for strategy in budget["strategies"]:
        rs = sorted((r for r in runs if r["variant"] == strategy), key=lambda r: r["seed"])
        if not rs:
            continue

        def add(section, quantity, values, fmt="{:.3f}", unit="", bounds=COUNT):
            rows.append(summary_row(section, quantity, strategy, values, fmt, unit, bounds=bounds))

        final = [r["final_metric"] for r in rs]
        add("outcome", f"final {METRIC}", final, bounds=RATE)
        rows += learning_rows("outcome", METRIC, strategy, [r["curve"][0]["success_rate"] if r["curve"][0]["steps"] == 0
                                                            else None for r in rs], final, start=START)
        add("outcome", f"best {METRIC} during training", [max(p["success_rate"] for p in r["curve"]) for r in rs],
            bounds=RATE)
        for t in budget["thresholds"]:
            add("outcome", f"training episodes to {t:.0%} success",
                [first_crossing(r["curve"], "episodes", "success_rate", t) for r in rs], "{:,.0f}")
        rows += cost_rows("cost", strategy, rs, [("trainable parameters", "trainable_params"), ("parameters", "params"),
                                                 ("training episodes", "episodes")])
    return rows


def plot(results: dict[str, Any], plot_dir: Path) -> list[Path]:
    from experiments import plots

    budget, runs, mode = results["budget"], results["runs"], results["mode"]
    out = []
    hlines = [(t, f"{t:.0%}") for t in budget["thresholds"]]
    for x, label in (("steps", "PPO environment steps"), ("episodes", "PPO training episodes")):
        series = [plots.Series(s, [plots.points(r["curve"], x, "success_rate")
                                   for r in sorted(runs, key=lambda r: r.get("seed", 0)) if r["variant"] == s],
                               plots.style_for(s)) for s in budget["strategies"]]
        out.append(plots.curves(series, plot_dir / f"success_vs_{x}.png",
                                f"{label} (x = 0: the cloned policy; scratch: untrained)",
                                "success rate (fresh episodes)",
                                f"{budget['level']}: BC-pretrained PPO by strategy vs scratch ({mode} mode)",
                                hlines=hlines, ylim=(0, 1.04)))
    return out


def takeaway(results: dict[str, Any]) -> str:
    summary, budget = results["summary"], results["budget"]
    sentences = []
    cloned, untrained = find(summary, CLONED, "bc-pretrain"), find(summary, f"{UNTRAINED} {METRIC}", "bc-pretrain")
    if cloned:
        start = f" from {value(untrained)} untrained" if untrained and untrained["n"] else ""
        sentences.append(f"Behaviour cloning on {budget['pretrain_demos']:,} demonstrations took the policy to "
                         f"{value(cloned)} success{start}.")
    finals = {s: find(summary, f"final {METRIC}", s) for s in budget["strategies"]}
    finals = {s: r for s, r in finals.items() if r}
    measured = [r for r in finals.values() if r["n"]]
    if measured:
        parts = [f"{s} {value(r)}" for s, r in finals.items()]
        scratch0 = find(summary, f"{START} {METRIC}", "scratch")
        sentences.append(f"After {budget['rl_steps']:,} PPO steps the final success is {join(parts)}"
                         + (f" (scratch started from {value(scratch0)} untrained)" if scratch0 else "")
                         + f"; {ranking(measured)}.")
    return " ".join(sentences)


def limits(results: dict[str, Any]) -> list[str]:
    summary, budget = results["summary"], results["budget"]
    out = []
    for change in not_improved(summary):
        v = change["variant"]
        start_name = "untrained" if v in ("scratch", "bc-pretrain") else "at the start (the cloned policy)"
        start = find(summary, f"{UNTRAINED if v == 'bc-pretrain' else START} {METRIC}", v)
        final = find(summary, CLONED if v == "bc-pretrain" else f"final {METRIC}", v)
        out.append(learning_sentence(v, start, final, change, start_name))
    unreached = [t for t in budget["thresholds"]
                 if not any((r := find(summary, f"training episodes to {t:.0%} success", s)) and r["n"]
                            for s in budget["strategies"])]
    if unreached:
        out.append(f"No strategy reached {join([f'{t:.0%}' for t in unreached], 'or')} success within "
                   f"{budget['rl_steps']:,} PPO steps.")
    return out


def report(results: dict[str, Any], plot_paths: list[str]) -> str:
    budget, summary, full = results["budget"], results["summary"], results["full_budget"]
    note = budget_note(results, f"level {budget['level']}; pretraining = behaviour cloning on "
                                f"{budget['pretrain_demos']:,} bot demonstrations for {budget['bc_steps']:,} steps of "
                                f"batch 256; then PPO for {budget['rl_steps']:,} environment steps per strategy, "
                                f"evaluated at step 0 and every {budget['eval_every']:,} steps on "
                                f"{budget['eval_episodes']} fresh episodes; action head "
                                f"{'loaded from' if budget['load_head'] else 'not loaded from'} the cloned policy; "
                                f"seeds {', '.join(map(str, results['seeds']))}.",
                       f"Quick-mode budgets show the trend only; `--full` runs {full['level']} with "
                       f"{full['pretrain_demos']:,} demos and {full['rl_steps']:,} PPO steps.")
    return "\n".join([
        "## Experiment 4: fine-tuning strategies across paradigms (BabyAI)",
        "",
        "**Takeaway.** " + takeaway(results),
        "",
        "A policy pretrained with labels (behaviour cloning) is fine-tuned with rewards (PPO); each strategy "
        "decides which pretrained weights move and how fast. `scratch` is PPO without pretraining.",
        "",
        note,
        "",
        "### Pretraining (supervised, labels)",
        markdown_table(rows_of(summary, "pretrain")),
        "",
        "### Fine-tuning (RL, rewards)",
        "Step 0 is the cloned policy for every strategy but `scratch`, whose step 0 is untrained; the change is "
        "measured from there:",
        "",
        markdown_table(rows_of(summary, "outcome")),
        "",
        "### Cost",
        markdown_table(rows_of(summary, "cost")),
        "",
        *closing_lines(plot_paths, limits(results)),
    ])


def tensorboard_layout(results: dict[str, Any]) -> dict[str, Any]:
    from lab import tags

    return {f"{results['experiment']}: BC-pretrained PPO by strategy on {results['budget']['level']}": [
        ("success rate on fresh episodes vs PPO environment steps (step 0: the cloned policy; scratch: untrained)",
         [f"^{tags.SUCCESS_RATE}$"]),
    ]}
