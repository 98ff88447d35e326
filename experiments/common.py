"""What every experiment shares: seeds, summary rows over seeds, curves, the results files and the report tables.

A *summary row* is one measured quantity of one variant over seeds: its per-seed values, mean, IQM, 95%
interval (:mod:`experiments.stats`: Student-t, clipped to the quantity's range), how many seeds produced a
value (e.g. reached a threshold) and, where one exists, the published reference, kept in its own field. The
report prints rows exactly as stored in ``results.json``, formatted with the row's own ``fmt`` (with fewer than
10 seeds every seed's value next to the aggregate), so every number in the report can be traced back.

Every variant also gets its *untrained* point (step 0) and the paired change from it (:func:`learning_rows`):
a row flags a variant whose change is not above 0 beyond its interval, i.e. that did not visibly learn.
"""
from __future__ import annotations

import csv
import io
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.stats import INTERVAL_METHOD, IQM_MIN_VALUES, estimate, improved, iqm, stratified_bootstrap
from lab.io import atomic_write_text, write_json

QUICK_SEEDS = 3  # quick mode: the fewest seeds with a (wide) interval in a few minutes
FULL_SEEDS = 5  # full mode
RESULTS_JSON = "results.json"
RUNS_CSV = "runs.csv"
SUMMARY_CSV = "summary.csv"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"
PER_SEED_MAX = 9  # with fewer than 10 seeds a cell shows every seed's value next to the aggregate
RATE = (0.0, 1.0)  # the range of an accuracy or success rate: its interval is clipped to it
COUNT = (0.0, None)  # a count or a time is never negative
UNTRAINED = "untrained (step 0)"  # quantity prefix of the untrained point of a variant
CHANGE = "change from step 0 (final - step 0)"  # quantity prefix of the paired change


def seed_list(count: int) -> list[int]:
    """Seeds 1..count (seed 0 is left out: ``seed<N>`` directories then count from 1)."""
    return list(range(1, count + 1))


# ------------------------------------------------------------------------------------------------ summary rows
def summary_row(section: str, quantity: str, variant: str, values: Sequence[float | None], fmt: str = "{:.3f}",
                unit: str = "", reference: str | None = None, note: str = "",
                bounds: tuple[float | None, float | None] = (None, None)) -> dict[str, Any]:
    """One quantity of one variant over seeds (``None`` = this seed produced no value, e.g. never reached).

    ``bounds``: the quantity's range (:data:`RATE`, :data:`COUNT`); its interval is clipped to it.
    """
    clean = [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in values]
    e = estimate(clean, bounds)
    return {"section": section, "quantity": quantity, "variant": variant, "unit": unit, "fmt": fmt,
            "values": clean, **e.as_dict(), "n_total": len(clean), "reference": reference, "note": note,
            "interval": INTERVAL_METHOD, "bounds": list(bounds)}


AGGREGATE_METHOD = ("stratified bootstrap 95% CI of the IQM over tasks x seeds (rliable; seeds resampled within "
                    "each task)")


def aggregate_row(section: str, quantity: str, variant: str, scores: dict[str, Sequence[float | None]],
                  fmt: str = "{:.3f}", note: str = "") -> dict[str, Any]:
    """One quantity over several tasks (e.g. both paradigms) and their seeds: the IQM of all scores with a
    stratified-bootstrap interval (:func:`experiments.stats.stratified_bootstrap`); ``values``: every score,
    task by task. The row's point estimate is its IQM (``point``), not its mean."""
    tasks = {k: [v for v in vs if v is not None] for k, vs in scores.items()}
    values = [v for vs in tasks.values() for v in vs]
    row = summary_row(section, quantity, variant, values, fmt, note=note, bounds=RATE)
    if values:
        point, low, high = stratified_bootstrap(tasks, iqm)
        row.update(iqm=point, ci_low=low, ci_high=high)
    row.update(point="iqm", interval=AGGREGATE_METHOD, tasks=list(tasks))
    return row


