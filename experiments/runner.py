"""Independent training jobs on Ray (a local instance by default, or a cluster), resumable, with a live display.

A :class:`Job` is a picklable call ``fn(run_dir, report, deps, **kwargs) -> record`` (a JSON-able dict) plus the
ids of jobs whose records it needs (``deps``): e.g. an RL fine-tuning run after the behaviour-cloning run that
pretrains its encoder. :func:`run_jobs` runs each job as a Ray task (:mod:`experiments.cluster`) with the CPUs
(and, on a cluster with GPUs, the GPU fraction) it declares, dependencies first, into ``out/<job id>``
whichever node runs it. ``workers`` is the number of CPUs of the local instance; ``workers=0`` runs
everything in this process without Ray (tests, debugging).

- A job that raises is recorded with its traceback and its dependants are skipped; the others go on. A job
  whose worker dies (SIGKILL, out of memory, lost node) is retried (``cluster.RETRIES``).
- A finished job's directory gets ``job.json`` (its record, written atomically, last): a directory without it
  is unfinished. SIGINT / SIGTERM stop every worker, mark started runs with an ``INCOMPLETE`` file and raise
  :class:`Interrupted`. ``resume=True`` loads the finished jobs instead of running them again; an unfinished
  one starts from scratch, or from its run directory when the job is ``resumable`` (its function continues
  from the checkpoint it left there).

Determinism: a job depends only on its own arguments (seeds included), never on which worker or node runs it,
nor when; records of loaded and of fresh jobs pass through the same JSON round trip.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.display import Display
from lab.io import atomic_write_text, write_json

Report = Callable[[float, float], None]  # report(done, total): progress inside one job (steps, samples, ...)

MARKER = "job.json"  # in a run directory: the job finished, and this is its record
INCOMPLETE = "INCOMPLETE"  # in a run directory: the job was interrupted (also implied by a missing MARKER)


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
    """What :func:`run_jobs` returns: records of finished jobs, errors of failed or skipped ones, times."""

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


class ResumeMismatchError(ValueError):
    """``resume`` found a finished job made with other arguments than the job of the same id now."""


class Interrupted(Exception):
    """SIGINT / SIGTERM stopped :func:`run_jobs`; every worker is gone and unfinished runs are marked."""

    def __init__(self, signum: int, finished: int, total: int) -> None:
        self.signum, self.finished, self.total = signum, finished, total
        super().__init__(f"{signal.Signals(signum).name}: {finished} of {total} runs finished")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM


def run_jobs(jobs: Sequence[Job], out_dir: str | os.PathLike, workers: int = 2, progress: bool = True,
             title: str = "runs", address: str | None = None, resume: bool = False) -> Outcome:
    """Run ``jobs`` (dependencies first) on Ray, or in this process for ``workers=0``; see the module docstring."""
    check_jobs(jobs)
    out = Path(out_dir).absolute()  # a worker's working directory need not be this process's
    jobs = critical_path_order(jobs)
    records = load_finished(jobs, out) if resume else {}
    loaded = list(records)
    display = Display(jobs, title, progress, loaded=loaded)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    errors: dict[str, str] = {}
    engine: dict[str, Any] = {}
    inline = (workers <= 0 and address is None) or len(records) == len(jobs)  # nothing to run: no Ray
    try:
        with Signals(raise_at_once=inline) as signals:
            if inline:
                resources = _inline_resources()
                engine = {"engine": "this process", "nodes": 1, "cpus": 1, "gpus": resources.get("GPU", 0)}
                _run_inline(jobs, out, records, errors, display, resources)
            else:
                from experiments.cluster import run_on_ray  # Ray is imported only when it is used

                engine = run_on_ray(jobs, out, workers, address, records, errors, display, signals)
    except Interrupted as stop:
        finished = mark_incomplete(jobs, out)
        raise Interrupted(stop.signum, finished, len(jobs)) from None
    finally:
        display.close()
    workers_cpu = 0.0 if inline else sum(_this_invocation_cpu(records[i]) for i in records if i not in loaded)
    own_cpu = time.process_time() - start_cpu
    return Outcome(records, errors, time.perf_counter() - start_wall, own_cpu + workers_cpu, workers_cpu, loaded,
                   engine)


def _this_invocation_cpu(record: dict[str, Any]) -> float:
    return record.get("job_cpu_time_s", 0.0) - record.get("earlier_segments", {}).get("cpu_time_s", 0.0)


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


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished (joined) child processes."""
    try:
        import resource
    except ImportError:  # not on Windows: this process only
        return time.process_time()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# ------------------------------------------------------------------------------------------ markers, resume
def finish(job: Job, record: dict[str, Any], out: Path) -> dict[str, Any]:
    """The record as JSON stores it (a loaded record and a fresh one are then equal), made final on disk."""
    record = json.loads(json.dumps(record, default=str))
    write_json(out / job.id / MARKER, {"job": job.id, "fingerprint": job.fingerprint(), "record": record})
    return record


