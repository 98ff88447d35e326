"""What every report shares: its header (command, seeds, times, machine), the sentences analyses use for
variants that did not learn and for the budget, its closing lines, and the closing summary table a command
prints. An experiment's own sections come from its analysis (``<name>/analysis.py``)."""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from experiments.curves import READ_RULE, THRESHOLD_QUANTITY
from experiments.results import RESULTS_JSON
from experiments.spec import Experiment
from experiments.stats import INTERVAL_METHOD, IQM_MIN_VALUES
from experiments.summary import PER_SEED_MAX, format_estimate, highest, not_improved, value
from experiments.tb_layout import URL_FRAGMENT


def format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def join(items: Sequence[str], last: str = "and") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


def budget_note(results: dict[str, Any], body: str, quick: str) -> str:
    """The report's budget paragraph: ``**Quick-mode budget**: <body>``, then in quick mode ``quick`` (what the
    full mode would run; the analysis reads it from ``results["full_budget"]``)."""
    note = f"**{results['mode'].capitalize()}-mode budget**: {body}"
    return note + (f" {quick}" if results["mode"] == "quick" else "")


NO_LEARNING = "At this budget it shows no learning; that says nothing about where it ends."


def learning_sentence(label: str, start: dict[str, Any], final: dict[str, Any], change: dict[str, Any],
                      start_name: str = "untrained", reading: str = NO_LEARNING) -> str:
    """Why a variant is flagged: it did not improve beyond its interval (or has one seed only); ``reading``: what
    that means, where the analysis knows better than "a budget limit"."""
    interval = (f"{change['fmt'].format(change['mean'])} [{change['fmt'].format(change['ci_low'])}, "
                f"{change['fmt'].format(change['ci_high'])}]")
    if change.get("improved") is None:
        return (f"{label}: {value(final)} after training vs {value(start)} {start_name}, one seed only, so there "
                "is no interval to tell learning from evaluation noise.")
    return (f"{label} did not improve beyond its interval: {value(start)} {start_name}, {value(final)} at the "
            f"end, change {interval}. {reading}")


def ranking(rows: Sequence[dict[str, Any]], name: Callable[[dict[str, Any]], str] = lambda r: r["variant"]) -> str:
    """Which of ``rows`` (one quantity, higher is better, each with a value) is best, as far as their intervals
    tell: a variant is called the best only when its interval is above every other's."""
    top, close = highest(rows)
    if len(rows) == 1:
        return f"only {name(top)} ran"
    if top["n"] < 2:
        return f"the highest is {name(top)}, from one seed: no interval to rank by"
    if close:
        return (f"the highest is {name(top)}, and the intervals of {join([name(r) for r in close])} overlap its "
                "own: these seeds do not tell them apart")
    return f"the best is {name(top)}, its interval above every other's"


def closing_lines(plot_paths: Sequence[str], limits: Sequence[str]) -> list[str]:
    """The end of every report: links to its plots, then what the budget could not show."""
    plots = ["Plots: " + ", ".join(f"[{Path(p).name}]({p})" for p in plot_paths)]
    if not limits:  # no empty heading
        return plots
    return [*plots, "", "### What this budget could not show", *[f"- {line}" for line in limits]]


def report_text(results: dict[str, Any], experiment: Experiment, plot_paths: list[str]) -> str:
    """The whole report.md: the shared header, then the experiment's own sections."""
    timing = results["timing"]
    header = [
        f"# {results['experiment']}: deep learning vs reinforcement learning ({results['mode']} mode)",
        "",
        f"Generated from `{RESULTS_JSON}` (same directory); every measured number below is a row of its `summary` "
        "(the takeaway's ratios too). "
        f"Values are the mean with its {INTERVAL_METHOD} in brackets (`experiments.stats`: "
        "mean +- t(0.975, n-1) x sd / sqrt(n), clipped to the quantity's range, e.g. [0, 1] for a rate; with 2-3 "
        "seeds it is wide because 2-3 seeds say little), then every seed's value in seed order (`-`: that seed "
        f"had none) while there are fewer than {PER_SEED_MAX + 1} seeds; from {IQM_MIN_VALUES} seeds on also "
        "the interquartile mean (IQM). `(k/n seeds)` means only k seeds reached the value (e.g. a threshold) "
        "and the estimate is over those; `(all seeds)` marks a value identical for every seed. Step 0 is the "
        "untrained model; a variant whose change from it is not above 0 beyond its interval is flagged. "
        + threshold_sentence(results["summary"])
        + "Published numbers are in their own column and were not measured here.",
        "",
        f"- command: `{' '.join(results['command'])}`",
        f"- seeds: {', '.join(map(str, results['seeds']))}; started {results['started']}, finished "
        f"{results['finished']}",
        f"- all runs of this invocation ({timing['jobs']} jobs of {', '.join(timing['experiments_in_pool'])}, "
        f"{timing['workers']} worker processes, one torch thread each): wall time "
        f"{format_seconds(timing['wall_time_s'])}, CPU time {format_seconds(timing['cpu_time_s'])}"
        + (f"; resumed (`--resume`): {timing['resumed_jobs']} of the {timing['jobs']} jobs had finished in an "
           "earlier invocation and were loaded, not counted in these times (a resumed RL run's own times in the "
           "tables include the processes before its resume)" if timing.get("resumed_jobs") else ""),
        f"- machine: {results['machine']['cpus']} CPUs, torch {results['machine']['torch']}, load average at the "
        f"end {', '.join(f'{x:.2f}' for x in results['machine']['load_average'] or [])} (other jobs share the "
        "machine: wall times are noisy, CPU times less so)",
        f"- {kernels_sentence(results['machine'])}",
        f"- TensorBoard: `tensorboard --logdir` on the directory above this one, then open its custom-scalars "
        f"dashboard (`http://localhost:6006/{URL_FRAGMENT}`): this experiment's comparison charts come first",
    ]
    if results["errors"]:
        header += ["", "**Failed runs** (left out of every number below):", ""]
        header += [f"- `{job}`: {error.strip().splitlines()[-1]}" for job, error in results["errors"].items()]
    body = experiment.analysis.report(results, plot_paths) if results["runs"] else "No run finished."
    return "\n".join(header) + "\n\n" + body + "\n"


