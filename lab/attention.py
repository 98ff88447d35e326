"""Multi-head attention with a fused fast path, and the tutorial's gamma-gated residual variant.

Parameter names (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) are those of
``torch.nn.MultiheadAttention``, so a torch state dict loads directly (see :func:`copy_weights_from_torch`).
Masks follow the same convention: a bool mask is ``True`` where attention is *not allowed*; a float mask is
added to the scores.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiHeadAttention(nn.Module):
    """Batch-first multi-head attention, self or cross (query length may differ from key length).

    Args:
        embed_dim: model width E; must be divisible by ``num_heads``.
        num_heads: number of heads H; each has width E // H.
        dropout: dropout on the attention probabilities, applied only in training mode.
        bias: add biases to the input and output projections.

    Shapes: query (B, Lq, E), key and value (B, Lk, E) -> output (B, Lq, E) and, when
    ``need_weights=True``, per-head attention probabilities (B, H, Lq, Lk) (before dropout).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be positive, got {embed_dim} and {num_heads}")
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}); "
                f"e.g. num_heads in {[h for h in range(1, min(embed_dim, 16) + 1) if embed_dim % h == 0]}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.head_dim = embed_dim // num_heads
        # q, k and v packed in one matrix: self-attention then costs a single (E -> 3E) matmul.
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim)) if bias else None
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same initialisation as torch.nn.MultiheadAttention.
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        attn_mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value`` (both default to ``query``: self-attention).

        Args:
            attn_mask: (Lq, Lk), (B * H, Lq, Lk) as in torch, or broadcastable (B | 1, H | 1, Lq, Lk);
                bool (True = not allowed) or float (added to the scores).
            key_padding_mask: (B, Lk); bool (True = padding, ignored) or float (added).
            is_causal: query i attends only to keys j <= i (top-left aligned, like SDPA).
            need_weights: also return per-head probabilities (B, H, Lq, Lk); uses the explicit (slower) path.
        Returns:
            (output (B, Lq, E), weights or None).
        """
        key = query if key is None else key
        value = key if value is None else value
        batch, q_len, k_len = self._check_inputs(query, key, value)
        q, k, v = self._project(query, key, value)  # each (B, H, L, hd)
        # Without other masks, the causal case goes through SDPA's is_causal flag and no mask tensor is built.
        causal_in_mask = is_causal and (need_weights or attn_mask is not None or key_padding_mask is not None)
        mask = self._merge_masks(attn_mask, key_padding_mask, causal_in_mask, batch, q_len, k_len, query.dtype)
        dropout_p = self.dropout if self.training else 0.0

        if need_weights:
            scores = (q * (1.0 / math.sqrt(self.head_dim))) @ k.transpose(-2, -1)  # (B, H, Lq, Lk)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
            weights = scores.softmax(dim=-1)
            out = F.dropout(weights, dropout_p, training=True) @ v if dropout_p > 0 else weights @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal and not causal_in_mask
            )
        out = out.transpose(1, 2).reshape(batch, q_len, self.embed_dim)  # (B, Lq, E)
        return self.out_proj(out), weights

    # ---------------------------------------------------------------- helpers
    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[int, int, int]:
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.dim() != 3 or t.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"{name} must have shape (batch, length, {self.embed_dim}) (batch first), got {tuple(t.shape)}"
                )
        if not (query.shape[0] == key.shape[0] == value.shape[0]):
            raise ValueError(
                f"batch sizes differ: query {query.shape[0]}, key {key.shape[0]}, value {value.shape[0]}"
            )
        if key.shape[1] != value.shape[1]:
            raise ValueError(f"key and value lengths differ: {key.shape[1]} vs {value.shape[1]}")
        return query.shape[0], query.shape[1], key.shape[1]

    def _project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        E, w, b = self.embed_dim, self.in_proj_weight, self.in_proj_bias
        if key is query and value is query:  # self-attention: one fused matmul
            q, k, v = F.linear(query, w, b).chunk(3, dim=-1)
        elif key is value:  # cross-attention on one memory: q alone, k and v fused
            q = F.linear(query, w[:E], None if b is None else b[:E])
            k, v = F.linear(key, w[E:], None if b is None else b[E:]).chunk(2, dim=-1)
        else:
            ws, bs = w.chunk(3), (None, None, None) if b is None else b.chunk(3)
            q, k, v = (F.linear(x, wi, bi) for x, wi, bi in zip((query, key, value), ws, bs))
        return tuple(self._split_heads(t) for t in (q, k, v))  # type: ignore[return-value]

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, L, hd)

    def _merge_masks(
        self,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor | None,
        causal: bool,
        batch: int,
        q_len: int,
        k_len: int,
        dtype: torch.dtype,
    ) -> Tensor | None:
        """One mask broadcastable to (B, H, Lq, Lk): bool with True = *allowed* (SDPA's convention), or float.

        Returns None when nothing is masked, so SDPA can use its fastest kernel (and its causal flag).
        """
        masks: list[Tensor] = []
        if attn_mask is not None:
            masks.append(self._attn_mask_4d(attn_mask, batch, q_len, k_len))
        if key_padding_mask is not None:
            if key_padding_mask.shape != (batch, k_len):
                raise ValueError(
                    f"key_padding_mask must have shape (batch, key_length) = ({batch}, {k_len}), "
                    f"got {tuple(key_padding_mask.shape)}"
                )
            masks.append(_check_mask_dtype(key_padding_mask, "key_padding_mask")[:, None, None, :])
        if causal:
            device = self.in_proj_weight.device
            masks.append(torch.ones(q_len, k_len, dtype=torch.bool, device=device).triu(1))  # True above diagonal
        if not masks:
            return None
        if all(m.dtype == torch.bool for m in masks):
            blocked = masks[0]
            for m in masks[1:]:
                blocked = blocked | m
            return ~blocked
        merged = torch.zeros((), dtype=dtype, device=masks[0].device)
        for m in masks:
            additive = torch.zeros_like(m, dtype=dtype).masked_fill(m, float("-inf")) if m.dtype == torch.bool else m
            merged = merged + additive.to(dtype)
        return merged

    def _attn_mask_4d(self, mask: Tensor, batch: int, q_len: int, k_len: int) -> Tensor:
        mask = _check_mask_dtype(mask, "attn_mask")
        heads = self.num_heads
        if mask.dim() == 2 and mask.shape == (q_len, k_len):
            return mask
        if mask.dim() == 3 and mask.shape == (batch * heads, q_len, k_len):
            return mask.view(batch, heads, q_len, k_len)
        if (
            mask.dim() == 4
            and mask.shape[0] in (1, batch)
            and mask.shape[1] in (1, heads)
            and mask.shape[2:] == (q_len, k_len)
        ):
            return mask
        raise ValueError(
            f"attn_mask must have shape ({q_len}, {k_len}), ({batch * heads}, {q_len}, {k_len}) or "
            f"({batch} or 1, {heads} or 1, {q_len}, {k_len}) for query length {q_len}, key length {k_len}, "
            f"batch {batch} and {heads} heads; got {tuple(mask.shape)}"
        )


def _check_mask_dtype(mask: Tensor, name: str) -> Tensor:
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"{name} must be bool (True = not allowed) or floating point (added), got {mask.dtype}")
    return mask


class GatedSelfAttention(nn.Module):
    """The tutorial's gated residual attention: ``x + gamma * attention(x)``, gamma a learnable scalar.

    gamma starts at 0 (as in SAGAN), so the block is the identity at initialisation and attention is blended in
    as training finds it useful. Shapes: (B, L, E) -> (B, L, E).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(embed_dim, num_heads, dropout=dropout, bias=bias)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(
        self, x: Tensor, *, attn_mask: Tensor | None = None, key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        out, _ = self.attention(x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=is_causal)
        return x + self.gamma * out


def copy_weights_from_torch(dst: nn.Module, src: nn.Module) -> nn.Module:
    """Copy the weights of a torch module into its ``lab`` twin and return ``dst``.

    Works for ``nn.MultiheadAttention`` -> :class:`MultiHeadAttention`, ``nn.TransformerEncoderLayer`` ->
    ``lab.layers.EncoderLayer``, ``nn.TransformerDecoderLayer`` -> ``lab.layers.DecoderLayer`` and their
    stacks, because the ``lab`` modules use torch's parameter names. A mismatch (e.g. torch's separate
    ``kdim``/``vdim`` projections, or different widths) raises an error naming the offending keys.
    """
    src_state, dst_state = src.state_dict(), dst.state_dict()
    missing = sorted(set(dst_state) - set(src_state))
    unexpected = sorted(set(src_state) - set(dst_state))
    if missing or unexpected:
        raise ValueError(
            f"cannot copy {type(src).__name__} into {type(dst).__name__}: "
            f"missing in source {missing[:6]}, not in destination {unexpected[:6]}"
        )
    shapes = [(k, tuple(v.shape), tuple(dst_state[k].shape)) for k, v in src_state.items() if v.shape != dst_state[k].shape]
    if shapes:
        raise ValueError(f"shape mismatch (key, source, destination): {shapes[:6]}")
    dst.load_state_dict(src_state)
    return dst
