"""From a budget to a report: plan the jobs, run them, write results, then plots and report *from the results file*.

Each experiment module (:mod:`experiments.digits`, ...) provides ``jobs(budget, seeds, exp)``,
``summarize(runs, budget)``, ``plot(results, plot_dir)``, ``report(results, plot_paths)`` and ``HEADLINE`` (the
quantities of the final summary table). Several experiments given together (the flagship) share one engine
(:mod:`experiments.runner`: Ray, local or a cluster), so a slow run of one never leaves a CPU idle while the
other has work.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.common import (
    PER_SEED_MAX, PLOTS_DIR, REPORT_MD, RESULTS_JSON, format_estimate, format_seconds, machine_info, not_improved,
    now_iso, write_results,
)
from experiments.stats import INTERVAL_METHOD, IQM_MIN_VALUES
from experiments.tb_layout import URL_FRAGMENT, write_layout
from experiments.runner import run_jobs
from experiments.tuning import load_or_tune, tuned_jobs
from lab.io import atomic_write_text


class OutputExistsError(FileExistsError):
    """The output directory of an experiment already holds files: nothing is ever overwritten."""


@dataclass
class Planned:
    """One experiment of an invocation: its module, resolved budget and seeds."""

    name: str
    module: Any
    budget: Any
    seeds: list[int]
    mode: str
    tune_trials: int = 0  # experiment 3: learning-rate trials per optimizer and paradigm (experiments.tuning)

    @property
    def budget_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self.budget)))  # tuples -> lists, as in results.json


def check_output_free(out: Path, names: list[str]) -> None:
    """Refuse (before any work) when ``out/<name>`` already holds anything; suggest ``--resume`` (to continue
    an interrupted run there) and free directories."""
    taken = [out / n for n in names if (out / n).exists() and any((out / n).iterdir())]
    if taken:
        free = []
        for i in range(2, 100):
            candidate = Path(f"{out}-{i}")
            if not any((candidate / n).exists() for n in names):
                free.append(str(candidate))
            if len(free) == 2:
                break
        raise OutputExistsError(
            f"{', '.join(map(str, taken))} already hold(s) an earlier run; nothing is overwritten. To continue an "
            f"interrupted run there, repeat its command with --resume; otherwise choose a new --out, e.g. one of: "
            f"{', '.join(free)} (or move the old directory away)")


def run(planned: list[Planned], out: Path, workers: int, progress: bool, command: list[str],
        address: str | None = None, resume: bool = False) -> list[dict[str, Any]]:
    """Run every planned experiment's jobs on one engine (:func:`experiments.runner.run_jobs`); write and return
    each experiment's results. ``resume``: jobs an interrupted invocation finished in ``out`` are loaded, not
    re-run. Raises :class:`experiments.runner.Interrupted` on SIGINT / SIGTERM (no results written then)."""
    if not resume:
        check_output_free(out, [p.name for p in planned])
    jobs, tuning = [], {}
    for p in planned:
        jobs += p.module.jobs(p.budget, p.seeds, exp=p.name)
        if p.tune_trials:  # tuned rates first (Ray Tune), then their runs join the others
            tuning[p.name] = load_or_tune(p.budget, p.tune_trials, out / p.name, workers, address, resume)
            jobs += tuned_jobs(p.budget, p.seeds, tuning[p.name], exp=p.name)
    title = " + ".join(f"{p.name} ({p.mode})" for p in planned)
    started = now_iso()
    outcome = run_jobs(jobs, out, workers=workers, progress=progress, title=title, address=address, resume=resume)
    all_results = []
    for p in planned:
        runs = [outcome.records[j.id] for j in jobs if j.id.startswith(p.name + "/") and j.id in outcome.records]
        errors = {k: v for k, v in outcome.errors.items() if k.startswith(p.name + "/")}
        results = {
            "experiment": p.name, "mode": p.mode, "seeds": p.seeds, "budget": p.budget_dict,
            "command": command, "started": started, "finished": now_iso(), "machine": machine_info(),
            "timing": {"wall_time_s": outcome.wall_time_s, "cpu_time_s": outcome.cpu_time_s, "workers": workers,
                       "experiments_in_pool": [q.name for q in planned], "jobs": len(jobs),
                       "worker_cpu_time_s": outcome.worker_cpu_time_s, "engine": outcome.engine,
                       "resumed_jobs": len(outcome.loaded)},
            "errors": errors, "runs": runs, **({"tuning": tuning[p.name]} if p.name in tuning else {}),
            "summary": p.module.summarize(runs, p.budget_dict) if runs else [],
        }
        exp_dir = out / p.name
        write_results(exp_dir, results)
        all_results.append(render(exp_dir, p.module))
    return all_results


def render(exp_dir: Path, module: Any) -> dict[str, Any]:
    """Summary, plots, ``report.md`` and the TensorBoard layout of one experiment from its ``results.json`` alone
    (re-runnable any time).

    The summary is recomputed from the runs (the raw data): a results file written by an older analysis is
    upgraded in place (``results.json`` and ``summary.csv`` rewritten atomically), so its report and its
    results file always agree.
    """
    results = json.loads((exp_dir / RESULTS_JSON).read_text())
    summary = module.summarize(results["runs"], results["budget"]) if results["runs"] else []
    if json.dumps(summary) != json.dumps(results["summary"]):
        results["summary"] = summary
        write_results(exp_dir, results)
    plot_paths = [str(p.relative_to(exp_dir)) for p in module.plot(results, exp_dir / PLOTS_DIR)] if results["runs"] else []
    atomic_write_text(exp_dir / REPORT_MD, report_text(results, module, plot_paths))
    if results["runs"]:
        write_layout(exp_dir, module.tensorboard_layout(results))
    results["plots"] = [str(exp_dir / p) for p in plot_paths]
    results["report"] = str(exp_dir / REPORT_MD)
    return results


def report_text(results: dict[str, Any], module: Any, plot_paths: list[str]) -> str:
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
        "Published numbers are in their own column and were not measured here.",
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
        f"- TensorBoard: `tensorboard --logdir` on the directory above this one, then open its custom-scalars "
        f"dashboard (`http://localhost:6006/{URL_FRAGMENT}`): this experiment's comparison charts come first",
    ]
    if results["errors"]:
        header += ["", "**Failed runs** (left out of every number below):", ""]
        header += [f"- `{job}`: {error.strip().splitlines()[-1]}" for job, error in results["errors"].items()]
    body = module.report(results, plot_paths) if results["runs"] else "No run finished."
    return "\n".join(header) + "\n\n" + body + "\n"


def summary_table(all_results: list[dict[str, Any]], modules: dict[str, Any]) -> Any:
    """A rich table of each experiment's headline quantities (printed at the end of a run): a final value sits
    next to the variant's step-0 value (the untrained model, or the start of fine-tuning), and published
    references, when a row has one, in their own column."""
    from rich.table import Table

    rows = [(results, row) for results in all_results for row in results["summary"]
            if row["quantity"] in modules[results["experiment"]].HEADLINE]
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


def print_closing(all_results: list[dict[str, Any]], modules: dict[str, Any], out: Path, wall: float, cpu: float) -> None:
    from rich.console import Console

    console = Console(stderr=False)
    console.print(summary_table(all_results, modules))
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
