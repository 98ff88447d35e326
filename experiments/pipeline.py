"""From a budget to a report: plan the jobs, run them, write results, then plots and report *from the results file*.

Several experiments given together (the flagship) share one engine (:mod:`experiments.engine`: Ray, local or a
cluster), so a slow run of one never leaves a CPU idle while the other has work.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.engine import CONNECT_TIMEOUT_S, run_jobs
from experiments.engine.jobs import Job
from experiments.output_dir import OutputLock, check_output_free
from experiments.report import report_text
from experiments.results import PLOTS_DIR, REPORT_MD, RESULTS_JSON, machine_info, now_iso, write_results
from experiments.spec import Experiment, ExtraContext
from experiments.tb_layout import write_layout
from lab.io import atomic_write_text


def as_json(budget: Any) -> dict[str, Any]:
    """A budget dataclass as ``results.json`` stores it (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(budget)))


@dataclass
class Planned:
    """One experiment of an invocation: the experiment, its resolved budget, seeds and the command's options
    for its extra jobs."""

    experiment: Experiment
    budget: Any
    seeds: list[int]
    mode: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def budget_dict(self) -> dict[str, Any]:
        return as_json(self.budget)


def run(planned: list[Planned], out: Path, workers: int, progress: bool, command: list[str],
        address: str | None = None, resume: bool = False,
        connect_timeout: float = CONNECT_TIMEOUT_S) -> list[dict[str, Any]]:
    """Run every planned experiment's jobs on one engine (:func:`experiments.engine.run_jobs`); write and return
    each experiment's results. ``resume``: jobs an interrupted invocation finished in ``out`` are loaded, not
    re-run. Raises :class:`experiments.engine.Interrupted` on SIGINT / SIGTERM (no results written then), and
    :class:`experiments.output_dir.OutputBusyError` when another invocation owns an experiment's directory."""
    names = [p.name for p in planned]
    with OutputLock(out, names, command):
        if not resume:  # again, now that this invocation owns the directories
            check_output_free(out, names)
        return _run(planned, out, workers, progress, command, address, resume, connect_timeout)


def _run(planned: list[Planned], out: Path, workers: int, progress: bool, command: list[str],
         address: str | None, resume: bool, connect_timeout: float) -> list[dict[str, Any]]:
    jobs: list[Job] = []
    extra_results: dict[str, dict[str, Any]] = {}
    for p in planned:
        jobs += p.experiment.jobs(p.budget, p.seeds, p.name)
        if p.experiment.extra is not None:  # work before the engine (e.g. a Ray Tune search), then its jobs
            more, extra_results[p.name] = p.experiment.extra(ExtraContext(
                p.name, p.budget, p.seeds, out / p.name, workers, address, resume, p.options, connect_timeout))
            jobs += more
    title = " + ".join(f"{p.name} ({p.mode})" for p in planned)
    started = now_iso()
    outcome = run_jobs(jobs, out, workers=workers, progress=progress, title=title, address=address, resume=resume,
                       connect_timeout=connect_timeout)
    all_results = []
    for p in planned:
        runs = [outcome.records[j.id] for j in jobs if j.id.startswith(p.name + "/") and j.id in outcome.records]
        errors = {k: v for k, v in outcome.errors.items() if k.startswith(p.name + "/")}
        results = {
            "experiment": p.name, "mode": p.mode, "seeds": p.seeds, "budget": p.budget_dict,
            "full_budget": as_json(p.experiment.budget().resolve(True)), "settings": p.experiment.settings(p.budget),
            "command": command, "started": started, "finished": now_iso(), "machine": machine_info(),
            "timing": {"wall_time_s": outcome.wall_time_s, "cpu_time_s": outcome.cpu_time_s, "workers": workers,
                       "experiments_in_pool": [q.name for q in planned], "jobs": len(jobs),
                       "worker_cpu_time_s": outcome.worker_cpu_time_s, "engine": outcome.engine,
                       "resumed_jobs": len(outcome.loaded)},
            "errors": errors, "runs": runs, **extra_results.get(p.name, {}),
            "summary": p.experiment.analysis.summarize(runs, p.budget_dict) if runs else [],
        }
        exp_dir = out / p.name
        write_results(exp_dir, results)
        all_results.append(render(exp_dir, p.experiment))
    return all_results


def render(exp_dir: Path, experiment: Experiment) -> dict[str, Any]:
    """Summary, plots, ``report.md`` and the TensorBoard layout of one experiment from its ``results.json`` alone
    (re-runnable any time).

    The summary is recomputed from the runs (the raw data): a results file written by an older analysis is
    upgraded in place (``results.json`` and ``summary.csv`` rewritten atomically), so its report and its
    results file always agree. A file from before ``full_budget`` / ``settings`` were written gets them from
    the experiment's current defaults.
    """
    results = json.loads((exp_dir / RESULTS_JSON).read_text())
    analysis = experiment.analysis
    summary = analysis.summarize(results["runs"], results["budget"]) if results["runs"] else []
    upgraded = {"summary": summary}
    if "full_budget" not in results:
        upgraded["full_budget"] = as_json(experiment.budget().resolve(True))
    if "settings" not in results:
        upgraded["settings"] = experiment.settings(experiment.budget().resolve(results["mode"] == "full"))
    if any(json.dumps(results.get(k)) != json.dumps(v) for k, v in upgraded.items()):
        results.update(upgraded)
        write_results(exp_dir, results)
    plot_paths = [str(p.relative_to(exp_dir)) for p in analysis.plot(results, exp_dir / PLOTS_DIR)] \
        if results["runs"] else []
    atomic_write_text(exp_dir / REPORT_MD, report_text(results, experiment, plot_paths))
    if results["runs"]:
        write_layout(exp_dir, analysis.tensorboard_layout(results))
    results["plots"] = [str(exp_dir / p) for p in plot_paths]
    results["report"] = str(exp_dir / REPORT_MD)
    return results
