"""An experiment's results files: ``results.json`` (everything: settings, every run's record, the summary rows),
``runs.csv`` (one row per run) and ``summary.csv`` (one row per quantity), and what they say about the machine."""
from __future__ import annotations

import csv
import io
import os
import platform
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab.io import atomic_write_text, write_json
from lab.portable import kernel_set

RESULTS_JSON = "results.json"
RUNS_CSV = "runs.csv"
SUMMARY_CSV = "summary.csv"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"


def machine_info() -> dict[str, Any]:
    """The driver's machine: platform, load and its kernel set (``lab.portable.kernel_set``: CPU, torch's CPU
    capability, MKL / oneDNN versions, caps in force, portable mode); each run's record has its node's too."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count(),
            "torch_threads_per_worker": 1, "load_average": load, **kernel_set()}


def write_results(exp_dir: Path, results: dict[str, Any]) -> None:
    """``results.json`` (everything), ``runs.csv`` (one row per run) and ``summary.csv`` (one row per quantity)."""
    write_json(exp_dir / RESULTS_JSON, results)
    run_fields = ["job", "variant", "seed", "paradigm", "samples", "episodes", "labels_seen", "rewards_seen",
                  "updates", "train_wall_time_s", "job_wall_time_s", "job_cpu_time_s", "params", "flops",
                  "final_metric", "run_dir"]
    atomic_write_text(exp_dir / RUNS_CSV, _csv(run_fields, results["runs"]))
    summary_fields = ["section", "quantity", "variant", "unit", "mean", "iqm", "ci_low", "ci_high", "n", "n_total",
                      "values", "reference"]
    atomic_write_text(exp_dir / SUMMARY_CSV, _csv(summary_fields, results["summary"]))


def _csv(fields: list[str], rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (" ".join("" if v is None else repr(v) for v in row[k]) if isinstance(row.get(k), list)
                             else row.get(k)) for k in fields})
    return buffer.getvalue()


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