def threshold_sentence(summary: list[dict[str, Any]]) -> str:
    """How a count "to X%" is read, for a report that has one (``experiments.curves``)."""
    if not any(THRESHOLD_QUANTITY.search(row["quantity"]) for row in summary):
        return ""
    return f"A count \"to\" a threshold is read at {READ_RULE}. "


def kernels_sentence(machine: dict[str, Any]) -> str:
    """Where these numbers reproduce (``lab.portable``), from a results file's ``machine``."""
    if "torch_cpu_capability" not in machine:  # written before the kernel set was recorded
        return "kernels: not recorded (numbers reproduce on the same machine only)"
    where = (f"{machine['cpu']}, torch's {machine['torch_cpu_capability']} kernels, MKL {machine['mkl']}, oneDNN "
             f"{machine['onednn']}")
    if machine["portable"]:
        return (f"portable mode (`--portable`): {where}, pinned to AVX2 and one thread; the same command gives these "
                "numbers on any x86-64 CPU with AVX2 (Adamax and NAdam runs unchecked: they may differ between Intel "
                "and AMD CPUs)")
    return (f"kernels: {where} (the CPU's fastest); the same numbers reproduce on a machine with the same kernels, "
            "`--portable` gives numbers that reproduce on any x86-64 CPU with AVX2")


def summary_table(all_results: list[dict[str, Any]], experiments: dict[str, Experiment]) -> Any:
    """A rich table of each experiment's headline quantities (printed at the end of a run): a final value sits
    next to the variant's step-0 value (the untrained model, or the start of fine-tuning), and published
    references, when a row has one, in their own column."""
    from rich.table import Table

    rows = [(results, row) for results in all_results for row in results["summary"]
            if row["quantity"] in experiments[results["experiment"]].analysis.HEADLINE]
    with_reference = any(row.get("reference") for _, row in rows)
    table = Table(title=f"Summary (mean [{INTERVAL_METHOD.split(' confidence')[0]}] over seeds)", show_lines=False)
    columns = ("experiment", "quantity", "variant", "value", "at step 0")
    for column in columns + (("published (not measured here)",) if with_reference else ()):
        table.add_column(column, overflow="fold")  # a narrow terminal wraps cells instead of cutting them
    for results, row in rows:
        unit = f" {row['unit']}" if row["unit"] else ""
        start = _step0(results["summary"], row)
        cells = [results["experiment"], row["quantity"], row["variant"], format_estimate(row) + unit,
                 format_estimate(start) if start else ""]
        table.add_row(*cells, *([row.get("reference") or ""] if with_reference else []))
    return table


def _step0(summary: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any] | None:
    """The step-0 row that goes with a final-value row (same variant, same metric), if any."""
    if not row["quantity"].startswith("final "):
        return None
    metric = row["quantity"].removeprefix("final ")
    return next((r for r in summary if r["variant"] == row["variant"] and r["quantity"].startswith(
        ("untrained (step 0) ", "at step 0 ")) and r["quantity"].endswith(metric)), None)


def print_closing(all_results: list[dict[str, Any]], experiments: dict[str, Experiment], out: Path, wall: float,
                  cpu: float) -> None:
    from rich.console import Console

    console = Console(stderr=False)
    console.print(summary_table(all_results, experiments))
    for results in all_results:
        flagged = not_improved(results["summary"])
        if flagged:
            console.print(f"[yellow]{results['experiment']}: no improvement beyond the interval[/yellow] for "
                          + ", ".join(f"{r['variant']} ({format_estimate(r)})" for r in flagged)
                          + " - see the report's last section")
    for results in all_results:
        console.print(f"[bold]{results['experiment']}[/bold] report: {results['report']}")
        for path in results["plots"]:
            console.print(f"  plot: {path}")
        console.print(f"  results: {Path(results['report']).parent / RESULTS_JSON} (+ runs.csv, summary.csv)")
        if results["errors"]:
            console.print(f"  [red]{len(results['errors'])} run(s) failed[/red]: {', '.join(results['errors'])}")
    console.print(f"wall time {wall:.1f} s, CPU time {cpu:.1f} s (all processes)")
    console.print(f"TensorBoard: tensorboard --logdir {out}  then open http://localhost:6006/{URL_FRAGMENT} "
                  "(each experiment's comparison charts)", soft_wrap=True)
    sys.stdout.flush()
