"""Rollout buffers of :class:`agents.memory.ppo.MemoryPPO`: SB3's, plus what the memory needs to replay a step.

Besides SB3's per-step data, each step stores its **layer inputs** (the residual stream entering each memory
layer, (L, D); the actor's layers then the critic's when it has a memory of its own) and its time in the episode; the buffer also holds the layer inputs of the ``P = M - 1`` steps
before the rollout (the "prefix", carried over from the previous rollout). Minibatches are **segments** of
``segment_len`` consecutive steps of one env; each comes with the stored layer inputs of the ``P`` steps
before it (from the prefix and the rollout) and which of them belong to the segment's first episode.
"""
from __future__ import annotations

from collections.abc import Generator
from typing import NamedTuple

import numpy as np
import torch
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.type_aliases import DictRolloutBufferSamples, RolloutBufferSamples
from torch import Tensor


class SegmentBatch(NamedTuple):
    """What :meth:`MemoryActorCriticPolicy.evaluate_actions` needs for B segments of T steps.

    It travels in the ``observations`` field of SB3's rollout samples, so SB3's ``PPO.train`` runs unchanged.
    observations: (B * T, ...) (or a dict of them), segment-major; times, episode_starts: (B, T);
    memory: (B, L, P, D) stored layer inputs before each segment; memory_valid: (B, P) bool.
    """

    observations: Tensor | dict[str, Tensor]
    times: Tensor
    episode_starts: Tensor
    memory: Tensor
    memory_valid: Tensor


class _MemoryBufferMixin:
    """Adds layer inputs, times, the prefix and segment minibatches to an SB3 rollout buffer."""

    def __init__(self, *args, segment_len: int, memory_length: int, num_layers: int, d_model: int, **kwargs) -> None:
        self.segment_len, self.memory_length = int(segment_len), int(memory_length)
        self.num_layers, self.d_model = int(num_layers), int(d_model)
        super().__init__(*args, **kwargs)
        if self.buffer_size % self.segment_len:
            raise ValueError(f"n_steps ({self.buffer_size}) must be a multiple of segment_len ({self.segment_len})")
        p = self.memory_length - 1
        self.prefix = torch.zeros((self.n_envs, p, self.num_layers, self.d_model), device=self.device)
        self.prefix_valid = torch.zeros((self.n_envs, p), dtype=torch.bool, device=self.device)

    def reset(self) -> None:
        super().reset()
        # torch on the policy's device: layer inputs come from the policy there, and go back there for updates.
        self.layer_inputs = torch.zeros((self.buffer_size, self.n_envs, self.num_layers, self.d_model), device=self.device)
        self.times = torch.zeros((self.buffer_size, self.n_envs), dtype=torch.long, device=self.device)

    def set_prefix(self, prefix: Tensor, prefix_valid: Tensor) -> None:
        """The layer inputs (E, P, L, D) and validity (E, P) of the P steps before this rollout."""
        self.prefix, self.prefix_valid = prefix, prefix_valid

    def add(self, *args, layer_inputs: Tensor, times: Tensor, **kwargs) -> None:  # type: ignore[override]
        self.layer_inputs[self.pos] = layer_inputs
        self.times[self.pos] = times
        super().add(*args, **kwargs)

    def _extended(self) -> tuple[Tensor, Tensor, Tensor]:
        """Prefix then rollout along time: layer inputs (E, P + n, L, D), valid (E, P + n), episode id (E, P + n)."""
        starts = torch.as_tensor(self.episode_starts, device=self.device).T > 0.5  # (E, n)
        h = torch.cat([self.prefix, self.layer_inputs.transpose(0, 1)], dim=1)
        valid = torch.cat([self.prefix_valid, torch.ones_like(starts)], dim=1)
        episode = torch.cat([torch.zeros_like(self.prefix_valid, dtype=torch.long), starts.long().cumsum(1)], dim=1)
        return h, valid, episode

    def next_prefix(self) -> tuple[Tensor, Tensor]:
        """Prefix of the next rollout: the last P steps and which of them are in each env's current episode."""
        h, valid, episode = self._extended()
        n = self.buffer_size
        return h[:, n:].clone(), valid[:, n:] & (episode[:, n:] == episode[:, -1:])

    def _segment_memory(self) -> tuple[Tensor, Tensor]:
        """Memory (E * n_seg, L, P, D) and validity (E * n_seg, P) of every segment, env-major like SB3's flatten."""
        h, valid, episode = self._extended()
        p, t = self.memory_length - 1, self.segment_len
        starts = torch.arange(0, self.buffer_size, t, device=self.device)  # segment start = extended index of the
        index = starts[:, None] + torch.arange(p, device=self.device)[None, :]  # P slots just before it
        memory = h[:, index]  # (E, n_seg, P, L, D)
        last = episode[:, starts + max(p - 1, 0)]  # (E, n_seg): episode of the step before the segment
        memory_valid = valid[:, index] & (episode[:, index] == last[..., None])
        e, n_seg = memory.shape[:2]
        return (memory.reshape(e * n_seg, p, self.num_layers, self.d_model).transpose(1, 2).contiguous(),
                memory_valid.reshape(e * n_seg, p))

    def get(self, batch_size: int | None = None) -> Generator[RolloutBufferSamples | DictRolloutBufferSamples, None, None]:
        """Shuffled minibatches of whole segments; ``batch_size`` steps = ``batch_size // segment_len`` segments."""
        assert self.full, "the rollout buffer must be full before sampling"
        t = self.segment_len
        batch_size = self.buffer_size * self.n_envs if batch_size is None else batch_size
        if batch_size % t:
            raise ValueError(f"batch_size ({batch_size}) must be a multiple of segment_len ({t})")
        if not self.generator_ready:
            # SB3's one-time swap-and-flatten ((n_steps, E, ...) -> (E * n_steps, ...), env-major), as its get() does
            if isinstance(self.observations, dict):
                self.observations = {k: self.swap_and_flatten(v) for k, v in self.observations.items()}
            else:
                self.observations = self.swap_and_flatten(self.observations)
            for name in ("actions", "values", "log_probs", "advantages", "returns"):
                setattr(self, name, self.swap_and_flatten(getattr(self, name)))
            self.generator_ready = True
            self._flat_starts = self.to_torch(self.swap_and_flatten(self.episode_starts)).view(-1, t) > 0.5
            self._flat_times = self.times.transpose(0, 1).reshape(-1, t)
            self._memory, self._memory_valid = self._segment_memory()
        n_segments = self.buffer_size * self.n_envs // t
        order = np.random.permutation(n_segments)
        per_batch = batch_size // t
        for start in range(0, n_segments, per_batch):
            segments = order[start:start + per_batch]
            steps = (segments[:, None] * t + np.arange(t)[None, :]).reshape(-1)  # segment-major step indices
            samples = self._get_samples(steps)
            index = torch.as_tensor(segments, device=self.device)
            yield samples._replace(observations=SegmentBatch(
                samples.observations, self._flat_times[index], self._flat_starts[index],
                self._memory[index], self._memory_valid[index],
            ))


class MemoryRolloutBuffer(_MemoryBufferMixin, RolloutBuffer):
    """SB3's ``RolloutBuffer`` for Box / Discrete observations, with segment minibatches and stored memory."""


class MemoryDictRolloutBuffer(_MemoryBufferMixin, DictRolloutBuffer):
    """SB3's ``DictRolloutBuffer`` for Dict observations, with segment minibatches and stored memory."""
