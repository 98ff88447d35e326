"""Episodic memory for PPO: MemoryPPO (transformer memory) vs sb3-contrib's RecurrentPPO (LSTM) vs an 8-step window.

    python -m benchmarks.memory                                         # everything, seeds 0 1 2
    python -m benchmarks.memory --tasks cartpole --methods memory --seeds 0 1 2
    python -m benchmarks.memory --tasks repeat_first --seeds 0 --out benchmarks/results/memory_repeat_first.json
    python -m benchmarks.memory --tasks inference                       # per-step cost against memory length
    python -m benchmarks.memory --combine a.json b.json --out benchmarks/results/memory.json  # merge runs + plots
    python -m benchmarks.memory --tasks cartpole --timesteps 4096 --eval-freq 2048 --eval-episodes 2 --out /tmp/m.json
    python -m benchmarks.memory --tasks cartpole --methods memory --recipe '{"algo_kwargs": {"n_epochs": 10}}'

Tasks and methods (each run is an ``agents.run.AgentRun`` of an ``agents.presets`` preset, see :data:`RECIPES`):

- ``cartpole``: ``lab/CartPoleNoVel-v1`` (velocities hidden, no history window), 100k steps. ``memory``: MemoryPPO;
  ``memory-small``: the same at d_model 32, 2 heads; ``lstm``: RecurrentPPO with RL Zoo's ppo_lstm
  CartPoleNoVel-v1 settings. Targets: >= 2 of 3 seeds at an eval
  mean of 500, in at most half of RecurrentPPO's wall time.
- ``repeat_first``: POPGym RepeatFirstEasy (``lab/PopgymRepeatFirstEasy-v0``: 51 steps of naming the first card's
  suit, return in [-1, 1]), the same PPO settings for the three methods: ``memory``, ``lstm`` and ``window``
  (PPO + the lab's TransformerExtractor over ``HistoryWrapper(k=8)``, ``lab/PopgymRepeatFirstEasyHistory-v0``).
- ``inference``: steps/s of one policy step for 8 envs against memory length M = 16, 64, 256, 1024: MemoryPPO's
  cached step, the same transformer re-encoding its M-step window every step (no cache), and the LSTM.

Evaluation: the lab's (``agents.evaluation``): before training and every ``eval_freq`` steps, ``eval_episodes``
fresh episodes with greedy actions, played in lockstep with each policy's memory state; ``train_time_s`` excludes
evaluation. Output: ``--out`` JSON (default
``benchmarks/results/memory.json``), a PNG of the curves per task beside it, and a table on stdout.
Cost measured here (2 CPU cores shared with other jobs, one process, one torch thread, load average 1-3; training
time, evaluation excluded): cartpole MemoryPPO ~22 s (d32: ~18 s), RecurrentPPO ~76-93 s per run; repeat_first
MemoryPPO ~11 s, RecurrentPPO ~44 s, window ~16 s per run; inference ~15 s. Under a load average of ~10 the same
MemoryPPO cartpole runs took 66-77 s: compare times only within one report. Runs made one process at a time can be
merged afterwards with ``--combine``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.config import AgentConfig
from agents.memory.transformer import EpisodeTransformer, MemoryConfig
from agents.presets import PRESETS
from agents.run import AgentRun, RunOptions
from lab.io import write_json
from lab.runtime import run_name, select_device

CARTPOLE_MAX = 500.0
# (task, method) -> the agents preset it runs (agents.presets); "memory-small" is cartpole-novel-memory at d32.
_SMALL_MEMORY = dict(memory_length=16, d_model=32, num_heads=2, num_layers=1, dim_feedforward=64, positional="none")
RECIPES: dict[tuple[str, str], AgentConfig] = {
    ("cartpole", "memory"): PRESETS["cartpole-novel-memory"],
    ("cartpole", "memory-small"): PRESETS["cartpole-novel-memory"].merged(  # every seed reaches 500 at some eval,
        name="cartpole-novel-memory-small", policy_kwargs=dict(memory_kwargs=_SMALL_MEMORY)),  # but ends lower
    ("cartpole", "lstm"): PRESETS["cartpole-novel-lstm"],
    ("repeat_first", "memory"): PRESETS["repeat-first-memory"],
    ("repeat_first", "lstm"): PRESETS["repeat-first-lstm"],
    ("repeat_first", "window"): PRESETS["repeat-first-window"],
}
TASK_METHODS = {"cartpole": ("memory", "memory-small", "lstm"), "repeat_first": ("memory", "lstm", "window")}
INFERENCE_LENGTHS = (16, 64, 256, 1024)


def run_one(task: str, method: str, seed: int, overrides: dict[str, Any], runs_dir: Path,
            device: str = "cpu") -> dict[str, Any]:
    """One preset through the lab's run routine (agents.run.AgentRun: its evaluation, on fresh episodes)."""
    config = RECIPES[(task, method)].merged(**overrides)
    run_dir = runs_dir / run_name(task, method, seed=seed)
    results = AgentRun(config, run_dir, RunOptions(seed=seed, device=device, checkpoint_every_s=0)).run()
    curve = [{"step": p["steps"], "mean_return": p["mean_return"]} for p in results["curve"]]
    row = {"task": task, "method": method, "seed": seed, "steps": results["steps"],
           "train_time_s": results["train_wall_time_s"], "steps_per_s": results["steps_per_s"],
           "params": results["params"], "final_return": results["final"]["mean_return"],
           "best_return": max(p["mean_return"] for p in curve[1:] or curve), "curve": curve,
           "run_dir": results["run_dir"]}
    if task == "cartpole":
        row["first_500"] = next((p["step"] for p in curve if p["mean_return"] >= CARTPOLE_MAX), None)
        row["final_500"] = curve[-1]["mean_return"] >= CARTPOLE_MAX
    return row


