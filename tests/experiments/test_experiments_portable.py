"""``python -m experiments ... --portable`` on the Ray engine: the driver restarts with the pinned kernels and the
workers Ray starts inherit them, so every run's record names AVX2 kernels and portable mode."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lab import portable

REPO = Path(__file__).resolve().parents[2]


def test_every_worker_of_a_portable_experiment_computes_with_the_pinned_kernels(tiny_digits_budget, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in portable.ENVIRONMENT}
    done = subprocess.run([sys.executable, "-m", "experiments", "digits", "--seeds", "1", "--workers", "1",
                           "--no-progress", "--out", str(tmp_path), "--budget.algos", "ppo", *tiny_digits_budget,
                           "--portable"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "digits" / "results.json").read_text())
    assert results["machine"]["portable"] and results["machine"]["torch_cpu_capability"] == "AVX2"
    kernels = [run["node"]["kernels"] for run in results["runs"]]
    assert len(kernels) == 2 and all(k["portable"] and k["torch_cpu_capability"] == "AVX2" for k in kernels)
    assert "--portable" in results["command"]
    assert "portable mode (`--portable`)" in (tmp_path / "digits" / "report.md").read_text()
