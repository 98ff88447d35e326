"""Per-step cost of the episodic memory against its length (``benchmarks.memory --tasks inference``): MemoryPPO's
cached step, the same transformer re-encoding its M-step window every step (no cache), and an LSTM."""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from agents.memory.transformer import EpisodeTransformer, MemoryConfig

INFERENCE_LENGTHS = (16, 64, 256, 1024)


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
