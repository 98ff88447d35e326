"""What the engine runs: a :class:`Job` (a picklable call plus the ids of the jobs it needs), how one is
called (:func:`execute`), when one may start (:func:`ready`), in which order (:func:`critical_path_order`), and
what a whole invocation returns (:class:`Outcome`).

Determinism: a job depends only on its own arguments (seeds included), never on which worker or node runs it,
nor when.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Report = Callable[[float, float], None]  # report(done, total): progress inside one job (steps, samples, ...)


@dataclass(frozen=True)
class Job:
    """One run: ``fn(run_dir=out/id, report=..., deps={id: record}, **kwargs)`` returns its record (a dict).

    ``id`` is also the run directory relative to the output directory, e.g. ``digits/ppo/seed1``. The engine
    sets the record's ``run_dir`` (to ``out/id``); in ``deps`` it is where that dependency's artifacts are on the
    node that runs the dependant (its other paths under it are moved along): read its files relative to
    ``deps[id]["run_dir"]``.
    """

    id: str
    fn: Callable[..., dict[str, Any]]
    kwargs: dict[str, Any] = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    label: str = ""  # what the display shows; default: the id
    cost: float = 1.0  # rough relative duration: runs start longest first (dependencies permitting); the ETA
    cpus: int = 1  # CPUs (torch threads) the job gets
    gpus: float = 0.0  # GPU fraction it takes where the cluster has GPUs (supervised / BC); ignored without
    resources: dict[str, float] = field(default_factory=dict)  # other Ray resources it needs (e.g. a node label)
    resumable: bool = False  # fn continues from a checkpoint in a partial run dir; otherwise that dir is cleared

    def fingerprint(self) -> str:
        """What the job computes (function, arguments, dependencies): a resumed job must not have changed."""
        what = json.dumps([self.fn.__module__, self.fn.__qualname__, self.kwargs, self.deps], default=repr,
                          sort_keys=True)
        return hashlib.sha256(what.encode()).hexdigest()[:16]


@dataclass
class Outcome:
    """What :func:`experiments.engine.run_jobs` returns: records of finished jobs, errors of failed or skipped
    ones, times."""

    records: dict[str, dict[str, Any]]
    errors: dict[str, str]
    wall_time_s: float
    cpu_time_s: float  # this process plus the jobs of this invocation (loaded ones excluded)
    worker_cpu_time_s: float = 0.0  # the part of cpu_time_s spent in other processes (Ray workers)
    loaded: list[str] = field(default_factory=list)  # finished in an earlier invocation, loaded by resume
    engine: dict[str, Any] = field(default_factory=dict)  # where it ran: nodes, CPUs, GPUs

    @property
    def ok(self) -> bool:
        return not self.errors


def check_jobs(jobs: Sequence[Job]) -> None:
    ids = [job.id for job in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"job ids must be unique, got duplicates in {ids}")
    known = set(ids)
    for job in jobs:
        missing = [d for d in job.deps if d not in known]
        if missing:
            raise ValueError(f"job {job.id} depends on unknown job(s) {missing}")


def critical_path_order(jobs: Sequence[Job]) -> list[Job]:
    """Jobs sorted by the cost of the longest chain they start (their own cost plus their longest dependant's):
    long runs and the runs others wait for start first, so the last worker is not left with one long run."""
    dependants: dict[str, list[Job]] = {job.id: [] for job in jobs}
    for job in jobs:
        for dep in job.deps:
            dependants[dep].append(job)
    chain: dict[str, float] = {}

    def length(job: Job) -> float:
        if job.id not in chain:
            chain[job.id] = job.cost + max((length(d) for d in dependants[job.id]), default=0.0)
        return chain[job.id]

    return sorted(jobs, key=lambda job: -length(job))  # stable: equal chains keep the given order


def ready(job: Job, records: dict, errors: dict) -> bool | None:
    """True: can start; False: wait; None: a dependency failed, so this job is skipped."""
    if any(d in errors for d in job.deps):
        return None
    return all(d in records for d in job.deps)


def execute(job: Job, run_dir: Path, deps: dict[str, dict[str, Any]], report: Report | None) -> dict[str, Any]:
    """Call the job function with the engine's arguments and add its timing to the record."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    record = job.fn(run_dir=run_dir, report=report, deps=deps, **job.kwargs)
    record.setdefault("job", job.id)
    earlier = record.get("earlier_segments", {})  # a resumed run: what the processes before this one spent on it
    record["job_wall_time_s"] = time.perf_counter() - start_wall + earlier.get("wall_time_s", 0.0)
    record["job_cpu_time_s"] = time.process_time() - start_cpu + earlier.get("cpu_time_s", 0.0)
    return record


def this_invocation_cpu(record: dict[str, Any]) -> float:
    """The CPU seconds a record's job spent in this invocation (a resumed run's earlier processes excluded)."""
    return record.get("job_cpu_time_s", 0.0) - record.get("earlier_segments", {}).get("cpu_time_s", 0.0)
