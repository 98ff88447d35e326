"""Episodic memory for PPO: MemoryPPO (transformer memory) vs sb3-contrib's RecurrentPPO (LSTM) vs an 8-step window.

    python -m benchmarks.memory                                         # everything, seeds 0 1 2
    python -m benchmarks.memory --tasks cartpole --methods memory --seeds 0 1 2
    python -m benchmarks.memory --tasks repeat_first --seeds 0 --out benchmarks/results/memory_repeat_first.json
    python -m benchmarks.memory --tasks inference                       # per-step cost against memory length
    python -m benchmarks.memory --combine a.json b.json --out benchmarks/results/memory.json  # merge runs + plots
    python -m benchmarks.memory --tasks cartpole --timesteps 4096 --eval-freq 2048 --eval-episodes 2 --out /tmp/m.json
    python -m benchmarks.memory --tasks cartpole --methods memory --recipe '{"algo_kwargs": {"n_epochs": 10}}'

Tasks and methods (each run builds its agent from :data:`RECIPES`, the hyperparameters proposed as presets):

- ``cartpole``: ``lab/CartPoleNoVel-v1`` (velocities hidden, no history window), 100k steps. ``memory``: MemoryPPO;
  ``memory-small``: the same at d_model 32, 2 heads; ``lstm``: RecurrentPPO with RL Zoo's ppo_lstm
  CartPoleNoVel-v1 settings. Targets: >= 2 of 3 seeds at an eval
  mean of 500, in at most half of RecurrentPPO's wall time.
- ``repeat_first``: POPGym RepeatFirstEasy (``lab/PopgymRepeatFirstEasy-v0``: 51 steps of naming the first card's
  suit, return in [-1, 1]), the same PPO settings for the three methods: ``memory``, ``lstm`` and ``window``
  (PPO + the lab's TransformerExtractor over ``HistoryWrapper(k=8)``, ``lab/PopgymRepeatFirstEasyHistory-v0``).
- ``inference``: steps/s of one policy step for 8 envs against memory length M = 16, 64, 256, 1024: MemoryPPO's
  cached step, the same transformer re-encoding its M-step window every step (no cache), and the LSTM.

Evaluation: every ``eval_freq`` steps, ``eval_episodes`` greedy episodes (``evaluate_policy``, which carries the
memory state); ``train_time_s`` excludes evaluation. Output: ``--out`` JSON (default
``benchmarks/results/memory.json``), a PNG of the curves per task beside it, and a table on stdout.
Cost measured here (2 CPU cores shared with other jobs, one process, one torch thread, load average 1-3; training
time, evaluation excluded): cartpole MemoryPPO ~22 s (d32: ~18 s), RecurrentPPO ~76-93 s per run; repeat_first
MemoryPPO ~11 s, RecurrentPPO ~44 s, window ~16 s per run; inference ~15 s. Under a load average of ~10 the same
MemoryPPO cartpole runs took 66-77 s: compare times only within one report. Runs made one process at a time can be
merged afterwards with ``--combine``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize, sync_envs_normalization
from torch import nn

import envs  # noqa: F401  (registers lab/*)
from agents.extractors import TransformerExtractor
from agents.memory_ppo import MemoryPPO
from lab.io import write_json

CARTPOLE_MAX = 500.0
_ZOO_CARTPOLE = dict(n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8, ent_coef=0.0,
                     learning_rate="lin_1e-3", clip_range="lin_0.2", max_grad_norm=0.5)
_REPEAT_FIRST_PPO = dict(n_steps=64, batch_size=256, n_epochs=4, gamma=0.9, gae_lambda=0.95, ent_coef=0.01,
                         learning_rate=1e-3, clip_range=0.2, max_grad_norm=0.5)

# (task, method) -> recipe: env id, n_envs, VecNormalize (NORMALIZE), algorithm kwargs, policy kwargs, budget, evaluation.
RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("cartpole", "memory"): dict(
        env_id="lab/CartPoleNoVel-v1", n_envs=8, normalize="obs+reward", timesteps=100_000, eval_freq=8192, eval_episodes=20,
        algo="memory-ppo", algo_kwargs=dict(_ZOO_CARTPOLE, n_epochs=10, segment_len=32),  # Zoo but 10 epochs: 20 oscillated
        policy_kwargs=dict(ortho_init=False, activation_fn="relu", net_arch=dict(pi=[64], vf=[64]),
                           # positional "none": relative bias only; the absolute sinusoid swamped the 2-d
                           # observation's embedding (seeds 0, 1: final 326 / 320 with it, 500 / 500 without)
                           memory_kwargs=dict(memory_length=16, d_model=64, num_heads=4, num_layers=1,
                                              dim_feedforward=128, positional="none"))),
    ("cartpole", "memory-small"): dict(  # d32 / 2 heads: every seed reaches 500 at some eval, ~4x the LSTM's speed,
        env_id="lab/CartPoleNoVel-v1", n_envs=8, normalize="obs+reward", timesteps=100_000,  # but ends lower
        eval_freq=8192, eval_episodes=20, algo="memory-ppo", algo_kwargs=dict(_ZOO_CARTPOLE, n_epochs=10, segment_len=32),
        policy_kwargs=dict(ortho_init=False, activation_fn="relu", net_arch=dict(pi=[64], vf=[64]),
                           memory_kwargs=dict(memory_length=16, d_model=32, num_heads=2, num_layers=1,
                                              dim_feedforward=64, positional="none"))),
    ("cartpole", "lstm"): dict(  # RL Zoo ppo_lstm CartPoleNoVel-v1
        env_id="lab/CartPoleNoVel-v1", n_envs=8, normalize="obs+reward", timesteps=100_000, eval_freq=8192, eval_episodes=20,
        algo="recurrent-ppo", algo_kwargs=dict(_ZOO_CARTPOLE),
        policy_kwargs=dict(ortho_init=False, activation_fn="relu", lstm_hidden_size=64, enable_critic_lstm=True,
                           net_arch=dict(pi=[64], vf=[64]))),
    ("repeat_first", "memory"): dict(
        env_id="lab/PopgymRepeatFirstEasy-v0", n_envs=8, normalize=False, timesteps=100_000, eval_freq=8192,
        eval_episodes=40, algo="memory-ppo", algo_kwargs=dict(_REPEAT_FIRST_PPO, segment_len=32),
        policy_kwargs=dict(net_arch=[64], memory_kwargs=dict(memory_length=64, d_model=32, num_heads=2,
                                                             dim_feedforward=64))),
    ("repeat_first", "lstm"): dict(
        env_id="lab/PopgymRepeatFirstEasy-v0", n_envs=8, normalize=False, timesteps=100_000, eval_freq=8192,
        eval_episodes=40, algo="recurrent-ppo", algo_kwargs=dict(_REPEAT_FIRST_PPO),
        policy_kwargs=dict(net_arch=[64], lstm_hidden_size=64, enable_critic_lstm=True)),
    ("repeat_first", "window"): dict(
        env_id="lab/PopgymRepeatFirstEasyHistory-v0", n_envs=8, normalize=False, timesteps=100_000, eval_freq=8192,
        eval_episodes=40, algo="ppo", algo_kwargs=dict(_REPEAT_FIRST_PPO),
        policy_kwargs=dict(net_arch=[64], features_extractor_class="transformer",
                           features_extractor_kwargs=dict(d_model=32, num_heads=2, num_layers=1, dim_feedforward=64,
                                                          pooling="flatten"))),
}
TASK_METHODS = {"cartpole": ("memory", "memory-small", "lstm"), "repeat_first": ("memory", "lstm", "window")}
ALGOS = {"memory-ppo": (MemoryPPO, "MlpPolicy"), "recurrent-ppo": (RecurrentPPO, "MlpLstmPolicy"),
         "ppo": (PPO, "MultiInputPolicy")}
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
INFERENCE_LENGTHS = (16, 64, 256, 1024)
NORMALIZE = (False, "obs", "obs+reward")  # VecNormalize: RL Zoo's "normalize: true" is obs+reward


# --------------------------------------------------------------------------------------------------- building
def schedule(value: float | str) -> Any:
    """RL Zoo's ``"lin_X"``: X * progress_remaining (X at the start, 0 at the end)."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def build(recipe: dict[str, Any], seed: int, timesteps: int | None = None):
    """(model, eval env) for a recipe; the eval env shares the training env's normalisation statistics."""
    env = make_vec_env(recipe["env_id"], n_envs=recipe["n_envs"], seed=seed)
    eval_env = make_vec_env(recipe["env_id"], n_envs=min(recipe["eval_episodes"], 10), seed=10_000 + seed)
    if recipe["normalize"] not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {recipe['normalize']!r}")
    if recipe["normalize"]:
        env = VecNormalize(env, norm_reward=recipe["normalize"] == "obs+reward",
                           gamma=recipe["algo_kwargs"].get("gamma", 0.99))
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
    algo_class, policy = ALGOS[recipe["algo"]]
    algo_kwargs = {k: schedule(v) for k, v in recipe["algo_kwargs"].items()}
    policy_kwargs = copy.deepcopy(recipe["policy_kwargs"])
    if "activation_fn" in policy_kwargs:
        policy_kwargs["activation_fn"] = ACTIVATIONS[policy_kwargs["activation_fn"]]
    if policy_kwargs.get("features_extractor_class") == "transformer":
        policy_kwargs["features_extractor_class"] = TransformerExtractor
    model = algo_class(policy, env, seed=seed, device="cpu", policy_kwargs=policy_kwargs, **algo_kwargs)
    return model, eval_env


