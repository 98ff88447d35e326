"""A node lost while ``python -m experiments`` runs on a cluster (spot instances, shared clusters): its jobs run
again elsewhere and the experiment ends with the numbers an undisturbed run gives; a job that only the lost node
could run fails (its dependants are skipped) instead of waiting forever.

A real two-node ``ray.cluster_utils.Cluster`` on this machine, on the loopback interface only: the head (where
the driver attaches) and a worker node, one CPU each. The worker node is removed while a job runs on it (seen
from its scratch directory: jobs off the driver's node write there).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from experiments.cli import main
from experiments.engine import Job, run_jobs
from experiments.engine.markers import MARKER
from experiments.engine.ray_runner import scratch_root

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import the tests

DIGITS = ["digits", "--seeds", "2", "--no-progress", "--budget.samples", "512", "--budget.eval-every", "256",
          "--budget.channels", "8", "16", "--budget.strides", "1", "2"]
# Ray turns a loopback address into this machine's network address unless told it runs on one machine only.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def numbers(exp_dir: Path) -> dict:
    """Every number of results.json that does not measure time: the runs' curves, final metrics, summary."""
    results = json.loads((exp_dir / "results.json").read_text())
    curves = {r["job"]: [(p["samples"], p["accuracy"]) for p in r["curve"]] for r in results["runs"]}
    finals = {r["job"]: r["final_metric"] for r in results["runs"]}
    summary = [(r["quantity"], r["variant"], r["values"]) for r in results["summary"]
               if r["unit"] != "s" and "time" not in r["quantity"]]  # wall / CPU times and their ratios vary
    return {"curves": curves, "finals": finals, "summary": summary, "errors": results["errors"]}


def processes_under(root: int) -> dict[int, str]:
    """pid -> command line of every live process below ``root``."""
    listing = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True, check=True).stdout
    table = {}
    for line in listing.splitlines():
        pid, ppid, *args = line.split(None, 2)
        table[int(pid)] = (int(ppid), args[0] if args else "")
    found, frontier = {}, {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier and pid not in found}
        found.update({pid: table[pid][1] for pid in frontier})
    return found


@pytest.fixture
def out(tmp_path):
    """The output directory; the lost node's scratch directory under it (its partial runs) is removed after."""
    yield tmp_path / "runs"
    shutil.rmtree(scratch_root(str(tmp_path / "runs")), ignore_errors=True)


@pytest.fixture
def cluster(signal_handlers_restored):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "node_ip_address": "127.0.0.1"})
    yield cluster
    cluster.shutdown()


def test_a_node_lost_while_its_jobs_run_costs_no_run_and_changes_no_number(cluster, tmp_path, out):
    worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    scratch = scratch_root(str(out)) / "runs"
    process = subprocess.Popen([sys.executable, "-m", "experiments", *DIGITS, "--address", cluster.address,
                                "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **LOOPBACK_ENV})
    try:
        deadline = time.monotonic() + 240

        def running_on_the_worker() -> list[Path]:  # a job there has begun writing and not finished
            return [d for d in scratch.glob("digits/*/*") if any(d.iterdir()) and not (d / MARKER).exists()]

        while not running_on_the_worker():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no job ran on the worker node"
            time.sleep(0.05)
        lost = running_on_the_worker()
        on_worker = processes_under(worker.all_processes["raylet"][0].process.pid)
        assert "ray::ProgressSink" not in on_worker.values()  # what the driver needs is on its own node
        cluster.remove_node(worker, allow_graceful=False)  # as a spot instance goes: no goodbye
        _, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert all(not (d / MARKER).exists() for d in lost)  # those jobs really were cut off there...
    for d in lost:  # ...and finished elsewhere
        assert (out / d.relative_to(scratch) / MARKER).is_file()
    results = json.loads((out / "digits" / "results.json").read_text())
    assert results["timing"]["engine"]["nodes"] == 2 and len(results["runs"]) == 6

    reference = tmp_path / "undisturbed"
    assert main([*DIGITS, "--workers", "0", "--out", str(reference)]) == 0
    assert numbers(out / "digits") == numbers(reference / "digits")


def nap(run_dir: Path, report: Any, deps: dict[str, Any], *, seconds: float) -> dict[str, Any]:
    """A job that marks its start in its run directory, then sleeps."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / "started").write_text("")
    time.sleep(seconds)
    return {"slept": seconds}


def test_a_job_only_the_lost_node_could_run_fails_instead_of_waiting_forever(cluster, out, monkeypatch):
    monkeypatch.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)  # LOOPBACK_ENV, in this process
    worker = cluster.add_node(num_cpus=1, resources={"spot": 1}, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    jobs = [Job("t/pinned/seed1", nap, dict(seconds=600), resources={"spot": 1}),  # the worker node alone has "spot"
            Job("t/after/seed1", nap, dict(seconds=0), deps=("t/pinned/seed1",)),
            Job("t/free/seed1", nap, dict(seconds=0))]
    started = scratch_root(str(out)) / "runs" / "t/pinned/seed1" / "started"
    outcome: dict[str, Any] = {}

    def engine() -> None:
        outcome["value"] = run_jobs(jobs, out, address=cluster.address, progress=False)

    thread = threading.Thread(target=engine, daemon=True)  # daemon: a hang fails the test instead of the suite
    thread.start()
    deadline = time.monotonic() + 240
    while not started.exists():
        assert thread.is_alive() and time.monotonic() < deadline, "the pinned job never started"
        time.sleep(0.05)
    cluster.remove_node(worker, allow_graceful=False)
    thread.join(240)
    assert not thread.is_alive(), "the engine waits for a node that is gone"
    result = outcome["value"]
    assert "cannot be scheduled any more (a node was lost)" in result.errors["t/pinned/seed1"]
    assert result.errors["t/after/seed1"].startswith("skipped")
    assert result.records["t/free/seed1"]["slept"] == 0


def test_the_progress_actor_killed_mid_run_is_made_anew(tmp_path, monkeypatch):
    """The driver's progress actor dies all the same (the OOM killer, a crash): the runs go on and finish."""
    monkeypatch.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)  # a local instance on loopback
    jobs = [Job(f"t/nap/seed{i}", nap, dict(seconds=4.0)) for i in (1, 2, 3)]
    killed: list[int] = []

    def kill_the_sink() -> None:
        deadline = time.monotonic() + 240
        while not killed and time.monotonic() < deadline:
            sinks = [pid for pid, args in processes_under(os.getpid()).items() if args == "ray::ProgressSink"]
            if sinks and any((tmp_path / "out").glob("t/nap/*/started")):
                os.kill(sinks[0], signal.SIGKILL)  # this test's own instance: a descendant of this process
                killed.append(sinks[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_sink, daemon=True)
    killer.start()
    outcome = run_jobs(jobs, tmp_path / "out", workers=2, progress=False)
    killer.join()
    assert killed, "the progress actor was never seen"
    assert outcome.ok, outcome.errors
    assert {r["slept"] for r in outcome.records.values()} == {4.0} and len(outcome.records) == 3
