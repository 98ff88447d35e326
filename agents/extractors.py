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
from collections.abc import Mapping
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import Tensor, nn

from lab.classifier import ClassifierConfig, TransformerClassifier
from lab.conv import ConvNetConfig, SeparableConvNet, min_input_size
from lab.fusion import FusionConfig, FusionTransformer, ModalitySpec
from lab.layers import TransformerConfig

POOLINGS = ("cls", "mean", "last", "flatten")
FUSION_POOLINGS = ("cls", "mean", "flat")
BABYAI_KEYS = frozenset({"image", "direction", "mission"})
BABYAI_OPTIONAL_KEYS = frozenset({"prev_actions"})  # envs.babyai.BabyAIObservation(action_history=k > 0)
# deltas=True: the frame difference is multiplied by this. With VecNormalize'd CartPole observations (unit
# variance), one step moves the position/angle by ~0.01-0.1, far below the observations themselves; x10
# brings the velocity channel to the observations' scale (the value the RL spike used).
DEFAULT_DELTA_SCALE = 10.0

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
# FusionExtractor: BabyAI's ~55 tokens of three modalities (grid cells, direction, words) get more width.
FUSION_DEFAULTS: dict[str, Any] = dict(RL_TRANSFORMER_DEFAULTS, d_model=64, num_heads=4, dim_feedforward=128)


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


def _join_last_two(groups: list[nn.Module]) -> list[nn.Module]:
    """Layer groups with the last two merged: a stack's final norm (or a conv net's new projection) belongs
    with its top layer, so "the top k layer groups" means k layers (lab.finetune.freeze_to)."""
    if len(groups) < 3:
        return groups
    return [*groups[:-2], nn.ModuleList(groups[-2:])]


def _describe(space: spaces.Space) -> str:
    if isinstance(space, spaces.Dict):
        return "Dict(" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in space.spaces.items()) + ")"
    if isinstance(space, spaces.Box):
        return f"Box{tuple(space.shape)} {space.dtype}"
    return str(space)


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
                f"or a Dict with 'obs' (K, D) and 'mask' (K,); got {_describe(space)}. For a history of a Box env, "
                "wrap it with envs.history.HistoryWrapper (e.g. 'lab/CartPoleNoVelHistory-v1'); for images use "
                "encoder 'conv', for BabyAI-style dicts encoder 'fusion'."
            )

    @property
    def backbone(self) -> TransformerClassifier:
        """The ``lab`` module a pretrained ``TransformerClassifier`` (features only) state dict loads into."""
        return self.classifier

    def layer_groups(self) -> list[nn.Module]:
        """Body -> top: input embedding (+ CLS), then each encoder layer, the final norm joined to the last."""
        return _join_last_two(self.classifier.layer_groups())

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
            f"ConvExtractor needs an image: {hint} of shape (C, H, W) or (H, W, C); got {_describe(space)}. "
            "Already-normalised float images: pass normalized_image=True (and normalize_images=False to the "
            "policy). Flat vectors: encoder 'mlp' or 'transformer'; BabyAI dicts: encoder 'fusion'."
        )

    @property
    def backbone(self) -> SeparableConvNet:
        """The ``lab`` module a pretrained ``SeparableConvNet`` state dict (without its head) loads into."""
        return self.convnet

    def layer_groups(self) -> list[nn.Module]:
        """Body -> top: the stem, each stage, the projection joined to the last stage."""
        return _join_last_two([*self.convnet.layer_groups(), self.projection])

    def forward(self, observations: Tensor) -> Tensor:
        return self.projection(self.convnet(self.to_channels_first(observations)))


class _ChannelsLastToFirst(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)


