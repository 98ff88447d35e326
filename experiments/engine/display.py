"""Live view of an invocation: runs done / total with an overall ETA, one line per running run with its own
progress (in steps), and the queue. Without a terminal (or ``enabled=False``) one plain line per started /
finished run.

The ETA weighs every run by its ``Job.cost`` (the planner's rough relative duration): the share of the total
cost done so far (finished runs plus the reported fraction of running ones) over the time since the first run
started (engine start-up excluded); it shows from 2% of the work on (earlier guesses swing by hours).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any


MIN_DONE_FOR_ETA = 0.02


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA --"
    seconds = int(round(seconds))
    return f"ETA {seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"ETA {seconds // 60}:{seconds % 60:02d}"


class Display:
    """See the module docstring. ``loaded`` jobs (finished in an earlier, interrupted invocation) count as done
    but not in the ETA's rate."""

    def __init__(self, jobs: Sequence[Any], title: str, enabled: bool = True, loaded: Sequence[str] = ()) -> None:
        self.jobs = list(jobs)
        self.cost = {job.id: max(job.cost, 1e-9) for job in self.jobs}
        self.total = len(self.jobs)
        self.loaded = set(loaded)
        self.done = len(self.loaded)
        self.failed = 0
        self.fraction: dict[str, float] = {}  # running job -> reported share of its steps
        self.finished_cost = 0.0
        self.running: dict[str, Any] = {}
        self.started_at: dict[str, float] = {}
        self.began = float("inf")  # when the first run started (tests may set it)
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
            self.overall = self.progress.add_task(f"[bold]{title}[/bold]", total=self.total, completed=self.done,
                                                  count=self._count())
            self.live = Live(Group(self.progress, _QueueLine(self)), console=Console(stderr=True),
                             refresh_per_second=4, transient=False)
            self.live.start()

    def eta_s(self) -> float | None:
        """Seconds left at the rate of this invocation so far (None until some work is measured)."""
        todo = [j for j in self.jobs if j.id not in self.loaded]
        total = sum(self.cost[j.id] for j in todo)
        done = self.finished_cost + sum(self.cost[i] * f for i, f in self.fraction.items())
        if total <= 0 or done < MIN_DONE_FOR_ETA * total or not self.started_at:
            return None
        elapsed = time.perf_counter() - min(self.began, *self.started_at.values())
        return max(elapsed * (total - done) / done, 0.0)

    def _count(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.done}/{self.total} runs done{failed}, {format_eta(self.eta_s())}"

    def queued(self) -> list[str]:
        return [j.label or j.id for j in self.jobs if j.id not in self.started_at and j.id not in self.loaded]

    def started(self, job: Any) -> None:
        if job.id in self.started_at:
            return
        self.started_at[job.id] = time.perf_counter()
        self.fraction[job.id] = 0.0
        if self.live is not None:
            self.running[job.id] = self.progress.add_task(f"  {job.label or job.id}", total=None, count="starting")
        else:
            self.running[job.id] = None
            if self.enabled:
                print(f"[{self.done}/{self.total}] start {job.id}", file=sys.stderr, flush=True)

    def finished(self, job: Any, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        self.finished_cost += self.cost[job.id]
        self.fraction.pop(job.id, None)
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
            print(f"[{self.done}/{self.total}] {status} {job.id} ({seconds:.1f} s, {format_eta(self.eta_s())})",
                  file=sys.stderr, flush=True)

    def update(self, job_id: str, done: float, total: float) -> None:
        """A progress message of a running job: ``done`` of ``total`` steps."""
        if job_id not in self.running or total <= 0:
            return
        self.fraction[job_id] = min(done / total, 1.0)
        task = self.running[job_id]
        if self.live is not None and task is not None:
            self.progress.update(task, completed=done, total=total, count=f"{done:,.0f}/{total:,.0f} steps")

    def refresh(self) -> None:
        if self.live is not None:
            self.progress.update(self.overall, count=self._count())

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
