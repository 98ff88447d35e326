"""A watchdog for the local Ray instance a driver started: when the driver dies without shutting Ray down
(SIGKILL, the OOM killer), it kills what is left of the instance at once.

Why: Ray's GCS and raylet die with the driver (the kernel's parent-death signal) and the workers follow the raylet,
but the dashboard and runtime-env agents, once they see their raylet gone, first publish its death to the (dead)
GCS with a 60 s timeout, so they outlive the driver by a minute, even with ``include_dashboard=False``.

:meth:`Reaper.start` runs this file as a script (standard library only, nothing of the lab is imported) in a
session of its own, so a signal to the driver's process group spares it. Its stdin is a pipe from the driver:
``stop`` means the driver shut Ray down itself; end of file without it means the driver died. Until then it
keeps a list of the instance's processes (the ``roots`` ray.init started and their descendants, refreshed every
``REFRESH_S``), each with its start time, so that a process id reused since is never killed. Linux only (``/proc``).
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

REFRESH_S = 0.5
STOP = "stop"


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, or None (gone, a zombie, unreadable)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": the command name may hold spaces
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[19]))


def _table() -> dict[int, tuple[int, int]]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            table[int(entry)] = stat
    return table


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (empty where there is no ``/proc``)."""
    if not os.path.isdir("/proc"):
        return set()
    return {child for child, (parent, _) in _table().items() if parent == pid}


def descendants(roots: set[int]) -> dict[int, int]:
    """``roots`` and every live process below them: pid -> start time."""
    table, found, frontier = _table(), {}, {pid for pid in roots}
    while frontier:
        found.update({pid: table[pid][1] for pid in frontier if pid in table})
        frontier = {pid for pid, (parent, _) in table.items() if parent in frontier and pid not in found}
    return found


def watch(roots: set[int]) -> None:
    """The reaper's loop (see the module docstring)."""
    known: dict[int, int] = {}
    while True:
        known.update(descendants(roots))
        if select.select([sys.stdin], [], [], REFRESH_S)[0]:
            line = sys.stdin.readline()
            if line.strip() == STOP:
                return
            if not line:  # end of file: the driver is gone
                break
    for pid, started in known.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == started:  # the same process, not a later one with its id
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class Reaper:
    """The driver's handle on its reaper process."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process

    @classmethod
    def start(cls, roots: set[int]) -> Reaper | None:
        """A reaper for the processes ``roots`` (and those they start) of this process, the driver; None without
        ``/proc`` or without roots, or when it cannot be started (a missing watchdog must not stop the runs)."""
        if not roots or not os.path.isdir("/proc"):
            return None
        try:
            process = subprocess.Popen([sys.executable, "-I", __file__, *map(str, sorted(roots))],
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True, text=True)
        except OSError:
            return None
        return cls(process)

    def stop(self) -> None:
        """Ray was shut down: the reaper leaves without killing anything."""
        try:
            self.process.communicate(f"{STOP}\n", timeout=10)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    watch({int(pid) for pid in sys.argv[1:]})
