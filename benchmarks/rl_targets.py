"""RL targets of the lab's transformer / fusion / conv agents, re-measured from the presets (agents.presets).

    python -m benchmarks.rl_targets                                   # every target, seeds 0 1 2, full budgets
    python -m benchmarks.rl_targets --targets cartpole --seeds 0 1 2  # one target
    python -m benchmarks.rl_targets --timesteps 4096 --eval-freq 2048 --eval-episodes 4 --out /tmp/rl_smoke.json

Targets (each run is an ordinary ``agents.train`` run under ``--runs-dir``, TensorBoard and results.json included):

- ``cartpole``: PPO + TransformerExtractor on ``lab/CartPoleNoVelHistory-v1`` (velocities hidden, 8-step history),
  goal: mean eval return (20 greedy episodes) 500 within 100k steps. Run twice per seed: preset
  ``cartpole-novel`` (the transformer alone) and ``cartpole-novel-deltas`` (plus frame differences as token
  features: feature engineering, reported separately). Per seed: the first step where the eval hits 500, the
  first step from which it stays at 500 (every later eval, the final one included), the final eval.
- ``babyai``: PPO + FusionExtractor on ``lab/BabyAI-GoToRedBallGrey-v0`` (preset ``babyai-gotoredballgrey``):
  success rate (500 fresh episodes per eval) against the training episodes completed, with sampled actions
  (how the BabyAI paper counts a policy as trained) and greedy ones; the first episode count with success
  >= 0.99 for each, against the paper's RL result of 15.9k-17.4k episodes.
- ``digits``: ConvExtractor on ``lab/DigitsBandit-v0`` with PPO and A2C (presets ``digits-bandit``,
  ``digits-bandit-a2c``): exact test-split accuracy against environment steps.
- ``throughput`` (optional, not in the default list): ``benchmarks.rl_throughput`` with the
  ``cartpole-throughput`` preset's extractor: PPO steps/s relative to MlpPolicy.

Output: ``--out`` (JSON, default ``benchmarks/results/rl_targets.json``), one PNG of curves per target beside
it (``rl_targets_<target>.png``), and a table on stdout. ``--timesteps`` / ``--eval-freq`` /
``--eval-episodes`` override every preset's value (for smoke runs; the numbers are then not the targets').

Cost on 2 shared CPU cores (one process, torch with one thread; wall time varies ~2x with load): cartpole about
10 minutes per run (6 runs: ~1 hour), babyai about 20-25 minutes per seed of which ~5 are evaluation (~1-1.3 hours),
digits about 1-2 minutes per run (6 runs: ~10 minutes). Run targets in separate processes to use both cores.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from agents.presets import get_preset
from agents.run import AgentRun, RunOptions
from envs.babyai import PAPER_99, PAPER_TARGET
from lab.io import write_json
from lab.runtime import run_name

TARGETS = {
    "cartpole": ("cartpole-novel", "cartpole-novel-deltas"),
    "babyai": ("babyai-gotoredballgrey",),
    "digits": ("digits-bandit", "digits-bandit-a2c"),
    "throughput": ("cartpole-throughput",),
}
DEFAULT_TARGETS = ("cartpole", "babyai", "digits")
CARTPOLE_MAX = 500.0  # CartPole's return cap: an eval mean of 500 means every episode lasted 500 steps
CARTPOLE_BUDGET = 100_000
BABYAI_GOAL = PAPER_TARGET
BABYAI_PAPER_EPISODES = PAPER_99["BabyAI-GoToRedBallGrey-v0"]["rl"]  # BabyAI paper, RL sample efficiency


# --------------------------------------------------------------------------------------------------- milestones
def first_at_least(points: list[dict[str, Any]], key: str, goal: float) -> dict[str, Any] | None:
    """The first evaluation (steps, episodes, value) where ``key`` >= ``goal``, or None."""
    for point in points:
        if point.get(key) is not None and point[key] >= goal:
            return {"step": point["steps"], "episodes": point.get("episodes"), "value": point[key]}
    return None


def stays_at_least(points: list[dict[str, Any]], key: str, goal: float) -> dict[str, Any] | None:
    """The first evaluation from which ``key`` >= ``goal`` at every later one (the last included), or None."""
    found = None
    for point in points:
        if point.get(key) is not None and point[key] >= goal:
            found = found or {"step": point["steps"], "episodes": point.get("episodes"), "value": point[key]}
        else:
            found = None
    return found


def summarise(target: str, results: dict[str, Any]) -> dict[str, Any]:
    points, final = results["curve"], results["final"]  # every evaluation, from the untrained policy to the final
    row: dict[str, Any] = {"steps": results["steps"], "episodes": results["episodes"],
                           "wall_time_s": results["train_wall_time_s"], "steps_per_s": results["steps_per_s"],
                           "params": results["params"], "run_dir": results["run_dir"]}
    if target == "cartpole":
        row.update(first_500=first_at_least(points, "mean_return", CARTPOLE_MAX),
                   stays_500=stays_at_least(points, "mean_return", CARTPOLE_MAX), final_return=final["mean_return"])
        row["met"] = row["stays_500"] is not None and row["stays_500"]["step"] <= CARTPOLE_BUDGET
    elif target == "babyai":
        row.update(first_99_sampled=first_at_least(points, "success_rate", BABYAI_GOAL),
                   first_99_greedy=first_at_least(points, "success_rate_greedy", BABYAI_GOAL),
                   final_sampled=final.get("success_rate"), final_greedy=final.get("success_rate_greedy"))
    elif target == "digits":
        row.update(final_accuracy=final["accuracy"],
                   best_accuracy=max(p["accuracy"] for p in points if p["steps"] > 0))
    row["curve"] = [{k: p[k] for k in ("steps", "episodes", "mean_return", "success_rate", "success_rate_greedy",
                                       "accuracy") if p.get(k) is not None} for p in points]
    return row


# ------------------------------------------------------------------------------------------------------ running
def run_target(target: str, seeds: list[int], overrides: dict[str, Any], runs_dir: str) -> list[dict[str, Any]]:
    rows = []
    for preset_name in TARGETS[target]:
        preset = get_preset(preset_name)
        config = preset.merged(**overrides)
        for seed in seeds:
            run_dir = Path(runs_dir) / run_name(preset.env_id, f"{preset_name}-bench", seed=seed)
            print(f"[{target}] {preset_name} seed {seed}: {config.timesteps} steps ...", flush=True)
            results = AgentRun(config, run_dir, RunOptions(seed=seed, checkpoint_every_s=0)).run()
            row = {"target": target, "preset": preset_name, "seed": seed,
                   "feature_engineering": bool(preset.encoder_kwargs.get("deltas")), **summarise(target, results)}
            rows.append(row)
            print("  " + format_row(row), flush=True)
    return rows


def run_throughput(overrides: dict[str, Any], out: Path) -> dict[str, Any]:
    import json

    from benchmarks import rl_throughput

    preset = get_preset("cartpole-throughput")
    argv = ["--encoder-kwargs", json.dumps(preset.encoder_kwargs), "--out", str(out.with_name(out.stem + "_throughput.json"))]
    if overrides.get("timesteps"):
        argv += ["--steps", str(overrides["timesteps"]), "--warmup-steps", "256"]
    report = rl_throughput.main(argv)
    return {"target": "throughput", "preset": preset.name,
            **{variant: entry for variant, entry in report["results"].items()}}


# ------------------------------------------------------------------------------------------------------- report
def _milestone(m: dict[str, Any] | None, unit: str = "step") -> str:
    if m is None:
        return "-"
    return f"{m[unit] / 1000:.1f}k" if m.get(unit) is not None else "?"


def format_row(row: dict[str, Any]) -> str:
    head = f"{row['preset']:24s} seed {row['seed']}"
    if row["target"] == "cartpole":
        label = " (feature eng.)" if row["feature_engineering"] else ""
        return (f"{head}: eval 500 first at {_milestone(row['first_500'])} steps, stays from "
                f"{_milestone(row['stays_500'])}, final {row['final_return']:.1f}{label} "
                f"[{row['wall_time_s']:.0f} s, {row['steps_per_s']:.0f} steps/s]")
    if row["target"] == "babyai":
        final = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        return (f"{head}: success >= 0.99 first at {_milestone(row['first_99_sampled'], 'episodes')} episodes sampled, "
                f"{_milestone(row['first_99_greedy'], 'episodes')} greedy (paper 15.9k-17.4k); final sampled "
                f"{final(row['final_sampled'])} greedy {final(row['final_greedy'])}, {row['episodes']} episodes "
                f"[{row['wall_time_s']:.0f} s]")
    if row["target"] == "digits":
        return (f"{head}: test accuracy final {row['final_accuracy']:.3f}, best {row['best_accuracy']:.3f} after "
                f"{row['steps']} steps [{row['wall_time_s']:.0f} s]")
    return f"{head}: {row}"


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\n== RL targets ==")
    for row in rows:
        if row["target"] == "throughput":
            for variant in ("mlp", "transformer"):
                entry = row.get(variant, {})
                ratio = entry.get("wall_ratio_to_mlp")
                print(f"throughput {variant:12s} {entry.get('wall_steps_per_s', 0):7.0f} steps/s"
                      + (f", {ratio:.2f}x MlpPolicy" if ratio is not None else ""))
        else:
            print(format_row(row))


def plot(rows: list[dict[str, Any]], out: Path) -> list[str]:
    """One PNG per target: eval curves of every run (matplotlib's Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for target in ("cartpole", "babyai", "digits"):
        target_rows = [r for r in rows if r["target"] == target]
        if not target_rows:
            continue
        presets = list(dict.fromkeys(r["preset"] for r in target_rows))
        fig, axes = plt.subplots(1, len(presets), figsize=(5.5 * len(presets), 4), squeeze=False)
        for ax, preset in zip(axes[0], presets):
            for row in (r for r in target_rows if r["preset"] == preset):
                curve = row["curve"]
                if target == "cartpole":
                    ax.plot([p["steps"] for p in curve], [p["mean_return"] for p in curve], label=f"seed {row['seed']}")
                    ax.axhline(CARTPOLE_MAX, color="grey", lw=0.8, ls=":")
                    ax.set(xlabel="environment steps", ylabel="eval mean return (greedy)")
                elif target == "babyai":
                    xs = [p.get("episodes") or 0 for p in curve]
                    line, = ax.plot(xs, [p.get("success_rate") for p in curve], label=f"seed {row['seed']} sampled")
                    ax.plot(xs, [p.get("success_rate_greedy") for p in curve], ls="--", color=line.get_color(),
                            label=f"seed {row['seed']} greedy")
                    ax.axhline(BABYAI_GOAL, color="grey", lw=0.8, ls=":")
                    ax.axvspan(*BABYAI_PAPER_EPISODES, color="grey", alpha=0.2, label="paper (RL, 99%)")
                    ax.set(xlabel="training episodes", ylabel="success rate")
                else:
                    ax.plot([p["steps"] for p in curve], [p["accuracy"] for p in curve], label=f"seed {row['seed']}")
                    ax.set(xlabel="environment steps", ylabel="test-split accuracy")
            ax.set_title(preset)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out.with_name(f"{out.stem}_{target}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    return written


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--targets", nargs="+", default=list(DEFAULT_TARGETS), choices=list(TARGETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=None, help="override every preset's budget (smoke runs)")
    parser.add_argument("--eval-freq", type=int, default=None, help="override every preset's evaluation interval")
    parser.add_argument("--eval-episodes", type=int, default=None, help="override every preset's evaluation episodes")
    parser.add_argument("--runs-dir", default="runs/benchmarks/rl_targets")
    parser.add_argument("--out", default="benchmarks/results/rl_targets.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    overrides = {k: v for k, v in (("timesteps", args.timesteps), ("eval_freq", args.eval_freq),
                                   ("eval_episodes", args.eval_episodes)) if v is not None}
    out = Path(args.out)
    started, load_before = time.perf_counter(), os.getloadavg()
    rows: list[dict[str, Any]] = []
    wall: dict[str, float] = {}
    for target in args.targets:
        began = time.perf_counter()
        if target == "throughput":
            rows.append(run_throughput(overrides, out))
        else:
            rows.extend(run_target(target, args.seeds, overrides, args.runs_dir))
        wall[target] = time.perf_counter() - began
    report = {
        "targets": args.targets, "seeds": args.seeds, "overrides": overrides,
        "full_budget": not overrides, "rows": rows, "wall_time_s": wall,
        "presets": {name: get_preset(name).to_dict() for t in args.targets for name in TARGETS[t]},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "total_wall_time_s": time.perf_counter() - started,
    }
    report["plots"] = plot(rows, out)
    write_json(out, report)
    print_table(rows)
    print(f"wrote {out} and {', '.join(report['plots']) or 'no plots'}; wall time "
          + ", ".join(f"{t} {s:.0f} s" for t, s in wall.items()))
    return report


if __name__ == "__main__":
    main()
