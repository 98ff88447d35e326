"""Portable mode (``--portable``, ``lab.portable``): the command starts itself again with the pinned kernel
environment, so it is in force before torch loads (torch reads it then), and every results file says which
kernels made its numbers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import portable

REPO = Path(__file__).resolve().parents[2]
TINY_DIGITS = ["digits", "--model.channels", "8", "16", "--model.strides", "1", "2", "--train.quiet",
               "--train.device", "cpu", "--train.max-steps", "4", "--train.batch-size", "32", "--train.run-name", "r"]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in portable.ENVIRONMENT}


def test_portable_supervised_run_computes_with_the_pinned_kernels_and_records_them(tmp_path):
    """torch reports AVX2 kernels only if ATEN_CPU_CAPABILITY was set before it loaded: the restart put the
    environment in place before any import of torch."""
    done = subprocess.run([sys.executable, "-m", "supervised.train", *TINY_DIGITS, "--train.out-dir", str(tmp_path),
                           "--portable"], cwd=REPO, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    machine = json.loads((tmp_path / "digits" / "r" / "results.json").read_text())["machine"]
    assert machine["portable"] and machine["torch_cpu_capability"] == "AVX2"
    assert machine["deterministic_algorithms"] and machine["torch_threads"] == 1
    assert {k: machine["caps"][k] for k in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")} == {
        "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def test_without_the_flag_nothing_restarts_and_the_record_says_so(tmp_path):
    done = subprocess.run([sys.executable, "-m", "supervised.train", *TINY_DIGITS, "--train.out-dir", str(tmp_path)],
                          cwd=REPO, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    machine = json.loads((tmp_path / "digits" / "r" / "results.json").read_text())["machine"]
    assert not machine["portable"] and "ATEN_CPU_CAPABILITY" not in machine["caps"]
    assert machine["cpu"] and machine["mkl"] and machine["onednn"]


def test_restart_replaces_the_process_only_when_asked_and_not_yet_in_force(monkeypatch):
    calls = []
    monkeypatch.setattr(portable.os, "execve", lambda *args: calls.append(args))
    for key in portable.ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    portable.restart_if_requested(["digits"], ["-m", "experiments"])
    assert calls == []
    portable.restart_if_requested(["digits", "--portable"], ["-m", "experiments"])
    [(executable, args, env)] = calls
    assert args == [sys.executable, "-m", "experiments", "digits", "--portable"]
    assert all(env[k] == v for k, v in portable.ENVIRONMENT.items())
    monkeypatch.setattr(portable.os, "environ", {**os.environ, **portable.ENVIRONMENT})
    portable.restart_if_requested(["digits", "--portable"], ["-m", "experiments"])  # in force: no second restart
    assert len(calls) == 1


@pytest.mark.parametrize("command", [["-m", "agents.train", "lab/DigitsBandit-v0", "--encoder", "conv",
                                      "--timesteps", "64", "--n-envs", "2", "--eval-freq", "0",
                                      "--no-progress-bar", "--device", "cpu"]])
def test_portable_rl_run_records_its_kernels(tmp_path, command):
    done = subprocess.run([sys.executable, *command, "--runs-dir", str(tmp_path), "--portable"], cwd=REPO,
                          env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    [results] = tmp_path.glob("*/*/results.json")
    machine = json.loads(results.read_text())["machine"]
    assert machine["portable"] and machine["torch_cpu_capability"] == "AVX2"


def test_portable_mode_takes_the_fused_optimizers_where_torch_has_them(monkeypatch):
    """The fused kernels take square roots with the CPU's own instruction; the others through MKL's vector maths,
    whose AMD and Intel paths differ (benchmarks/portable.py)."""
    import torch

    from lab.optim import make_optimizer

    model = torch.nn.Linear(4, 2)
    monkeypatch.setenv("LAB_PORTABLE", "1")
    assert make_optimizer("adamw", model, lr=1e-3).defaults["fused"]
    assert make_optimizer("sgd", model, lr=1e-3).defaults["fused"]
    assert "fused" not in make_optimizer("rmsprop", model, lr=1e-3).defaults  # torch has no fused RMSprop
    monkeypatch.delenv("LAB_PORTABLE")
    assert not make_optimizer("adamw", model, lr=1e-3).defaults["fused"]


@pytest.mark.parametrize("options", [{}, {"momentum": 0.9}, {"centered": True, "weight_decay": 0.01},
                                     {"momentum": 0.5, "centered": True, "maximize": True}])
def test_portable_rmsprop_is_torchs_update_without_mkls_square_root(monkeypatch, options):
    """RMSprop has no fused kernel: in portable mode the lab takes its square roots as 1 / rsqrt, never through
    torch.sqrt (MKL's vector maths, which rounds differently on Intel and AMD: benchmarks/portable.py's A2C probe).
    The update is torch's otherwise: the same state, parameters equal to the last bits over 20 steps."""
    import torch

    from lab.optim import make_optimizer

    def train(portable: bool) -> tuple[list[torch.Tensor], dict]:
        monkeypatch.setenv("LAB_PORTABLE", "1" if portable else "0")
        torch.manual_seed(0)
        params = [torch.randn(5, 7, requires_grad=True), torch.randn(3, requires_grad=True)]
        optimizer = make_optimizer("rmsprop", params, lr=1e-2, **options)
        for _ in range(20):
            optimizer.zero_grad()
            sum((p ** 2).sum() + p.sin().sum() for p in params).backward()
            optimizer.step()
        return params, optimizer.state[params[0]]

    reference, reference_state = train(portable=False)
    with monkeypatch.context() as patched:
        def refused(*args, **kwargs):
            raise AssertionError("torch.sqrt called in portable mode")
        patched.setattr(torch.Tensor, "sqrt", refused)
        patched.setattr(torch.Tensor, "sqrt_", refused)
        patched.setattr(torch, "_foreach_sqrt", refused)
        portable, state = train(portable=True)
    assert sorted(state) == sorted(reference_state) and int(state["step"]) == 20
    for p, r in zip(portable, reference):
        torch.testing.assert_close(p, r, rtol=0, atol=1e-6)
    assert any(not torch.equal(p, r) for p, r in zip(portable, reference))  # another rounding: its own numbers
