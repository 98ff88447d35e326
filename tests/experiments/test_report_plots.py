"""The plots read at a glance and cannot mislead: markers only at recorded evaluations, every run drawn to its
own end, labels of thresholds never under the legend, one colour per paradigm, at least 1200 px wide."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.lines import Line2D
from PIL import Image

from experiments import plots
from experiments.digits import analysis as digits_analysis
from experiments.imitation import analysis as imitation_analysis
from experiments.imitation.analysis import bc_curve


@pytest.fixture(scope="module")
def figures(flagship_run, tmp_path_factory) -> dict[str, Any]:
    """Every figure the flagship's two experiments draw (``<experiment>/<file>``), kept open after saving."""
    captured: dict[str, Any] = {}
    out = tmp_path_factory.mktemp("plots")

    def keep(fig, path):  # plots.save without closing the figure
        path = Path(path)
        fig.savefig(path, format="png", dpi=plots.DPI, bbox_inches="tight")
        captured[f"{path.parent.name}/{path.name}"] = fig
        return path

    results = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "save", keep)
        for name, module in (("digits", digits_analysis), ("imitation", imitation_analysis)):
            results[name] = json.loads((flagship_run / name / "results.json").read_text())
            (out / name).mkdir()
            module.plot(results[name], out / name)
    return {"figures": captured, "results": results, "dir": out}


def marker_lines(ax) -> list[Line2D]:
    return [line for line in ax.get_lines() if line.get_marker() not in (None, "None", "", " ")]


def recorded(figures) -> list[tuple[str, int, dict[str, Any], list[list[tuple[float, float]]]]]:
    """(figure, axes index, style of a variant, its runs' recorded (x, y) evaluations) for every curve panel."""
    digits, imitation = figures["results"]["digits"], figures["results"]["imitation"]
    out = []
    for v in ("supervised", "ppo", "a2c"):
        runs = [r for r in digits["runs"] if r["variant"] == v]
        for name, key in (("accuracy_vs_samples.png", "samples"), ("accuracy_vs_wall_time.png", "wall_time_s")):
            out.append((f"digits/{name}", 0, plots.style_for(v), [[(p[key], p["accuracy"]) for p in r["curve"]]
                                                                  for r in runs]))
    name = "imitation/success_vs_demos_or_episodes.png"
    out.append((name, 0, plots.style_for("imitation"),
                [[(p["demos"], p["success_rate"]) for p in bc_curve(imitation["runs"], s)]
                 for s in imitation["seeds"]]))
    out.append((name, 1, plots.style_for("ppo"), [[(p["episodes"], p["success_rate"]) for p in r["curve"]]
                                                  for r in imitation["runs"] if r["variant"] == "ppo"]))
    return out


def test_markers_sit_at_recorded_evaluations_and_every_run_is_drawn_to_its_end(figures):
    for name, index, style, runs in recorded(figures):
        ax = figures["figures"][name].axes[index]
        lines = [line for line in ax.get_lines() if to_hex(line.get_color()) == style.color
                 and line.get_linestyle() == style.linestyle]
        as_points = [list(zip(np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)))
                     for line in lines]
        runs = [[(float(x), float(y)) for x, y in run] for run in runs]
        for run in runs:  # every run is a line of its own, with markers, drawn to its own last evaluation
            assert any(points == run for points, line in zip(as_points, lines) if line in marker_lines(ax)), \
                (name, run)
        common = set.intersection(*({x for x, _ in run} for run in runs))
        for points, line in zip(as_points, lines):
            if line not in marker_lines(ax) or points in runs:
                continue
            # a mean line with markers: only at x where every run was evaluated, at the mean of their values
            assert {x for x, _ in points} <= common, (name, line.get_label())
            if all([x for x, _ in run] == [x for x, _ in points] for run in runs):
                # every run evaluated at the same x, in order (x may repeat: two reads before the first episode
                # ends): the mean point by point
                expected = [np.mean([run[i][1] for run in runs]) for i in range(len(points))]
            else:
                expected = [np.mean([dict(run)[x] for run in runs]) for x, _ in points]
            for (x, y), want in zip(points, expected):
                assert y == pytest.approx(want), (name, x)
    # The mean over seeds on the wall-time axis ends at the mean final accuracy the report gives.
    ax = figures["figures"]["digits/accuracy_vs_wall_time.png"].axes[0]
    ppo_mean = next(line for line in ax.get_lines() if line.get_label().startswith("PPO"))
    finals = [r["curve"][-1]["accuracy"] for r in figures["results"]["digits"]["runs"] if r["variant"] == "ppo"]
    assert ppo_mean.get_ydata()[-1] == pytest.approx(np.mean(finals))


def test_untrained_point_is_on_every_curve(figures):
    for name in ("digits/accuracy_vs_samples.png", "imitation/success_vs_demos_or_episodes.png"):
        for ax in figures["figures"][name].axes:
            lines = marker_lines(ax)
            assert lines and all(float(line.get_xdata()[0]) == 0.0 for line in lines), name


def test_labels_are_never_under_a_legend_nor_clipped_and_images_are_wide(figures):
    for name, fig in figures["figures"].items():
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            box = ax.get_window_extent(renderer)
            legend = ax.get_legend()
            if legend is not None:
                assert legend.get_window_extent(renderer).y1 <= box.y0 + 1, name  # below the axes
            for text in ax.texts:
                if text.get_text().endswith("%") or "target" in text.get_text():
                    assert text.get_window_extent(renderer).x0 >= box.x1, (name, text.get_text())  # right margin
    for png in figures["dir"].rglob("*.png"):
        width, _ = Image.open(png).size
        assert width >= plots.MIN_WIDTH_PX, (png.name, width)


def test_one_colour_per_paradigm_across_plots(figures):
    colours: dict[str, set[str]] = {"supervised": set(), "imitation": set(), "rl": set()}
    for fig in figures["figures"].values():
        for ax in fig.axes:
            for line in ax.get_lines():
                label = line.get_label()
                if label.startswith("supervised"):
                    colours["supervised"].add(to_hex(line.get_color()))
                elif label.startswith("behaviour cloning"):
                    colours["imitation"].add(to_hex(line.get_color()))
                elif label.startswith(("PPO", "A2C")):
                    colours["rl"].add(to_hex(line.get_color()))
    assert colours == {k: {plots.PARADIGM_COLORS[k]} for k in colours}


def test_distinct_and_repeated_labels_are_both_drawn_and_named(figures):
    for name in ("digits/labels_vs_rewards.png", "imitation/labels_vs_rewards.png"):
        fig = figures["figures"][name]
        ticks = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
        assert any("distinct" in t for t in ticks) and any("with repeats" in t for t in ticks)
        titles = [ax.get_title() for ax in fig.axes]
        assert any("reward" in t for t in titles) and len({ax.get_ylabel() for ax in fig.axes}) == len(fig.axes)
