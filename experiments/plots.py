"""Matplotlib (Agg) figures of the experiments, drawn so they read at a glance and cannot mislead.

- One style per paradigm for every plot of the lab (:data:`STYLES`): supervised (labels) blue, imitation
  (demonstrations) green, RL (rewards) orange-red; variants of one paradigm differ by line style and marker.
  Optimizers and fine-tuning strategies, compared within one paradigm, get one fixed colour each.
- Curves: every seed as a thin line drawn to its own end, with markers only at its real evaluations; the mean
  over seeds on top (markers and a Student-t band only where all seeds were evaluated at the same x, bands for
  at most three series; elsewhere a finished run counts with its final value, so the mean ends at the mean
  final value the report gives).
- Threshold and reference labels sit in the right margin, legends below the axes: neither covers the other or
  is clipped. Quantities of different units get their own panels. At least 1200 px wide.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never opens a window (and works without a display)
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from experiments.stats import estimate  # noqa: E402
from lab.io import atomic_write  # noqa: E402

DPI = 120
PANEL_WIDTH_IN = 12.5  # x DPI = 1500 px for one panel (~1290 after trimming); several panels get more
MIN_WIDTH_PX = 1200
MAX_BANDS = 3  # more series than this: no interval bands (they would hide each other); the seeds' lines remain


@dataclass(frozen=True)
class Style:
    color: str
    linestyle: str = "-"
    marker: str = "o"
    hatch: str | None = None  # bars only: hatched = distinct counts (vs the same count with repeats)


# One colour per paradigm, defined once for the whole lab.
SUPERVISED, IMITATION, RL, UNTRAINED_COLOR = "#1f77b4", "#2ca02c", "#d95f02", "#7f7f7f"
PARADIGM_COLORS = {"supervised": SUPERVISED, "imitation": IMITATION, "rl": RL}
STYLES: dict[str, Style] = {
    "supervised": Style(SUPERVISED),
    "imitation": Style(IMITATION, "-", "D"),
    "ppo": Style(RL, "-", "o"),
    "a2c": Style(RL, "--", "s"),
    "memory-ppo": Style(RL, "-.", "^"),  # PPO with a transformer memory over the episode (agents.MemoryPPO)
    "untrained": Style(UNTRAINED_COLOR, ":", "x"),
}
# Compared within one paradigm: a fixed colour per optimizer / strategy (never a paradigm's colour).
# Nine colours told apart at a glance (the full optimizers plot showed three browns), with a marker each too.
PALETTE = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79", "#222222", "#e6ab02", "#7b4173"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<"]
STRATEGY_COLORS = {"frozen": "#9467bd", "top": "#17becf", "discriminative": "#8c564b", "full": "#e377c2",
                   "scratch": RL}


def optimizer_style(name: str, names: Sequence[str]) -> Style:
    """The same colour for an optimizer in every plot (its position in the registry's order)."""
    from lab.optim import optimizer_names

    order = list(optimizer_names()) + [n for n in names if n not in optimizer_names()]
    index = order.index(name)
    return Style(PALETTE[index % len(PALETTE)], ["-", "--", "-."][index // len(PALETTE) % 3],
                 _MARKERS[index % len(_MARKERS)])


def style_for(key: str) -> Style:
    """The style of a variant key (``supervised``, ``ppo``, ``a2c``, ``imitation``, ``untrained``, a strategy)."""
    if key in STYLES:
        return STYLES[key]
    if key in STRATEGY_COLORS:
        return Style(STRATEGY_COLORS[key])
    raise KeyError(f"no plot style for {key!r}")


@dataclass
class Series:
    """One variant on a curve panel: per-seed evaluation points ``[(x, y), ...]`` (real evaluations only)."""

    label: str
    runs: list[list[tuple[float, float]]]
    style: Style


def save(fig: Any, path: Path) -> Path:
    """Write a figure as PNG atomically and close it."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight"))
    plt.close(fig)
    return path


def figure(panels: int = 1, height: float = 5.2, width_per_panel: float | None = None,
           ratios: Sequence[float] | None = None) -> tuple[Any, list[Any]]:
    """A figure of ``panels`` axes side by side (relative widths ``ratios``), at least :data:`MIN_WIDTH_PX` wide."""
    width = max(PANEL_WIDTH_IN, (width_per_panel or 6.5) * (sum(ratios) if ratios else panels))
    fig, axes = plt.subplots(1, panels, figsize=(width, height), squeeze=False,
                             gridspec_kw=dict(width_ratios=list(ratios)) if ratios else None)
    return fig, list(axes[0])


def points(curve: Sequence[Mapping[str, Any]], x_key: str, y_key: str) -> list[tuple[float, float]]:
    """The (x, y) evaluations of one run's curve (points without a y are left out)."""
    return [(float(p[x_key]), float(p[y_key])) for p in curve if p.get(y_key) is not None]


def mean_over_seeds(runs: Sequence[Sequence[tuple[float, float]]],
                    bounds: tuple[float | None, float | None] = (None, None)) -> dict[str, Any]:
    """The mean curve of several runs. ``shared``: every run was evaluated at the same x (the usual case for
    samples / steps); then the mean, a Student-t band, and markers are at those x. Otherwise (wall time,
    episodes) each run is interpolated on the union of all x, held at its final value after its own end."""
    runs = [r for r in runs if r]
    if not runs:
        return {"x": [], "mean": [], "low": [], "high": [], "shared": True}
    xs = [np.array([p[0] for p in r]) for r in runs]
    ys = [np.array([p[1] for p in r]) for r in runs]
    shared = all(len(x) == len(xs[0]) and np.array_equal(x, xs[0]) for x in xs)
    if shared:
        grid, matrix = xs[0], np.stack(ys)
    else:
        grid = np.unique(np.concatenate(xs))
        matrix = np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys)])  # np.interp holds the end values
    estimates = [estimate(list(matrix[:, i]), bounds) for i in range(matrix.shape[1])]
    return {"x": grid.tolist(), "mean": [e.mean for e in estimates], "low": [e.low for e in estimates],
            "high": [e.high for e in estimates], "shared": shared}


