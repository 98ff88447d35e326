"""Jobs as Ray tasks (:func:`experiments.engine.run_jobs` with workers or an address): run one job as a Ray task,
ship run directories, survive the loss of a node.

- Ray is started or joined by :func:`experiments.engine.connect.ray_session` (a local instance, or a cluster,
  bounded by a timeout).
- :func:`run_task`: one job in a Ray worker. On the driver's node it writes its run directory in place, under
  the driver's output directory; on any other node it writes to a scratch directory there and returns the
  directory as bytes (a tar archive, through the object store), so no shared filesystem is assumed. The
  artifacts of its dependencies come the same way, unpacked beside it, and ``deps[id]`` (paths included) is
  rewritten to point at them. A job that raises returns its traceback: only a dead worker (killed, out of
  memory, node lost) is retried, up to ``RETRIES`` times.
- :class:`ProgressSink`: an actor that collects the jobs' ``report(done, total)`` calls for the display.
- A lost node: its jobs run again elsewhere (Ray retries them; from their checkpoints where these survived).
  Nothing the driver needs lives only on another node: the progress actor is pinned to the driver's node (and
  made anew if it dies all the same), and a finished job's archive for its dependants is put into the object
  store by the driver from its own copy. A running job that no live node can run any more fails instead of
  waiting forever.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import socket
import tarfile
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from experiments.engine.connect import CONNECT_TIMEOUT_S, ray_session
from experiments.engine.display import Display
from experiments.engine.jobs import Job, execute, ready
from experiments.engine.markers import clear, finish
from experiments.engine.signals import Signals
from lab.portable import kernel_set

RETRIES = 2  # a job whose worker died starts again at most this often (from its checkpoint when resumable)
REPORT_INTERVAL_S = 0.5
_POLL_S = 0.25
_NODES_CHECK_S = 2.0  # how often the driver looks for lost nodes (a GCS call)
ERROR_KEY = "__job_error__"  # a job that raised returns {ERROR_KEY: traceback} instead of a record


def driver_node_id() -> str:
    return ray.get_runtime_context().get_node_id()


def live_nodes() -> set[str]:
    return {node["NodeID"] for node in ray.nodes() if node.get("Alive")}


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0.0))


def infeasible(request: dict[str, float]) -> str | None:
    """Why no live node can ever run a task asking for ``request`` (Ray would wait for one forever), or None."""
    need = {key: amount for key, amount in request.items() if amount > 0}
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(all(node.get(key, 0.0) >= amount for key, amount in need.items()) for node in nodes):
        return None
    return f"no node of the cluster offers {need} at once (nodes: {nodes})"


@ray.remote(num_cpus=0)
class ProgressSink:
    """Latest ``(done, total)`` per job since the driver last asked; ``total == -1`` announces a start."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[float, float]] = {}
        self.started: list[str] = []

    def put(self, job_id: str, done: float, total: float) -> None:
        if total < 0:
            self.started.append(job_id)
        else:
            self.latest[job_id] = (done, total)

    def take(self) -> tuple[list[str], dict[str, tuple[float, float]]]:
        started, latest = self.started, self.latest
        self.started, self.latest = [], {}
        return started, latest


def pack(directory: Path) -> bytes:
    directory.mkdir(parents=True, exist_ok=True)  # a job may leave its run directory empty
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(directory, arcname=".")
    return buffer.getvalue()