def learning_rows(section: str, metric: str, variant: str, untrained: Sequence[float | None],
                  final: Sequence[float | None], fmt: str = "{:.3f}", start: str = UNTRAINED) -> list[dict[str, Any]]:
    """The untrained point of a variant and the paired per-seed change from it to the final value.

    ``start`` names the step-0 point (e.g. ``at step 0 (before RL)`` where step 0 is a pretrained policy). The
    metric is a rate (accuracy, success): the change lies in [-1, 1] and its interval is clipped to that.

    The change row carries ``improved``: True when its whole interval is above 0, False when not (the variant
    did not improve beyond its interval), None with fewer than 2 seeds (no interval to judge by).
    """
    changes = [None if u is None or f is None else f - u for u, f in zip(untrained, final)]
    change = summary_row(section, f"{CHANGE} {metric}", variant, changes, fmt.replace("{:", "{:+"), bounds=(-1.0, 1.0))
    change["improved"] = improved(changes)
    return [summary_row(section, f"{start} {metric}", variant, untrained, fmt, bounds=RATE), change]


def not_improved(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The change rows of variants that did not improve beyond their interval (or cannot tell: 1 seed)."""
    return [r for r in summary if r["quantity"].startswith(CHANGE) and r.get("improved") is not True and r["n"]]


def format_estimate(row: dict[str, Any]) -> str:
    """``mean [low, high]`` in the row's format; ``n/a`` without values; ``(k/n seeds)`` when some lack one.

    A value identical over all seeds (a parameter count) is written once, as ``value (all seeds)``.
    """
    fmt = row["fmt"]
    if row["n"] == 0:
        return f"n/a (0/{row['n_total']} seeds)"
    if row.get("point") == "iqm":  # an aggregate over tasks (aggregate_row): IQM [stratified bootstrap CI]
        return f"IQM {fmt.format(row['iqm'])} [{fmt.format(row['ci_low'])}, {fmt.format(row['ci_high'])}] " \
               f"({row['n']} runs)"
    mean, low, high = (fmt.format(row[k]) for k in ("mean", "ci_low", "ci_high"))
    if row["n"] == 1:
        text = mean
    elif low == high == mean and row["n"] == row["n_total"]:
        return f"{mean} (all seeds)"
    else:
        text = f"{mean} [{low}, {high}]"
    if row["n"] >= IQM_MIN_VALUES:
        text += f" IQM {fmt.format(row['iqm'])}"
    if row["n"] < row["n_total"]:
        text += f" ({row['n']}/{row['n_total']} seeds)"
    elif row["n"] == 1:
        text += " (1 seed)"
    return text


def format_values(row: dict[str, Any]) -> str:
    """Every seed's value in the row's format, ``-`` where a seed has none (e.g. never reached a threshold)."""
    return " / ".join("-" if v is None else row["fmt"].format(v) for v in row["values"])


def format_cell(row: dict[str, Any]) -> str:
    """A report cell: the aggregate (:func:`format_estimate`), with fewer than 10 seeds every seed's value
    after it, and the verdict of a change-from-untrained row."""
    text = format_estimate(row)
    same = row["n"] == row["n_total"] and len(set(row["values"])) == 1
    if 1 < row["n_total"] <= PER_SEED_MAX and row["n"] and not same and row.get("point") != "iqm":
        text += f"; seeds {format_values(row)}"
    if "improved" in row and row["n"]:
        text += {True: "", False: " **not above 0: did not improve beyond its interval**",
                 None: " (1 seed: no interval to judge by)"}[row["improved"]]
    return text


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
                   labels: dict[str, str] | None = None, row_of: Callable[[dict], str] | None = None,
                   column_of: Callable[[dict], str] | None = None, corner: str = "quantity") -> str:
    """Summary rows as a markdown table of :func:`format_cell` cells (``mean [95% CI]; seeds ...``).

    By default one line per quantity and one column per variant (``row_of`` / ``column_of`` choose other
    keys). A last column holds the published references of a line's rows, when any has one: those numbers
    were not measured here.
    """
    row_of = row_of or (lambda r: r["quantity"] + (f" ({r['unit']})" if r["unit"] else ""))
    column_of = column_of or (lambda r: r["variant"])
    columns = list(columns or dict.fromkeys(column_of(r) for r in rows))
    labels = labels or {}
    lines_keys = list(dict.fromkeys(row_of(r) for r in rows))
    with_reference = any(r["reference"] for r in rows)
    header = [corner, *(labels.get(c, c) for c in columns)]
    if with_reference:
        header.append("published reference (not measured here)")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for key in lines_keys:
        cells_by_column = {column_of(r): r for r in rows if row_of(r) == key}
        cells = [key, *(format_cell(cells_by_column[c]) if c in cells_by_column else "" for c in columns)]
        if with_reference:
            cells.append("; ".join(r["reference"] for r in cells_by_column.values() if r["reference"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rows_of(summary: list[dict[str, Any]], section: str) -> list[dict[str, Any]]:
    return [row for row in summary if row["section"] == section]


def find_row(summary: list[dict[str, Any]], quantity: str, variant: str) -> dict[str, Any]:
    for row in summary:
        if row["quantity"] == quantity and row["variant"] == variant:
            return row
    raise KeyError(f"no summary row {quantity!r} / {variant!r}")


# ------------------------------------------------------------------------------------------------------ curves
def first_crossing(curve: Sequence[dict[str, Any]], x_key: str, y_key: str, threshold: float) -> float | None:
    """The first ``x`` at which ``y >= threshold`` (None if never): samples / episodes / seconds to a target."""
    for point in curve:
        y = point.get(y_key)
        if y is not None and y >= threshold:
            return float(point[x_key])
    return None


def mean_curve(curves: Sequence[Sequence[dict[str, Any]]], x_key: str, y_key: str,
               points: int = 60) -> dict[str, list[float]]:
    """Mean and 95% bootstrap band over seeds of ``y`` against ``x``, on a grid both ends of which every seed covers.

    Seeds evaluated at the same x (the usual case: evaluation schedules do not depend on the seed) are used as
    they are; otherwise each seed is interpolated linearly onto a common grid.
    """
    curves = [[p for p in c if p.get(y_key) is not None] for c in curves]
    curves = [c for c in curves if c]
    if not curves:
        return {"x": [], "mean": [], "low": [], "high": []}
    xs = [np.array([p[x_key] for p in c], dtype=float) for c in curves]
    ys = [np.array([p[y_key] for p in c], dtype=float) for c in curves]
    if all(len(x) == len(xs[0]) and np.array_equal(x, xs[0]) for x in xs):
        grid, matrix = xs[0], np.stack(ys)
    else:
        low, high = max(x.min() for x in xs), min(x.max() for x in xs)
        grid = np.linspace(low, high, points) if high > low else np.array([low])
        matrix = np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys)])
    estimates = [estimate(list(matrix[:, i])) for i in range(matrix.shape[1])]
    return {"x": grid.tolist(), "mean": [e.mean for e in estimates], "low": [e.low for e in estimates],
            "high": [e.high for e in estimates]}


# ------------------------------------------------------------------------------------------------ results files
def machine_info() -> dict[str, Any]:
    import torch

    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads_per_worker": 1, "load_average": load}


def write_results(exp_dir: Path, results: dict[str, Any]) -> None:
    """``results.json`` (everything), ``runs.csv`` (one row per run) and ``summary.csv`` (one row per quantity)."""
    write_json(exp_dir / RESULTS_JSON, results)
    run_fields = ["job", "variant", "seed", "paradigm", "samples", "episodes", "labels_seen", "rewards_seen",
                  "updates", "train_wall_time_s", "job_wall_time_s", "job_cpu_time_s", "params", "flops",
                  "final_metric", "run_dir"]
    atomic_write_text(exp_dir / RUNS_CSV, _csv(run_fields, results["runs"]))
    summary_fields = ["section", "quantity", "variant", "unit", "mean", "iqm", "ci_low", "ci_high", "n", "n_total",
                      "values", "reference"]
    atomic_write_text(exp_dir / SUMMARY_CSV, _csv(summary_fields, results["summary"]))


def _csv(fields: list[str], rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (" ".join("" if v is None else repr(v) for v in row[k]) if isinstance(row.get(k), list)
                             else row.get(k)) for k in fields})
    return buffer.getvalue()


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