# ----------------------------------------------------------------------------------------------------- fusion
class FusionExtractor(BaseFeaturesExtractor):
    """``lab.FusionTransformer`` over a Dict observation; output the fused CLS vector (B, d_model).

    - BabyAI dicts (``image``, ``direction``, ``mission`` and optionally ``prev_actions`` from
      ``action_history=k``) use :func:`envs.babyai_fusion.babyai_modalities` and
      :func:`envs.babyai_fusion.babyai_fusion_inputs`, exactly as behaviour cloning does, so
      ``extractor.fusion.load_state_dict(bc_fusion_state_dict)`` works when the transformer options match.
    - Any other Dict: each key is a modality, in the space's key order: a Box (n,) is one feature token, a
      Box (T, n) is T feature tokens, a Discrete(n) is one token id.

    Args:
        observation_space: a Dict as above.
        pooling: ``"cls"`` or ``"mean"`` (FusionTransformer's options), or ``"flat"`` (BabyAI only): the CLS
            state and the image cells' token states (1 + 7 * 7 for BabyAI's view) concatenated,
            ``features_dim = (1 + cells) * d_model``. Flat keeps *where* each cell's content is, like a CNN's
            flatten; with CLS alone PPO plateaued at ~0.91 success on GoToRedBallGrey, with flat it reached 0.99.
            The FusionTransformer and its state dict are the same for every pooling.
        config: a whole ``lab.TransformerConfig`` (e.g. the one a behaviour-cloning encoder was built with),
            instead of keyword overrides.
        **transformer: ``lab.TransformerConfig`` fields overriding :data:`FUSION_DEFAULTS`; they must match
            the pretrained encoder's to load its weights (``activation`` has no weights: a mismatch loads
            silently but computes another function).
    """

    def __init__(
        self, observation_space: spaces.Space, pooling: str = "cls", config: TransformerConfig | None = None,
        **transformer: Any
    ) -> None:
        self.check_observation_space(observation_space)
        if pooling not in FUSION_POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(FUSION_POOLINGS)}")
        if config is not None and transformer:
            raise TypeError(f"pass either config= (a TransformerConfig) or keyword options {sorted(transformer)}, "
                            "not both")
        if config is not None and not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a lab.TransformerConfig, got {type(config).__name__}")
        config = config if config is not None else transformer_config(transformer, FUSION_DEFAULTS)
        babyai = is_babyai_space(observation_space)
        if pooling == "flat" and not babyai:
            raise ValueError("pooling 'flat' reads BabyAI's image cells; use 'cls' or 'mean' for other dicts")
        # Image cells: the view is H x W, whatever the level's agent_view_size; fixed per env, so is features_dim.
        image_cells = int(math.prod(observation_space["image"].shape[:2])) if babyai else 0
        super().__init__(observation_space, features_dim=config.d_model * (1 + image_cells if pooling == "flat" else 1))
        self.babyai, self.image_cells, self.pooling = babyai, image_cells, pooling
        if self.babyai:
            from envs.babyai_fusion import babyai_fusion_inputs, babyai_modalities  # imports minigrid: BabyAI only

            history = observation_space.spaces.get("prev_actions")
            modalities = babyai_modalities(
                max_mission_len=observation_space["mission"].shape[0],
                action_history=0 if history is None else int(history.shape[0]),
            )
            self._babyai_inputs = babyai_fusion_inputs
            self._prev_actions = history is not None
        else:
            modalities = [_generic_modality(key, space) for key, space in observation_space.spaces.items()]
        fusion_pooling = "cls" if pooling == "flat" else pooling  # "flat" reads the token states itself
        self.fusion = FusionTransformer(FusionConfig(modalities, transformer=config, pooling=fusion_pooling))

    @staticmethod
    def check_observation_space(space: spaces.Space) -> None:
        problem = None
        if not isinstance(space, spaces.Dict):
            problem = "it is not a Dict"
        elif BABYAI_KEYS <= set(space.spaces):
            extra = sorted(set(space.spaces) - BABYAI_KEYS - BABYAI_OPTIONAL_KEYS)
            history = space.spaces.get("prev_actions")
            if not all(isinstance(space[key], spaces.Box) for key in ("image", "mission")):
                # A raw MiniGrid / BabyAI env: its mission is a text space (no shape), image and mission unwrapped.
                raise ObservationSpaceError(
                    f"FusionExtractor got a raw MiniGrid observation (mission: {type(space['mission']).__name__}, "
                    f"image: {type(space['image']).__name__}): its mission is text, not token ids. Wrap the env in envs.babyai.BabyAIObservation, or make it with "
                    "envs.make.make_env (what make_agent and agents.train do for every MiniGrid-* / BabyAI-* id)."
                )
            if extra:
                problem = f"BabyAI dicts may add only {sorted(BABYAI_OPTIONAL_KEYS)}, not {extra}"
            elif space["image"].shape[-1:] != (3,) or len(space["image"].shape) != 3 or len(space["mission"].shape) != 1:
                problem = "BabyAI keys need image (H, W, 3) and mission (L,) token ids (envs.babyai.BabyAIObservation)"
            elif history is not None and not (isinstance(history, spaces.Box) and len(history.shape) == 1):
                problem = "prev_actions must be a Box (k,) of action ids (envs.babyai.BabyAIObservation(action_history=k))"
        else:
            bad = [k for k, s in space.spaces.items()
                   if not (isinstance(s, spaces.Discrete) or (isinstance(s, spaces.Box) and len(s.shape) in (1, 2)))]
            if bad:
                problem = f"keys {bad} are neither Box (n,) / (T, n) nor Discrete"
        if problem:
            raise ObservationSpaceError(
                f"FusionExtractor needs a Dict observation: BabyAI's {{'image', 'direction', 'mission'}} and "
                f"optionally 'prev_actions' (envs.babyai.make_babyai_env / 'lab/BabyAI-*' ids), or keys holding "
                f"Box (n,), Box (T, n) or Discrete spaces; got {_describe(space)} ({problem}). For a Box use "
                "encoder 'transformer', 'conv' or 'mlp'."
            )

    @property
    def backbone(self) -> FusionTransformer:
        """The ``lab`` module a pretrained ``FusionTransformer`` state dict loads into."""
        return self.fusion

    def layer_groups(self) -> list[nn.Module]:
        """Body -> top: all embeddings, each encoder layer, the final norm joined to the last layer."""
        return _join_last_two(self.fusion.layer_groups())

    def forward(self, observations: dict[str, Tensor]) -> Tensor:
        if self.babyai:
            # babyai_fusion_inputs accepts SB3's one-hot direction, (B, 4) or (B, 1, 4) from the rollout buffer
            inputs, masks = self._babyai_inputs(
                observations["image"], observations["direction"], observations["mission"],
                observations["prev_actions"] if self._prev_actions else None,
            )
            if not bool(masks["mission"].any()):
                masks = None  # one mission length in the batch (always at batch 1): SDPA without a mask is faster
            out = self.fusion(inputs, masks)
            if self.pooling == "flat":
                return out.tokens[:, : 1 + self.image_cells].flatten(1)  # (B, 1 + cells, D) -> (B, (1 + cells) D)
            return out.fused
        inputs = {}
        for name, embed in self.fusion.modalities.items():
            x = observations[name]
            if embed.spec.kind == "tokens":  # SB3's one-hot (B, n) or, from its buffers, (B, 1, n): back to ids (B, 1)
                inputs[name] = x.reshape(x.shape[0], -1).argmax(dim=1, keepdim=True)
            else:
                inputs[name] = x if x.dim() == 3 else x.unsqueeze(1)  # (B, n) -> (B, 1, n)
        return self.fusion(inputs).fused


def is_babyai_space(space: spaces.Space) -> bool:
    """A BabyAI Dict observation (:class:`envs.babyai.BabyAIObservation`, with or without ``prev_actions``)."""
    return isinstance(space, spaces.Dict) and BABYAI_KEYS <= set(space.spaces) <= BABYAI_KEYS | BABYAI_OPTIONAL_KEYS


def _generic_modality(key: str, space: spaces.Space) -> ModalitySpec:
    if isinstance(space, spaces.Discrete):
        return ModalitySpec(key, "tokens", size=int(space.n), max_len=1)
    length, size = (1, space.shape[0]) if len(space.shape) == 1 else space.shape
    return ModalitySpec(key, "features", size=int(size), max_len=int(length))


EXTRACTORS: dict[str, type[BaseFeaturesExtractor]] = {
    "transformer": TransformerExtractor,
    "conv": ConvExtractor,
    "fusion": FusionExtractor,
}
