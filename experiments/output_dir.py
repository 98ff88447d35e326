"""An experiment's output directory, ``OUT/<experiment>``: usable (checked before any work), never overwritten,
and owned by one invocation at a time.

Ownership is an exclusive ``flock`` on ``OUT/.<experiment>.lock``, held for the whole invocation; the file says
who holds it (host, PID, command, since when). The kernel drops the lock when its process dies, however it dies,
so a lock left by a killed invocation is free again without anyone removing it: only a live holder refuses.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType


class OutputExistsError(FileExistsError):
    """The output directory of an experiment already holds files: nothing is ever overwritten."""


class OutputBusyError(RuntimeError):
    """Another live invocation owns the output directory."""


def check_output_path(out: Path, names: Sequence[str]) -> None:
    """ValueError naming the path when ``out`` or ``out/<name>`` cannot be an output directory (a file is in the
    way, or nothing could be created there)."""
    for path in (out, *(out / n for n in names)):
        if path.exists() and not path.is_dir():
            raise ValueError(f"--out {out}: {path} is a file, not a directory; choose another --out")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: cannot create or write anything under {existing} (permission denied); "
                         "choose another --out")


def check_output_free(out: Path, names: Sequence[str]) -> None:
    """Refuse (before any work) when ``out/<name>`` already holds anything; suggest ``--resume`` (to continue
    an interrupted run there) and free directories."""
    taken = [out / n for n in names if (out / n).exists() and any((out / n).iterdir())]
    if taken:
        free = []
        for i in range(2, 100):
            candidate = Path(f"{out}-{i}")
            if not any((candidate / n).exists() for n in names):
                free.append(str(candidate))
            if len(free) == 2:
                break
        raise OutputExistsError(
            f"{', '.join(map(str, taken))} already hold(s) an earlier run; nothing is overwritten. To continue an "
            f"interrupted run there, repeat its command with --resume; otherwise choose a new --out, e.g. one of: "
            f"{', '.join(free)} (or move the old directory away)")


class OutputLock:
    """``with OutputLock(out, names, command):`` owns ``out/<name>`` for every name, or raises
    :class:`OutputBusyError` naming the live holder (module docstring)."""

    def __init__(self, out: Path, names: Sequence[str], command: Sequence[str]) -> None:
        self.out, self.names, self.command = out, list(names), list(command)
        self.held: list[int] = []

    @staticmethod
    def path(out: Path, name: str) -> Path:
        return out / f".{name}.lock"

    def __enter__(self) -> OutputLock:
        self.out.mkdir(parents=True, exist_ok=True)
        holder = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "command": self.command,
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S")})
        try:
            for name in self.names:
                path = self.path(self.out, name)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise OutputBusyError(f"{self.out / name} is in use by another run ({describe(path)}); wait for "
                                          "it to end, or choose another --out") from None
                self.held.append(fd)
                os.ftruncate(fd, 0)
                os.write(fd, holder.encode())
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()

    def release(self) -> None:
        for fd in self.held:
            os.close(fd)  # closing the last descriptor drops the flock
        self.held = []


def describe(lock: Path) -> str:
    """Who holds ``lock``, as its file says: host, PID, since when, command."""
    try:
        holder = json.loads(lock.read_text())
        return (f"PID {holder['pid']} on {holder['host']} since {holder['since']}: "
                f"{' '.join(holder['command'])}")
    except (OSError, ValueError, KeyError):
        return f"its lock file {lock} does not say who"
