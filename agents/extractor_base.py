"""What the lab's SB3 features extractors share: the RL defaults of their transformers, the error they raise for an
observation space they cannot encode, and small helpers (:mod:`agents.extractors`, :mod:`agents.fusion_extractor`)."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from gymnasium import spaces
from torch import nn

from lab.layers import TransformerConfig

# RL defaults of TransformerExtractor; each overrides TransformerConfig's supervised default. PPO steps/s on
# CartPole-v1 relative to MlpPolicy (SB3's PPO defaults, 2 shared CPU cores, noisy): 0.46 with d_model 64,
# 4 heads, ff 128, gelu; 0.50-0.57 with these values, the same as torch.nn.TransformerEncoder at this size.
RL_TRANSFORMER_DEFAULTS: dict[str, Any] = dict(
    d_model=32,  # 4-8 tokens of low-dimensional state need little width; per-step cost bounds steps/s
    num_heads=2,  # CPU attention costs grow with batch x heads for such short sequences; head width 16
    num_layers=1,  # one layer of attention already mixes every token with every other
    dim_feedforward=64,  # 2x d_model: the 4x default costs time and gains nothing at this size
    dropout=0.0,  # dropout makes PPO's probability ratio noisy and train/eval outputs differ
    activation="relu",  # cheaper than gelu forward and backward on CPU
)


class ObservationSpaceError(ValueError):
    """An extractor was given an observation space it cannot encode; the message says what would work."""


def transformer_config(
    overrides: Mapping[str, Any], defaults: Mapping[str, Any] = RL_TRANSFORMER_DEFAULTS
) -> TransformerConfig:
    """``TransformerConfig`` from RL defaults and user overrides; an unknown key names the valid ones."""
    valid = [f.name for f in dataclasses.fields(TransformerConfig)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TypeError(f"unknown transformer option(s) {unknown}; valid: {', '.join(valid)}")
    return TransformerConfig(**{**defaults, **overrides})


def join_last_two(groups: list[nn.Module]) -> list[nn.Module]:
    """Layer groups with the last two merged: a stack's final norm (or a conv net's new projection) belongs
    with its top layer, so "the top k layer groups" means k layers (lab.finetune.freeze_to)."""
    if len(groups) < 3:
        return groups
    return [*groups[:-2], nn.ModuleList(groups[-2:])]


def describe_space(space: spaces.Space) -> str:
    if isinstance(space, spaces.Dict):
        return "Dict(" + ", ".join(f"{k!r}: {describe_space(v)}" for k, v in space.spaces.items()) + ")"
    if isinstance(space, spaces.Box):
        return f"Box{tuple(space.shape)} {space.dtype}"
    return str(space)
