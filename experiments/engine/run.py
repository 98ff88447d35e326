"""One entry point, :func:`run_jobs`: the jobs of an invocation on Ray (:mod:`experiments.engine.ray_runner`: a
local instance or a cluster) or in this process (:mod:`experiments.engine.inline`), resumable, with a live display.

- A job that raises is recorded with its traceback and its dependants are skipped; the others go on. A job
  whose worker dies (SIGKILL, out of memory, lost node) is retried (``ray_runner.RETRIES``).
- SIGINT / SIGTERM stop every worker, mark started runs (:mod:`experiments.engine.markers`) and raise
  :class:`experiments.engine.signals.Interrupted`. ``resume=True`` loads the finished jobs instead of running
  them again; an unfinished one starts from scratch, or from its run directory when the job is ``resumable``
  (its function continues from the checkpoint it left there).
- Records of loaded and of fresh jobs pass through the same JSON round trip.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.engine.connect import CONNECT_TIMEOUT_S
from experiments.engine.display import Display
from experiments.engine.inline import run_inline
from experiments.engine.jobs import Job, Outcome, check_jobs, critical_path_order, this_invocation_cpu
from experiments.engine.markers import load_finished, mark_incomplete
from experiments.engine.signals import Interrupted, Signals


def run_jobs(jobs: Sequence[Job], out_dir: str | os.PathLike, workers: int = 2, progress: bool = True,
             title: str = "runs", address: str | None = None, resume: bool = False,
             connect_timeout: float = CONNECT_TIMEOUT_S) -> Outcome:
    """Run ``jobs`` (dependencies first) on Ray with ``workers`` local CPUs or the cluster at ``address`` (joined
    within ``connect_timeout`` seconds, else :class:`experiments.engine.connect.NotConnected`), or in this process
    for ``workers=0``; see the module docstring."""
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
                engine = run_inline(jobs, out, records, errors, display, signals)
            else:
                from experiments.engine.ray_runner import run_on_ray  # Ray is imported only when it is used

                engine = run_on_ray(jobs, out, workers, address, records, errors, display, signals,
                                    connect_timeout)
    except Interrupted as stop:
        finished = mark_incomplete(jobs, out)
        raise Interrupted(stop.signum, finished, len(jobs)) from None
    finally:
        display.close()
    workers_cpu = 0.0 if inline else sum(this_invocation_cpu(records[i]) for i in records if i not in loaded)
    own_cpu = time.process_time() - start_cpu
    return Outcome(records, errors, time.perf_counter() - start_wall, own_cpu + workers_cpu, workers_cpu, loaded,
                   engine)


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished (joined) child processes."""
    try:
        import resource
    except ImportError:  # not on Windows: this process only
        return time.process_time()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
