"""Input embeddings shared by the sequence models: token ids and multi-field categorical tokens."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class TokenEmbedding(nn.Module):
    """Token ids (B, T) -> (B, T, D), scaled by sqrt(D) as in Vaswani et al.

    Weights start at N(0, 1/D) so the scaled output has unit variance, the same scale as the sinusoidal
    encodings it is added to; the same weights can then be tied to an output projection (logits ~ unit scale).
    """

    def __init__(self, vocab_size: int, d_model: int) -> None:
        super().__init__()
        if vocab_size <= 0:
            raise ValueError(f"vocab_size must be positive, got {vocab_size}")
        self.vocab_size, self.scale = vocab_size, math.sqrt(d_model)
        self.weight = nn.Parameter(torch.randn(vocab_size, d_model) / math.sqrt(d_model))

    def forward(self, ids: Tensor) -> Tensor:
        check_token_ids(ids, self.vocab_size)
        return nn.functional.embedding(ids.long(), self.weight) * self.scale


class FieldEmbedding(nn.Module):
    """Tokens made of ``num_fields`` categorical fields, each embedded and summed: (B, T, F) -> (B, T, D).

    Summing one embedding per field equals a linear projection of the concatenated one-hot fields; BabyAI
    grid cells (object, colour, state) are tokens of this kind.
    """

    def __init__(self, vocab_size: int, num_fields: int, d_model: int) -> None:
        super().__init__()
        if vocab_size <= 0 or num_fields <= 0:
            raise ValueError(f"vocab_size and num_fields must be positive, got {vocab_size} and {num_fields}")
        self.vocab_size, self.num_fields = vocab_size, num_fields
        # N(0, 1/(D*F)): the sum of F field embeddings, scaled by sqrt(D), has unit variance.
        self.weight = nn.Parameter(torch.randn(vocab_size * num_fields, d_model) / math.sqrt(d_model * num_fields))
        # Field f uses rows f * vocab_size ... (f + 1) * vocab_size - 1 of one shared table.
        self.register_buffer("offsets", torch.arange(num_fields) * vocab_size, persistent=False)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.shape[-1] != self.num_fields:
            raise ValueError(f"expected {self.num_fields} fields in the last dimension, got shape {tuple(ids.shape)}")
        check_token_ids(ids, self.vocab_size)
        scale = math.sqrt(self.weight.shape[1])
        return nn.functional.embedding(ids.long() + self.offsets, self.weight).sum(dim=-2) * scale


def check_token_ids(ids: Tensor, vocab_size: int) -> None:
    """Raise a clear error for non-integer ids or ids outside [0, vocab_size)."""
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"token ids must be an integer tensor, got {ids.dtype}")
    if ids.numel():
        low, high = torch.stack(torch.aminmax(ids)).tolist()  # one pass, one sync: it runs on every RL step
        if low < 0 or high >= vocab_size:
            raise ValueError(f"token ids must lie in [0, {vocab_size}), got min {low} and max {high}")
