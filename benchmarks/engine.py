"""The experiments engine (Ray, :mod:`experiments.engine`): its overhead against the process pool it replaced, and
its speedup with more CPUs (issue 10's targets: at most +10 s on the flagship quick mode; >= 1.8x for
``experiments digits`` with 2 CPUs instead of 1).

    python -m benchmarks.engine                          # all four measurements once (~10 min on 2 idle cores)
    python -m benchmarks.engine --only digits-1cpu digits-2cpu --repeats 2
    python -m benchmarks.engine --flagship-args="--digits.samples 2048" --digits-args="--seeds 1"  # smoke test

Measurements, each in a fresh process (start-up of the engine included, as a user pays it):

- ``flagship-pool``: the flagship quick mode's jobs (experiments 1 + 2, 3 seeds) on the process pool of
  ``experiments/runner.py`` at commit ``OLD_POOL_COMMIT`` (loaded from git history), 2 worker processes;
- ``flagship-ray``: the same jobs on the Ray engine, a local instance with 2 CPUs;
- ``digits-1cpu`` / ``digits-2cpu``: experiment 1's quick mode on the Ray engine with 1 and with 2 CPUs.

The same jobs on either engine must give the same numbers (CPU runs are deterministic per seed): each
measurement stores a digest of its records without the time fields, and the report says whether the two
flagship digests agree. Output: ``--out`` (JSON with the machine's load before and after each measurement:
other jobs on the machine make wall times noisy) and a table on stdout.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.io import write_json

OLD_POOL_COMMIT = "e846663"  # the last commit with the home-made process pool in experiments/runner.py
MEASUREMENTS = ("flagship-pool", "flagship-ray", "digits-1cpu", "digits-2cpu")
REPO = Path(__file__).resolve().parents[1]


def _measures_time_or_place(key: str) -> bool:
    """Fields that differ between two runs of the same jobs by design: times, rates, the node, paths."""
    return ("time" in key or key.endswith("per_s") or key in ("node", "run_dir", "checkpoint", "encoder", "head",
                                                              "demos_dir", "job_cpu_time_s", "hyperparameters"))


def digest(records: dict[str, dict[str, Any]]) -> str:
    """A hash of every record without the fields that measure time or name the machine / paths."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in sorted(value.items()) if not _measures_time_or_place(k)}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    text = json.dumps(strip(records), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def old_runner(directory: Path) -> Any:
    """``experiments/runner.py`` of ``OLD_POOL_COMMIT`` as the module ``old_pool_runner`` (its spawned workers
    import it by name, so its directory goes on PYTHONPATH too)."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{OLD_POOL_COMMIT}:experiments/runner.py"],
                            capture_output=True, text=True, check=True).stdout
    (directory / "old_pool_runner.py").write_text(source)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(directory), os.environ.get("PYTHONPATH", "")])
    sys.path.insert(0, str(directory))
    import old_pool_runner

    return old_pool_runner


def measure(name: str, flagship_args: list[str], digits_args: list[str]) -> dict[str, Any]:
    """One measurement in this process; see the module docstring."""
    import torch

    from experiments.cli import parse_args, plan
    from experiments.engine import run_jobs

    torch.set_num_threads(1)
    experiment = "flagship" if name.startswith("flagship") else "digits"
    args = parse_args([experiment, *(flagship_args if experiment == "flagship" else digits_args)])
    jobs = [job for p in plan(args, experiment) for job in p.experiment.jobs(p.budget, p.seeds, p.name)]
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp:
        out = Path(tmp) / "runs"
        start = time.perf_counter()
        if name == "flagship-pool":
            outcome = old_runner(Path(tmp)).run_jobs(jobs, out, workers=2, progress=False)
        else:
            outcome = run_jobs(jobs, out, workers=1 if name == "digits-1cpu" else 2, progress=False)
        wall = time.perf_counter() - start
    return {"measurement": name, "wall_time_s": wall, "jobs": len(jobs), "failed": sorted(outcome.errors),
            "sum_job_wall_time_s": sum(r.get("job_wall_time_s", 0.0) for r in outcome.records.values()),
            "digest": digest(outcome.records)}


def run_measurement(name: str, argv: argparse.Namespace) -> dict[str, Any]:
    """``measure`` in a fresh Python process, with the machine's load around it."""
    command = [sys.executable, "-m", "benchmarks.engine", "--measure", name,
               f"--flagship-args={argv.flagship_args}", f"--digits-args={argv.digits_args}"]
    load_before = os.getloadavg()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(load_before=load_before, load_after=os.getloadavg())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=MEASUREMENTS, default=list(MEASUREMENTS))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "engine.json"))
    parser.add_argument("--flagship-args", default="", help="extra options of the flagship command, one string")
    parser.add_argument("--digits-args", default="", help="extra options of the digits command, one string")
    parser.add_argument("--measure", choices=MEASUREMENTS, help=argparse.SUPPRESS)  # internal: one measurement
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, shlex.split(args.flagship_args), shlex.split(args.digits_args))))
        return 0
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    results = [run_measurement(name, args) for _ in range(args.repeats) for name in args.only]
    best = {name: min(r["wall_time_s"] for r in results if r["measurement"] == name) for name in args.only}
    digests = {name: {r["digest"] for r in results if r["measurement"] == name} for name in args.only}
    summary: dict[str, Any] = {"best_wall_time_s": best}
    if {"flagship-pool", "flagship-ray"} <= set(best):
        summary["ray_overhead_s"] = best["flagship-ray"] - best["flagship-pool"]
        summary["same_numbers_pool_vs_ray"] = digests["flagship-pool"] == digests["flagship-ray"]
    if {"digits-1cpu", "digits-2cpu"} <= set(best):
        summary["digits_speedup_2_vs_1_cpu"] = best["digits-1cpu"] / best["digits-2cpu"]
        summary["same_numbers_1_vs_2_cpu"] = digests["digits-1cpu"] == digests["digits-2cpu"]
    report = {"summary": summary, "measurements": results, "old_pool_commit": OLD_POOL_COMMIT,
              "flagship_args": args.flagship_args, "digits_args": args.digits_args,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
              "command": ["python", "-m", "benchmarks.engine", *(argv if argv is not None else sys.argv[1:])]}
    write_json(args.out, report)
    for r in results:
        print(f"{r['measurement']:14s} {r['wall_time_s']:8.1f} s  ({r['jobs']} jobs, load {r['load_before'][0]:.1f} "
              f"-> {r['load_after'][0]:.1f}, digest {r['digest']})")
    print(json.dumps(summary, indent=2))
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
