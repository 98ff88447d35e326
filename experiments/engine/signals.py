"""SIGINT / SIGTERM while the engine runs: every worker stops, unfinished runs are marked, and the command
that continues them is printed (exit 128 + the signal's number)."""
from __future__ import annotations

import signal
import threading
from typing import Any


class Interrupted(KeyboardInterrupt):
    """SIGINT / SIGTERM stopped the engine; every worker is gone and unfinished runs are marked.

    A KeyboardInterrupt, as Ctrl-C's own: no ``except Exception`` takes it for a failed run, and an atomic write
    it lands in (``lab.io.atomic_write``) re-raises it rather than torch.save's error about the torn archive."""

    def __init__(self, signum: int, finished: int, total: int) -> None:
        self.signum, self.finished, self.total = signum, finished, total
        super().__init__(f"{signal.Signals(signum).name}: {finished} of {total} runs finished")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM


class Signals:
    """SIGINT / SIGTERM while the engine runs: the signal number is appended to ``caught``, which both engines
    poll with :meth:`check` (the Ray loop only: an exception raised inside Ray's C++ calls is mangled). In-process,
    :class:`Interrupted` is also raised at once; that exception can still be lost in a C extension (seen in torch,
    during A2C's update: the job then ran on to its end), so that engine checks between jobs too. :meth:`install`
    again after ``ray.init``, which sets a SIGTERM handler of its own."""

    def __init__(self, raise_at_once: bool) -> None:
        self.caught: list[int] = []
        self.raise_at_once = raise_at_once
        self.previous: dict[int, Any] = {}

    def handler(self, signum: int, frame: Any) -> None:
        self.caught.append(signum)
        if self.raise_at_once:
            raise Interrupted(signum, 0, 0)

    def check(self) -> None:
        """Raise :class:`Interrupted` if a signal was caught (its raise at once may have been lost)."""
        if self.caught:
            raise Interrupted(self.caught[0], 0, 0)

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
