"""``supervised.train`` when the disk refuses a write or SIGTERM arrives (issue 18): one message naming the file and
its errno (exit 74) or the checkpoint to continue from (exit 143); the previous checkpoint intact and resumable.
(Before: a full disk ended in torch's ``RuntimeError: [enforce fail at inline_container.cc:672]`` and exit 1,
which the CLI documents as "training diverged"; SIGTERM killed the process without a word.)"""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import lab.io
from supervised.checkpoint import load_checkpoint
from supervised.train import main

REPO = Path(__file__).resolve().parents[2]
TINY = ["digits", "--model.channels", "8", "16", "--model.strides", "1", "2", "--train.quiet", "--train.device", "cpu",
        "--train.num-threads", "1", "--train.eval-every", "4", "--train.checkpoint-every", "2", "--train.batch-size",
        "32", "--train.run-name", "run"]


def test_a_write_the_disk_refuses_exits_74_and_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    """An injected ENOSPC from the fourth checkpoint on (torch reports it as a RuntimeError with the OSError
    chained): the message names last.pt and the errno; the step-4 checkpoint resumes to the end."""
    real, calls = torch.save, []

    def full_after_three(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as error:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64") from error
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(lab.io.torch, "save", full_after_three)
    code = main([*TINY, "--train.max-steps", "12", "--train.out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 74, err
    run_dir = tmp_path / "digits" / "run"
    assert f"could not write {run_dir / 'last.pt'}: No space left on device (ENOSPC, errno 28)" in err
    assert f"continue with --train.resume {run_dir}" in err and "Traceback" not in err
    assert load_checkpoint(run_dir / "last.pt")["step"] == 4  # last.pt at 2, best.pt and last.pt at 4; then full
    assert not list(run_dir.glob(f".*{lab.io.TMP_SUFFIX}"))
    monkeypatch.setattr(lab.io.torch, "save", real)
    assert main([*TINY, "--train.max-steps", "12", "--train.out-dir", str(tmp_path),
                 "--train.resume", str(run_dir)]) == 0


def test_a_full_disk_exits_74(tmp_path, user_namespace_mounts):
    """A real full disk: the default digits net's checkpoints (~0.9 MB each) on a 1.5 MB tmpfs."""
    mount = tmp_path / "small"
    mount.mkdir()
    script = textwrap.dedent(f"""
        mount -t tmpfs -o size=1500k tmpfs {mount} && exec {sys.executable} -m supervised.train digits \\
            --train.out-dir {mount} --train.max-steps 20 --train.eval-every 5 --train.quiet --train.device cpu""")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 74, done.stderr
    assert "No space left on device (ENOSPC, errno 28)" in done.stderr and "Traceback" not in done.stderr


def test_sigterm_exits_143_naming_the_checkpoint_to_continue_from(tmp_path):
    out = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "supervised.train", *TINY, "--train.max-steps", "100000",
                                "--train.out-dir", str(out)], cwd=REPO, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while not (out / "digits" / "run" / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert f"continue with --train.resume {out / 'digits' / 'run'}" in err and "Traceback" not in err
