"""Independent training jobs on a pool of worker processes, with a live display of what runs and what remains.

A :class:`Job` is a picklable call ``fn(run_dir, report, **kwargs) -> dict`` plus the ids of jobs whose records
it needs (``deps``): e.g. an RL fine-tuning run after the behaviour-cloning run that pretrains its encoder.
:func:`run_jobs` starts at most ``workers`` jobs at a time, each in its own run directory, in a pool of
``spawn``-ed processes with one torch thread each (small models are fastest with one intra-op thread, and two
workers then fill two cores without oversubscribing them). ``workers=0`` runs everything in this process
(tests, debugging). A job that raises is recorded as failed and its dependants are skipped; the others go on.

Determinism: a job depends only on its own arguments (seeds included), never on which worker runs it or when.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import queue as queue_module
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

Report = Callable[[float, float], None]  # report(done, total): progress inside one job (steps, samples, ...)

_PROGRESS_QUEUE: Any = None  # set in each worker by _init_worker
_REPORT_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Job:
    """One run: ``fn(run_dir=out/id, report=..., deps={id: record}, **kwargs)`` returns its record (a dict).

    ``id`` is also the run directory relative to the output directory, e.g. ``digits/ppo/seed1``.
    """

    id: str
    fn: Callable[..., dict[str, Any]]
    kwargs: dict[str, Any] = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    label: str = ""  # what the display shows; default: the id
    cost: float = 1.0  # rough relative duration: runs start longest first (dependencies permitting)


@dataclass
class Outcome:
    """What :func:`run_jobs` returns: records of finished jobs, errors of failed or skipped ones, times."""

    records: dict[str, dict[str, Any]]
    errors: dict[str, str]
    wall_time_s: float
    cpu_time_s: float  # CPU time of this process and of the worker processes (start-up included)

    @property
    def ok(self) -> bool:
        return not self.errors


def _init_worker(progress_queue: Any) -> None:
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = progress_queue
    torch.set_num_threads(1)
    os.environ.setdefault("MPLBACKEND", "Agg")


def _execute(job: Job, out_dir: str, deps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Run one job (in a worker or inline) and add its timing to the record."""
    last = [0.0]

    def report(done: float, total: float) -> None:
        now = time.monotonic()
        if _PROGRESS_QUEUE is not None and (now - last[0] >= _REPORT_INTERVAL_S or done >= total):
            last[0] = now
            _PROGRESS_QUEUE.put((job.id, float(done), float(total)))

    start_wall, start_cpu = time.perf_counter(), time.process_time()
    record = job.fn(run_dir=Path(out_dir) / job.id, report=report, deps=deps, **job.kwargs)
    record.setdefault("job", job.id)
    record["job_wall_time_s"] = time.perf_counter() - start_wall
    record["job_cpu_time_s"] = time.process_time() - start_cpu
    return record


