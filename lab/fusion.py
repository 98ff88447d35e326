"""Multimodal fusion transformer: any number of named modalities in one shared encoder.

The tutorial concatenated raw inputs of different shapes; here each modality is first mapped to tokens of
the shared width, tagged with a learned modality-type embedding and its own positions, and a CLS token
summarises the joint sequence.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lab.classifier import masked_mean
from lab.embedding import FieldEmbedding, GridPatchEmbedding
from lab.layers import TransformerConfig, TransformerEncoder

MODALITY_KINDS = ("tokens", "features")


@dataclass(frozen=True)
class ModalitySpec:
    """One input stream.

    kind "tokens": integer ids (B, T) or (B, T, num_fields), ``size`` = vocabulary size per field.
    kind "features": float vectors (B, T, size), linearly projected.
    ``max_len`` bounds T (learned positions are allocated for it).

    ``conv_stem=(kernel, stride)`` (tokens only, with ``grid=(H, W)`` and ``max_len = H * W``): the T = H * W
    tokens, row-major over the grid, are embedded by a convolution over their one-hot fields
    (:class:`lab.embedding.GridPatchEmbedding`, a ViT-style patch embedding) and the modality contributes its
    H' * W' patch tokens instead (:attr:`num_tokens`): a 7 x 7 view with (3, 2) gives 9 tokens for 49, and every
    token less costs less in each attention layer and in a readout of the token states.
    """

    name: str
    kind: str
    size: int
    max_len: int
    num_fields: int = 1  # tokens only: e.g. 3 for BabyAI grid cells (object, colour, state)
    grid: tuple[int, int] | None = None  # (H, W) layout of the max_len tokens; only the conv stem needs it
    conv_stem: tuple[int, int] | None = None  # (kernel, stride) of a Conv2d over the grid; None: one token per cell

    def __post_init__(self) -> None:
        if self.kind not in MODALITY_KINDS:
            raise ValueError(f"modality {self.name!r}: unknown kind {self.kind!r}; choose one of {MODALITY_KINDS}")
        if self.size <= 0 or self.max_len <= 0 or self.num_fields <= 0:
            raise ValueError(f"modality {self.name!r}: size, max_len and num_fields must be positive")
        if self.kind == "features" and self.num_fields != 1:
            raise ValueError(f"modality {self.name!r}: num_fields applies to token modalities only")
        if self.conv_stem is not None:
            self._check_conv_stem()

    def _check_conv_stem(self) -> None:
        where = f"modality {self.name!r}: conv_stem"
        if self.kind != "tokens" or self.grid is None or len(self.grid) != 2:
            raise ValueError(f"{where} needs kind 'tokens' and grid=(H, W), got kind {self.kind!r}, grid {self.grid}")
        height, width = self.grid
        if height * width != self.max_len:
            raise ValueError(f"{where}: grid {self.grid} holds {height * width} tokens but max_len is {self.max_len}")
        if len(self.conv_stem) != 2 or min(self.conv_stem) < 1 or self.conv_stem[0] > min(height, width):
            raise ValueError(f"{where} must be (kernel, stride) with 1 <= kernel <= min(grid) = {min(height, width)} "
                             f"and stride >= 1, got {self.conv_stem}")

    @property
    def num_tokens(self) -> int:
        """Tokens the modality contributes at full length: ``max_len``, or the conv stem's H' * W'."""
        if self.conv_stem is None:
            return self.max_len
        kernel, stride = self.conv_stem
        return math.prod((side - kernel) // stride + 1 for side in self.grid)


@dataclass
class FusionConfig:
    modalities: Sequence[ModalitySpec]
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    pooling: str = "cls"  # "cls" token summary or "mean" over all unpadded tokens

    def __post_init__(self) -> None:
        names = [m.name for m in self.modalities]
        if not names:
            raise ValueError("FusionConfig needs at least one modality")
        if len(set(names)) != len(names):
            raise ValueError(f"modality names must be unique, got {names}")
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"unknown pooling {self.pooling!r}; choose 'cls' or 'mean'")


class FusionOutput(NamedTuple):
    fused: Tensor  # (B, D) the joint representation
    tokens: Tensor  # (B, 1 + sum T_m, D) token states, CLS first, then modalities in config order
    padding_mask: Tensor | None  # (B, 1 + sum T_m) True = padding, or None when nothing is padded


