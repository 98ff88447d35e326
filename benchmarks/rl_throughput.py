"""PPO environment steps per second: lab TransformerExtractor vs SB3's MlpPolicy, same PPO settings.

    python -m benchmarks.rl_throughput                              # SB3's PPO defaults, 8192 steps x 3 rounds
    python -m benchmarks.rl_throughput --steps 4096 --rounds 5 --algo-kwargs '{"n_steps": 32, "batch_size": 256}' \\
        --n-envs 8 --variants mlp transformer torch-transformer --out benchmarks/results/rl_throughput_zoo.json

Each variant builds its agent with ``agents.factory.make_agent`` (so both use the same PPO arguments,
optimizer and seed) and times ``model.learn(steps)`` alone: agent construction and a warm-up run (first calls
into torch are slow) are excluded. Rounds interleave the variants, alternating their order, so machine noise
(the reference machine is shared) hits all of them alike; the report gives the median over rounds of
steps/s by wall clock and by this process's CPU time (less sensitive to other processes), and each
variant's ratio to ``mlp``. Target: transformer / mlp >= 0.5.

Variants:
- ``mlp``: SB3's default MlpPolicy (Flatten extractor, pi/vf MLPs of 64-64);
- ``transformer``: ``agents.extractors.TransformerExtractor`` with its RL defaults (per-feature tokens);
- ``torch-transformer``: a reference extractor on ``torch.nn.TransformerEncoder`` with the same width and
  depth (one token per feature from a shared ``Linear(1, D)`` + position embedding, CLS pooling).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from agents.extractors import RL_TRANSFORMER_DEFAULTS
from agents.config import AgentConfig
from agents.factory import make_agent
from lab.io import write_json
from lab.runtime import count_parameters

VARIANTS = ("mlp", "transformer", "torch-transformer")


class TorchTransformerExtractor(BaseFeaturesExtractor):
    """Reference: ``nn.TransformerEncoder`` over per-feature tokens, CLS pooling, the lab's RL widths."""

    def __init__(self, observation_space: gym.Space, d_model: int = RL_TRANSFORMER_DEFAULTS["d_model"]) -> None:
        super().__init__(observation_space, d_model)
        n = observation_space.shape[0]
        self.embed = nn.Linear(1, d_model)
        self.positions = nn.Parameter(torch.randn(n + 1, d_model) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, RL_TRANSFORMER_DEFAULTS["num_heads"], RL_TRANSFORMER_DEFAULTS["dim_feedforward"],
            dropout=0.0, activation=RL_TRANSFORMER_DEFAULTS["activation"], batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, RL_TRANSFORMER_DEFAULTS["num_layers"], enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.unsqueeze(-1))  # (B, F, D)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.positions  # (B, 1 + F, D)
        return self.encoder(tokens)[:, 0]


def build(variant: str, args: argparse.Namespace) -> Any:
    base = AgentConfig(args.env_id, "ppo", n_envs=args.n_envs, algo_kwargs=json.loads(args.algo_kwargs))
    run = dict(seed=args.seed, device=args.device)
    if variant == "mlp":
        return make_agent(base, **run)
    if variant == "transformer":
        return make_agent(base.merged(encoder="transformer", encoder_kwargs=json.loads(args.encoder_kwargs),
                                      policy_kwargs=json.loads(args.policy_kwargs)), **run)
    if variant == "torch-transformer":
        return make_agent(base.merged(encoder=TorchTransformerExtractor, policy_kwargs=json.loads(args.policy_kwargs)),
                          **run)
    raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")


def time_learn(model: Any, steps: int) -> tuple[float, float]:
    """(steps/s by wall clock, steps/s by process CPU time) of ``model.learn(steps)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(steps, reset_num_timesteps=True)
    return steps / (time.perf_counter() - wall), steps / max(time.process_time() - cpu, 1e-9)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=8192, help="environment steps timed per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--warmup-steps", type=int, default=512, help="untimed steps per variant before the rounds")
    parser.add_argument("--variants", nargs="+", default=["mlp", "transformer"], choices=VARIANTS)
    parser.add_argument("--n-envs", type=int, default=1)
    parser.add_argument("--algo-kwargs", default="{}", help="JSON PPO arguments shared by every variant")
    parser.add_argument("--encoder-kwargs", default="{}", help="JSON TransformerExtractor options")
    parser.add_argument("--policy-kwargs", default="{}", help="JSON policy options of the transformer variants")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/rl_throughput.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    models = {variant: build(variant, args) for variant in args.variants}
    for model in models.values():
        model.learn(args.warmup_steps)
    samples: dict[str, list[tuple[float, float]]] = {v: [] for v in args.variants}
    load_before = os.getloadavg()
    for round_index in range(args.rounds):
        order = args.variants if round_index % 2 == 0 else list(reversed(args.variants))
        for variant in order:
            samples[variant].append(time_learn(models[variant], args.steps))
            print(f"round {round_index} {variant:18s} {samples[variant][-1][0]:7.0f} steps/s wall, "
                  f"{samples[variant][-1][1]:7.0f} by CPU time", flush=True)
    results: dict[str, Any] = {}
    for variant, values in samples.items():
        results[variant] = {
            "wall_steps_per_s": statistics.median(v[0] for v in values),
            "cpu_steps_per_s": statistics.median(v[1] for v in values),
            "wall_samples": [v[0] for v in values], "cpu_samples": [v[1] for v in values],
            "params": count_parameters(models[variant].policy),
        }
    if "mlp" in results:
        for variant, entry in results.items():
            entry["wall_ratio_to_mlp"] = entry["wall_steps_per_s"] / results["mlp"]["wall_steps_per_s"]
            entry["cpu_ratio_to_mlp"] = entry["cpu_steps_per_s"] / results["mlp"]["cpu_steps_per_s"]
    report = {
        "config": vars(args), "results": results,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, report)
    for variant, entry in results.items():
        ratio = ""
        if "mlp" in results:
            ratio = f" ratio {entry['wall_ratio_to_mlp']:.2f} (CPU time {entry['cpu_ratio_to_mlp']:.2f})"
        print(f"{variant:18s} {entry['wall_steps_per_s']:7.0f} steps/s{ratio}")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
