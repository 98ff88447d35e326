"""Experiment 3's analysis (:mod:`experiments.optimizers`): summary rows, plots, report and TensorBoard layout.

Each optimizer is run in two paradigms (two tasks: supervised digits, PPO on the digits bandit); besides the
per-paradigm rows, an optimizer's final accuracy over both tasks is aggregated rliable-style (IQM with a
stratified-bootstrap interval), which ranks the optimizers without letting one paradigm dominate.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.curves import first_crossing
from experiments.digits.analysis import COLUMN_LABELS, VARIANT_LABELS
from experiments.optimizers.variants import PARADIGMS, TUNED
from experiments.report import budget_note, closing_lines, join, learning_sentence, ranking
from experiments.summary import (
    COUNT, RATE, UNTRAINED, aggregate_row, find, format_estimate, learning_rows, markdown_table, not_improved,
    rows_of, summary_row, value,
)
from lab.optim import get_optimizer_info

METRIC = "test accuracy"
HEADLINE = ("final test accuracy",)
BOTH = "final test accuracy, both paradigms"


def summarize(runs: list[dict[str, Any]], budget: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    t = budget["threshold"]
    quantities = [
        ("final", f"final {METRIC}", lambda r: r["curve"][-1]["accuracy"], "{:.3f}", "", RATE),
        ("final", f"best {METRIC} during training", lambda r: max(p["accuracy"] for p in r["curve"]), "{:.3f}", "",
         RATE),
        ("threshold", f"samples to {t:.0%} {METRIC}",
         lambda r: first_crossing(r["curve"], "samples", "accuracy", t), "{:,.0f}", "", COUNT),
        ("threshold", f"wall time to {t:.0%} {METRIC}",
         lambda r: first_crossing(r["curve"], "wall_time_s", "accuracy", t), "{:.1f}", "s", COUNT),
        ("cost", "training wall time", lambda r: r["train_wall_time_s"], "{:.1f}", "s", COUNT),
        ("cost", "run CPU time (incl. evaluation)", lambda r: r["job_cpu_time_s"], "{:.1f}", "s", COUNT),
    ]

    def runs_of(variant: str) -> list[dict[str, Any]]:
        return sorted((r for r in runs if r["variant"] == variant), key=lambda r: r["seed"])

    # every optimizer at its registry rate, then (after `--tune-trials`) at its tuned rate: "<name>-tuned"
    names = [n + suffix for suffix in ("", TUNED) for n in budget["optimizers"]]

    def note(name: str) -> str:
        return "lr tuned" if name.endswith(TUNED) else f"lr {get_optimizer_info(name).default_lr:g}"

    for section, quantity, get, fmt, unit, bounds in quantities:
        for paradigm in PARADIGMS:
            for name in names:
                rs = runs_of(f"{paradigm}-{name}")
                if rs:
                    rows.append(summary_row(section, quantity, f"{paradigm}-{name}", [get(r) for r in rs], fmt, unit,
                                            note=note(name), bounds=bounds))
        if quantity == f"final {METRIC}":  # the untrained point and the change from it, right after
            for paradigm in PARADIGMS:
                for name in names:
                    rs = runs_of(f"{paradigm}-{name}")
                    if rs:
                        for row in learning_rows("final", METRIC, f"{paradigm}-{name}",
                                                 [r["curve"][0]["accuracy"] if r["curve"][0]["samples"] == 0 else None
                                                  for r in rs], [r["curve"][-1]["accuracy"] for r in rs]):
                            row["note"] = note(name)
                            rows.append(row)
    for name in names:
        scores = {p: [r["curve"][-1]["accuracy"] for r in runs_of(f"{p}-{name}")] for p in PARADIGMS}
        if any(scores.values()):
            rows.append(aggregate_row("aggregate", BOTH, f"both-{name}", scores, note=note(name)))
    return rows


def label(row: dict[str, Any]) -> str:
    """A table's line for a row: ``adam (0.001)``, or ``adam, tuned lr``."""
    name = row["variant"].split("-", 1)[1]
    return f"{name.removesuffix(TUNED)}, tuned lr" if name.endswith(TUNED) else f"{name} ({row['note'][3:]})"