def load_finished(jobs: Sequence[Job], out: Path) -> dict[str, dict[str, Any]]:
    """Records of the jobs an earlier invocation finished; unfinished run dirs are prepared for a new attempt.
    ValueError when a finished job was run with other arguments (a resume must repeat the same command)."""
    records = {}
    for job in jobs:
        run_dir = out / job.id
        marker = run_dir / MARKER
        if marker.is_file():
            saved = json.loads(marker.read_text())
            if saved.get("fingerprint") != job.fingerprint():
                raise ResumeMismatchError(f"{run_dir} was run with other settings than this command's; resume with the "
                                 "command that started it, or choose a new --out")
            records[job.id] = saved["record"]
        elif run_dir.exists():
            (run_dir / INCOMPLETE).unlink(missing_ok=True)
    return records


def mark_incomplete(jobs: Sequence[Job], out: Path) -> int:
    """Mark every started, unfinished run; the number of finished ones (a marker can arrive after the driver
    stopped listening: the disk, not the driver's view, says what is finished)."""
    finished = 0
    for job in jobs:
        run_dir = out / job.id
        if (run_dir / MARKER).is_file():
            finished += 1
        elif run_dir.is_dir():
            atomic_write_text(run_dir / INCOMPLETE, f"interrupted before this run finished (no {MARKER}): "
                              "run the same command with --resume to finish it\n")
    return finished


def clear(run_dir: Path) -> None:
    """Remove a partial run directory (a job that cannot continue from a checkpoint starts from scratch)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)


def execute(job: Job, run_dir: Path, deps: dict[str, dict[str, Any]], report: Report) -> dict[str, Any]:
    """Call the job function with the engine's arguments and add its timing to the record."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    record = job.fn(run_dir=run_dir, report=report, deps=deps, **job.kwargs)
    record.setdefault("job", job.id)
    earlier = record.get("earlier_segments", {})  # a resumed run: what the processes before this one spent on it
    record["job_wall_time_s"] = time.perf_counter() - start_wall + earlier.get("wall_time_s", 0.0)
    record["job_cpu_time_s"] = time.process_time() - start_cpu + earlier.get("cpu_time_s", 0.0)
    return record


def ready(job: Job, records: dict, errors: dict) -> bool | None:
    """True: can start; False: wait; None: a dependency failed, so this job is skipped."""
    if any(d in errors for d in job.deps):
        return None
    return all(d in records for d in job.deps)


class Signals:
    """SIGINT / SIGTERM while :func:`run_jobs` runs: the signal number is appended to ``caught`` (the Ray loop
    polls it: an exception raised inside Ray's C++ calls is mangled) or, in-process, :class:`Interrupted` is
    raised at once. :meth:`install` again after ``ray.init``, which sets a SIGTERM handler of its own."""

    def __init__(self, raise_at_once: bool) -> None:
        self.caught: list[int] = []
        self.raise_at_once = raise_at_once
        self.previous: dict[int, Any] = {}

    def handler(self, signum: int, frame: Any) -> None:
        self.caught.append(signum)
        if self.raise_at_once:
            raise Interrupted(signum, 0, 0)

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():  # signal.signal works there only
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous.setdefault(signum, signal.getsignal(signum))
                signal.signal(signum, self.handler)

    def __enter__(self) -> Signals:
        self.install()
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _inline_resources() -> dict[str, int]:
    """What an in-process job runs with: one CPU thread, and the GPUs it sees (supervised / BC jobs pick CUDA)."""
    import torch  # the jobs import it anyway; the command line alone does not need it

    gpus = torch.cuda.device_count()
    return {"CPU": 1, "GPU": gpus} if gpus else {"CPU": 1}


def _run_inline(jobs: list[Job], out: Path, records: dict, errors: dict, display: Display,
                resources: dict[str, int]) -> None:
    pending = [j for j in jobs if j.id not in records]
    while pending:
        job = next((j for j in pending if ready(j, records, errors) is not False), None)
        if job is None:  # unreachable for a dependency-ordered list; guards against cycles
            raise ValueError(f"jobs {[j.id for j in pending]} wait on each other (a dependency cycle)")
        pending.remove(job)
        if ready(job, records, errors) is None:
            errors[job.id] = "skipped: a dependency failed"
            display.finished(job, ok=False)
            continue
        if not job.resumable:
            clear(out / job.id)
        display.started(job)
        report = lambda done, total, job_id=job.id: display.update(job_id, done, total)  # noqa: E731
        try:
            record = execute(job, out / job.id, {d: records[d] for d in job.deps}, report)
        except Interrupted:
            raise  # a signal inside a job is not a failed run: run_jobs marks what is unfinished and stops
        except Exception:  # noqa: BLE001 - one failed run must not stop the others
            errors[job.id] = traceback.format_exc()
            display.finished(job, ok=False)
            continue
        record["run_dir"] = str(out / job.id)
        record["node"] = {"hostname": socket.gethostname(), "node_id": None, "resources": resources}
        records[job.id] = finish(job, record, out)
        display.finished(job, ok=True)
