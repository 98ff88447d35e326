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

    A ViT-style patch embedding (overlapping patches when stride < kernel) for cells that are categories rather
    than pixels: each k x k patch's one-hot fields (k * k * F * vocab_size inputs, k * k * F of them ones) go
    through one ``Linear`` (``proj``), the function a ``Conv2d(F * vocab_size, D, k, stride)`` over the one-hot
    grid computes. H' = (H - k) // stride + 1, likewise W'; patches and tokens are row-major.

    Why not a :class:`FieldEmbedding` followed by a convolution: on a CPU, the table's backward pass (an index
    scatter) and the convolution's gradients on a 7 x 7 grid cost several times this one matrix product. Weights
    start at N(0, 1 / (k * k * F)): a patch's token then has unit variance, as a :class:`FieldEmbedding`'s does.
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
        inputs = kernel * kernel * num_fields  # one-hot groups per patch
        self.proj = nn.Linear(inputs * vocab_size, d_model)
        nn.init.normal_(self.proj.weight, std=1 / math.sqrt(inputs))
        nn.init.zeros_(self.proj.bias)
        # cells[p, j]: the j-th cell (row-major within the patch) of patch p; slot j * F + f of the patch's one-hot
        # groups holds field f of that cell, its ids shifted by (j * F + f) * vocab_size.
        rows = torch.arange(0, height - kernel + 1, stride)
        cols = torch.arange(0, width - kernel + 1, stride)
        corner = (rows[:, None] * width + cols[None, :]).reshape(-1)  # (P,) top-left cell of each patch
        within = (torch.arange(kernel)[:, None] * width + torch.arange(kernel)[None, :]).reshape(-1)  # (k * k,)
        self.register_buffer("cells", corner[:, None] + within[None, :], persistent=False)  # (P, k * k)
        self.register_buffer("offsets", torch.arange(inputs) * vocab_size, persistent=False)  # (k * k * F,)

    @property
    def num_patches(self) -> int:
        return self.cells.shape[0]

    def forward(self, ids: Tensor) -> Tensor:
        batch, cells = ids.shape[0], self.grid[0] * self.grid[1]
        if ids.dim() != 3 or ids.shape[1:] != (cells, self.num_fields):
            raise ValueError(f"expected ids of shape (batch, {cells}, {self.num_fields}) for the {self.grid} grid, "
                             f"got {tuple(ids.shape)}")
        check_token_ids(ids, self.vocab_size)
        patches = ids.long()[:, self.cells].flatten(2) + self.offsets  # (B, P, k * k * F) rows of the one-hot
        one_hot = torch.zeros(batch, self.num_patches, self.proj.in_features, dtype=self.proj.weight.dtype,
                              device=ids.device)
        return self.proj(one_hot.scatter_(2, patches, 1.0))  # (B, P, D)


def check_token_ids(ids: Tensor, vocab_size: int) -> None:
    """Raise a clear error for non-integer ids or ids outside [0, vocab_size)."""
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"token ids must be an integer tensor, got {ids.dtype}")
    if ids.numel():
        low, high = torch.stack(torch.aminmax(ids)).tolist()  # one pass, one sync: it runs on every RL step
        if low < 0 or high >= vocab_size:
            raise ValueError(f"token ids must lie in [0, {vocab_size}), got min {low} and max {high}")