def unpack(blob: bytes, target: Path) -> None:
    """Extract a :func:`pack` archive to ``target`` atomically: a temporary sibling, then one rename (an older
    ``target``, e.g. the partial directory of an interrupted attempt, is replaced)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
            tar.extractall(tmp, filter="data")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def rebase(value: Any, old: str, new: str) -> Any:
    """``value`` with every string path under ``old`` moved under ``new`` (records hold absolute paths)."""
    if isinstance(value, str):
        return new + value[len(old):] if value == old or value.startswith(old + os.sep) else value
    if isinstance(value, dict):
        return {k: rebase(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(rebase(v, old, new) for v in value)
    return value


def scratch_root(out_dir: str) -> Path:
    """Where jobs of the output directory ``out_dir`` write on a node that is not the driver's: the same path
    for every attempt, so a retried resumable job on the same node finds its checkpoint."""
    key = hashlib.sha256(f"{socket.gethostname()}:{os.path.abspath(out_dir)}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "lab-experiments" / key


def node_info(cpus: float) -> dict[str, Any]:
    context = ray.get_runtime_context()
    return {"hostname": socket.gethostname(), "node_id": context.get_node_id(),
            "resources": {"CPU": cpus, "GPU": [str(g) for g in ray.get_gpu_ids()],  # the GPU ids it was given
                          "torch_threads": torch.get_num_threads()},
            "kernels": kernel_set()}  # the nodes of a cluster need not compute alike


@ray.remote(max_retries=RETRIES)
def run_task(job: Job, out_dir: str, driver_node: str, deps: dict[str, dict[str, Any]],
             dep_blobs: list[tuple[str, Any]], progress: Any) -> tuple[dict[str, Any], bytes | None]:
    """One job in a Ray worker; returns ``(record, None)`` when it wrote in place, ``(record, archive)``
    from another node, or ``({ERROR_KEY: traceback}, None)``. ``dep_blobs`` are ``(dep id, ObjectRef)`` pairs,
    fetched only off the driver's node (refs inside a list are not resolved by Ray)."""
    threads = max(int(job.cpus), 1)
    torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS; torch's pool may predate it
    os.environ.setdefault("MPLBACKEND", "Agg")
    final = Path(out_dir) / job.id
    local = ray.get_runtime_context().get_node_id() == driver_node
    run_dir = final if local else scratch_root(out_dir) / "runs" / job.id
    if not local:
        for dep, ref in dep_blobs:
            target = scratch_root(out_dir) / "deps" / dep
            unpack(ray.get(ref), target)
            deps[dep] = rebase(deps[dep], str(Path(out_dir) / dep), str(target))
    if not job.resumable:
        clear(run_dir)
    last = [0.0]

    def report(done: float, total: float) -> None:
        now = time.monotonic()
        if now - last[0] >= REPORT_INTERVAL_S or done >= total:
            last[0] = now
            progress.put.remote(job.id, float(done), float(total))

    progress.put.remote(job.id, 0.0, -1.0)
    try:
        record = execute(job, run_dir, deps, report)
    except Exception:  # noqa: BLE001 - a real error: reported with its traceback, never retried
        return {ERROR_KEY: traceback.format_exc()}, None
    record = {**rebase(record, str(run_dir), str(final)), "run_dir": str(final)}  # where it is on the driver
    record["node"] = node_info(job.cpus)
    # The marker is written here, as soon as the job is done: an interrupt that stops the driver now keeps it.
    record = finish(job, record, Path(out_dir) if local else scratch_root(out_dir) / "runs")
    if local:
        return record, None
    blob = pack(run_dir)
    clear(run_dir)
    return record, blob


def run_on_ray(jobs: list[Job], out: Path, workers: int, address: str | None, records: dict[str, Any],
               errors: dict[str, str], display: Display, signals: Signals,
               connect_timeout: float = CONNECT_TIMEOUT_S) -> dict[str, Any]:
    """:func:`experiments.engine.run_jobs` on Ray: submit each job once its dependencies finished, collect
    records (unpacking archives from other nodes), feed the display; on a caught signal cancel everything."""
    with ray_session(address, workers, signals, connect_timeout):
        return _schedule(jobs, out, address, records, errors, display, signals)


