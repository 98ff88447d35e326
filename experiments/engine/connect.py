"""Starting or joining Ray without hanging, and without leaving processes behind.

:func:`ray_session` is ``ray.init`` ... ``ray.shutdown`` for the engine and the tuning search:

- no address: a local instance with ``cpus`` CPUs, watched by a reaper (:mod:`experiments.engine.reaper`) that
  kills what is left of it if this process dies without shutting it down (SIGKILL, the OOM killer);
- ``"HOST:PORT"`` or ``"auto"`` (``RAY_ADDRESS``, else the cluster ``ray start`` recorded on this machine): joins
  that cluster, bounded by a timeout. Ray's own connect retries for minutes and ignores Ctrl-C, so the address is
  first probed with a plain TCP connect (refused: fail at once), then ``ray.init`` runs in a helper thread while
  this thread waits for it and watches for SIGINT / SIGTERM. :class:`NotConnected` says what was tried.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from experiments.engine.reaper import Reaper, children
from experiments.engine.signals import Interrupted, Signals
from lab import portable

CONNECT_TIMEOUT_S = 30.0  # joining a live cluster takes a second or two; a dead address must not take minutes
_POLL_S = 0.1
HINT = ("To run on a cluster, start its head node with `ray start --head` (it prints the address to pass, "
        "HOST:PORT, port 6379 by default) and join other machines with `ray start --address HOST:PORT`; on a node "
        "of a running cluster --address auto finds it. Without --address a local Ray instance is started.")


class NotConnected(Exception):
    """No Ray cluster was joined at ``--address``, so nothing started: none answers there, or Ray did not join in
    time, or SIGINT / SIGTERM (``signum``) arrived while connecting."""

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = signum


@contextmanager
def ray_session(address: str | None, cpus: int, signals: Signals,
                timeout_s: float = CONNECT_TIMEOUT_S) -> Iterator[None]:
    """Ray for the body of the ``with`` (see :func:`connect`), shut down on leaving."""
    shutdown = connect(address, cpus, signals, timeout_s)
    try:
        yield
    finally:
        shutdown()


def connect(address: str | None, cpus: int, signals: Signals,
            timeout_s: float = CONNECT_TIMEOUT_S) -> Callable[[], None]:
    """``ray.init`` for this process: a local instance with ``cpus`` CPUs (``address`` None) or the cluster at
    ``address``, with ``signals`` installed (again over the SIGTERM handler ``ray.init`` sets); returns what shuts
    it down. :class:`NotConnected` when no cluster was joined: then there is nothing to shut down."""
    import ray  # here: importing Ray takes a second, and the command line must not pay it for nothing

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    signals.install()
    reaper = None
    if address is None:  # "local": a new instance even when RAY_ADDRESS names a cluster (that takes --address)
        before = children(os.getpid())
        ray.init(address="local", num_cpus=cpus, **quiet)  # its workers inherit this process's environment
        reaper = Reaper.start(children(os.getpid()) - before)  # the processes ray.init started
    else:  # a cluster's workers were started elsewhere: portable mode travels in the job's runtime environment
        if portable.in_force():
            quiet["runtime_env"] = {"env_vars": portable.ENVIRONMENT}
        join(address, timeout_s, signals, quiet)
    signals.install()  # over the SIGTERM handler ray.init set (it would exit at once, with status 1)

    def shutdown() -> None:
        ray.shutdown()
        if reaper is not None:
            reaper.stop()

    return shutdown


def join(address: str, timeout_s: float, signals: Signals, init_kwargs: dict[str, Any]) -> None:
    """``ray.init(address=...)`` within ``timeout_s`` seconds, or :class:`NotConnected`."""
    if timeout_s <= 0:
        raise NotConnected(f"the connect timeout must be a positive number of seconds, got {timeout_s:g}")
    deadline = time.monotonic() + timeout_s
    target, source = resolve(address)
    what = f"the Ray cluster at {target}{source}"
    try:
        host, port = split_address(target)
        probe(host, port, deadline, signals.caught, what, timeout_s)
        _init_in_thread(target, init_kwargs, deadline, signals.caught, what, timeout_s)
    except Interrupted as stop:  # a handler that raises at once (the tuning search's)
        raise NotConnected(_interrupted(stop.signum, what), stop.signum) from None


def resolve(address: str) -> tuple[str, str]:
    """The address ``ray.init`` will join and, for ``"auto"``, where it was found (as Ray finds it)."""
    if address != "auto":
        return address, ""
    from ray._private.services import get_ray_address_from_environment

    from_env = os.environ.get("RAY_ADDRESS")
    try:
        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        found = None
    if not found or found == "auto":
        raise NotConnected(f"--address auto found no running Ray cluster on this machine (RAY_ADDRESS is unset, "
                           f"and no cluster was started here with `ray start`); nothing started. {HINT}")
    return found, " (from RAY_ADDRESS, for --address auto)" if from_env else " (found by --address auto)"


def split_address(address: str) -> tuple[str, int]:
    """HOST and PORT of ``HOST:PORT`` (``[v6]:PORT`` too; a ``ray://`` client address is probed likewise)."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise NotConnected(f"--address must be 'auto' or HOST:PORT of a running Ray cluster, got {address!r}; "
                           f"nothing started. {HINT}")
    return host, int(port)


