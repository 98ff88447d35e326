"""Experiment 1's analysis (:mod:`experiments.digits`): summary rows, plots, report and TensorBoard layout, from
``results.json`` alone."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from experiments.curves import first_crossing
from experiments.report import budget_note, closing_lines, join, learning_sentence
from experiments.summary import (
    CHANGE, COUNT, RATE, UNTRAINED, change_rows, cost_rows, find, learning_rows, markdown_table, not_improved,
    ratio_row, rows_of, summary_row, value,
)

NUM_CLASSES = 10
VARIANT_LABELS = {"supervised": "supervised (labels, cross-entropy)", "ppo": "PPO (reward only)",
                  "a2c": "A2C (reward only)"}
COLUMN_LABELS = {"supervised": "supervised (labels)", "ppo": "PPO (rewards)", "a2c": "A2C (rewards)"}
NAMES = {"supervised": "labels (supervised)", "ppo": "PPO", "a2c": "A2C"}
BITS_PER_LABEL = math.log2(NUM_CLASSES)  # a label names one of 10 classes: at most log2(10) = 3.32 bits
BITS_PER_REWARD = 1.0  # a 0/1 reward says right or wrong: at most 1 bit
METRIC = "test accuracy"
HEADLINE = ("final test accuracy", "samples to 90% test accuracy", "training wall time")  # final summary table
DISTINCT = "distinct labelled training images seen (upper bound)"


def training_images() -> int:
    """Size of the training split both paradigms draw from (the distinct images a label can name)."""
    from lab.data import digits_splits

    return len(digits_splits().train.y)


def summarize(runs: list[dict[str, Any]], budget: dict[str, Any]) -> list[dict[str, Any]]:
    """Summary rows per variant over seeds: goal, signal, complexity, learning (step 0 and the change from it),
    and the ratios the takeaway quotes."""
    rows: list[dict[str, Any]] = []
    variants = [v for v in ["supervised", *budget["algos"]] if any(r["variant"] == v for r in runs)]
    images = training_images()
    for v in variants:
        rs = sorted((r for r in runs if r["variant"] == v), key=lambda r: r["seed"])

        def add(section, quantity, values, fmt="{:.3f}", unit="", bounds=COUNT):
            rows.append(summary_row(section, quantity, v, values, fmt, unit, bounds=bounds))

        final = [r["curve"][-1]["accuracy"] for r in rs]
        add("goal", f"final {METRIC}", final, bounds=RATE)
        add("goal", f"best {METRIC} during training", [max(p["accuracy"] for p in r["curve"]) for r in rs],
            bounds=RATE)
        rows += learning_rows("goal", METRIC, v, [r["curve"][0]["accuracy"] if r["curve"][0]["samples"] == 0
                                                  else None for r in rs], final)
        add("goal", f"change of {METRIC} over the last evaluation interval",
            [r["curve"][-1]["accuracy"] - r["curve"][-2]["accuracy"] if len(r["curve"]) > 1 else None for r in rs],
            "{:+.3f}", bounds=(None, None))
        add("signal", "labels consumed (with repeats)", [r["labels_seen"] for r in rs], "{:,.0f}")
        add("signal", DISTINCT, [min(r["labels_seen"], images) for r in rs], "{:,.0f}")
        add("signal", "reward signals consumed", [r["rewards_seen"] for r in rs], "{:,.0f}")
        add("signal", "feedback information, upper bound", [r["labels_seen"] * BITS_PER_LABEL
                                                            + r["rewards_seen"] * BITS_PER_REWARD for r in rs],
            "{:,.0f}", "bits")
        for t in budget["thresholds"]:
            add("signal", f"samples to {t:.0%} {METRIC}",
                [first_crossing(r["curve"], "samples", "accuracy", t) for r in rs], "{:,.0f}")
        rows += cost_rows("complexity", v, rs, [("parameters (whole model / policy)", "params"),
                                                ("FLOPs per forward pass, one image", "flops"),
                                                ("gradient updates", "updates")])
        for t in budget["thresholds"]:
            add("complexity", f"wall time to {t:.0%} {METRIC}",
                [first_crossing(r["curve"], "wall_time_s", "accuracy", t) for r in rs], "{:.1f}", "s")
    for algo in budget["algos"]:  # what the takeaway quotes, kept as rows: every number of the report is here
        for t in budget["thresholds"]:
            q = f"samples to {t:.0%} {METRIC}"
            rows += ratio_row(f"{q}, {algo} / supervised", algo, find(rows, q, algo), find(rows, q, "supervised"))
        q = "training wall time"
        rows += ratio_row(f"{q}, {algo} / supervised", algo, find(rows, q, algo), find(rows, q, "supervised"))
    return rows


# ------------------------------------------------------------------------------------------------------ plots
def plot(results: dict[str, Any], plot_dir: Path) -> list[Path]:
    from experiments import plots

    runs, budget, summary = results["runs"], results["budget"], results["summary"]
    variants = [v for v in ["supervised", *budget["algos"]] if any(r["variant"] == v for r in runs)]
    hlines = [(t, f"{t:.0%}") for t in budget["thresholds"]]
    mode = results["mode"]

    def series(x_key: str) -> list[plots.Series]:
        by_seed = sorted(runs, key=lambda r: r["seed"])
        return [plots.Series(VARIANT_LABELS[v], [plots.points(r["curve"], x_key, "accuracy")
                                                 for r in by_seed if r["variant"] == v], plots.style_for(v))
                for v in variants]

    ylim = (0, 1.04)
    out = [
        plots.curves(series("samples"), plot_dir / "accuracy_vs_samples.png",
                     "training samples (labels or reward signals); x = 0: the untrained net",
                     "test accuracy (359 images)",
                     f"Digits: the same net, labels vs rewards ({mode} mode; band: 95% Student-t over seeds)",
                     hlines=hlines, ylim=ylim),
        plots.curves(series("wall_time_s"), plot_dir / "accuracy_vs_wall_time.png",
                     "training wall time (s, evaluation excluded; noisy on a shared machine)",
                     "test accuracy (359 images)",
                     f"Digits: accuracy against wall time ({mode} mode; a finished run counts with its final value)",
                     hlines=hlines, ylim=ylim),
    ]

    def bars(quantity: str) -> list[tuple[str, dict | None, Any]]:
        return [(COLUMN_LABELS[v], find(summary, quantity, v), plots.style_for(v)) for v in variants]

    sup = plots.style_for("supervised")
    panels = [
        plots.BarPanel("labels: repeated vs distinct", "labels",
                       [("labels consumed\n(with repeats)", find(summary, "labels consumed (with repeats)",
                                                                "supervised"), sup),
                        ("distinct labelled\nimages seen", find(summary, DISTINCT, "supervised"),
                         plots.Style(sup.color, hatch="//"))]),
        plots.BarPanel("reward signals (right / wrong)", "reward signals", bars("reward signals consumed")),
        plots.BarPanel("feedback information, upper bound", "bits", bars("feedback information, upper bound")),
    ]
    out.append(plots.bar_panels(panels, plot_dir / "labels_vs_rewards.png",
                                f"Digits: what each paradigm was told over one run ({mode} mode; dots: seeds; "
                                "hatched: distinct)"))
    return out


# ----------------------------------------------------------------------------------------------------- report
def _threshold(summary: list[dict[str, Any]], budget: dict[str, Any]) -> float:
    """The highest threshold every supervised seed reached and some RL seed too (else the lowest)."""
    chosen = budget["thresholds"][0]
    for t in budget["thresholds"]:
        sup = find(summary, f"samples to {t:.0%} {METRIC}", "supervised")
        rl = [find(summary, f"samples to {t:.0%} {METRIC}", a) for a in budget["algos"]]
        if sup and sup["n"] == sup["n_total"] and any(r and r["n"] for r in rl):
            chosen = t
    return chosen


def takeaway(results: dict[str, Any]) -> str:
    """Two or three sentences computed from the summary rows (every number is one of them)."""
    summary, budget = results["summary"], results["budget"]
    algos = [a for a in budget["algos"] if find(summary, f"final {METRIC}", a)]
    t = _threshold(summary, budget)
    q = f"samples to {t:.0%} {METRIC}"
    sup = find(summary, q, "supervised")
    sentences = []
    if sup and sup["n"]:
        parts = []
        for a in algos:
            row, ratio = find(summary, q, a), find(summary, f"{q}, {a} / supervised", a)
            if row and row["n"] and ratio:
                seeds = "" if row["n"] == row["n_total"] else f" in {row['n']} of {row['n_total']} seeds"
                parts.append(f"{NAMES[a]} after {value(row, seeds=False)}{seeds} ({value(ratio, unit=False)}x as many)")
            else:
                parts.append(f"{NAMES[a]} not within the {budget['samples']:,}-sample budget")
        sentences.append(f"With labels the net reached {t:.0%} test accuracy after {value(sup)} samples; with "
                         f"rewards only, {join(parts)}.")
    finals = [f"{value(row)} " + ("with labels" if v == "supervised" else f"for {NAMES[v]}")
              for v in ["supervised", *algos] if (row := find(summary, f"final {METRIC}", v))]
    untrained = sorted((u for v in ["supervised", *algos] if (u := find(summary, f"{UNTRAINED} {METRIC}", v))),
                       key=lambda u: u["mean"])
    start = value(untrained[0]) + (f"-{value(untrained[-1])}" if value(untrained[-1]) != value(untrained[0]) else "")
    sentences.append(f"After {budget['samples']:,} samples the final test accuracy is {join(finals)}, starting "
                     f"from {start} untrained (chance: one class in ten).")
    walls = []
    for a in algos:
        wall, ratio = find(summary, "training wall time", a), find(summary, f"training wall time, {a} / supervised", a)
        if wall and ratio:
            walls.append(f"{value(wall)} for {NAMES[a]} ({value(ratio, unit=False)}x)")
    sup_wall = find(summary, "training wall time", "supervised")
    if sup_wall and walls:
        sentences.append(f"Training took {value(sup_wall)} of wall time with labels vs {join(walls)}.")
    return " ".join(sentences)


def limits(results: dict[str, Any]) -> list[str]:
    """What this budget could not show, one bullet each (computed from the rows)."""
    summary, budget, mode = results["summary"], results["budget"], results["mode"]
    full_samples = results["full_budget"]["samples"]
    out = []
    flagged = {r["variant"] for r in not_improved(summary)}
    for v, change in change_rows(summary, METRIC).items():
        if v in flagged:
            out.append(learning_sentence(NAMES[v], find(summary, f"{UNTRAINED} {METRIC}", v),
                                         find(summary, f"final {METRIC}", v), change))
    lowest = budget["thresholds"][0]
    for v in budget["algos"]:
        reached = find(summary, f"samples to {lowest:.0%} {METRIC}", v)
        if v in flagged or not reached or reached["n"] == reached["n_total"]:
            continue
        final, change = find(summary, f"final {METRIC}", v), find(summary, f"{CHANGE} {METRIC}", v)
        trend = find(summary, f"change of {METRIC} over the last evaluation interval", v)
        rising = (f"; it was still rising at the end ({value(trend)} over its last {budget['eval_every']:,} "
                  "samples)" if trend and trend["n"] and trend["mean"] > 0 else "")
        how_many = "no seed" if not reached["n"] else f"{reached['n']} of {reached['n_total']} seeds"
        out.append(f"{NAMES[v]} ended at {value(final)} test accuracy, {value(change)} above its untrained "
                   f"point{rising}, and {how_many} reached {lowest:.0%}: at {budget['samples']:,} samples it "
                   "is slower, not shown to be broken"
                   + (f" (`--full`: {full_samples:,} samples per run)." if mode == "quick" else "."))
    unreached = [t for t in budget["thresholds"]
                 if not any((r := find(summary, f"samples to {t:.0%} {METRIC}", v)) and r["n"]
                            for v in ["supervised", *budget["algos"]])]
    if unreached:
        out.append(f"No variant reached {join([f'{t:.0%}' for t in unreached], 'or')} test accuracy within "
                   f"{budget['samples']:,} samples.")
    out.append(f"Wall times come from one shared machine (load average at the end "
               f"{', '.join(f'{x:.2f}' for x in results['machine']['load_average'] or [])}): they rank the "
               "paradigms; the sample counts compare them.")
    return out


def report(results: dict[str, Any], plot_paths: list[str]) -> str:
    """The experiment's markdown section, every number taken from ``results`` (its summary rows)."""
    budget, summary = results["budget"], results["summary"]
    algos = [a for a in budget["algos"] if find(summary, "parameters (whole model / policy)", a)]
    note = budget_note(results, f"{budget['samples']:,} training samples per run (supervised examples = RL "
                                f"environment steps), test accuracy at step 0 and every {budget['eval_every']:,} "
                                f"samples, seeds {', '.join(map(str, results['seeds']))}.",
                       "Quick mode stops far below the full budget "
                       f"(`--full`: {results['full_budget']['samples']:,} samples, 5 seeds); its numbers show the "
                       "trend, not the end point.")
    params = {v: find(summary, "parameters (whole model / policy)", v) for v in ["supervised", *algos]}
    lines = [
        "## Experiment 1: same data, two signals (digits)",
        "",
        "**Takeaway.** " + takeaway(results),
        "",
        "One separable-conv net, the same training images and the same 359 test images. Supervised: each "
        "image comes with its label and the net minimises cross-entropy. RL: the net is the policy of a one-step "
        "bandit; it answers with a class and is told only whether that answer was right (reward 1 or 0).",
        "",
        note,
        "",
        "### 1. Definition and goal",
        "Deep (supervised) learning fits a function to labelled examples; RL learns a policy that maximises "
        "reward. Here both goals are the same test accuracy, so they can be compared directly. The untrained "
        "net (step 0) is the baseline each variant must beat:",
        "",
        markdown_table(rows_of(summary, "goal"), labels=COLUMN_LABELS),
        "",
        "### 2. How each learns: labels vs rewards",
        f"A label names the right class (up to log2(10) = {BITS_PER_LABEL:.2f} bits); a reward says only whether "
        "one guess was right (at most 1 bit). Labels are counted with repeats (each training image is seen "
        "several times) and as distinct images; then the samples each needed to reach a test accuracy:",
        "",
        markdown_table(rows_of(summary, "signal"), labels=COLUMN_LABELS),
        "",
        "### 3. Where each applies",
        "The supervised run needs a correct label for every training image (an annotator); the RL runs never see "
        "a label, only a judge that says right or wrong, and they pay for it in samples (section 2). With labels "
        "at hand supervised learning is the tool; RL applies where only an outcome can be scored (games, "
        "control, the BabyAI levels of experiment 2 without an expert).",
        "",
        "### 4. Model complexity and iterations needed",
        "The conv body is identical; the RL policy adds a projection and a value head ("
        + " vs ".join(f"{params[v]['mean']:,.0f} {name}" for v, name in [("supervised", "supervised"),
                                                                           *((a, a.upper()) for a in algos)]
                      if params[v] and params[v]["n"]) + " parameters).",
        "",
        markdown_table(rows_of(summary, "complexity"), labels=COLUMN_LABELS),
        "",
        *closing_lines(plot_paths, limits(results)),
    ]
    return "\n".join(lines)


def tensorboard_layout(results: dict[str, Any]) -> dict[str, Any]:
    """Custom-scalars charts of this experiment: ``{title: [(chart title, [tag regex, ...]), ...]}``."""
    from lab import tags

    return {f"{results['experiment']}: labels vs rewards on digits (one net, same test split)": [
        ("test accuracy vs samples (labels = supervised, rewards = PPO / A2C)", [f"^{tags.ACCURACY}$"]),
    ]}  # only digits runs write this tag; label / reward counts are shared with BabyAI runs, so not charted here