def plot(results: dict[str, Any], plot_dir: Path) -> list[Path]:
    from experiments import plots

    budget, summary, runs = results["budget"], results["summary"], results["runs"]
    names = list(budget["optimizers"])
    t = budget["threshold"]
    mode = results["mode"]

    def series(quantity: str) -> dict[str, tuple[list, Any]]:
        return {VARIANT_LABELS[p]: ([find(summary, quantity, f"{p}-{n}") for n in names], plots.style_for(p))
                for p in PARADIGMS}

    paths = [
        plots.grouped_bars(names, series(f"final {METRIC}"), plot_dir / "final_accuracy.png", "final test accuracy",
                           f"Optimizers: final test accuracy, labels vs rewards ({mode} mode; dots: seeds; "
                           "whiskers: 95% Student-t)"),
        plots.grouped_bars(names, series(f"samples to {t:.0%} {METRIC}"), plot_dir / "samples_to_threshold.png",
                           "training samples", f"Optimizers: samples to {t:.0%} test accuracy ({mode} mode; "
                           "n/a = no seed reached it)"),
    ]
    for paradigm in PARADIGMS:
        by_seed = sorted(runs, key=lambda r: r["seed"])
        series_list = [plots.Series(n, [plots.points(r["curve"], "samples", "accuracy") for r in by_seed
                                        if r["variant"] == f"{paradigm}-{n}"], plots.optimizer_style(n, names))
                       for n in names]
        paths.append(plots.curves(series_list, plot_dir / f"curves_{paradigm}.png",
                                  "training samples (x = 0: the untrained net)", "test accuracy (359 images)",
                                  f"{VARIANT_LABELS[paradigm]}: test accuracy per optimizer ({mode} mode)",
                                  hlines=[(t, f"{t:.0%}")], ylim=(0, 1.04)))
    return paths


def takeaway(results: dict[str, Any]) -> str:
    summary, budget = results["summary"], results["budget"]
    t = budget["threshold"]
    both = sorted((r for r in summary if r["quantity"] == BOTH and r["n"]), key=lambda r: -r["iqm"])
    sentences = []

    def at(r: dict[str, Any]) -> str:
        return f"{r['variant'].split('-', 1)[1]} at {value(r)}"

    if both:
        def name(r: dict[str, Any]) -> str:
            return f"{r['variant'].removeprefix('both-')} (IQM {r['fmt'].format(r['iqm'])})"

        sentences.append(f"Over both paradigms, final test accuracy after {budget['samples']:,} samples: "
                         f"{ranking(both, name)}" + (f"; the lowest is {name(both[-1])}" if len(both) > 1 else "")
                         + ".")
    for paradigm in PARADIGMS:
        finals = [r for r in summary if r["quantity"] == f"final {METRIC}" and r["variant"].startswith(paradigm + "-")
                  and r["n"]]
        if not finals:
            continue
        reached = [r["variant"].split("-", 1)[1] for r in summary
                   if r["quantity"] == f"samples to {t:.0%} {METRIC}" and r["variant"].startswith(paradigm + "-")
                   and r["n"] == r["n_total"]]
        sentences.append(f"With {'labels' if paradigm == 'supervised' else 'rewards (PPO)'}: "
                         f"{ranking(finals, at)}; "
                         + (f"every seed reached {t:.0%} with {join(reached)}." if reached else
                            f"no optimizer brought every seed to {t:.0%}."))
    return " ".join(sentences)


def limits(results: dict[str, Any]) -> list[str]:
    summary = results["summary"]
    out = []
    for change in not_improved(summary):
        v = change["variant"]
        out.append(learning_sentence(f"{v.split('-', 1)[1]} ({COLUMN_LABELS[v.split('-', 1)[0]]})",
                                     find(summary, f"{UNTRAINED} {METRIC}", v), find(summary, f"final {METRIC}", v),
                                     change))
    tuning = results.get("tuning")
    if tuning is None:
        out.append("Every optimizer runs at its registry learning rate in both paradigms: this compares the "
                   "defaults, not tuned optimizers (a fair ranking gives each the same tuning budget: "
                   "`--tune-trials N`).")
    else:
        out.append(f"Each rate was tuned with {tuning['trials_per_variant']} trials on one training seed "
                   f"({tuning['training_seed']}) and the validation split: a rate that won by luck at that seed "
                   "shows as a tuned result no better than the default one over the test seeds.")
    return out


