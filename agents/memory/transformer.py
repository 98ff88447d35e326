"""A causal transformer over the current episode's step embeddings, with a per-layer key/value cache.

:class:`EpisodeTransformer` is the memory of :class:`agents.memory.ppo.MemoryPPO`. It is built from ``lab``
blocks (``lab.layers.EncoderLayer``, whose ``lab.attention.MultiHeadAttention`` runs on the SDPA path, and a
``lab.positional`` table) and has two equivalent ways to run:

- :meth:`EpisodeTransformer.step`: one environment step for a batch of envs. Each layer writes the new step's
  key and value into a ring of ``M = memory_length`` slots and attends over the valid slots, so a step costs
  O(M) (Transformer-XL's cached memory; nothing of the episode is re-encoded).
- :meth:`EpisodeTransformer.forward_segment`: T consecutive steps at once (PPO's update) given the stored
  layer inputs of the up-to ``M - 1`` steps before the segment, with a causal, episode-aware, windowed mask.

Both compute the same function (tests/agents/test_memory_equivalence.py checks atol 1e-5).

Attention span: step t attends to itself and the previous ``M - 1`` steps **of its own episode** (a
``HistoryWrapper(k=8)`` window corresponds to ``M = 8``). With L layers, information reaches up to
L * (M - 1) steps back through the cached upper-layer inputs, as in Transformer-XL. An episode start clears
the memory.

Positions, both on by default, each can be switched off:

- ``relative_bias=True``: relative to the current step. Each layer and head adds a learned bias ``b[d]`` to
  the attention score of the step ``d`` steps back (``d = 0 .. M - 1``), initialised as ALiBi (``-slope_h * d``,
  slope_h = 2^(-8 h / H) for heads h = 1 .. H) so that some heads start out looking at the last few steps and
  others far back. CartPoleNoVel (the velocity is a difference of the last steps) learned much faster with it.
- ``positional="sinusoidal"`` (or ``"learned"``; ``"none"`` for off): absolute-in-episode positions, the
  step's time since its episode started ``t = 0, 1, ...`` looked up in a table and added to the step embedding
  before the first layer (as CleanRL's ``ppo_trxl``); "attend to the episode's first step" is then easy to
  learn (RepeatFirst did not learn in 15k steps without it). Times beyond ``max_position - 1`` share the last row.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lab.layers import EncoderLayer, TransformerConfig
from lab.positional import make_positional_encoding

POSITIONALS = ("sinusoidal", "learned", "none")


@dataclass
class MemoryConfig:
    """The memory transformer of a :class:`agents.memory.policy.MemoryActorCriticPolicy` (``memory_kwargs``)."""

    memory_length: int = 16  # M: steps attended (current one included); long recall (RepeatFirst) needs more
    d_model: int = 64  # small: the model runs once per env step at batch n_envs, overhead bounds steps/s
    num_heads: int = 4
    num_layers: int = 1  # one layer already reads any past step; more layers compose memories
    dim_feedforward: int = 128  # 2x d_model, as the lab's RL extractors
    dropout: float = 0.0  # dropout makes PPO's ratio noisy and rollout/update outputs differ
    activation: str = "relu"  # cheaper than gelu on CPU
    norm_first: bool = True  # pre-norm: stable without warmup, and the residual stream is the cached input
    # "none": the relative bias only, time-invariant like an LSTM; "sinusoidal" adds absolute time in the episode
    # ("the first step" is easy to find) but swamps low-dimensional observations at times never seen in training
    positional: str = "none"
    relative_bias: bool = True  # a learned bias per distance: "the previous step" is one bias away
    max_position: int = 1024  # times >= this share the last absolute position

    def __post_init__(self) -> None:
        if self.memory_length < 1:
            raise ValueError(f"memory_length must be >= 1 (steps attended, the current one included), "
                             f"got {self.memory_length}")
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if self.positional not in POSITIONALS:
            raise ValueError(f"unknown positional {self.positional!r}; choose one of {', '.join(POSITIONALS)}")
        if self.max_position < 1:
            raise ValueError(f"max_position must be >= 1, got {self.max_position}")
        self.transformer()  # validates d_model / heads / activation

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any] | None) -> MemoryConfig:
        kwargs = dict(kwargs or {})
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise TypeError(f"unknown memory option(s) {unknown}; valid: {', '.join(valid)}")
        return cls(**kwargs)

    def transformer(self) -> TransformerConfig:
        return TransformerConfig(
            d_model=self.d_model, num_heads=self.num_heads, num_layers=self.num_layers,
            dim_feedforward=self.dim_feedforward, dropout=self.dropout, activation=self.activation,
            norm_first=self.norm_first,
        )


class MemoryState(NamedTuple):
    """Per-env memory during rollouts / ``predict``.

    keys, values: (L, N, H, M, hd) ring of cached keys / values, step t in slot ``t % M``;
    time: (N,) long, steps taken in the current episode (= position of the next step; slots ``< min(time, M)``
    are valid).
    """

    keys: Tensor
    values: Tensor
    time: Tensor


class EpisodeTransformer(nn.Module):
    """Step embeddings (features_dim) -> causal transformer over the episode -> (N, d_model)."""

    def __init__(self, features_dim: int, config: MemoryConfig) -> None:
        super().__init__()
        self.config = config
        tc = config.transformer()
        self.input_proj: nn.Module = (
            nn.Identity() if features_dim == config.d_model else nn.Linear(features_dim, config.d_model)
        )
        self.positions = make_positional_encoding(config.positional, config.d_model, config.max_position)
        self.relative_bias = (nn.Parameter(_alibi(config.num_layers, config.num_heads, config.memory_length))
                              if config.relative_bias else None)
        self.layers = nn.ModuleList(EncoderLayer(**tc.layer_kwargs()) for _ in range(config.num_layers))
        self.norm: nn.Module = nn.LayerNorm(config.d_model) if config.norm_first else nn.Identity()
        self.num_heads = config.num_heads
        self.head_dim = config.d_model // config.num_heads

    # ----------------------------------------------------------------------------------------------- helpers
    def cache_shape(self, n_envs: int) -> tuple[int, ...]:
        """Shape of a state's keys and of its values: (layers, envs, heads, memory length, head dim)."""
        c = self.config
        return (c.num_layers, n_envs, self.num_heads, c.memory_length, self.head_dim)

    def initial_state(self, n_envs: int, device: torch.device | str | None = None) -> MemoryState:
        shape = self.cache_shape(n_envs)
        device = device if device is not None else self._device()
        return MemoryState(torch.zeros(shape, device=device), torch.zeros(shape, device=device),
                           torch.zeros(n_envs, dtype=torch.long, device=device))

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _embed(self, features: Tensor, time: Tensor) -> Tensor:
        """features (..., F), time (...) long -> (..., D): projection plus the position of each step."""
        x = self.input_proj(features)
        if self.config.positional == "none":
            return x
        return x + self.positions.table()[time.clamp(max=self.config.max_position - 1)]

    def _qkv(self, layer: EncoderLayer, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # The layer's own MultiHeadAttention weights, split as its fused path splits them: (N, D) -> 3 x (N, H, hd)
        q, k, v = F.linear(y, layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias).chunk(3, dim=-1)
        n = y.shape[0]
        return tuple(t.view(n, self.num_heads, self.head_dim) for t in (q, k, v))  # type: ignore[return-value]

    # -------------------------------------------------------------------------------------------------- step
    def step(self, features: Tensor, state: MemoryState, episode_start: Tensor) -> tuple[Tensor, Tensor]:
        """One step for N envs; **updates ``state`` in place** (clone it first to peek).

        features (N, F), episode_start (N,) bool (True clears that env's memory first) ->
        (output (N, D), layer inputs (N, L, D): what PPO's update needs to rebuild this step's keys/values).
        """
        keys, values, time = state
        if bool(episode_start.any()):
            start = episode_start.to(torch.bool)
            time.masked_fill_(start, 0)
            keys[:, start] = 0.0  # not needed for correctness (masked), but no NaN can linger and leak
            values[:, start] = 0.0
        n, m = features.shape[0], self.config.memory_length
        rows = torch.arange(n, device=features.device)
        slot = time % m
        slots = torch.arange(m, device=features.device)[None, :]
        valid = slots <= time[:, None]  # (N, M): slots 0..min(t, M-1) hold this episode's steps
        distance = (time[:, None] - slots) % m  # (N, M): how many steps back each slot is (valid slots)
        mask = valid[:, None, None, :]  # (N, 1, 1, M) True = allowed (SDPA)
        x = self._embed(features, time)  # (N, D)
        inputs = []
        for i, layer in enumerate(self.layers):
            inputs.append(x)
            y = layer.norm1(x) if layer.norm_first else x
            q, k, v = self._qkv(layer, y)
            keys[i, rows, :, slot] = k
            values[i, rows, :, slot] = v
            dropout_p = layer.self_attn.dropout if self.training else 0.0
            if self.relative_bias is not None:  # (H, N, M) -> (N, H, 1, M), -inf where not allowed
                bias = self.relative_bias[i][:, distance].transpose(0, 1)[:, :, None]
                mask = bias.masked_fill(~valid[:, None, None, :], float("-inf"))
            out = F.scaled_dot_product_attention(q[:, :, None], keys[i], values[i], attn_mask=mask,
                                                 dropout_p=dropout_p)  # (N, H, 1, hd)
            x = layer.after_attention(x, layer.self_attn.out_proj(out.reshape(n, -1)))
        time += 1
        return self.norm(x), torch.stack(inputs, dim=1)

    def load_memory(self, state: MemoryState, memory: Tensor, memory_valid: Tensor) -> None:
        """Refill the key/value ring of ``state`` from stored layer inputs (in place).

        memory (N, P, L, D): layer inputs of the P = M - 1 steps before the next one (oldest first), valid
        (N, P) bool. Keys/values are recomputed with the current weights, so the rollout that follows sees
        exactly the memory PPO's update will rebuild from the same stored inputs.
        """
        keys, values, time = state
        n, p = memory_valid.shape
        if p == 0:
            return
        keys.zero_()
        values.zero_()
        slots = (time[:, None] - p + torch.arange(p, device=time.device)[None, :]) % self.config.memory_length
        rows = torch.arange(n, device=time.device)[:, None].expand(n, p)
        for i, layer in enumerate(self.layers):
            h = memory[:, :, i].reshape(n * p, -1)
            _, k, v = self._qkv(layer, layer.norm1(h) if layer.norm_first else h)
            k = (k.view(n, p, self.num_heads, self.head_dim) * memory_valid[..., None, None])
            v = (v.view(n, p, self.num_heads, self.head_dim) * memory_valid[..., None, None])
            keys[i, rows, :, slots] = k  # (N, P, H, hd) scattered to (N, H, slot, hd)
            values[i, rows, :, slots] = v

    # ----------------------------------------------------------------------------------------------- segment
    def forward_segment(
        self, features: Tensor, time: Tensor, episode_starts: Tensor, memory: Tensor, memory_valid: Tensor
    ) -> Tensor:
        """T consecutive steps of B envs at once (PPO's update), same function as T calls of :meth:`step`.

        features (B, T, F); time (B, T) long (step index in its episode); episode_starts (B, T) bool;
        memory (B, L, P, D): layer inputs of the P = M - 1 steps before the segment (oldest first), used as
        given (no gradient flows into them); memory_valid (B, P) bool. -> (B, T, D).
        """
        b, t = episode_starts.shape
        p = memory.shape[2]
        m = self.config.memory_length
        if p != m - 1:
            raise ValueError(f"memory must hold memory_length - 1 = {m - 1} steps, got {p}")
        device = features.device
        episode = episode_starts.to(torch.long).cumsum(dim=1)  # (B, T): 0 = the episode the memory belongs to
        qi = torch.arange(t, device=device)
        # Memory slot s (time s - P relative to the segment) is within reach of query i when i + P - s <= M - 1.
        mem_ok = (memory_valid[:, None, :] & (episode[:, :, None] == 0)
                  & (torch.arange(p, device=device)[None, None, :] >= qi[None, :, None]))  # (B, T, P)
        delta = qi[:, None] - qi[None, :]  # (T, T) query - key
        seg_ok = ((delta >= 0) & (delta < m))[None] & (episode[:, :, None] == episode[:, None, :])  # (B, T, T)
        blocked = ~torch.cat([mem_ok, seg_ok], dim=2)[:, None]  # (B, 1, T, P + T) True = not allowed (lab)
        # Steps back from query i: memory slot s is i + P - s, segment step j is i - j (clamped where blocked).
        distance = (qi[:, None] + p - torch.arange(p + t, device=device)[None, :]).clamp(0, m - 1)  # (T, P + T)
        x = self._embed(features, time)  # (B, T, D)
        for i, layer in enumerate(self.layers):
            context = torch.cat([memory[:, i], x], dim=1)  # (B, P + T, D)
            y = layer.norm1(context) if layer.norm_first else context
            mask = blocked
            if self.relative_bias is not None:  # float mask: the bias, -inf where not allowed
                mask = self.relative_bias[i][:, distance][None].masked_fill(blocked, float("-inf"))  # (B, H, T, P+T)
            out, _ = layer.self_attn(y[:, p:], y, y, attn_mask=mask)  # (B, T, D), out_proj applied
            x = layer.after_attention(x, out)
        return self.norm(x)


def _alibi(num_layers: int, num_heads: int, memory_length: int) -> Tensor:
    """ALiBi's recency bias ``-slope_h * d`` (Press et al. 2022) as the initial relative bias: (L, H, M)."""
    slopes = 2.0 ** (-8.0 * torch.arange(1, num_heads + 1) / num_heads)  # 2^-8/H ... 2^-8
    distance = torch.arange(memory_length, dtype=torch.float32)
    return (-slopes[:, None] * distance[None, :]).expand(num_layers, -1, -1).clone()
