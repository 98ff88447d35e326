"""Stable-Baselines3 features extractors built from the ``lab`` blocks.

Plug them in like SB3's own ``NatureCNN`` / ``CombinedExtractor``::

    PPO("MlpPolicy", "CartPole-v1", policy_kwargs=dict(
        features_extractor_class=TransformerExtractor, features_extractor_kwargs=dict(d_model=64)))

- :class:`TransformerExtractor`: ``lab.TransformerClassifier`` (features only) over per-feature tokens of a
  flat Box, over the rows of a (T, D) Box, or over a history window ``{"obs": (K, D), "mask": (K,)}`` from
  :class:`envs.history.HistoryWrapper` with the padding masked out. ``pooling="flatten"`` hands every token
  state to the policy head; ``deltas=True`` (feature engineering, off by default) adds frame differences.
- :class:`ConvExtractor`: ``lab.SeparableConvNet`` (features only) on image Boxes, then Linear + ReLU.
- :class:`FusionExtractor`: ``lab.FusionTransformer`` on Dict observations; BabyAI dicts (with or without
  ``prev_actions``) go through :func:`envs.babyai_fusion.babyai_fusion_inputs`, the mapping behaviour cloning
  uses too, so a ``FusionTransformer`` state dict pretrained on demonstrations loads into ``extractor.fusion``
  unchanged. ``pooling="flat"`` reads CLS + the image cells' token states (a CNN-style readout).

Every extractor checks its observation space in ``__init__`` (also available without building one, as
``check_observation_space``) and raises :class:`ObservationSpaceError` saying what would work. Each exposes
``backbone`` (the ``lab`` module pretrained weights load into) and ``layer_groups()`` (body -> top, for
``lab.finetune``). ``forward`` does no validation beyond what the ``lab`` blocks do (cheap shape checks).

Defaults are small (d_model 32 / 64, one layer, no dropout) because an RL policy runs the extractor once per
environment step at batch size ``n_envs``: there the per-call overhead, not FLOPs, bounds steps/s.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import Tensor, nn

from agents.extractor_base import (  # re-exported: the extractors' public names live here
    RL_TRANSFORMER_DEFAULTS, ObservationSpaceError, describe_space, join_last_two, transformer_config,
)
from agents.fusion_extractor import FUSION_DEFAULTS, FusionExtractor
from lab.classifier import ClassifierConfig, TransformerClassifier
from lab.conv import ConvNetConfig, SeparableConvNet, min_input_size

POOLINGS = ("cls", "mean", "last", "flatten")
# deltas=True: the frame difference is multiplied by this. With VecNormalize'd CartPole observations (unit
# variance), one step moves the position/angle by ~0.01-0.1, far below the observations themselves; x10
# brings the velocity channel to the observations' scale (the value the RL spike used).
DEFAULT_DELTA_SCALE = 10.0


# ------------------------------------------------------------------------------------------------- transformer
class FeatureTokenizer(nn.Module):
    """One token per scalar feature, FT-Transformer style: ``token_i = x_i * value_weight_i + feature_embedding_i``.

    (B, F, 1) -> (B, F, D). Each feature has its own value direction (CartPole's position, velocity and angle
    have different units and scales) and its own learned identity vector, which plays the role of a
    positional encoding, so no other one is needed. Equivalent to one ``Linear(1, D)`` per feature.
    """

    def __init__(self, num_features: int, d_model: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_model)  # FT-Transformer's init (Gorishniy et al., 2021)
        self.value_weight = nn.Parameter(torch.empty(num_features, d_model).uniform_(-bound, bound))
        self.feature_embedding = nn.Parameter(torch.empty(num_features, d_model).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.value_weight + self.feature_embedding  # (B, F, 1) * (F, D) + (F, D) -> (B, F, D)


class TransformerExtractor(BaseFeaturesExtractor):
    """``lab.TransformerClassifier`` (``num_classes=None``) as an SB3 features extractor.

    Output (B, d_model), or (B, n_tokens * d_model) with ``pooling="flatten"``.

    Observation spaces:

    - ``Box (F,)``: each scalar feature becomes a token (:class:`FeatureTokenizer`); works on ``CartPole-v1``.
    - ``Box (T, D)``: each row is a token (a frame stack), positions added.
    - ``Dict {"obs": Box (K, D), "mask": MultiBinary(K)}`` from :class:`envs.history.HistoryWrapper`: row i is
      a token, ``mask == 0`` marks padding, passed as the attention's ``key_padding_mask``. The last slot
      (the current observation) is always treated as real, so no row is ever all padding. Padding slots are
      zeroed before the embedding, so the output at an episode start never depends on what they hold.

    Args:
        observation_space: as above.
        pooling: ``"cls"`` (a learned summary token), ``"mean"`` (over the real tokens), ``"last"`` (the
            newest observation's state; sequences only) or ``"flatten"`` (every token state, concatenated in
            slot order: ``features_dim = n_tokens * d_model``). On CartPoleNoVel with an 8-step history,
            PPO learned only with ``"flatten"``: one attention layer's summary of a single token ("last",
            "cls") did not keep the small frame-to-frame differences that carry the velocities.
        positional: ``"learned"`` or ``"sinusoidal"`` positions for sequences (ignored for per-feature tokens,
            whose feature embeddings already say which token is which).
        deltas: **feature engineering, off by default.** Sequences only: each token becomes
            ``[x_t, delta_scale * (x_t - x_{t-1})]``, the difference being 0 where slot ``t - 1`` (or ``t``)
            is padding and for the first row of a Box (T, D). It hands the policy the velocities that a
            history-only observation hides, instead of letting the transformer discover them; results with
            it must be reported as such (``benchmarks/rl_targets.py`` runs CartPoleNoVel with and without).
        delta_scale: multiplier of the differences (:data:`DEFAULT_DELTA_SCALE`).
        **transformer: ``lab.TransformerConfig`` fields (d_model, num_heads, num_layers, dim_feedforward,
            dropout, activation, norm_first, ...) overriding :data:`RL_TRANSFORMER_DEFAULTS`.
    """

    def __init__(
        self, observation_space: spaces.Space, pooling: str = "cls", positional: str = "learned",
        deltas: bool = False, delta_scale: float = DEFAULT_DELTA_SCALE, **transformer: Any
    ) -> None:
        self.check_observation_space(observation_space)
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        config = transformer_config(transformer)
        history = isinstance(observation_space, spaces.Dict)
        shape = observation_space["obs"].shape if history else observation_space.shape
        per_feature = len(shape) == 1
        if per_feature and pooling == "last":
            raise ValueError(
                "pooling 'last' needs a sequence (a (T, D) Box or a history Dict); use 'cls', 'mean' or 'flatten' "
                "for a flat Box"
            )
        if per_feature and deltas:
            raise ValueError("deltas=True needs a sequence (a (T, D) Box or a history Dict): a flat Box has no "
                             "previous frame; wrap the env with envs.history.HistoryWrapper")
        n_tokens = shape[0]
        super().__init__(observation_space, features_dim=config.d_model * (n_tokens if pooling == "flatten" else 1))
        self.history = history
        self.pooling = pooling
        self.deltas = bool(deltas)
        self.delta_scale = float(delta_scale)
        input_dim = 1 if per_feature else shape[-1] * (2 if deltas else 1)
        self.classifier = TransformerClassifier(ClassifierConfig(
            num_classes=None,
            input_dim=input_dim,
            max_len=n_tokens,
            transformer=config,
            pooling="cls" if pooling == "cls" else "mean",  # "last" / "flatten" read the token states themselves
            positional="none" if per_feature else positional,
        ))
        if per_feature:  # (B, F, 1) -> (B, F, D), replacing the classifier's shared Linear(1, D)
            self.classifier.embed = FeatureTokenizer(shape[0], config.d_model)

    @staticmethod
    def check_observation_space(space: spaces.Space) -> None:
        ok = isinstance(space, spaces.Box) and len(space.shape) in (1, 2)
        if isinstance(space, spaces.Dict) and set(space.spaces) == {"obs", "mask"}:
            obs, mask = space["obs"], space["mask"]
            ok = (
                isinstance(obs, spaces.Box) and len(obs.shape) == 2
                and isinstance(mask, (spaces.MultiBinary, spaces.Box)) and tuple(mask.shape) == obs.shape[:1]
            )
        if not ok:
            raise ObservationSpaceError(
                "TransformerExtractor needs a Box (D,) (one token per feature), a Box (T, D) (one token per row) "
                f"or a Dict with 'obs' (K, D) and 'mask' (K,); got {describe_space(space)}. For a history of a Box env, "
                "wrap it with envs.history.HistoryWrapper (e.g. 'lab/CartPoleNoVelHistory-v1'); for images use "
                "encoder 'conv', for BabyAI-style dicts encoder 'fusion'."
            )

    @property
    def backbone(self) -> TransformerClassifier:
        """The ``lab`` module a pretrained ``TransformerClassifier`` (features only) state dict loads into."""
        return self.classifier

    def layer_groups(self) -> list[nn.Module]:
        """Body -> top: input embedding (+ CLS), then each encoder layer, the final norm joined to the last."""
        return join_last_two(self.classifier.layer_groups())

    def forward(self, observations: Tensor | dict[str, Tensor]) -> Tensor:
        if self.history:
            x = observations["obs"]  # (B, K, D)
            padding = observations["mask"] < 0.5  # (B, K) True = padding (nn.MultiheadAttention's convention)
            padding[:, -1] = False  # the current observation is always real: no all-padding row
            # Zeros in the padding slots: their own token states (read by "flatten") and the deltas next to them
            # then cannot depend on what the slots held (and a NaN there cannot leak through 0 * NaN).
            x = x.masked_fill(padding.unsqueeze(-1), 0.0)
        else:
            x = observations if observations.dim() == 3 else observations.unsqueeze(-1)  # (B, T, D) or (B, F, 1)
            padding = None
        if self.deltas:
            x = with_deltas(x, padding, self.delta_scale)  # (B, T, 2D)
        if self.pooling == "last":
            return self.classifier.encode(x, padding)[0][:, -1]  # (B, D): the newest observation's state
        if self.pooling == "flatten":
            return self.classifier.encode(x, padding)[0].flatten(1)  # (B, T, D) -> (B, T * D), slot order
        return self.classifier.forward_features(x, padding)  # (B, D)


def with_deltas(x: Tensor, padding: Tensor | None = None, scale: float = DEFAULT_DELTA_SCALE) -> Tensor:
    """``[x_t, scale * (x_t - x_{t-1})]`` per token: (B, T, D) -> (B, T, 2D).

    The difference is 0 for the first slot and wherever slot ``t`` or ``t - 1`` is padding (``padding``
    (B, T) bool, True = padding), so it never mixes a real frame with a padding value.
    """
    diff = x[:, 1:] - x[:, :-1]  # (B, T-1, D)
    if padding is not None:
        real_pair = ~(padding[:, 1:] | padding[:, :-1])  # (B, T-1)
        diff = torch.where(real_pair.unsqueeze(-1), diff, torch.zeros_like(diff))
    delta = torch.cat([torch.zeros_like(x[:, :1]), diff], dim=1) * scale  # (B, T, D)
    return torch.cat([x, delta], dim=-1)


# ------------------------------------------------------------------------------------------------------- conv
class ConvExtractor(BaseFeaturesExtractor):
    """``lab.SeparableConvNet`` (features only) -> Linear -> ReLU: (B, C, H, W) or (B, H, W, C) -> (B, features_dim).

    Normalisation: for a uint8 image space in [0, 255], SB3's ``preprocess_obs`` already divides by 255
    (``normalize_images=True``, its default), so this extractor never divides again. With
    ``normalize_images=False`` SB3 passes the values unchanged: you then promise inputs already scaled (e.g.
    ``VecNormalize``) and must say so with ``normalized_image=True``, as for SB3's ``NatureCNN``
    (``agents.factory.make_agent`` does this for you). ``normalized_image=True`` also accepts float image
    Boxes of any bounds.

    Layout: channel-first vs channel-last is decided once with SB3's ``is_image_space_channels_first``
    (smallest dimension = channels). SB3 transposes channel-last uint8 images itself (``VecTransposeImage``),
    so the permute here only runs for spaces it leaves alone (e.g. float images).

    Args:
        observation_space: a 3-d image Box.
        features_dim: width of the output (after Linear + ReLU).
        normalized_image: see above.
        config: a whole ``lab.ConvNetConfig`` (e.g. a supervised net's: the same conv body layer for layer);
            its ``in_channels`` / ``num_classes`` are replaced by the observation's channels / None.
        **conv: or ``lab.ConvNetConfig`` fields (channels, strides, kernel_size, norm, activation, ...).
            ``norm`` defaults to ``"group"``: batch norm normalises with batch statistics in train mode and
            running averages in eval mode, and SB3 switches modes between collecting (eval, batch n_envs)
            and updating (train, minibatches), so PPO's old and new log-probabilities would come from two
            different networks; group norm computes the same function in both modes and at any batch size.
    """

    def __init__(
        self, observation_space: spaces.Space, features_dim: int = 128, normalized_image: bool = False,
        config: ConvNetConfig | None = None, **conv: Any
    ) -> None:
        self.check_observation_space(observation_space, normalized_image)
        super().__init__(observation_space, features_dim)
        channels_first = is_image_space_channels_first(observation_space)
        shape = observation_space.shape
        in_channels, height, width = shape if channels_first else (shape[2], shape[0], shape[1])
        if "in_channels" in conv or "num_classes" in conv:
            raise TypeError("in_channels comes from the observation space and num_classes is None (features only)")
        valid = [f.name for f in dataclasses.fields(ConvNetConfig) if f.name not in ("in_channels", "num_classes")]
        unknown = sorted(set(conv) - set(valid))
        if unknown:
            raise TypeError(f"unknown conv option(s) {unknown}; valid: {', '.join(valid)}")
        if config is not None and conv:
            raise TypeError(f"pass either config= (a ConvNetConfig, e.g. a supervised net's) or options {sorted(conv)}")
        if config is None:
            config = ConvNetConfig(**{"norm": "group", **conv})
        config = dataclasses.replace(config, in_channels=in_channels, num_classes=None)
        need = min_input_size(config.strides)
        if min(height, width) < need:
            raise ObservationSpaceError(
                f"images of {height}x{width} are too small for strides {config.strides} (need {need}x{need}); "
                "pass smaller strides, e.g. strides=(1, 1, 2)"
            )
        self.to_channels_first: nn.Module = nn.Identity() if channels_first else _ChannelsLastToFirst()
        self.convnet = SeparableConvNet(config)
        self.projection = nn.Sequential(nn.Linear(self.convnet.features_dim, features_dim), nn.ReLU())

    @staticmethod
    def check_observation_space(space: spaces.Space, normalized_image: bool = False) -> None:
        if is_image_space(space, check_channels=False, normalized_image=normalized_image):
            return
        hint = (
            "a uint8 Box in [0, 255] (SB3 divides it by 255)" if not normalized_image
            else "a 3-d Box (float images already scaled)"
        )
        raise ObservationSpaceError(
            f"ConvExtractor needs an image: {hint} of shape (C, H, W) or (H, W, C); got {describe_space(space)}. "
            "Already-normalised float images: pass normalized_image=True (and normalize_images=False to the "
            "policy). Flat vectors: encoder 'mlp' or 'transformer'; BabyAI dicts: encoder 'fusion'."
        )

    @property
    def backbone(self) -> SeparableConvNet:
        """The ``lab`` module a pretrained ``SeparableConvNet`` state dict (without its head) loads into."""
        return self.convnet

    def layer_groups(self) -> list[nn.Module]:
        """Body -> top: the stem, each stage, the projection joined to the last stage."""
        return join_last_two([*self.convnet.layer_groups(), self.projection])

    def forward(self, observations: Tensor) -> Tensor:
        return self.projection(self.convnet(self.to_channels_first(observations)))


class _ChannelsLastToFirst(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)


EXTRACTORS: dict[str, type[BaseFeaturesExtractor]] = {
    "transformer": TransformerExtractor,
    "conv": ConvExtractor,
    "fusion": FusionExtractor,
}

__all__ = [
    "EXTRACTORS", "FUSION_DEFAULTS", "POOLINGS", "RL_TRANSFORMER_DEFAULTS", "ConvExtractor", "FusionExtractor",
    "ObservationSpaceError", "TransformerExtractor", "transformer_config", "with_deltas",
]