def draw_curves(ax: Any, series: Sequence[Series], xlabel: str, ylabel: str, title: str,
                hlines: Sequence[tuple[float, str]] = (), spans: Sequence[tuple[float, float, str, str]] = (),
                xscale: str = "linear", linthresh: float = 1.0, ylim: tuple[float, float] | None = None,
                bounds: tuple[float | None, float | None] = (0.0, 1.0), xticks: Sequence[float] = ()) -> None:
    """Per-seed thin lines with markers at their evaluations, the mean over seeds on top (see the module
    docstring); ``hlines``: (y, label) dashed thresholds labelled in the right margin; ``spans``: (x_low, x_high,
    label, colour) shaded ranges such as published references (in the legend); ``bounds``: the metric's range
    (the band is clipped to it); ``xticks``: the x values to label on a symlog axis (e.g. a grid of demonstration
    counts), instead of its powers of 10 up to them (those beyond still get labelled)."""
    for s in series:
        for run in s.runs:
            if run:
                x, y = zip(*run)
                ax.plot(x, y, color=s.style.color, linestyle=s.style.linestyle, linewidth=0.8, alpha=0.45,
                        marker=s.style.marker, markersize=3, markerfacecolor="none")
        m = mean_over_seeds(s.runs, bounds)
        if not m["x"]:
            continue
        n = len([r for r in s.runs if r])
        label = f"{s.label} (mean of {n} seeds; thin: each seed)" if n > 1 else s.label
        ax.plot(m["x"], m["mean"], color=s.style.color, linestyle=s.style.linestyle, linewidth=2.2, label=label,
                marker=s.style.marker if m["shared"] else None, markersize=6)
        if m["shared"] and n > 1 and len(series) <= MAX_BANDS:
            ax.fill_between(m["x"], m["low"], m["high"], color=s.style.color, alpha=0.12, linewidth=0)
    for low, high, label, color in spans:
        ax.axvspan(low, high, color=color, alpha=0.18, label=label)
    if xscale == "symlog":  # linear up to linthresh (so x = 0, the untrained point, shows), logarithmic after
        ax.set_xscale("symlog", linthresh=linthresh)
        high = max(ax.get_xlim()[1], linthresh * 10)
        decades = range(math.ceil(math.log10(linthresh * 1.5)), math.floor(math.log10(high)) + 1)
        powers = [10 ** k for k in decades if not xticks or 10 ** k > 2 * max(xticks)]  # past the labelled ones
        ax.set_xticks([0, *xticks, *powers])
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    elif xscale != "linear":
        ax.set_xscale(xscale)
    if ylim is not None:
        ax.set_ylim(*ylim)
    for y, label in hlines:
        ax.axhline(y, color="grey", linestyle="--", linewidth=0.9)
        ax.annotate(label, xy=(1.005, y), xycoords=("axes fraction", "data"), fontsize=9, color="dimgrey",
                    va="center", ha="left", annotation_clip=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    legend_below(ax)


def legend_below(ax: Any, ncol: int = 2) -> None:
    """The legend under the axes (never over a curve or a label)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=ncol, fontsize=9,
                  frameon=False)


def curves(series: Sequence[Series], path: Path, xlabel: str, ylabel: str, title: str, **kwargs: Any) -> Path:
    """One curve panel (:func:`draw_curves`) as a PNG."""
    fig, (ax,) = figure(1)
    draw_curves(ax, series, xlabel, ylabel, title, **kwargs)
    return save(fig, path)


@dataclass
class BarPanel:
    """One quantity (one unit) of a bar figure: a bar per variant from its summary row (None: no row)."""

    title: str
    ylabel: str
    bars: list[tuple[str, dict[str, Any] | None, Style]]  # (label, summary row, style)
    logy: bool = False


def draw_bars(ax: Any, panel: BarPanel) -> None:
    """Bars at the mean, every seed's value as a dot, the interval as a whisker only where there is one
    (n >= 2 and a non-zero width); the value written above each bar; 'n/a' where no seed had a value."""
    top = 0.0
    for i, (label, row, style) in enumerate(panel.bars):
        if row is None or not row["n"]:
            ax.annotate("n/a", (i, 0), ha="center", va="bottom", fontsize=9)
            continue
        ax.bar(i, row["mean"], width=0.6, color=style.color, alpha=0.85, hatch=style.hatch, edgecolor="white")
        values = [v for v in row["values"] if v is not None]
        ax.scatter([i] * len(values), values, color="black", s=12, zorder=3)
        if row["n"] > 1 and row["ci_high"] > row["ci_low"]:
            ax.errorbar(i, row["mean"], yerr=[[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]],
                        color="black", capsize=4, linewidth=1)
        height = max([row["mean"], row["ci_high"] if row["n"] > 1 else row["mean"], *values])
        top = max(top, height)
        ax.annotate(row["fmt"].format(row["mean"]), (i, height), ha="center", va="bottom", fontsize=9,
                    xytext=(0, 3), textcoords="offset points")
    ax.set_xticks(range(len(panel.bars)))
    ax.set_xticklabels([b[0] for b in panel.bars], fontsize=9)
    if panel.logy:
        ax.set_yscale("symlog", linthresh=1)
    elif top > 0:
        ax.set_ylim(0, top * 1.15)
    ax.set_ylabel(panel.ylabel)
    ax.set_title(panel.title, fontsize=11)
    ax.grid(alpha=0.3, axis="y")


def bar_panels(panels: Sequence[BarPanel], path: Path, title: str) -> Path:
    """Bar panels side by side, one per quantity (each with its own y axis and unit)."""
    ratios = [max(len(p.bars), 1.5) for p in panels]  # a bar is as wide in every panel
    fig, axes = figure(len(panels), height=5.0, width_per_panel=1.6, ratios=ratios)
    for ax, panel in zip(axes, panels):
        draw_bars(ax, panel)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return save(fig, path)


def grouped_bars(groups: Sequence[str], series: Mapping[str, tuple[Sequence[dict[str, Any] | None], Style]],
                 path: Path, ylabel: str, title: str) -> Path:
    """Grouped bars (a group per optimizer, a bar per paradigm), every seed as a dot, whiskers where there
    is an interval, 'n/a' where no seed had a value."""
    fig, (ax,) = figure(1)
    width = 0.8 / max(len(series), 1)
    for i, (label, (rows, style)) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        for x, row in zip(xs, rows):
            if row is None or not row["n"]:
                ax.annotate("n/a", (x, 0), ha="center", va="bottom", fontsize=8)
                continue
            ax.bar(x, row["mean"], width=width, color=style.color, alpha=0.85, edgecolor="white",
                   label=label if x == xs[0] or not ax.get_legend_handles_labels()[1].count(label) else None)
            values = [v for v in row["values"] if v is not None]
            ax.scatter([x] * len(values), values, color="black", s=10, zorder=3)
            if row["n"] > 1 and row["ci_high"] > row["ci_low"]:
                ax.errorbar(x, row["mean"], yerr=[[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]],
                            color="black", capsize=3, linewidth=1)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3, axis="y")
    legend_below(ax)
    return save(fig, path)
