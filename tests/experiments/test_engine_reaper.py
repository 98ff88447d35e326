"""A driver killed with SIGKILL (or by the OOM killer) leaves no process of its local Ray instance behind.

Ray's GCS and raylet die with the driver and the workers follow them, but the dashboard and runtime-env agents
used to live on for a minute (they report their raylet's death to the dead GCS first, with a 60 s timeout). The
instance's processes are the driver's descendants, taken just before the kill: other Ray instances on this
machine (other tests, other people) are neither counted nor touched.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# A local instance on the loopback interface only (Ray binds this machine's network address otherwise).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
TINY = ["--budget.samples", "256", "--budget.eval-every", "128", "--budget.channels", "8", "16",
        "--budget.strides", "1", "2"]  # conftest's TINY_DIGITS


def processes() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, command line), zombies left out."""
    listing = subprocess.run(["ps", "-eo", "pid=,ppid=,stat=,args="], capture_output=True, text=True,
                             check=True).stdout
    table = {}
    for line in listing.splitlines():
        pid, ppid, stat, *args = line.split(None, 3)
        if not stat.startswith("Z"):
            table[int(pid)] = (int(ppid), args[0] if args else "")
    return table


def descendants(root: int) -> dict[int, str]:
    table, found, frontier = processes(), {}, {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier and pid not in found}
        found.update({pid: table[pid][1] for pid in frontier})
    return found


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_driver_killed_with_sigkill_leaves_no_process_of_its_ray_instance(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "experiments", "digits", "--seeds", "2", "--workers", "2",
                                "--no-progress", "--out", str(tmp_path / "runs"), *TINY],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, **LOOPBACK_ENV})
    instance: dict[int, str] = {}
    try:
        def jobs_run() -> bool:
            names = set(descendants(process.pid).values())
            return process.poll() is not None or {"ray::run_task", "ray::DashboardAgent",
                                                  "ray::RuntimeEnvAgent"} <= names

        assert wait_for(jobs_run, 240) and process.poll() is None, "no job started"
        instance = descendants(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        left = lambda: {pid: name for pid, name in instance.items() if pid in processes()}  # noqa: E731
        assert wait_for(lambda: not left(), 10), f"still running 10 s after the driver died: {left()}"
    finally:
        for pid in instance:  # whatever is left of this test's instance, and nothing else
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
