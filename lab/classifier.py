"""Transformer sequence classifier: tokens or feature sequences -> encoder -> CLS / masked-mean pooling."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lab.embedding import TokenEmbedding
from lab.layers import TransformerConfig, TransformerEncoder
from lab.positional import make_positional_encoding

POOLINGS = ("cls", "mean")


@dataclass
class ClassifierConfig:
    """Set exactly one of ``vocab_size`` (token ids in) and ``input_dim`` (feature vectors in)."""

    num_classes: int | None  # None -> no head: forward returns pooled features (used by RL extractors)
    vocab_size: int | None = None
    input_dim: int | None = None
    max_len: int = 512  # longest input sequence (the CLS token is not counted)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    pooling: str = "cls"  # "cls": a learned summary token; "mean": average of the unpadded token states
    positional: str = "sinusoidal"  # "learned" or "none" (a permutation-invariant set classifier)
    head_dropout: float = 0.0

    def __post_init__(self) -> None:
        if (self.vocab_size is None) == (self.input_dim is None):
            raise ValueError("set exactly one of vocab_size (token ids) and input_dim (feature sequences)")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {self.num_classes}")


class TransformerClassifier(nn.Module):
    """x: ids (B, T) or features (B, T, F); padding_mask (B, T) bool, True = padding -> logits (B, C).

    With ``num_classes=None`` the output is the pooled feature vector (B, D) instead.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        d_model = config.transformer.d_model
        self.embed: nn.Module = (
            TokenEmbedding(config.vocab_size, d_model) if config.vocab_size is not None
            else nn.Linear(config.input_dim, d_model)
        )
        self.positions = make_positional_encoding(config.positional, d_model, config.max_len, config.transformer.dropout)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d_model) * 0.02) if config.pooling == "cls" else None
        self.encoder = TransformerEncoder(config.transformer)
        if config.num_classes is None:
            self.head: nn.Module = nn.Identity()
        else:
            self.head = nn.Sequential(nn.Dropout(config.head_dropout), nn.Linear(d_model, config.num_classes))
        self.features_dim = d_model

    def encode(self, x: Tensor, padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Token states (B, T', D) (T' = T + 1 with a CLS token first) and the matching padding mask."""
        self._check_input(x, padding_mask)
        h = self.positions(self.embed(x))  # (B, T, D)
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1)  # (B, 1 + T, D)
            if padding_mask is not None:
                padding_mask = torch.cat([padding_mask.new_zeros(h.shape[0], 1), padding_mask], dim=1)
        return self.encoder(h, key_padding_mask=padding_mask), padding_mask

    def forward_features(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Pooled representation (B, D)."""
        h, padding_mask = self.encode(x, padding_mask)
        if self.cls_token is not None:
            return h[:, 0]
        return masked_mean(h, padding_mask)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        return self.head(self.forward_features(x, padding_mask))

    def layer_groups(self) -> list[nn.Module]:
        """Body -> head for ``lab.finetune``: input embedding, each encoder layer, final norm + head."""
        stem = nn.ModuleList([self.embed, self.positions])
        if self.cls_token is not None:
            stem.append(_ParameterHolder(self.cls_token))
        return [stem, *self.encoder.layers, nn.ModuleList([self.encoder.norm, self.head])]

    def _check_input(self, x: Tensor, padding_mask: Tensor | None) -> None:
        if self.config.vocab_size is not None and x.dim() != 2:
            raise ValueError(f"token input must have shape (batch, length), got {tuple(x.shape)}")
        if self.config.input_dim is not None and (x.dim() != 3 or x.shape[-1] != self.config.input_dim):
            raise ValueError(f"feature input must have shape (batch, length, {self.config.input_dim}), got {tuple(x.shape)}")
        if padding_mask is not None:
            if padding_mask.shape != x.shape[:2] or padding_mask.dtype != torch.bool:
                raise ValueError(
                    f"padding_mask must be a bool tensor of shape {tuple(x.shape[:2])} (True = padding), "
                    f"got {padding_mask.dtype} {tuple(padding_mask.shape)}"
                )


def masked_mean(h: Tensor, padding_mask: Tensor | None) -> Tensor:
    """Mean over the unpadded positions of (B, T, D) -> (B, D); rows with no real token give zeros."""
    if padding_mask is None:
        return h.mean(dim=1)
    keep = (~padding_mask).unsqueeze(-1).to(h.dtype)  # (B, T, 1)
    return (h * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)


class _ParameterHolder(nn.Module):
    """Wraps a bare parameter (e.g. a CLS token) so it can sit in a layer group."""

    def __init__(self, parameter: nn.Parameter) -> None:
        super().__init__()
        self.parameter = parameter
