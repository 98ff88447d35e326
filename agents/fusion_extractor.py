"""``FusionExtractor``: ``lab.FusionTransformer`` on Dict observations, BabyAI's above all (see
:mod:`agents.extractors` for the family)."""
from __future__ import annotations

import math
from typing import Any

from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import Tensor, nn

from agents.extractor_base import (
    RL_TRANSFORMER_DEFAULTS, ObservationSpaceError, describe_space, join_last_two, transformer_config,
)
from lab.fusion import FusionConfig, FusionTransformer, ModalitySpec
from lab.layers import TransformerConfig

FUSION_POOLINGS = ("cls", "mean", "flat")
BABYAI_KEYS = frozenset({"image", "direction", "mission"})
BABYAI_OPTIONAL_KEYS = frozenset({"prev_actions"})  # envs.babyai.BabyAIObservation(action_history=k > 0)
# FusionExtractor: BabyAI's ~55 tokens of three modalities (grid cells, direction, words) get more width.
FUSION_DEFAULTS: dict[str, Any] = dict(RL_TRANSFORMER_DEFAULTS, d_model=64, num_heads=4, dim_feedforward=128)


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
            state and the image's token states (1 + 7 * 7 for BabyAI's view, 1 + 9 with ``view_stem=(3, 2)``)
            concatenated, ``features_dim = (1 + image tokens) * d_model``. Flat keeps *where* each cell's content
            is, like a CNN's flatten; with CLS alone PPO plateaued at ~0.91 success on GoToRedBallGrey, with flat
            it reached 0.99. The FusionTransformer and its state dict are the same for every pooling.
        view_stem: BabyAI only: ``(kernel, stride)`` of a conv stem over the embedded 7 x 7 view
            (:func:`envs.babyai_fusion.babyai_modalities`); (3, 2) turns 49 cell tokens into 9, the cheap recipe
            of ``agents.presets`` (BENCHMARKS.md, "PPO on BabyAI vs torch-ac"). None: one token per cell.
        history_as_one_token: BabyAI with ``prev_actions`` only: the k previous actions are one token of k fields
            instead of k tokens (:func:`envs.babyai_fusion.babyai_modalities`).
        config: a whole ``lab.TransformerConfig`` (e.g. the one a behaviour-cloning encoder was built with),
            instead of keyword overrides.
        **transformer: ``lab.TransformerConfig`` fields overriding :data:`FUSION_DEFAULTS`; they must match
            the pretrained encoder's to load its weights (``activation`` has no weights: a mismatch loads
            silently but computes another function).
    """

    def __init__(
        self, observation_space: spaces.Space, pooling: str = "cls", config: TransformerConfig | None = None,
        view_stem: tuple[int, int] | None = None, history_as_one_token: bool = False, **transformer: Any
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
        if (view_stem is not None or history_as_one_token) and not babyai:
            raise ValueError("view_stem and history_as_one_token change how BabyAI's view and previous actions are "
                             "tokenised; other dicts have neither")
        if history_as_one_token and "prev_actions" not in observation_space.spaces:
            raise ValueError("history_as_one_token needs 'prev_actions' in the observation (env_kwargs "
                             "action_history=k > 0); without previous actions set history_as_one_token=False")
        modalities = self._babyai_modalities(observation_space, view_stem, history_as_one_token) if babyai else \
            [_generic_modality(key, space) for key, space in observation_space.spaces.items()]
        # Image tokens: the stem's, or H x W cells (whatever the level's agent_view_size); fixed per env, as is
        # features_dim.
        image_tokens = 0 if not babyai else modalities[0].num_tokens if view_stem is not None else \
            int(math.prod(observation_space["image"].shape[:2]))
        super().__init__(observation_space, features_dim=config.d_model * (1 + image_tokens if pooling == "flat" else 1))
        self.babyai, self.image_tokens, self.pooling = babyai, image_tokens, pooling
        if babyai:
            from envs.babyai_fusion import babyai_fusion_inputs

            self._babyai_inputs = babyai_fusion_inputs
            self._prev_actions = "prev_actions" in observation_space.spaces
            self._history_as_one_token = history_as_one_token
        fusion_pooling = "cls" if pooling == "flat" else pooling  # "flat" reads the token states itself
        self.fusion = FusionTransformer(FusionConfig(modalities, transformer=config, pooling=fusion_pooling))

    @staticmethod
    def _babyai_modalities(space: spaces.Dict, view_stem: tuple[int, int] | None,
                           history_as_one_token: bool) -> list[ModalitySpec]:
        from envs.babyai_fusion import VIEW, babyai_modalities  # imports minigrid: BabyAI only

        if view_stem is not None and tuple(space["image"].shape[:2]) != VIEW:
            raise ValueError(f"view_stem needs BabyAI's {VIEW} view, got an image of shape {space['image'].shape}")
        history = space.spaces.get("prev_actions")
        return babyai_modalities(max_mission_len=space["mission"].shape[0],
                                 action_history=0 if history is None else int(history.shape[0]), view_stem=view_stem,
                                 history_as_one_token=history_as_one_token)

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
                f"Box (n,), Box (T, n) or Discrete spaces; got {describe_space(space)} ({problem}). For a Box use "
                "encoder 'transformer', 'conv' or 'mlp'."
            )

    @property
    def backbone(self) -> FusionTransformer:
        """The ``lab`` module a pretrained ``FusionTransformer`` state dict loads into."""
        return self.fusion

    def layer_groups(self) -> list[nn.Module]:
        """Body -> top: all embeddings, each encoder layer, the final norm joined to the last layer."""
        return join_last_two(self.fusion.layer_groups())

    def forward(self, observations: dict[str, Tensor]) -> Tensor:
        if self.babyai:
            # babyai_fusion_inputs accepts SB3's one-hot direction, (B, 4) or (B, 1, 4) from the rollout buffer
            inputs, masks = self._babyai_inputs(
                observations["image"], observations["direction"], observations["mission"],
                observations["prev_actions"] if self._prev_actions else None,
                history_as_one_token=self._history_as_one_token,
            )
            if not bool(masks["mission"].any()):
                masks = None  # one mission length in the batch (always at batch 1): SDPA without a mask is faster
            out = self.fusion(inputs, masks)
            if self.pooling == "flat":
                return out.tokens[:, : 1 + self.image_tokens].flatten(1)  # (B, 1 + image, D) -> (B, (1 + image) D)
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