def run_jobs(jobs: Sequence[Job], out_dir: str | os.PathLike, workers: int = 2, progress: bool = True,
             title: str = "runs") -> Outcome:
    """Run ``jobs`` (dependencies first) with ``workers`` processes; see the module docstring."""
    ids = [job.id for job in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"job ids must be unique, got duplicates in {ids}")
    known = set(ids)
    for job in jobs:
        missing = [d for d in job.deps if d not in known]
        if missing:
            raise ValueError(f"job {job.id} depends on unknown job(s) {missing}")
    jobs = critical_path_order(jobs)
    display = Display(jobs, title, progress)
    start_wall, start_cpu = time.perf_counter(), cpu_seconds()
    records: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    try:
        if workers <= 0:
            _run_inline(jobs, str(out_dir), records, errors, display)
        else:
            _run_pool(jobs, str(out_dir), workers, records, errors, display)
    finally:
        display.close()
    return Outcome(records, errors, time.perf_counter() - start_wall, cpu_seconds() - start_cpu)


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


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished (joined) child processes."""
    try:
        import resource
    except ImportError:  # not on Windows: this process only
        return time.process_time()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _ready(job: Job, records: dict, errors: dict) -> bool | None:
    """True: can start; False: wait; None: a dependency failed, so this job is skipped."""
    if any(d in errors for d in job.deps):
        return None
    return all(d in records for d in job.deps)


def _run_inline(jobs, out_dir, records, errors, display) -> None:
    global _PROGRESS_QUEUE
    pending = list(jobs)
    _PROGRESS_QUEUE = display.queue = queue_module.Queue()
    try:
        while pending:
            job = next((j for j in pending if _ready(j, records, errors) is not False), None)
            if job is None:  # unreachable for a dependency-ordered list; guards against cycles
                raise ValueError(f"jobs {[j.id for j in pending]} wait on each other (a dependency cycle)")
            pending.remove(job)
            if _ready(job, records, errors) is None:
                errors[job.id] = "skipped: a dependency failed"
                display.finished(job, ok=False)
                continue
            display.started(job)
            try:
                records[job.id] = _execute(job, out_dir, {d: records[d] for d in job.deps})
                display.finished(job, ok=True)
            except Exception:  # noqa: BLE001 - one failed run must not stop the others
                errors[job.id] = traceback.format_exc()
                display.finished(job, ok=False)
            display.drain()
    finally:
        _PROGRESS_QUEUE = None


def _run_pool(jobs, out_dir, workers, records, errors, display) -> None:
    context = mp.get_context("spawn")  # fork after torch/OpenMP initialisation can deadlock; spawn is safe
    progress_queue = context.Queue()
    display.queue = progress_queue
    pending = list(jobs)
    running: dict[cf.Future, Job] = {}
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                initargs=(progress_queue,)) as pool:
        try:
            while pending or running:
                for job in list(pending):
                    if len(running) >= workers:
                        break
                    state = _ready(job, records, errors)
                    if state is None:
                        pending.remove(job)
                        errors[job.id] = "skipped: a dependency failed"
                        display.finished(job, ok=False)
                    elif state:
                        pending.remove(job)
                        running[pool.submit(_execute, job, out_dir, {d: records[d] for d in job.deps})] = job
                        display.started(job)
                if not running:
                    if pending:
                        raise ValueError(f"jobs {[j.id for j in pending]} wait on each other (a dependency cycle)")
                    break
                done, _ = cf.wait(running, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                display.drain()
                for future in done:
                    job = running.pop(future)
                    try:
                        records[job.id] = future.result()
                        display.finished(job, ok=True)
                    except Exception:  # noqa: BLE001
                        errors[job.id] = "".join(traceback.format_exception(future.exception()))
                        display.finished(job, ok=False)
        except BaseException:
            for future in running:
                future.cancel()
            raise
    display.drain()


class Display:
    """Live view of an invocation: a bar over all runs, one line per running run (its own progress, in steps)
    and the queue. Without a terminal (or ``enabled=False``) one plain line per started / finished run."""

    def __init__(self, jobs: Sequence[Job], title: str, enabled: bool = True) -> None:
        self.jobs = list(jobs)
        self.queue: Any = None
        self.total = len(self.jobs)
        self.done = 0
        self.failed = 0
        self.running: dict[str, Any] = {}
        self.started_at: dict[str, float] = {}
        self.title = title
        self.enabled = enabled
        self.live = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console, Group
            from rich.live import Live
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            from rich.table import Column

            self.progress = Progress(
                TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
                BarColumn(bar_width=20), TextColumn("{task.fields[count]}", table_column=Column(no_wrap=True)),
                TimeElapsedColumn(), expand=True)
            self.overall = self.progress.add_task(f"[bold]{title}[/bold]", total=self.total, count=self._count())
            self.live = Live(Group(self.progress, _QueueLine(self)), console=Console(stderr=True),
                             refresh_per_second=4, transient=False)
            self.live.start()

    def _count(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.done}/{self.total} runs done{failed}"

    def queued(self) -> list[str]:
        return [j.label or j.id for j in self.jobs if j.id not in self.started_at]

    def started(self, job: Job) -> None:
        self.started_at[job.id] = time.perf_counter()
        if self.live is not None:
            self.running[job.id] = self.progress.add_task(f"  {job.label or job.id}", total=None, count="starting")
        else:
            self.running[job.id] = None
            if self.enabled:
                print(f"[{self.done}/{self.total}] start {job.id}", file=sys.stderr, flush=True)

    def finished(self, job: Job, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        self.started_at.setdefault(job.id, time.perf_counter())
        seconds = time.perf_counter() - self.started_at[job.id]
        task = self.running.pop(job.id, None)
        if self.live is not None:
            if task is not None:
                self.progress.remove_task(task)
            self.progress.update(self.overall, completed=self.done, count=self._count())
            if not ok:
                self.live.console.print(f"[red]failed[/red] {job.id} (see the report for the error)")
        elif self.enabled:
            status = "done  " if ok else "FAILED"
            print(f"[{self.done}/{self.total}] {status} {job.id} ({seconds:.1f} s)", file=sys.stderr, flush=True)

    def drain(self) -> None:
        """Apply the progress messages the jobs sent since the last call."""
        if self.queue is None:
            return
        while True:
            try:
                job_id, done, total = self.queue.get_nowait()
            except (queue_module.Empty, EOFError, OSError):
                return
            task = self.running.get(job_id)
            if self.live is not None and task is not None:
                self.progress.update(task, completed=done, total=total, count=f"{done:,.0f}/{total:,.0f} steps")

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


class _QueueLine:
    """The last line of the live view: what is still waiting to start."""

    def __init__(self, display: Display) -> None:
        self.display = display

    def __rich__(self) -> str:
        queued = self.display.queued()
        if not queued:
            return "[dim]queue empty[/dim]"
        more = f" (+{len(queued) - 3} more)" if len(queued) > 3 else ""
        return f"[dim]queued {len(queued)}: {', '.join(queued[:3])}{more}[/dim]"
