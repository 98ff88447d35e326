"""Summary rows: one measured quantity of one variant over seeds, and how reports print them.

A row holds its per-seed values, mean, IQM, 95% interval (:mod:`experiments.stats`: Student-t, clipped to the
quantity's range), how many seeds produced a value (e.g. reached a threshold) and, where one exists, the
published reference, kept in its own field. The report prints rows exactly as stored in ``results.json``,
formatted with the row's own ``fmt`` (with fewer than 10 seeds every seed's value next to the aggregate), so
every number in the report can be traced back.

Every variant also gets its *untrained* point (step 0) and the paired change from it (:func:`learning_rows`):
a row flags a variant whose change is not above 0 beyond its interval, i.e. that did not visibly learn.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from experiments.stats import INTERVAL_METHOD, IQM_MIN_VALUES, estimate, improved, iqm, stratified_bootstrap

PER_SEED_MAX = 9  # with fewer than 10 seeds a cell shows every seed's value next to the aggregate
RATE = (0.0, 1.0)  # the range of an accuracy or success rate: its interval is clipped to it
COUNT = (0.0, None)  # a count or a time is never negative
UNTRAINED = "untrained (step 0)"  # quantity prefix of the untrained point of a variant
CHANGE = "change from step 0 (final - step 0)"  # quantity prefix of the paired change


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


def find(summary: list[dict[str, Any]], quantity: str, variant: str) -> dict[str, Any] | None:
    """The row of ``quantity`` for ``variant``, or None."""
    return next((r for r in summary if r["quantity"] == quantity and r["variant"] == variant), None)


def value(row: dict[str, Any], unit: bool = True, seeds: bool = True) -> str:
    """A row's mean as the report prints it (its own format), with its unit and, when some seeds have no
    value, how many do."""
    text = row["fmt"].format(row["mean"]) + (f" {row['unit']}" if unit and row["unit"] else "")
    return text + (f" ({row['n']}/{row['n_total']} seeds)" if seeds and row["n"] < row["n_total"] else "")


def highest(rows: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The row with the highest point estimate (its mean, or an aggregate's IQM), and the other rows whose interval
    overlaps its own: the variants these seeds do not tell apart from it (a takeaway names no "best" among them)."""
    top = max(rows, key=lambda r: r[r.get("point", "mean")])
    return top, [r for r in rows if r is not top and r["ci_high"] >= top["ci_low"]]


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


def cost_rows(section: str, variant: str, runs: Sequence[dict[str, Any]],
              counts: Sequence[tuple[str, str]] = ()) -> list[dict[str, Any]]:
    """What a variant's runs cost: one row per ``(quantity, record key)`` count (parameters, updates, ...), then
    the training wall time and the run's CPU time (evaluations included), the rows every experiment reports."""
    rows = [summary_row(section, quantity, variant, [r[key] for r in runs], "{:,.0f}", bounds=COUNT)
            for quantity, key in counts]
    return rows + [
        summary_row(section, "training wall time", variant, [r["train_wall_time_s"] for r in runs], "{:.1f}", "s",
                    bounds=COUNT),
        summary_row(section, "run CPU time (incl. evaluation)", variant, [r["job_cpu_time_s"] for r in runs],
                    "{:.1f}", "s", bounds=COUNT),
    ]