def _schedule(jobs: list[Job], out: Path, address: str | None, records: dict[str, Any], errors: dict[str, str],
              display: Display, signals: Signals) -> dict[str, Any]:
    running: dict[Any, tuple[Job, Any, dict[str, Any]]] = {}  # record ref -> (job, archive ref, task options)
    try:
        driver, gpus, nodes = driver_node_id(), cluster_gpus(), live_nodes()
        engine = {"engine": f"ray {ray.__version__}", "address": address or "local", "nodes": len(nodes),
                  "cpus": ray.cluster_resources().get("CPU", 0.0), "gpus": gpus}
        archives: dict[str, Any] = {}  # finished job -> ObjectRef of its run directory, put here (multi-node only)
        by_id = {job.id: job for job in jobs}
        progress = Progress(driver)
        nodes_checked = time.monotonic()
        pending = [job for job in jobs if job.id not in records]
        while pending or running:
            signals.check()
            for job in list(pending):
                state = ready(job, records, errors)
                if state is None:
                    pending.remove(job)
                    errors[job.id] = "skipped: a dependency failed"
                    display.finished(job, ok=False)
                elif state:
                    pending.remove(job)
                    blobs = [(d, _archive(d, out, archives)) for d in job.deps] if engine["nodes"] > 1 else []
                    options = dict(num_cpus=job.cpus, num_gpus=job.gpus if gpus else 0, resources=job.resources,
                                   num_returns=2)
                    why = infeasible(_request(job, options))
                    if why is not None:  # fail the job (its dependants are skipped) rather than wait forever
                        errors[job.id] = f"cannot be scheduled: {why}"
                        display.finished(job, ok=False)
                        continue
                    record_ref, blob_ref = run_task.options(**options).remote(
                        job, str(out), driver, {d: records[d] for d in job.deps}, blobs, progress.sink)
                    running[record_ref] = (job, blob_ref, options)
            if not running:
                if pending:
                    raise ValueError(f"jobs {[j.id for j in pending]} wait on each other (a dependency cycle)")
                break
            done, _ = ray.wait(list(running), num_returns=len(running), timeout=_POLL_S)
            signals.check()  # before results: a signal to the process group also kills Ray's services
            progress.show(display, by_id)
            if time.monotonic() - nodes_checked > _NODES_CHECK_S:
                nodes_checked = time.monotonic()
                now = live_nodes()
                if nodes - now:  # a node was lost: its jobs are retried, unless no live node can run them now
                    _fail_stranded(running, errors, display)
                nodes = now
            for ref in done:
                job, blob_ref, _ = running.pop(ref)
                display.started(job)
                try:
                    record, blob = ray.get([ref, blob_ref])
                except ray.exceptions.RayError as error:  # the worker died more often than RETRIES
                    errors[job.id] = f"{type(error).__name__} after {RETRIES} retries: {error}"
                    display.finished(job, ok=False)
                    continue
                if ERROR_KEY in record:
                    errors[job.id] = record[ERROR_KEY]
                    display.finished(job, ok=False)
                    continue
                if blob is not None:
                    unpack(blob, out / job.id)  # dependants get it from here (_archive), not from the job's node
                records[job.id] = record  # its marker came with it (written by run_task)
                display.finished(job, ok=True)
            display.refresh()
        signals.check()
        return engine
    finally:
        for ref in running:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)


class Progress:
    """The driver's side of :class:`ProgressSink`: the actor lives on the driver's node (a lost node cannot take
    it along) and is made anew should it die all the same (jobs already running then report to the old one)."""

    def __init__(self, driver_node: str) -> None:
        self.driver_node = driver_node
        self.sink, self.asked = self._new()

    def _new(self) -> tuple[Any, Any]:
        here = NodeAffinitySchedulingStrategy(node_id=self.driver_node, soft=False)
        sink = ProgressSink.options(scheduling_strategy=here).remote()
        return sink, sink.take.remote()

    def show(self, display: Display, by_id: dict[str, Job]) -> None:
        """Pass what the jobs reported since the last call to ``display``."""
        if not ray.wait([self.asked], timeout=0)[0]:
            return
        try:
            started, latest = ray.get(self.asked)
        except ray.exceptions.RayActorError:
            self.sink, self.asked = self._new()
            return
        self.asked = self.sink.take.remote()
        for job_id in started:
            display.started(by_id[job_id])
        for job_id, (n, total) in latest.items():
            display.update(job_id, n, total)


def _request(job: Job, options: dict[str, Any]) -> dict[str, float]:
    return {"CPU": job.cpus, "GPU": options["num_gpus"], **job.resources}


def _fail_stranded(running: dict[Any, tuple[Job, Any, dict[str, Any]]], errors: dict[str, str],
                   display: Display) -> None:
    """Cancel and fail the running jobs that no live node can run any more (their node was lost and took the
    resources they ask for along): Ray would keep their retries waiting forever."""
    for ref, (job, _, options) in list(running.items()):
        why = infeasible(_request(job, options))
        if why is not None:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
            del running[ref]
            errors[job.id] = f"cannot be scheduled any more (a node was lost): {why}"
            display.finished(job, ok=False)


def _archive(job_id: str, out: Path, archives: dict[str, Any]) -> Any:
    """The object-store copy of a finished job's run directory, packed and put here from the driver's copy on
    first use: owned and stored on the driver's node, so the loss of the node that ran the job cannot lose it."""
    if job_id not in archives:
        archives[job_id] = ray.put(pack(out / job_id))
    return archives[job_id]
