"""The exit statuses of every command line of the lab (``python -m experiments``, ``agents.train``,
``supervised.train``, ``envs.demos``); README, "Exit status", lists them for users."""
from __future__ import annotations

OK = 0
FAILED = 1  # a run failed or diverged (non-finite loss, gradient, observation or reward); the message names it
BAD_INPUT = 2  # refused before any work: a bad option or path, a busy output directory, an unreachable cluster
IO_ERROR = 74  # the operating system refused a write (full disk, no permission): sysexits.h's EX_IOERR
INTERRUPTED_SIGINT = 130  # Ctrl-C (128 + SIGINT): the resume command is printed
INTERRUPTED_SIGTERM = 143  # SIGTERM (128 + SIGTERM): the resume command is printed