def tuning_section(results: dict[str, Any]) -> list[str]:
    """The tuned rates beside the registry's, per paradigm: rate, validation accuracy of the best trial, final
    test accuracy and samples to the threshold at both rates (``[]`` without ``--tune-trials``)."""
    tuning, summary, budget = results.get("tuning"), results["summary"], results["budget"]
    if not tuning:
        return []
    t = budget["threshold"]
    final, reach = f"final {METRIC}", f"samples to {t:.0%} {METRIC}"

    def cell(quantity: str, variant: str) -> str:
        row = find(summary, quantity, variant)
        return format_estimate(row) if row else "not run"

    out = ["### Tuned learning rates (Ray Tune) beside the registry's",
           f"{tuning['search']}, {tuning['trials_per_variant']} trials per optimizer and paradigm, {tuning['space']}; "
           f"metric: {tuning['metric']} on the validation split, training seed {tuning['training_seed']}. The tuned "
           "rates then ran over the test seeds; test accuracy is on the test split, which tuning never saw.", ""]
    for paradigm in PARADIGMS:
        out += [f"**{COLUMN_LABELS[paradigm]}**", "",
                f"| optimizer | registry lr | tuned lr | best trial's val. accuracy | {final}, registry lr | "
                f"{final}, tuned lr | {reach}, registry lr | {reach}, tuned lr |",
                "|---|---|---|---|---|---|---|---|"]
        for name in budget["optimizers"]:
            best = tuning["best"].get(f"{paradigm}-{name}")
            if best is None:
                continue
            variant = f"{paradigm}-{name}"
            out.append(f"| {name} | {get_optimizer_info(name).default_lr:g} | {best['lr']:.3g} | "
                       f"{best['val_accuracy']:.3f} ({best['trials']} trials) | {cell(final, variant)} | "
                       f"{cell(final, variant + TUNED)} | {cell(reach, variant)} | {cell(reach, variant + TUNED)} |")
        out.append("")
    return out


def report(results: dict[str, Any], plot_paths: list[str]) -> str:
    budget, summary = results["budget"], results["summary"]
    lrs = ", ".join(f"{n} {get_optimizer_info(n).default_lr:g}" for n in budget["optimizers"])
    note = budget_note(results, f"{budget['samples']:,} samples per run, test accuracy at step 0 and every "
                                f"{budget['eval_every']:,} samples, seeds {', '.join(map(str, results['seeds']))}.",
                       f"The full mode trains {results['full_budget']['samples']:,} samples with 5 seeds; quick "
                       "numbers show the trend only.")
    aggregate = rows_of(summary, "aggregate")
    return "\n".join([
        "## Experiment 3: the optimizers in both paradigms (digits, labels vs rewards)",
        "",
        "**Takeaway.** " + takeaway(results),
        "",
        "The same separable-conv net as experiment 1, trained with labels (supervised) and as a PPO policy on the "
        f"digits bandit (reward only), once per optimizer, each at its registry learning rate ({lrs}) and weight "
        f"decay {results['settings']['weight_decay']:g} in both paradigms"
        + ("; then again at the rate its search chose (rows 'tuned lr', section 'Tuned learning rates')."
           if results.get("tuning") else "."),
        "",
        note,
        "",
        *_tables(summary, "final"),
        "### Both paradigms together",
        "Final test accuracy of every run of an optimizer, both paradigms: the interquartile mean (IQM) with a "
        "stratified-bootstrap 95% interval (seeds resampled within each paradigm, as rliable aggregates tasks):",
        "",
        markdown_table(aggregate, corner="optimizer (lr)", row_of=label,
                       column_of=lambda r: "both paradigms") if aggregate else "",
        "",
        *tuning_section(results),
        f"### Samples and wall time to {budget['threshold']:.0%} test accuracy",
        *_tables(summary, "threshold"),
        "### Cost",
        *_tables(summary, "cost"),
        *closing_lines(plot_paths, limits(results)),
    ])


def _tables(summary: list[dict[str, Any]], section: str) -> list[str]:
    """One table per quantity: a line per optimizer, a column per paradigm."""
    out = []
    rows = rows_of(summary, section)
    for quantity in dict.fromkeys(r["quantity"] for r in rows):
        chosen = [r for r in rows if r["quantity"] == quantity]
        unit = f" ({chosen[0]['unit']})" if chosen[0]["unit"] else ""
        out += [f"**{quantity}{unit}**", "",
                markdown_table(chosen, columns=PARADIGMS, labels=COLUMN_LABELS, corner="optimizer (lr)",
                               row_of=label, column_of=lambda r: r["variant"].split("-", 1)[0]), ""]
    return out


def tensorboard_layout(results: dict[str, Any]) -> dict[str, Any]:
    from lab import tags

    return {f"{results['experiment']}: optimizers on digits, labels vs rewards": [
        ("test accuracy vs samples (every optimizer, both paradigms)", [f"^{tags.ACCURACY}$"]),
    ]}