def probe(host: str, port: int, deadline: float, caught: list[int], what: str, timeout_s: float) -> None:
    """A plain TCP connect to ``host:port``: :class:`NotConnected` at once when refused or unresolvable, at the
    deadline when nothing answers (a firewall that drops packets), or on a caught signal."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise NotConnected(_failed(what, f"the host name {host!r} does not resolve ({error.strerror})")) from None
    reasons = []
    for family, kind, proto, _, sockaddr in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setblocking(False)
            code = sock.connect_ex(sockaddr)
            while code in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EALREADY):
                _check(caught, deadline, what, f"no answer from {host}:{port} within {timeout_s:g} s")
                if select.select([], [sock], [], _POLL_S)[1]:
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == 0:
                return
            reasons.append(os.strerror(code).lower())
    raise NotConnected(_failed(what, f"{', '.join(dict.fromkeys(reasons))} (no server listens there)"))


def _init_in_thread(target: str, init_kwargs: dict[str, Any], deadline: float, caught: list[int], what: str,
                    timeout_s: float) -> None:
    """``ray.init`` in a daemon thread while this one waits with the deadline and polls ``caught``. A thread left
    behind by the deadline or a signal cannot keep the process alive (it is a daemon) and this process ends."""
    import ray

    outcome: dict[str, BaseException] = {}

    def init() -> None:
        try:
            ray.init(address=target, **init_kwargs)
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = error

    thread = threading.Thread(target=init, name="ray-init", daemon=True)
    thread.start()
    while thread.is_alive():
        _check(caught, deadline, what, f"{target} accepts connections but Ray did not join it within {timeout_s:g} s "
                                       f"(is it the GCS port of a Ray {ray.__version__} cluster? a slow cluster "
                                       "may need a longer --connect-timeout)")
        thread.join(_POLL_S)
    if "error" in outcome:
        error = outcome["error"]
        raise NotConnected(_failed(what, f"Ray could not join it: {type(error).__name__}: {error}")) from error


def _check(caught: list[int], deadline: float, what: str, too_late: str) -> None:
    if caught:
        raise NotConnected(_interrupted(caught[0], what), caught[0])
    if time.monotonic() >= deadline:
        raise NotConnected(_failed(what, too_late))


def _failed(what: str, why: str) -> str:
    return f"could not connect to {what}: {why}; nothing started. {HINT}"


def _interrupted(signum: int, what: str) -> str:
    return f"{signal.Signals(signum).name} while connecting to {what}; nothing started"