class EvalCallback(BaseCallback):
    """Greedy evaluation every ``freq`` steps (and at the end); its time is kept out of the training time."""

    def __init__(self, eval_env, freq: int, episodes: int) -> None:
        super().__init__()
        self.eval_env, self.freq, self.episodes = eval_env, freq, episodes
        self.curve: list[dict[str, float]] = []
        self.eval_time = 0.0
        self._next = freq

    def evaluate(self) -> None:
        began = time.perf_counter()
        if isinstance(self.eval_env, VecNormalize):
            sync_envs_normalization(self.training_env, self.eval_env)
        mean, std = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.episodes, deterministic=True)
        self.curve.append({"step": int(self.num_timesteps), "mean_return": float(mean), "std_return": float(std)})
        self.eval_time += time.perf_counter() - began

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.freq
            self.evaluate()
        return True


def merged(recipe: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The recipe with ``overrides``; dict-valued options (algo_kwargs, policy_kwargs, ...) merge key by key."""
    out = copy.deepcopy(recipe)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def run_one(task: str, method: str, seed: int, overrides: dict[str, Any]) -> dict[str, Any]:
    recipe = merged(RECIPES[(task, method)], overrides)
    torch.manual_seed(seed)
    model, eval_env = build(recipe, seed)
    callback = EvalCallback(eval_env, recipe["eval_freq"], recipe["eval_episodes"])
    began = time.perf_counter()
    model.learn(recipe["timesteps"], callback=callback)
    total = time.perf_counter() - began
    if not callback.curve or callback.curve[-1]["step"] != model.num_timesteps:
        callback.evaluate()
    curve = callback.curve
    train_time = total - callback.eval_time
    row = {"task": task, "method": method, "seed": seed, "steps": int(model.num_timesteps),
           "train_time_s": train_time, "wall_time_s": time.perf_counter() - began,
           "steps_per_s": model.num_timesteps / train_time,
           "params": sum(p.numel() for p in model.policy.parameters()),
           "final_return": curve[-1]["mean_return"], "best_return": max(p["mean_return"] for p in curve),
           "curve": curve}
    if task == "cartpole":
        row["first_500"] = next((p["step"] for p in curve if p["mean_return"] >= CARTPOLE_MAX), None)
        row["final_500"] = curve[-1]["mean_return"] >= CARTPOLE_MAX
    return row


# -------------------------------------------------------------------------------------------------- inference
def inference_cost(lengths=INFERENCE_LENGTHS, n_envs: int = 8, steps: int = 200, d_model: int = 64,
                   num_layers: int = 1) -> list[dict[str, Any]]:
    """Policy-memory steps/s for ``n_envs`` envs: cached step vs re-encoding the M-step window, and the LSTM."""
    from agents.memory_transformer import EpisodeTransformer, MemoryConfig

    rows = []
    lstm = nn.LSTM(d_model, d_model).eval()
    for m in lengths:
        config = MemoryConfig(memory_length=m, d_model=d_model, num_heads=4, num_layers=num_layers,
                              dim_feedforward=2 * d_model, max_position=4 * m)
        model = EpisodeTransformer(d_model, config).eval()
        features = torch.randn(n_envs, m + steps, d_model)
        no_start = torch.zeros(n_envs, dtype=torch.bool)
        with torch.no_grad():
            state = model.initial_state(n_envs)
            for t in range(m):  # fill the memory: from here on every step attends to M steps
                model.step(features[:, t], state, no_start)
            began = time.perf_counter()
            for t in range(m, m + steps):
                model.step(features[:, t], state, no_start)
            cached = steps / (time.perf_counter() - began)
            p = m - 1
            memory = torch.zeros(n_envs, num_layers, p, d_model)
            invalid = torch.zeros(n_envs, p, dtype=torch.bool)
            recompute_steps = max(5, min(steps, 20_000 // m))
            no_starts = torch.zeros(n_envs, m, dtype=torch.bool)
            for t in range(m, m + 3):  # warm-up
                model.forward_segment(features[:, t - m + 1:t + 1], torch.arange(m).expand(n_envs, m), no_starts,
                                      memory, invalid)
            began = time.perf_counter()
            for t in range(m, m + recompute_steps):  # no cache: the whole window through every layer, every step
                window = features[:, t - m + 1:t + 1]
                times = torch.arange(t - m + 1, t + 1).expand(n_envs, m)
                model.forward_segment(window, times, no_starts, memory, invalid)
            recomputed = recompute_steps / (time.perf_counter() - began)
            hc = (torch.zeros(1, n_envs, d_model), torch.zeros(1, n_envs, d_model))
            for t in range(10):  # warm-up
                lstm(features[:, t][None], hc)
            began = time.perf_counter()
            for t in range(steps):
                _, hc = lstm(features[:, t][None], hc)
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
        fig, ax = plt.subplots(figsize=(7, 4.5))
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
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    return written


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value if isinstance(value, (str, int, float, bool, list, type(None))) else repr(value)


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
    parser.add_argument("--out", default="benchmarks/results/memory.json")
    args = parser.parse_args(argv)
    if args.combine:
        missing = [p for p in args.combine if not Path(p).is_file()]
        if missing:
            parser.error(f"--combine: no such report(s) {missing}")
        return combine([Path(p) for p in args.combine], Path(args.out))
    if any(s < 0 for s in args.seeds):
        parser.error("seeds must be non-negative")
    unknown = sorted(set(args.recipe) - set(RECIPES[("cartpole", "memory")]))
    if unknown:
        parser.error(f"unknown recipe key(s) {unknown}; valid: {', '.join(RECIPES[('cartpole', 'memory')])}")
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
            inference = inference_cost()
            continue
        for method in TASK_METHODS[task]:
            if args.methods and method not in args.methods:
                continue
            for seed in args.seeds:
                print(f"[{task}] {method} seed {seed} ...", flush=True)
                rows.append(run_one(task, method, seed, overrides))
                print("  " + format_row(rows[-1]), flush=True)
    report = {
        "tasks": args.tasks, "methods": args.methods, "seeds": args.seeds, "overrides": overrides,
        "full_budget": not overrides, "rows": rows, "summary": summarise(rows), "inference": inference,
        "recipes": {f"{t}/{m}": _jsonable(merged(r, overrides)) for (t, m), r in RECIPES.items() if t in args.tasks},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
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
