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


class GridPatchEmbedding(nn.Module):
    """A grid of multi-field categorical cells -> patch tokens: (B, H * W, F) ids -> (B, H' * W', D).

    Each cell is embedded as a :class:`FieldEmbedding` embeds it (one table shared by every cell, the same init
    and sqrt(D) scale), then every k x k patch's cell embeddings, concatenated, are projected to D (``merge``): a
    ``Conv2d(D, D, k, stride)`` over the embedded grid, a ViT-style patch embedding with overlapping patches when
    stride < kernel. H' = (H - k) // stride + 1, likewise W'; patches and tokens are row-major.

    Computed for a CPU's sake as one matrix product per batch: the table and ``merge`` are composed into one
    weight per (cell of the patch, field, id) (a few hundred rows, cheap to form at every call), and each patch's
    one-hot fields are multiplied by it. The same function and parameters (so the same gradients) as an embedding
    lookup, a gather of the patches and ``merge``, without their backward passes (an index scatter, a gather's
    scatter-add), which made a FieldEmbedding + Conv2d the costliest part of PPO's minibatch. The shared table
    matters for learning: a projection of each patch's one-hot cells without it learned GoToRedBallGrey more
    slowly per frame.
    """

    def __init__(self, vocab_size: int, num_fields: int, d_model: int, grid: tuple[int, int], kernel: int,
                 stride: int) -> None:
        super().__init__()
        if vocab_size <= 0 or num_fields <= 0:
            raise ValueError(f"vocab_size and num_fields must be positive, got {vocab_size} and {num_fields}")
        height, width = grid
        if kernel < 1 or stride < 1 or kernel > min(height, width):
            raise ValueError(f"need 1 <= kernel <= min(grid) = {min(grid)} and stride >= 1, got {kernel} and {stride}")
        self.vocab_size, self.num_fields, self.grid = vocab_size, num_fields, (height, width)
        self.scale = math.sqrt(d_model)
        # FieldEmbedding's table and init: field f of a cell uses rows f * vocab_size ... (f + 1) * vocab_size - 1.
        self.weight = nn.Parameter(torch.randn(vocab_size * num_fields, d_model) / math.sqrt(d_model * num_fields))
        self.merge = nn.Linear(kernel * kernel * d_model, d_model)  # input: the patch's cells, row-major, each D
        rows = torch.arange(0, height - kernel + 1, stride)
        cols = torch.arange(0, width - kernel + 1, stride)
        corner = (rows[:, None] * width + cols[None, :]).reshape(-1)  # (P,) top-left cell of each patch
        within = (torch.arange(kernel)[:, None] * width + torch.arange(kernel)[None, :]).reshape(-1)  # (k * k,)
        self.num_patches = len(corner)
        self.register_buffer("cells", (corner[:, None] + within[None, :]).reshape(-1), persistent=False)  # (P k k,)
        # Row of the composed weight for (cell j of the patch, field f, id): (j * F + f) * vocab_size + id.
        self.register_buffer("offsets", torch.arange(kernel * kernel * num_fields) * vocab_size, persistent=False)

    def forward(self, ids: Tensor) -> Tensor:
        batch, cells = ids.shape[0], self.grid[0] * self.grid[1]
        if ids.dim() != 3 or ids.shape[1:] != (cells, self.num_fields):
            raise ValueError(f"expected ids of shape (batch, {cells}, {self.num_fields}) for the {self.grid} grid, "
                             f"got {tuple(ids.shape)}")
        check_token_ids(ids, self.vocab_size)
        d_model, patches = self.weight.shape[1], self.num_patches
        table = self.weight * self.scale  # (F * vocab, D): FieldEmbedding's embeddings
        per_cell = self.merge.weight.view(d_model, -1, d_model)  # (D out, k * k, D in)
        composed = torch.einsum("vi,oji->jvo", table, per_cell).reshape(-1, d_model)  # (k * k * F * vocab, D)
        rows = ids.long().index_select(1, self.cells).view(batch, patches, -1) + self.offsets  # (B, P, k * k * F)
        one_hot = torch.zeros(batch, patches, composed.shape[0], dtype=composed.dtype, device=ids.device)
        return torch.addmm(self.merge.bias, one_hot.scatter_(2, rows, 1.0).view(batch * patches, -1),
                           composed).view(batch, patches, d_model)  # (B, P, D)


def check_token_ids(ids: Tensor, vocab_size: int) -> None:
    """Raise a clear error for non-integer ids or ids outside [0, vocab_size)."""
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"token ids must be an integer tensor, got {ids.dtype}")
    if ids.numel():
        low, high = torch.stack(torch.aminmax(ids)).tolist()  # one pass, one sync: it runs on every RL step
        if low < 0 or high >= vocab_size:
            raise ValueError(f"token ids must lie in [0, {vocab_size}), got min {low} and max {high}")