class _ModalityEmbedding(nn.Module):
    """Inputs of one modality -> (B, T, D) tokens with positions added."""

    def __init__(self, spec: ModalitySpec, d_model: int) -> None:
        super().__init__()
        self.spec = spec
        if spec.conv_stem is not None:
            self.embed: nn.Module = GridPatchEmbedding(spec.size, spec.num_fields, d_model, spec.grid, *spec.conv_stem)
        elif spec.kind == "tokens":
            self.embed = FieldEmbedding(spec.size, spec.num_fields, d_model)
        else:
            self.embed = nn.Linear(spec.size, d_model)
        self.positions = nn.Parameter(torch.randn(spec.num_tokens, d_model) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        spec = self.spec
        if spec.kind == "tokens":
            if x.dim() == 2 and spec.num_fields == 1:
                x = x.unsqueeze(-1)  # (B, T) -> (B, T, 1)
            if x.dim() != 3 or x.shape[-1] != spec.num_fields:
                raise ValueError(
                    f"modality {spec.name!r} expects token ids of shape (batch, length"
                    f"{', ' + str(spec.num_fields) if spec.num_fields > 1 else ''}), got {tuple(x.shape)}"
                )
        elif x.dim() != 3 or x.shape[-1] != spec.size:
            raise ValueError(f"modality {spec.name!r} expects features of shape (batch, length, {spec.size}), got {tuple(x.shape)}")
        if x.shape[1] > spec.max_len:
            raise ValueError(f"modality {spec.name!r} has {x.shape[1]} tokens, more than its max_len {spec.max_len}")
        if spec.conv_stem is not None and x.shape[1] != spec.max_len:
            raise ValueError(f"modality {spec.name!r} has a conv stem over its {spec.grid} grid: it needs all "
                             f"{spec.max_len} tokens, got {x.shape[1]}")
        return self.embed(x) + self.positions[: spec.num_tokens if spec.conv_stem else x.shape[1]]


class FusionTransformer(nn.Module):
    """``inputs``: {name: tensor} for every configured modality; ``padding_masks``: optional {name: (B, T_m)}
    bool, True = padding. Returns :class:`FusionOutput` (fused (B, D), token states, joint padding mask)."""

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.config = config
        d_model = config.transformer.d_model
        self.modalities = nn.ModuleDict({m.name: _ModalityEmbedding(m, d_model) for m in config.modalities})
        self.type_embedding = nn.Parameter(torch.randn(len(config.modalities), d_model) * 0.02)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.encoder = TransformerEncoder(config.transformer)
        self.features_dim = d_model

    def forward(self, inputs: Mapping[str, Tensor], padding_masks: Mapping[str, Tensor] | None = None) -> FusionOutput:
        padding_masks = dict(padding_masks or {})
        self._check_names(inputs, padding_masks)
        batch = next(iter(inputs.values())).shape[0]
        tokens = [self.cls_token.expand(batch, -1, -1)]
        masks: list[Tensor | None] = [None]
        for index, (name, embed) in enumerate(self.modalities.items()):
            x = inputs[name]
            if x.shape[0] != batch:
                raise ValueError(f"modality {name!r} has batch size {x.shape[0]}, expected {batch}")
            tokens.append(embed(x) + self.type_embedding[index])  # (B, T_m, D)
            masks.append(self._check_mask(padding_masks.get(name), name, tokens[-1].shape[:2]))
        h = torch.cat(tokens, dim=1)  # (B, 1 + sum T_m, D)
        mask = None
        if any(m is not None for m in masks):
            mask = torch.cat(
                [m if m is not None else torch.zeros(t.shape[:2], dtype=torch.bool, device=h.device) for m, t in zip(masks, tokens)],
                dim=1,
            )
        h = self.encoder(h, key_padding_mask=mask)
        fused = h[:, 0] if self.config.pooling == "cls" else masked_mean(h[:, 1:], None if mask is None else mask[:, 1:])
        return FusionOutput(fused, h, mask)

    def layer_groups(self) -> list[nn.Module]:
        """Body -> head for ``lab.finetune``: all embeddings, each encoder layer, the final norm."""
        stem = nn.ParameterList([self.type_embedding, self.cls_token])
        return [nn.ModuleList([self.modalities, stem]), *self.encoder.layers, self.encoder.norm]

    def _check_names(self, inputs: Mapping[str, Tensor], padding_masks: Mapping[str, Tensor]) -> None:
        expected = list(self.modalities)
        if set(inputs) != set(expected):
            raise ValueError(f"inputs must have exactly the modalities {expected}, got {sorted(inputs)}")
        unknown = set(padding_masks) - set(expected)
        if unknown:
            raise ValueError(f"padding_masks for unknown modalities {sorted(unknown)}; known: {expected}")

    @staticmethod
    def _check_mask(mask: Tensor | None, name: str, shape: torch.Size) -> Tensor | None:
        if mask is not None and (mask.dtype != torch.bool or mask.shape != shape):
            raise ValueError(
                f"padding mask of {name!r} must be bool with shape {tuple(shape)} (True = padding), "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        return mask
