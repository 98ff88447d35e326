"""The analysis half of each experiment: summary rows from the runs, plots, the report and the TensorBoard
layout, all computed from ``results.json`` alone (``python -m experiments report DIR`` re-renders them).

:mod:`experiments.analysis.digits`, ``.imitation``, ``.optimizers`` and ``.finetune`` each provide
``summarize(runs, budget)``, ``plot(results, plot_dir)``, ``report(results, plot_paths)`` and
``tensorboard_layout(results)``; the experiment modules re-export them. This module holds the wording they
share: a row's value as the report prints it, ratios kept as summary rows (so the takeaway's numbers are
in ``results.json`` too), and the sentences for variants that did not learn.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.common import CHANGE, summary_row


def value(row: dict[str, Any], unit: bool = True, seeds: bool = True) -> str:
    """A row's mean as the report prints it (its own format), with its unit and, when some seeds have no
    value, how many do."""
    text = row["fmt"].format(row["mean"]) + (f" {row['unit']}" if unit and row["unit"] else "")
    return text + (f" ({row['n']}/{row['n_total']} seeds)" if seeds and row["n"] < row["n_total"] else "")


def join(items: Sequence[str], last: str = "and") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


def find(summary: list[dict[str, Any]], quantity: str, variant: str) -> dict[str, Any] | None:
    return next((r for r in summary if r["quantity"] == quantity and r["variant"] == variant), None)


def ratio_row(quantity: str, variant: str, numerator: dict[str, Any] | None, denominator: dict[str, Any] | None,
              fmt: str = "{:.1f}") -> list[dict[str, Any]]:
    """``[row]`` holding numerator mean / denominator mean (section ``ratio``, what the takeaway quotes), or
    ``[]`` when either has no value. ``ratio_of`` names the two rows."""
    if not numerator or not denominator or not numerator["n"] or not denominator["n"] or not denominator["mean"]:
        return []
    row = summary_row("ratio", quantity, variant, [numerator["mean"] / denominator["mean"]], fmt, unit="x")
    row["ratio_of"] = [[numerator["quantity"], numerator["variant"]], [denominator["quantity"], denominator["variant"]]]
    return [row]


def change_rows(summary: list[dict[str, Any]], metric: str) -> dict[str, dict[str, Any]]:
    """Variant -> its change-from-step-0 row of ``metric``."""
    return {r["variant"]: r for r in summary if r["quantity"] == f"{CHANGE} {metric}"}


def learning_sentence(label: str, start: dict[str, Any], final: dict[str, Any], change: dict[str, Any],
                      start_name: str = "untrained") -> str:
    """Why a variant is flagged: it did not improve beyond its interval (or has one seed only)."""
    interval = (f"{change['fmt'].format(change['mean'])} [{change['fmt'].format(change['ci_low'])}, "
                f"{change['fmt'].format(change['ci_high'])}]")
    if change.get("improved") is None:
        return (f"{label}: {value(final)} after training vs {value(start)} {start_name}, one seed only, so there "
                "is no interval to tell learning from evaluation noise.")
    return (f"{label} did not improve beyond its interval: {value(start)} {start_name}, {value(final)} at the "
            f"end, change {interval}. At this budget it shows no learning; that says nothing about where it ends.")


def closing_lines(plot_paths: Sequence[str], limits: Sequence[str]) -> list[str]:
    """The end of every report: links to its plots, then what the budget could not show."""
    plots = ["Plots: " + ", ".join(f"[{Path(p).name}]({p})" for p in plot_paths)]
    if not limits:  # no empty heading
        return plots
    return [*plots, "", "### What this budget could not show", *[f"- {line}" for line in limits]]
