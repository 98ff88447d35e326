"""Accuracy and wall time of a supervised task's default recipe over several seeds.

    python -m benchmarks.supervised mnist1d                       # full recipe, seeds 0 1 2
    python -m benchmarks.supervised digits --twin                 # also train the plain twin of the separable net
    python -m benchmarks.supervised digits --epochs 5 --seeds 0   # a reduced budget (smoke run)
    python -m benchmarks.supervised mnist1d -- --data.val-fraction 0 --model.num-layers 3   # any CLI override

Targets (median test accuracy of seeds 0, 1, 2 on 2 CPU cores): mnist1d >= 94% within 5 minutes per run;
digits >= 98.5% with at most 1/3 of the plain twin's parameters. Each run is an ordinary training run
(``runs/benchmarks/TASK/...``); the table and every run's results.json go to
``benchmarks/results/supervised_TASK.json``. Time it on a quiet machine: other processes on the two cores
change wall time, never accuracy (CPU runs are deterministic per seed). Rough cost on one quiet core:
mnist1d about 3 minutes per seed, digits about 30 s per seed (its plain twin about 3 minutes).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lab.io import write_json
from supervised.train import TASKS, parse_args, run

TARGETS = {"mnist1d": 0.94, "digits": 0.985}


def benchmark(task: str, seeds: list[int], overrides: list[str], out_dir: str, epochs: int | None,
              max_steps: int | None, twin: bool) -> dict[str, Any]:
    config = parse_args([task, *overrides])
    variants = [config]
    if twin:
        if task != "digits":
            raise SystemExit("--twin applies to the digits task only")
        other = "plain" if config.model.block == "separable" else "separable"
        variants.append(dataclasses.replace(config, model=dataclasses.replace(config.model, block=other)))
    stamp = int(time.time())
    rows = []
    for variant in variants:
        for seed in seeds:
            label = getattr(variant.model, "block", task)
            train = dataclasses.replace(variant.train, seed=seed, quiet=True, out_dir=out_dir,
                                        run_name=f"{label}__seed{seed}__{stamp}",
                                        **({"epochs": epochs} if epochs else {}),
                                        **({"max_steps": max_steps} if max_steps else {}))
            result = run(dataclasses.replace(variant, train=train)).metrics
            rows.append({"variant": label, **{k: v for k, v in result.items() if k != "config"}})
            print(format_row(rows[-1]), flush=True)
    return {
        "task": task,
        "target_test_accuracy": TARGETS.get(task),
        "seeds": seeds,
        "overrides": overrides,
        "epochs_override": epochs,
        "max_steps_override": max_steps,
        "summary": summarise(rows),
        "runs": rows,
        "config": dataclasses.asdict(config),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None},
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    summary = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        summary[variant] = {
            "median_test_accuracy": statistics.median(r["test_accuracy"] for r in mine),
            "test_accuracies": [r["test_accuracy"] for r in mine],
            "median_wall_time_s": statistics.median(r["wall_time_s"] for r in mine),
            "max_wall_time_s": max(r["wall_time_s"] for r in mine),
            **{k: mine[0][k] for k in ("params", "flops", "separable_params", "separable_flops", "plain_params",
                                       "plain_flops", "params_ratio_separable_to_plain") if k in mine[0]},
        }
    return summary


def format_row(row: dict[str, Any]) -> str:
    flops = f"{row['flops']:>12,}" if "flops" in row else ""
    return (f"{row['variant']:>10}  seed {row['seed']:>2}  test {row['test_accuracy']:.4f}  "
            f"best-val test {row.get('best_test_accuracy', float('nan')):.4f}  wall {row['wall_time_s']:7.1f}s  "
            f"params {row['params']:>9,}  flops {flops}")


def print_table(report: dict[str, Any]) -> None:
    print(f"\n{report['task']}: median test accuracy over seeds {report['seeds']} "
          f"(target {report['target_test_accuracy']})")
    for variant, s in report["summary"].items():
        line = (f"  {variant:>10}: median {s['median_test_accuracy']:.4f}  per seed "
                f"{[round(a, 4) for a in s['test_accuracies']]}  median wall {s['median_wall_time_s']:.1f}s "
                f"(max {s['max_wall_time_s']:.1f}s)  params {s['params']:,}")
        if "plain_params" in s:
            line += (f"\n              separable {s['separable_params']:,} params / {s['separable_flops']:,} FLOPs; "
                     f"plain twin {s['plain_params']:,} params / {s['plain_flops']:,} FLOPs; "
                     f"ratio {s['params_ratio_separable_to_plain']:.3f}")
        print(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Arguments after -- are passed to 'python -m supervised.train TASK'.")
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (reduced budget)")
    parser.add_argument("--max-steps", type=int, default=None, help="override with a number of steps")
    parser.add_argument("--twin", action="store_true", help="digits: also train the other block type")
    parser.add_argument("--out-dir", default="runs/benchmarks", help="where the training runs are written")
    parser.add_argument("--json", default=None, help="report path (default benchmarks/results/supervised_TASK.json)")
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args, overrides = parser.parse_args(argv[:split]), argv[split + 1:]

    report = benchmark(args.task, args.seeds, overrides, args.out_dir, args.epochs, args.max_steps, args.twin)
    print_table(report)
    path = Path(args.json or Path(__file__).parent / "results" / f"supervised_{args.task}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, report)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
