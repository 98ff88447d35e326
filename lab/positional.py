"""Positional encodings: fixed sinusoidal (Vaswani et al.) and learned. Both are added to (B, T, D) inputs."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

POSITIONAL_KINDS = ("sinusoidal", "learned", "none")


class _PositionalEncoding(nn.Module):
    def __init__(self, d_model: int, max_len: int, dropout: float) -> None:
        super().__init__()
        if d_model <= 0 or max_len <= 0:
            raise ValueError(f"d_model and max_len must be positive, got {d_model} and {max_len}")
        self.d_model, self.max_len = d_model, max_len
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # skip a no-op call

    def table(self) -> Tensor:  # (max_len, D)
        raise NotImplementedError

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """Add the encodings of positions ``offset .. offset + T - 1`` to x (B, T, D) -> (B, T, D)."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"expected input of shape (batch, length, {self.d_model}), got {tuple(x.shape)}")
        end = offset + x.shape[1]
        if offset < 0 or end > self.max_len:
            raise ValueError(
                f"positions {offset}..{end - 1} exceed the maximum length {self.max_len} of this "
                f"{type(self).__name__}; build it with a larger max_len or feed shorter sequences"
            )
        return self.dropout(x + self.table()[offset:end])


class SinusoidalPositionalEncoding(_PositionalEncoding):
    """Fixed sin/cos encodings: PE[p, 2i] = sin(p / 10000^(2i/D)), PE[p, 2i+1] = cos(...)."""

    def __init__(self, d_model: int, max_len: int = 512, dropout: float = 0.0) -> None:
        super().__init__(d_model, max_len, dropout)
        position = torch.arange(max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
        inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * inv_freq)
        pe[:, 1::2] = torch.cos(position * inv_freq[: d_model // 2])  # odd D: one fewer cosine column
        self.register_buffer("pe", pe, persistent=False)  # a function of the config, not a learned state

    def table(self) -> Tensor:
        return self.pe


class LearnedPositionalEncoding(_PositionalEncoding):
    """One learned vector per position, initialised N(0, 0.02) like GPT-2."""

    def __init__(self, d_model: int, max_len: int = 512, dropout: float = 0.0) -> None:
        super().__init__(d_model, max_len, dropout)
        self.embedding = nn.Parameter(torch.randn(max_len, d_model) * 0.02)

    def table(self) -> Tensor:
        return self.embedding


def make_positional_encoding(kind: str, d_model: int, max_len: int, dropout: float = 0.0) -> nn.Module:
    """``"sinusoidal"`` | ``"learned"`` | ``"none"`` (identity, e.g. for permutation-equivariant sets)."""
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model, max_len, dropout)
    if kind == "learned":
        return LearnedPositionalEncoding(d_model, max_len, dropout)
    if kind == "none":
        return _NoPositionalEncoding(dropout)
    raise ValueError(f"unknown positional encoding {kind!r}; choose one of {', '.join(POSITIONAL_KINDS)}")


class _NoPositionalEncoding(nn.Module):
    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # skip a no-op call

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        return self.dropout(x)
