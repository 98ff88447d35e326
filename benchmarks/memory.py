"""Episodic memory for PPO: MemoryPPO (transformer memory) vs sb3-contrib's RecurrentPPO (LSTM), on the memory tasks
users compare on (and an 8-step window where it shows what the memory adds).

    python -m benchmarks.memory                                         # cartpole, repeat_first, inference
    python -m benchmarks.memory --tasks popgym --seeds 0 1 2 --runs-dir /work/bench-memory --out m.json
    python -m benchmarks.memory --tasks minigrid_memory_s9 --methods memory --seeds 0
    python -m benchmarks.memory --tasks contrib_performance             # sb3-contrib's slow RecurrentPPO test
    python -m benchmarks.memory --tasks inference                       # per-step cost against memory length
    python -m benchmarks.memory --combine a.json b.json --out benchmarks/results/memory.json  # merge reports + plots
    python -m benchmarks.memory --tasks cartpole --timesteps 4096 --eval-freq 2048 --eval-episodes 2 --out /tmp/m.json
    python -m benchmarks.memory --tasks cartpole --methods memory --recipe '{"algo_kwargs": {"n_epochs": 10}}'

Tasks (each run an ``agents.run.AgentRun`` of an ``agents.presets`` preset or one derived from it, :data:`RECIPES`;
methods ``memory`` = MemoryPPO, ``lstm`` = RecurrentPPO, with the same PPO settings and budget per task):

- ``cartpole``: ``lab/CartPoleNoVel-v1``, 100k steps; also ``memory-small`` (d32, 2 heads); ``lstm`` has RL Zoo's
  ppo_lstm settings.
- ``repeat_first``: POPGym RepeatFirstEasy, 100k steps; also ``window`` (PPO + TransformerExtractor over the last 8
  steps, ``lab/PopgymRepeatFirstEasyHistory-v0``).
- ``repeat_previous_easy`` / ``_medium``, ``count_recall_easy`` / ``_medium`` (``popgym`` for all four): POPGym
  levels (``lab/Popgym*-v0``) with repeat_first's PPO settings, 500k steps (Easy) / 1M (Medium); MemoryPPO's
  memory covers what the level asks to remember (64 steps; CountRecallMedium's whole 104-step episode: 128).
- ``minigrid_memory_s7`` / ``_s9`` (``minigrid``): MiniGrid's Memory levels as CleanRL's ppo_trxl sets them (3x3
  view, 96 steps) through the fusion encoder, 1.024M (S7) / 2.048M steps (S9, ppo_trxl's budget); metric: success.
- ``contrib_performance``: sb3-contrib's slow RecurrentPPO test, 50k steps, threshold 450 (:mod:`benchmarks.memory_contrib`).
- ``inference``: steps/s of one policy step against memory length (:mod:`benchmarks.memory_inference`).

**Resumable.** A run lives in ``--runs-dir/<task>/<method>_seed<k>``: a finished run (its ``results.json``) is read
back instead of run again, an interrupted one continues from its checkpoint (``AgentRun.resume``, written every
``--checkpoint-every`` seconds and at SIGTERM / Ctrl-C), so the same command continues a set of runs across sessions.
``--out`` (JSON, plus a PNG of the curves per task beside it) is rewritten after every run: it always holds every
finished run. A finished run of other settings in the same directory is refused (use another ``--runs-dir``).

Evaluation: the lab's (``agents.evaluation``): before training and every ``eval_freq`` steps, fresh episodes with
greedy actions (MiniGrid: sampled as BabyAI counts, and greedy), each policy carrying its memory; ``train_time_s``
excludes evaluation. Run one process at a time, one torch thread, and compare times within one report.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.config import AgentConfig
from agents.presets import PRESETS
from agents.run import RESULTS_FILE, AgentRun, RunInterrupted, RunOptions
from benchmarks.memory_contrib import THRESHOLD, run_contrib
from benchmarks.memory_inference import inference_cost
from lab.io import write_json
from lab.runtime import select_device

CARTPOLE_MAX = 500.0
SOLVED = 0.95  # MiniGrid Memory: success rate that counts as solved
_SMALL_MEMORY = dict(memory_length=16, d_model=32, num_heads=2, num_layers=1, dim_feedforward=64, positional="none")


def _popgym(method: str, level: str, memory_length: int, timesteps: int) -> AgentConfig:
    """repeat_first's recipe (same PPO settings for both methods) on another POPGym level."""
    base = PRESETS[f"repeat-first-{method}"]
    over: dict[str, Any] = dict(env_id=f"lab/Popgym{level}-v0", name=f"popgym-{level.lower()}-{method}",
                                timesteps=timesteps, eval_freq=timesteps // 16, reference="benchmarks/memory.py")
    if method == "memory":
        over["policy_kwargs"] = dict(memory_kwargs=dict(base.policy_kwargs["memory_kwargs"],
                                                        memory_length=memory_length))
    return base.merged(**over)


MINIGRID_TASKS = ("minigrid_memory_s7", "minigrid_memory_s9")


def _minigrid_s7(method: str) -> AgentConfig:
    return PRESETS[f"minigrid-memorys9-{method}"].merged(env_id="MiniGrid-MemoryS7-v0", timesteps=1_024_000,
                                                         eval_freq=64_000, name=f"minigrid-memorys7-{method}")


_POPGYM_TASKS = {  # task -> (level, MemoryPPO's memory length, budget)
    "repeat_previous_easy": ("RepeatPreviousEasy", 64, 500_000),  # the card 4 steps back
    "repeat_previous_medium": ("RepeatPreviousMedium", 64, 1_000_000),  # the card 32 steps back
    "count_recall_easy": ("CountRecallEasy", 64, 500_000),  # counts over the whole 52-step episode
    "count_recall_medium": ("CountRecallMedium", 128, 1_000_000),  # counts over the whole 104-step episode
}
RECIPES: dict[tuple[str, str], AgentConfig] = {
    ("cartpole", "memory"): PRESETS["cartpole-novel-memory"],
    ("cartpole", "memory-small"): PRESETS["cartpole-novel-memory"].merged(  # every seed reaches 500 at some eval,
        name="cartpole-novel-memory-small", policy_kwargs=dict(memory_kwargs=_SMALL_MEMORY)),  # but ends lower
    ("cartpole", "lstm"): PRESETS["cartpole-novel-lstm"],
    ("repeat_first", "memory"): PRESETS["repeat-first-memory"],
    ("repeat_first", "lstm"): PRESETS["repeat-first-lstm"],
    ("repeat_first", "window"): PRESETS["repeat-first-window"],
    **{(task, method): _popgym(method, *spec) for task, spec in _POPGYM_TASKS.items() for method in ("memory", "lstm")},
    **{("minigrid_memory_s7", method): _minigrid_s7(method) for method in ("memory", "lstm")},
    **{("minigrid_memory_s9", method): PRESETS[f"minigrid-memorys9-{method}"] for method in ("memory", "lstm")},
}
TASK_METHODS: dict[str, tuple[str, ...]] = {
    "cartpole": ("memory", "memory-small", "lstm"), "repeat_first": ("memory", "lstm", "window"),
    **{task: ("memory", "lstm") for task in (*_POPGYM_TASKS, *MINIGRID_TASKS, "contrib_performance")},
}
GROUPS = {"popgym": tuple(_POPGYM_TASKS), "minigrid": MINIGRID_TASKS}
TARGETS = {"cartpole": CARTPOLE_MAX, "contrib_performance": THRESHOLD,
           **{task: SOLVED for task in MINIGRID_TASKS}}  # a line on the plots; POPGym's best return is 1.0
CHANCE = {task: 0.5 for task in MINIGRID_TASKS}  # walk to the end, turn either way: one of the two objects matches


# ------------------------------------------------------------------------------------------------------- runs
class _Stopper:
    """SIGINT / SIGTERM: the AgentRun in progress stops after its rollout with a checkpoint; else stop at once."""

    def __init__(self) -> None:
        self.run: AgentRun | None = None
        self.signal: int | None = None

    def __call__(self, signum: int, _frame: Any) -> None:
        self.signal = signum
        if self.run is None:
            raise KeyboardInterrupt
        print(f"\n{signal.Signals(signum).name}: stopping after this rollout (checkpoint)", file=sys.stderr, flush=True)
        self.run.request_stop()


STOPPER = _Stopper()


def _same_config(saved: dict[str, Any], config: AgentConfig, run_dir: Path) -> None:
    if saved != json.loads(json.dumps(config.to_dict())):
        raise ValueError(f"{run_dir} holds a run of other settings than this command's: pass another --runs-dir "
                         "(or remove that run)")


def run_agent(config: AgentConfig, run_dir: Path, options: RunOptions) -> dict[str, Any]:
    """The results of the run in ``run_dir``: read back if finished, continued if interrupted, else started."""
    if (run_dir / RESULTS_FILE).exists():
        results = json.loads((run_dir / RESULTS_FILE).read_text())
        _same_config(results["config"], config, run_dir)
        return results
    if AgentRun.can_resume(run_dir):
        run = AgentRun.resume(run_dir)
        saved = run.config.to_dict() if isinstance(run.config, AgentConfig) else run.config
        _same_config(json.loads(json.dumps(saved)), config, run_dir)
        print(f"  resuming {run_dir}", flush=True)
    else:
        if run_dir.exists() and any(run_dir.iterdir()):  # stopped before its first checkpoint: start again
            shutil.move(str(run_dir), str(run_dir.with_name(f"{run_dir.name}.unfinished-{int(time.time())}")))
        run = AgentRun(config, run_dir, options)
    STOPPER.run = run
    try:
        return run.run()
    finally:
        STOPPER.run = None


def run_one(task: str, method: str, seed: int, overrides: dict[str, Any], runs_dir: Path, device: str = "cpu",
            checkpoint_every_s: float = 600.0) -> dict[str, Any]:
    """One (task, method, seed): its row of the report. Runs with overrides get directories of their own (a hash
    of the overrides in the name), so trying a recipe change never meets the preset's finished runs."""
    tag = f"_{hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]}" if overrides else ""
    run_dir = runs_dir / task / f"{method}_seed{seed}{tag}"
    if task == "contrib_performance":
        return run_contrib(method, seed, run_dir, device)
    config = RECIPES[(task, method)].merged(**overrides)
    results = run_agent(config, run_dir, RunOptions(seed=seed, device=device, checkpoint_every_s=checkpoint_every_s))
    metric = results["metric"]
    curve = [{"step": p["steps"], "mean_return": p["mean_return"],
              **{k: p[k] for k in ("success_rate", "success_rate_greedy") if k in p}} for p in results["curve"]]
    row = {"task": task, "method": method, "seed": seed, "steps": results["steps"],
           "train_time_s": results["train_wall_time_s"], "steps_per_s": results["steps_per_s"],
           "params": results["params"], "metric": metric, "final_metric": results["final_metric"],
           "final_return": results["final"]["mean_return"],
           "best_return": max(p["mean_return"] for p in curve[1:] or curve), "curve": curve,
           "resumes": results.get("resumes", []), "run_dir": results["run_dir"]}
    if task == "cartpole":
        row["first_500"] = next((p["step"] for p in curve if p["mean_return"] >= CARTPOLE_MAX), None)
        row["final_500"] = curve[-1]["mean_return"] >= CARTPOLE_MAX
    if metric == "success_rate":
        row["final_success_greedy"] = results["final"].get("success_rate_greedy")
        row["first_solved"] = next((p["step"] for p in curve if p["success_rate"] >= SOLVED), None)
    return row


# ------------------------------------------------------------------------------------------------------ report
def _final(row: dict[str, Any]) -> float:
    return row.get("final_metric", row["final_return"])  # reports written before issue #21 have returns only


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (task, method): IQM of the final metric over seeds (return; success on MiniGrid), median training time,
    seeds at the task's bar (CartPole 500, the contrib test's 450, MiniGrid success >= 0.95)."""
    out: dict[str, Any] = {}
    for task, method in dict.fromkeys((r["task"], r["method"]) for r in rows if r["task"] != "inference"):
        group = [r for r in rows if r["task"] == task and r["method"] == method]
        finals = np.sort([_final(r) for r in group])
        cut = int(np.floor(0.25 * len(finals)))
        iqm = float(finals[cut:len(finals) - cut].mean()) if len(finals) > 2 * cut else float(finals.mean())
        entry = {"seeds": [r["seed"] for r in group], "metric": group[0].get("metric", "mean_return"),
                 "finals": [_final(r) for r in group], "final_iqm": iqm,
                 "train_time_s": [r["train_time_s"] for r in group],
                 "median_train_time_s": float(np.median([r["train_time_s"] for r in group]))}
        if task == "cartpole":
            entry["seeds_final_500"] = sum(r["final_500"] for r in group)
            entry["seeds_reaching_500"] = sum(r["first_500"] is not None for r in group)
        if task in TARGETS and task != "cartpole":
            entry["seeds_at_target"] = sum(_final(r) >= TARGETS[task] for r in group)
        out[f"{task}/{method}"] = entry
    return out


def plot(rows: list[dict[str, Any]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    colors = {"memory": "tab:blue", "memory-small": "tab:purple", "lstm": "tab:orange", "window": "tab:green"}
    labels = {"memory": "MemoryPPO (transformer memory)", "memory-small": "MemoryPPO, d32 / 2 heads",
              "lstm": "RecurrentPPO (LSTM)", "window": "PPO + TransformerExtractor, 8-step window"}
    for task in TASK_METHODS:
        task_rows = [r for r in rows if r["task"] == task]
        if not task_rows:
            continue
        key = "success_rate" if task_rows[0].get("metric") == "success_rate" else "mean_return"
        fig, ax = plt.subplots(figsize=(12, 6))
        seen = set()
        for row in task_rows:
            curve = row["curve"]
            label = labels[row["method"]] if row["method"] not in seen else None
            seen.add(row["method"])
            ax.plot([p["step"] for p in curve], [p[key] for p in curve], color=colors[row["method"]], alpha=0.8,
                    label=label)
        target = TARGETS.get(task, 1.0)
        name = "solved" if task in MINIGRID_TASKS else "target"
        ax.axhline(target, color="grey", lw=0.8, ls=":", label=f"{name}: {target:g}")
        if task in CHANCE:
            ax.axhline(CHANCE[task], color="grey", lw=0.8, ls="--", label=f"chance (guessing an end): {CHANCE[task]:g}")
        ax.set(xlabel="environment steps", ylabel=f"eval {key.replace('_', ' ')}",
               title=f"{task} (one line per seed)")
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
    if row.get("metric") == "success_rate":
        solved = row.get("first_solved")
        extra = (f", greedy {row['final_success_greedy']:.3f}, return {row['final_return']:.3f}"
                 + (f", solved at {solved / 1000:.0f}k" if solved else ", never solved"))
    name = "success" if row.get("metric") == "success_rate" else "final"
    return (f"{row['task']:22s} {row['method']:12s} seed {row['seed']}: {name} {_final(row):8.3f}, best return "
            f"{row['best_return']:8.3f}{extra} [{row['train_time_s']:.0f} s training, {row['steps_per_s']:.0f} steps/s]")


def write_report(out: Path, rows: list[dict[str, Any]], inference: list[dict[str, Any]], meta: dict[str, Any]
                 ) -> dict[str, Any]:
    report = {**meta, "rows": rows, "summary": summarise(rows), "inference": inference,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    report["plots"] = plot(rows, out)
    write_json(out, report)
    return report


def print_summary(report: dict[str, Any]) -> None:
    for key, entry in report["summary"].items():
        bar = "".join(f", {entry[k]} seeds {k.replace('seeds_', '').replace('_', ' ')}"
                      for k in ("seeds_final_500", "seeds_at_target") if k in entry)
        print(f"{key}: final {entry['metric']} IQM {entry['final_iqm']:.3f} over seeds {entry['seeds']}, median "
              f"training {entry['median_train_time_s']:.0f} s{bar}")


def combine(paths: list[Path], out: Path) -> dict[str, Any]:
    """One report from several (runs made one process at a time): rows, inference and machine records kept."""
    reports = [json.loads(p.read_text()) for p in paths]
    rows = [row for r in reports for row in r["rows"]]
    meta = {"combined_from": [str(p) for p in paths],
            "recipes": {k: v for r in reports for k, v in r.get("recipes", {}).items()},
            "parts": [{k: r.get(k) for k in ("tasks", "methods", "seeds", "overrides", "full_budget", "machine",
                                              "time", "total_wall_time_s")} for r in reports]}
    report = write_report(out, rows, next((r["inference"] for r in reports if r.get("inference")), []), meta)
    print_summary(report)
    print(f"wrote {out} and {', '.join(report['plots']) or 'no plots'}")
    return report


# -------------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--tasks", nargs="+", default=["cartpole", "repeat_first", "inference"],
                        choices=[*TASK_METHODS, *GROUPS, "inference"])
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
    parser.add_argument("--runs-dir", default="runs/benchmarks/memory",
                        help="the runs' directories (TensorBoard); finished runs there are read back, interrupted "
                             "ones continued")
    parser.add_argument("--checkpoint-every", type=float, default=600.0, metavar="SECONDS",
                        help="resume checkpoint interval of each run (0: only when stopped by a signal)")
    parser.add_argument("--out", default="benchmarks/results/memory.json")
    args = parser.parse_args(argv)
    if args.combine:
        missing = [p for p in args.combine if not Path(p).is_file()]
        if missing:
            parser.error(f"--combine: no such report(s) {missing}")
        return combine([Path(p) for p in args.combine], Path(args.out))
    if any(s < 0 for s in args.seeds):
        parser.error("seeds must be non-negative")
    tasks = list(dict.fromkeys(t for name in args.tasks for t in GROUPS.get(name, (name,))))
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
    if overrides and "contrib_performance" in tasks:
        parser.error("contrib_performance runs sb3-contrib's test as written: no --timesteps / --eval-* / --recipe")
    out = Path(args.out)
    started, load_before = time.perf_counter(), os.getloadavg()
    meta = {"tasks": tasks, "methods": args.methods, "seeds": args.seeds, "overrides": overrides,
            "full_budget": not overrides, "runs_dir": args.runs_dir,
            "recipes": {f"{t}/{m}": r.merged(**overrides).to_dict() for (t, m), r in RECIPES.items() if t in tasks},
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                        "device": device, "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
                        "torch_threads": torch.get_num_threads(), "load_average_before": load_before}}
    rows: list[dict[str, Any]] = []
    inference: list[dict[str, Any]] = []
    previous = {sig: signal.signal(sig, STOPPER) for sig in (signal.SIGINT, signal.SIGTERM)}
    command = " ".join(["python -m benchmarks.memory", *(argv if argv is not None else sys.argv[1:])])
    try:
        for task in tasks:
            if task == "inference":
                inference = inference_cost(device=device)
                continue
            methods = [m for m in TASK_METHODS[task] if not args.methods or m in args.methods]
            for seed in args.seeds:  # seed-major: a partial report compares the methods on the same seeds
                for method in methods:
                    print(f"[{task}] {method} seed {seed} ...", flush=True)
                    rows.append(run_one(task, method, seed, overrides, Path(args.runs_dir), device,
                                        args.checkpoint_every))
                    print("  " + format_row(rows[-1]), flush=True)
                    write_report(out, rows, inference, {**meta, "total_wall_time_s": time.perf_counter() - started})
    except (RunInterrupted, KeyboardInterrupt) as stopped:
        code = 143 if STOPPER.signal == signal.SIGTERM else 130
        print(f"stopped ({stopped or 'interrupt'}); {out} holds the {len(rows)} finished run(s). Continue with the "
              f"same command: {command}", file=sys.stderr)
        raise SystemExit(code) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    meta["machine"]["load_average_after"] = os.getloadavg()
    report = write_report(out, rows, inference, {**meta, "total_wall_time_s": time.perf_counter() - started})
    print("\n== memory benchmark ==")
    for row in rows:
        print(format_row(row))
    print_summary(report)
    print(f"wrote {out} and {', '.join(report['plots']) or 'no plots'}")
    return report


if __name__ == "__main__":
    main()
