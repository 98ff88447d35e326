"""Transformer encoder / decoder layers and their stacks, pre-norm or post-norm.

Submodule names match ``torch.nn.TransformerEncoderLayer`` / ``TransformerDecoderLayer`` /
``TransformerEncoder`` / ``TransformerDecoder``, so torch weights load directly
(``lab.attention.copy_weights_from_torch``) and the two can be checked for numerical equality.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor, nn

from lab.attention import MultiHeadAttention

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


@dataclass
class TransformerConfig:
    """Width, depth and regularisation shared by every transformer stack in the lab."""

    d_model: int = 128  # small enough for 2 CPU cores, wide enough for 4 heads of 32
    num_heads: int = 4
    num_layers: int = 2
    dim_feedforward: int | None = None  # None -> 4 * d_model, the usual ratio
    dropout: float = 0.1
    activation: str = "gelu"  # gelu is the modern default; relu matches the original paper
    norm_first: bool = True  # pre-norm trains stably without careful warmup
    layer_norm_eps: float = 1e-5
    bias: bool = True

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if self.num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {self.num_layers}")
        if self.d_model <= 0 or self.num_heads <= 0 or self.d_model % self.num_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be a positive multiple of num_heads ({self.num_heads})"
            )

    def layer_kwargs(self) -> dict:
        """Keyword arguments for one :class:`EncoderLayer` / :class:`DecoderLayer`."""
        kwargs = asdict(self)
        del kwargs["num_layers"]
        return kwargs


def _dropout(p: float) -> nn.Module:
    # Identity when p == 0: the same function, one module call less per use (it adds up in RL rollouts).
    return nn.Dropout(p) if p > 0 else nn.Identity()


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()  # an instance: the tutorial's bug was passing the class itself


class _Sublayers(nn.Module):
    """What both layers are made of, in torch's submodule names and creation order (so weights load and seeded
    initialisations match): the attentions a layer names in ``ATTENTIONS``, the feed-forward (``linear1``,
    ``dropout``, ``linear2``, ``activation``), and one LayerNorm and one dropout per sublayer (``norm1``..,
    ``dropout1``..)."""

    ATTENTIONS: tuple[str, ...] = ()

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
    ) -> None:
        super().__init__()
        dim_feedforward = dim_feedforward or 4 * d_model
        self.norm_first = norm_first
        attentions = self.ATTENTIONS
        for name in attentions:
            setattr(self, name, MultiHeadAttention(d_model, num_heads, dropout=dropout, bias=bias))
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = _dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)
        sublayers = range(1, len(attentions) + 2)  # the attentions, then the feed-forward
        for i in sublayers:
            setattr(self, f"norm{i}", nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias))
        for i in sublayers:
            setattr(self, f"dropout{i}", _dropout(dropout))
        self.activation = _activation(activation)

    def _attend(self, x: Tensor, attn_mask, key_padding_mask, is_causal: bool) -> Tensor:
        """Self-attention's output, before its dropout."""
        return self.self_attn(x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=is_causal)[0]

    def _feed_forward(self, x: Tensor) -> Tensor:
        """linear2(dropout(activation(linear1(x)))); the caller applies its sublayer's dropout."""
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class EncoderLayer(_Sublayers):
    """Self-attention + feed-forward, each with residual, dropout and LayerNorm. (B, T, D) -> (B, T, D).

    Post-norm (``norm_first=False``): ``x = norm(x + sublayer(x))`` as in the original paper.
    Pre-norm (``norm_first=True``): ``x = x + sublayer(norm(x))``, more stable for deep stacks.
    """

    ATTENTIONS = ("self_attn",)

    def forward(
        self, x: Tensor, *, attn_mask: Tensor | None = None, key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        """Masks as in :class:`lab.attention.MultiHeadAttention` (bool True = not allowed / padding)."""
        attended = self._attend(self.norm1(x) if self.norm_first else x, attn_mask, key_padding_mask, is_causal)
        return self.after_attention(x, attended)

    def after_attention(self, x: Tensor, attended: Tensor) -> Tensor:
        """The rest of the layer given its self-attention's output (before its dropout): residuals, norms and the
        feed-forward. For callers that attend their own way (``agents.memory``'s cached keys and values)."""
        if self.norm_first:
            x = x + self.dropout1(attended)
            return x + self.dropout2(self._feed_forward(self.norm2(x)))
        x = self.norm1(x + self.dropout1(attended))
        return self.norm2(x + self.dropout2(self._feed_forward(x)))


class DecoderLayer(_Sublayers):
    """Masked self-attention, cross-attention to an encoder memory, feed-forward; residuals and LayerNorm.

    x (B, T, D), memory (B, S, D) -> (B, T, D). Self-attention masks use the ``attn_mask`` /
    ``key_padding_mask`` / ``is_causal`` arguments; cross-attention uses ``memory_mask`` /
    ``memory_key_padding_mask``.
    """

    ATTENTIONS = ("self_attn", "multihead_attn")

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        *,
        attn_mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
        memory_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
    ) -> Tensor:
        if self.norm_first:
            x = x + self.dropout1(self._attend(self.norm1(x), attn_mask, key_padding_mask, is_causal))
            x = x + self._cross_attention(self.norm2(x), memory, memory_mask, memory_key_padding_mask)
            return x + self.dropout3(self._feed_forward(self.norm3(x)))
        x = self.norm1(x + self.dropout1(self._attend(x, attn_mask, key_padding_mask, is_causal)))
        x = self.norm2(x + self._cross_attention(x, memory, memory_mask, memory_key_padding_mask))
        return self.norm3(x + self.dropout3(self._feed_forward(x)))

    def _cross_attention(self, x: Tensor, memory: Tensor, memory_mask, memory_key_padding_mask) -> Tensor:
        out, _ = self.multihead_attn(x, memory, memory, attn_mask=memory_mask, key_padding_mask=memory_key_padding_mask)
        return self.dropout2(out)


class TransformerEncoder(nn.Module):
    """A stack of :class:`EncoderLayer` (submodule ``layers``) and, for pre-norm, a final LayerNorm (``norm``).

    (B, T, D) -> (B, T, D). Pass ``is_causal=True`` for a decoder-only (GPT-style) stack.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(EncoderLayer(**config.layer_kwargs()) for _ in range(config.num_layers))
        # Pre-norm leaves the residual stream un-normalised, so the stack ends with one LayerNorm.
        self.norm = _final_norm(config)

    def forward(
        self, x: Tensor, *, attn_mask: Tensor | None = None, key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        for layer in self.layers:
            x = layer(x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=is_causal)
        return self.norm(x)


class TransformerDecoder(nn.Module):
    """A stack of :class:`DecoderLayer` (``layers``) and, for pre-norm, a final LayerNorm (``norm``)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(DecoderLayer(**config.layer_kwargs()) for _ in range(config.num_layers))
        self.norm = _final_norm(config)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        *,
        attn_mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
        memory_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
    ) -> Tensor:
        for layer in self.layers:
            x = layer(
                x, memory, attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=is_causal,
                memory_mask=memory_mask, memory_key_padding_mask=memory_key_padding_mask,
            )
        return self.norm(x)


def _final_norm(config: TransformerConfig) -> nn.Module:
    if config.norm_first:
        return nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=config.bias)
    return nn.Identity()