# -------------------------------------------------------------------------------------------------- inference
def inference_cost(lengths=INFERENCE_LENGTHS, n_envs: int = 8, steps: int = 200, d_model: int = 64,
                   num_layers: int = 1, device: str = "cpu") -> list[dict[str, Any]]:
    """Policy-memory steps/s for ``n_envs`` envs: cached step vs re-encoding the M-step window, and the LSTM.

    On CUDA every timed loop ends with a synchronisation, so a rate counts finished steps, not queued kernels."""
    rows = []
    on = torch.device(device)
    sync = torch.cuda.synchronize if on.type == "cuda" else (lambda: None)
    lstm = nn.LSTM(d_model, d_model).to(on).eval()
    for m in lengths:
        config = MemoryConfig(memory_length=m, d_model=d_model, num_heads=4, num_layers=num_layers,
                              dim_feedforward=2 * d_model, max_position=4 * m)
        model = EpisodeTransformer(d_model, config).to(on).eval()
        features = torch.randn(n_envs, m + steps, d_model, device=on)
        no_start = torch.zeros(n_envs, dtype=torch.bool, device=on)
        with torch.no_grad():
            state = model.initial_state(n_envs)
            for t in range(m):  # fill the memory: from here on every step attends to M steps
                model.step(features[:, t], state, no_start)
            sync()
            began = time.perf_counter()
            for t in range(m, m + steps):
                model.step(features[:, t], state, no_start)
            sync()
            cached = steps / (time.perf_counter() - began)
            p = m - 1
            memory = torch.zeros(n_envs, num_layers, p, d_model, device=on)
            invalid = torch.zeros(n_envs, p, dtype=torch.bool, device=on)
            recompute_steps = max(5, min(steps, 20_000 // m))
            no_starts = torch.zeros(n_envs, m, dtype=torch.bool, device=on)
            for t in range(m, m + 3):  # warm-up
                model.forward_segment(features[:, t - m + 1:t + 1], torch.arange(m, device=on).expand(n_envs, m),
                                      no_starts, memory, invalid)
            sync()
            began = time.perf_counter()
            for t in range(m, m + recompute_steps):  # no cache: the whole window through every layer, every step
                window = features[:, t - m + 1:t + 1]
                times = torch.arange(t - m + 1, t + 1, device=on).expand(n_envs, m)
                model.forward_segment(window, times, no_starts, memory, invalid)
            sync()
            recomputed = recompute_steps / (time.perf_counter() - began)
            hc = (torch.zeros(1, n_envs, d_model, device=on), torch.zeros(1, n_envs, d_model, device=on))
            for t in range(10):  # warm-up
                lstm(features[:, t][None], hc)
            sync()
            began = time.perf_counter()
            for t in range(steps):
                _, hc = lstm(features[:, t][None], hc)
            sync()
            lstm_rate = steps / (time.perf_counter() - began)
        rows.append({"memory_length": m, "cached_steps_per_s": cached, "recompute_steps_per_s": recomputed,
                     "lstm_steps_per_s": lstm_rate, "speedup": cached / recomputed,
                     "state_floats_per_env": 2 * num_layers * m * d_model})
        print(f"M={m:5d}: cached {cached:8.0f} steps/s, re-encoding the window {recomputed:8.0f} steps/s "
              f"({cached / recomputed:5.1f}x), LSTM {lstm_rate:8.0f} steps/s", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------------ report
def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (task, method): IQM of final returns over seeds, seeds at 500 (cartpole), median training time."""
    out: dict[str, Any] = {}
    for task, method in dict.fromkeys((r["task"], r["method"]) for r in rows if r["task"] != "inference"):
        group = [r for r in rows if r["task"] == task and r["method"] == method]
        finals = np.sort([r["final_return"] for r in group])
        cut = int(np.floor(0.25 * len(finals)))
        iqm = float(finals[cut:len(finals) - cut].mean()) if len(finals) > 2 * cut else float(finals.mean())
        entry = {"seeds": [r["seed"] for r in group], "final_returns": [r["final_return"] for r in group],
                 "final_iqm": iqm, "train_time_s": [r["train_time_s"] for r in group],
                 "median_train_time_s": float(np.median([r["train_time_s"] for r in group]))}
        if task == "cartpole":
            entry["seeds_final_500"] = sum(r["final_500"] for r in group)
            entry["seeds_reaching_500"] = sum(r["first_500"] is not None for r in group)
        out[f"{task}/{method}"] = entry
    return out


def plot(rows: list[dict[str, Any]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    colors = {"memory": "tab:blue", "memory-small": "tab:purple", "lstm": "tab:orange", "window": "tab:green"}
    labels = {"memory": "MemoryPPO (transformer memory)", "memory-small": "MemoryPPO, d32 / 2 heads",
              "lstm": "RecurrentPPO (LSTM)",
              "window": "PPO + TransformerExtractor, 8-step window"}
    for task in TASK_METHODS:
        task_rows = [r for r in rows if r["task"] == task]
        if not task_rows:
            continue
        fig, ax = plt.subplots(figsize=(12, 6))
        seen = set()
        for row in task_rows:
            curve = row["curve"]
            label = labels[row["method"]] if row["method"] not in seen else None
            seen.add(row["method"])
            ax.plot([p["step"] for p in curve], [p["mean_return"] for p in curve], color=colors[row["method"]],
                    alpha=0.8, label=label)
        if task == "repeat_first":
            ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        else:
            ax.axhline(CARTPOLE_MAX, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="environment steps", ylabel="eval mean return (greedy)", title=f"{task} (one line per seed)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out.with_name(f"{out.stem}_{task}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)  # 1320 x 660 px, as the experiments' plots (>= 1200 px)
        plt.close(fig)
        written.append(str(path))
    return written


def format_row(row: dict[str, Any]) -> str:
    extra = ""
    if row["task"] == "cartpole":
        extra = f", first 500 at {row['first_500'] / 1000:.1f}k" if row["first_500"] else ", never 500"
    return (f"{row['task']:12s} {row['method']:12s} seed {row['seed']}: final {row['final_return']:8.3f}, best "
            f"{row['best_return']:8.3f}{extra} [{row['train_time_s']:.0f} s training, {row['steps_per_s']:.0f} steps/s]")


def combine(paths: list[Path], out: Path) -> dict[str, Any]:
    """One report from several (runs made one process at a time): rows, inference and machine records kept."""
    reports = [json.loads(p.read_text()) for p in paths]
    rows = [row for r in reports for row in r["rows"]]
    report = {"combined_from": [str(p) for p in paths], "rows": rows, "summary": summarise(rows),
              "inference": next((r["inference"] for r in reports if r.get("inference")), []),
              "recipes": {k: v for r in reports for k, v in r.get("recipes", {}).items()},
              "parts": [{k: r.get(k) for k in ("tasks", "methods", "seeds", "overrides", "full_budget", "machine",
                                                "time", "total_wall_time_s")} for r in reports]}
    report["plots"] = plot(rows, out)
    write_json(out, report)
    for key, entry in report["summary"].items():
        print(f"{key}: final IQM {entry['final_iqm']:.3f} over seeds {entry['seeds']}, median training "
              f"{entry['median_train_time_s']:.0f} s")
    print(f"wrote {out} and {', '.join(report['plots']) or 'no plots'}")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--tasks", nargs="+", default=["cartpole", "repeat_first", "inference"],
                        choices=[*TASK_METHODS, "inference"])
    parser.add_argument("--methods", nargs="+", default=None, choices=["memory", "memory-small", "lstm", "window"],
                        help="default: every method of each task")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=None, help="override every recipe's budget (smoke runs)")
    parser.add_argument("--eval-freq", type=int, default=None)
    parser.add_argument("--eval-episodes", type=int, default=None)
    parser.add_argument("--recipe", type=json.loads, default={},
                        help='JSON merged into every selected recipe, e.g. \'{"algo_kwargs": {"n_epochs": 10}}\'')
    parser.add_argument("--combine", nargs="+", metavar="JSON", default=None,
                        help="run nothing: merge the rows of earlier reports (e.g. one per method) into --out, "
                             "with one summary and one plot per task")
    parser.add_argument("--device", default="cpu",
                        help="torch device of the policies and the inference timing (cpu, cuda, auto); "
                             "the figures in BENCHMARKS.md are cpu unless they say otherwise")
    parser.add_argument("--runs-dir", default="runs/benchmarks/memory", help="the runs' directories (TensorBoard)")
    parser.add_argument("--out", default="benchmarks/results/memory.json")
    args = parser.parse_args(argv)
    if args.combine:
        missing = [p for p in args.combine if not Path(p).is_file()]
        if missing:
            parser.error(f"--combine: no such report(s) {missing}")
        return combine([Path(p) for p in args.combine], Path(args.out))
    if any(s < 0 for s in args.seeds):
        parser.error("seeds must be non-negative")
    try:
        RECIPES[("cartpole", "memory")].merged(**args.recipe)
    except (TypeError, ValueError) as error:
        parser.error(f"--recipe: {error}")
    try:
        device = str(select_device(args.device))
    except (RuntimeError, ValueError) as error:
        parser.error(f"--device: {error}")
    torch.set_num_threads(1)
    overrides = {k: v for k, v in (("timesteps", args.timesteps), ("eval_freq", args.eval_freq),
                                   ("eval_episodes", args.eval_episodes)) if v is not None}
    overrides.update(args.recipe)
    out = Path(args.out)
    started, load_before = time.perf_counter(), os.getloadavg()
    rows: list[dict[str, Any]] = []
    inference: list[dict[str, Any]] = []
    for task in args.tasks:
        if task == "inference":
            inference = inference_cost(device=device)
            continue
        for method in TASK_METHODS[task]:
            if args.methods and method not in args.methods:
                continue
            for seed in args.seeds:
                print(f"[{task}] {method} seed {seed} ...", flush=True)
                rows.append(run_one(task, method, seed, overrides, Path(args.runs_dir), device))
                print("  " + format_row(rows[-1]), flush=True)
    report = {
        "tasks": args.tasks, "methods": args.methods, "seeds": args.seeds, "overrides": overrides,
        "full_budget": not overrides, "rows": rows, "summary": summarise(rows), "inference": inference,
        "recipes": {f"{t}/{m}": r.merged(**overrides).to_dict() for (t, m), r in RECIPES.items() if t in args.tasks},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "device": device,
                    "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
                    "torch_threads": torch.get_num_threads(), "load_average_before": load_before,
                    "load_average_after": os.getloadavg()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "total_wall_time_s": time.perf_counter() - started,
    }
    report["plots"] = plot(rows, out)
    write_json(out, report)
    print("\n== memory benchmark ==")
    for row in rows:
        print(format_row(row))
    for key, entry in report["summary"].items():
        print(f"{key}: final IQM {entry['final_iqm']:.3f} over seeds {entry['seeds']}, median training "
              f"{entry['median_train_time_s']:.0f} s" + (f", {entry['seeds_final_500']} seeds final 500"
                                                          if "seeds_final_500" in entry else ""))
    print(f"wrote {out} and {', '.join(report['plots']) or 'no plots'}")
    return report


if __name__ == "__main__":
    main()
