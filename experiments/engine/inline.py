"""The in-process engine (``--workers 0``): every job in this process, one after the other, without Ray
(tests, debugging, a machine without Ray)."""
from __future__ import annotations

import socket
import traceback
from pathlib import Path
from typing import Any

from experiments.engine.display import Display
from experiments.engine.jobs import Job, execute, ready
from experiments.engine.markers import clear, finish
from experiments.engine.signals import Interrupted, Signals
from lab.portable import kernel_set


def run_inline(jobs: list[Job], out: Path, records: dict, errors: dict, display: Display,
               signals: Signals) -> dict[str, Any]:
    """Run the jobs not in ``records`` here, dependencies first, filling ``records`` / ``errors``; where they ran.
    A signal whose raise was lost inside a job stops the engine when that job ends (``signals.check``)."""
    resources = _resources()
    pending = [j for j in jobs if j.id not in records]
    while pending:
        signals.check()
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
        record["node"] = {"hostname": socket.gethostname(), "node_id": None, "resources": resources,
                          "kernels": kernel_set()}
        records[job.id] = finish(job, record, out)
        display.finished(job, ok=True)
    signals.check()
    return {"engine": "this process", "nodes": 1, "cpus": 1, "gpus": resources.get("GPU", 0)}


def _resources() -> dict[str, int]:
    """What an in-process job runs with: one CPU thread, and the GPUs it sees (supervised / BC jobs pick CUDA)."""
    import torch  # the jobs import it anyway; the command line alone does not need it

    gpus = torch.cuda.device_count()
    return {"CPU": 1, "GPU": gpus} if gpus else {"CPU": 1}
