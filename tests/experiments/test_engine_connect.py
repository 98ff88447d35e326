"""``--address`` where no Ray cluster answers: the command gives up early with exit 2 and a message saying what
was tried and how to start or reach a cluster; SIGINT / SIGTERM while connecting end it (130 / 143) with one
message. Ray's own connect retries for minutes and ignores Ctrl-C.

Everything here stays on the loopback interface: a refused port, and a TCP server of this test that accepts
connections and never answers (an open port that is not Ray's).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.engine.connect import HINT

# Ray turns a loopback address into this machine's network address unless told it runs on one machine only.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
DID_NOT_HANG_S = 120  # generous on a loaded machine; without the fix these commands run for minutes


def refused_address() -> str:
    """127.0.0.1:PORT with nothing listening (a port just freed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


class Silent:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.server.accept()[0])
            except OSError:  # closed
                return

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.getsockname()[1]}"

    def close(self) -> None:
        self.server.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


def start(tmp_path: Path, address: str, *options: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    argv = ["digits", "--seeds", "1", "--no-progress", "--out", str(tmp_path / "runs"), "--address", address, *options]
    return subprocess.Popen([sys.executable, "-m", "experiments", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **LOOPBACK_ENV, **(env or {})})


def finish(process: subprocess.Popen) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=DID_NOT_HANG_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"still connecting after {DID_NOT_HANG_S} s")
    return process.returncode, err


@pytest.mark.parametrize("how", ["HOST:PORT", "auto"])
def test_a_refused_address_fails_at_once_saying_what_was_tried(tmp_path, how):
    address = refused_address()
    if how == "auto":  # --address auto takes RAY_ADDRESS first, as Ray does
        process = start(tmp_path, "auto", env={"RAY_ADDRESS": address})
    else:
        process = start(tmp_path, address)
    code, err = finish(process)
    assert code == 2, err
    assert f"could not connect to the Ray cluster at {address}" in err and "connection refused" in err
    assert ("from RAY_ADDRESS" in err) == (how == "auto")
    assert HINT in err and "ray start --head" in err
    assert "Failed to connect to GCS" not in err  # refused before Ray tried (and printed its retries)
    assert not (tmp_path / "runs" / "digits").exists()  # nothing started (OUT holds only the released lock)


def test_an_open_port_that_is_not_ray_is_given_up_after_the_connect_timeout(tmp_path, silent):
    code, err = finish(start(tmp_path, silent.address, "--connect-timeout", "3"))
    assert code == 2, err
    assert f"{silent.address} accepts connections but Ray did not join it within 3 s" in err
    assert "--connect-timeout" in err and HINT in err
    assert len(silent.accepted) >= 2  # the probe, then Ray itself
    assert not (tmp_path / "runs" / "digits").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_connecting_ends_the_command_with_one_message(tmp_path, silent, signum):
    process = start(tmp_path, silent.address)  # the default timeout: the signal comes seconds after the probe
    deadline = time.monotonic() + DID_NOT_HANG_S
    while len(silent.accepted) < 2:  # probed, and ray.init is connecting
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    os.kill(process.pid, signum)
    code, err = finish(process)
    assert code == 128 + signum, err
    lines = [line for line in err.splitlines() if "while connecting" in line]
    assert lines == [f"interrupted: {signal.Signals(signum).name} while connecting to the Ray cluster at "
                     f"{silent.address}; nothing started"]
    assert "Traceback" not in err


def test_a_connect_timeout_that_is_not_positive_is_bad_input(tmp_path):
    code, err = finish(start(tmp_path, refused_address(), "--connect-timeout", "0"))
    assert code == 2 and "--connect-timeout must be a positive number of seconds" in err
