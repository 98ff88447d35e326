"""Matplotlib (Agg) figures of the experiments: mean curves with 95% bands, grouped bars, reference ranges."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never opens a window (and works without a display)
import matplotlib.pyplot as plt  # noqa: E402

from lab.io import atomic_write  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def save(fig: Any, path: Path) -> Path:
    """Write a figure as PNG atomically and close it."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def curves(series: Mapping[str, Mapping[str, Sequence[float]]], path: Path, xlabel: str, ylabel: str, title: str,
           hlines: Sequence[tuple[float, str]] = (), spans: Sequence[tuple[float, float, str]] = (),
           logx: bool = False, ylim: tuple[float, float] | None = None) -> Path:
    """One line per series (``{"x", "mean", "low", "high"}`` from ``common.mean_curve``) with its 95% band.

    ``hlines``: (y, label) dashed lines such as thresholds; ``spans``: (x_low, x_high, label) shaded ranges
    such as published references.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (label, s) in enumerate(series.items()):
        if not s["x"]:
            continue
        color = COLORS[i % len(COLORS)]
        ax.plot(s["x"], s["mean"], label=label, color=color, marker="o", markersize=2.5, linewidth=1.5)
        ax.fill_between(s["x"], s["low"], s["high"], color=color, alpha=0.2, linewidth=0)
    for y, label in hlines:
        ax.axhline(y, color="grey", linestyle="--", linewidth=0.8)
        ax.annotate(label, xy=(0.01, y), xycoords=("axes fraction", "data"), fontsize=7, color="grey",
                    va="bottom")
    for j, (low, high, label) in enumerate(spans):
        ax.axvspan(low, high, color=COLORS[(len(series) + j) % len(COLORS)], alpha=0.15, label=label)
    if logx:
        ax.set_xscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def bars(groups: Sequence[str], series: Mapping[str, Sequence[dict[str, Any]]], path: Path, ylabel: str,
         title: str, logy: bool = False) -> Path:
    """Grouped bars: for each series (legend) one bar per group, height = a summary row's mean, whisker = CI."""
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(groups) + 2), 4.2))
    width = 0.8 / max(len(series), 1)
    for i, (label, rows) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        means = [r["mean"] if r and r["n"] else 0.0 for r in rows]
        errors = [[max(r["mean"] - r["ci_low"], 0) if r and r["n"] else 0 for r in rows],
                  [max(r["ci_high"] - r["mean"], 0) if r and r["n"] else 0 for r in rows]]
        ax.bar(xs, means, width=width, label=label, color=COLORS[i % len(COLORS)], yerr=errors, capsize=2)
        for x, r in zip(xs, rows):
            if r is not None and r["n"] == 0:
                ax.annotate("n/a", (x, 0), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20 if len(groups) > 4 else 0, fontsize=8)
    if logy:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return save(fig, path)
