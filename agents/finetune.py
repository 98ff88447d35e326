"""Fine-tuning pretrained ``lab`` encoders inside Stable-Baselines3.

Strategies (:data:`STRATEGIES`), for a policy whose features extractor is one of :mod:`agents.extractors`:

- ``"scratch"``: random initialisation, everything trains at one rate (the baseline);
- ``"full"``: pretrained encoder, everything trains at one rate;
- ``"frozen"``: the pretrained encoder (``extractor.backbone``) is frozen; the heads (and a conv
  extractor's new projection) train;
- ``"top"``: only the top ``top_k`` layer groups of the extractor train, plus the heads
  (``lab.finetune.freeze_to`` on ``extractor.layer_groups()``);
- ``"discriminative"``: everything trains, learning rates spread log-evenly from ``lr / lr_ratio`` (the
  extractor's first layer group) to ``lr`` (the heads), fastai style.

How per-group rates survive SB3: SB3's ``_update_learning_rate`` writes one ``lr`` into every param group
before each update. The optimizer built here comes from ``lab.finetune.discriminative_param_groups(...,
as_scale=True)``: every group has ``lr`` = the schedule's value and its own ``lr_scale``, and the ``Lab*``
optimizer classes step with ``group["lr"] * group["lr_scale"]`` without touching ``group["lr"]``. SB3 may
overwrite ``lr`` as often as it likes; the ratios stay.

Why a policy class: SB3 builds the optimizer inside the policy (one group), and ``Algo.load`` rebuilds the
policy and then loads the saved optimizer state, which must have the same groups; ``requires_grad`` is not
saved at all. :class:`FinetuneActorCriticPolicy` / :class:`FinetuneDQNPolicy` take ``finetune=`` in
``policy_kwargs`` (saved with the model) and apply the strategy at the end of ``_build``, so a loaded model
has the same frozen parameters and param groups as the saved one. Pretrained weights are loaded once, after
construction, with :func:`load_pretrained` (``agents.factory.make_agent(..., pretrained=...)`` does both).

Frozen parameters ("frozen", "top") stay in SB3's optimizer but never receive a gradient; torch's optimizers
skip parameters whose ``grad`` is None, so they do not move, not even under decoupled weight decay.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import torch
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from agents.memory.policy import MemoryActorCriticPolicy
from lab.finetune import discriminative_param_groups, freeze, freeze_to
from lab.optim import make_optimizer, optimizer_info_for_class

STRATEGIES = ("scratch", "full", "frozen", "top", "discriminative")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """A fine-tuning strategy and its options (saved with the model in ``policy_kwargs["finetune"]``)."""

    strategy: str = "full"
    top_k: int = 1  # "top": extractor layer groups trained, counted from the top (heads always train)
    lr_ratio: float = 100.0  # "discriminative": head lr / first-group lr; fastai's fine_tune uses 100

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown fine-tuning strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be an int >= 0 (0 trains only the heads), got {self.top_k!r}")
        if not (isinstance(self.lr_ratio, (int, float)) and self.lr_ratio >= 1.0):
            raise ValueError(
                f"lr_ratio must be >= 1 (the body learns lr_ratio times slower than the heads), got {self.lr_ratio!r}"
            )

    @classmethod
    def coerce(cls, value: FinetuneConfig | Mapping[str, Any] | str | None) -> FinetuneConfig | None:
        """A config from a config, a dict of its fields, a strategy name, or None."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(strategy=value)
        if isinstance(value, Mapping):
            valid = [f.name for f in dataclasses.fields(cls)]
            unknown = sorted(set(value) - set(valid))
            if unknown:
                raise TypeError(f"unknown fine-tuning option(s) {unknown}; valid: {', '.join(valid)}")
            return cls(**value)
        raise TypeError(f"finetune must be a strategy name, a FinetuneConfig or a dict, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------ the policies
class _FinetuneMixin:
    """Applies ``finetune`` (a :class:`FinetuneConfig` or its dict) when the policy builds its optimizer."""

    def __init__(
        self, *args: Any, finetune: FinetuneConfig | Mapping[str, Any] | str | None = None, **kwargs: Any
    ) -> None:
        # Set before nn.Module.__init__ runs _build, which reads it; a plain attribute, not a module.
        self.finetune_config = FinetuneConfig.coerce(finetune) or FinetuneConfig()
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)  # type: ignore[misc]
        apply_strategy(self, self.finetune_config, lr=lr_schedule(1))  # type: ignore[arg-type]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        parameters = super()._get_constructor_parameters()  # type: ignore[misc]
        return {**parameters, "finetune": self.finetune_config.to_dict()}


class FinetuneActorCriticPolicy(_FinetuneMixin, ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` (PPO, A2C; Box or Dict observations) with a fine-tuning strategy."""


class FinetuneDQNPolicy(_FinetuneMixin, DQNPolicy):
    """SB3's ``DQNPolicy`` (Box or Dict observations) with a fine-tuning strategy on its online Q-network."""


class FinetuneMemoryPolicy(_FinetuneMixin, MemoryActorCriticPolicy):
    """:class:`agents.memory.policy.MemoryActorCriticPolicy` (MemoryPPO) with a fine-tuning strategy."""


class FinetuneLstmPolicy(_FinetuneMixin, RecurrentActorCriticPolicy):
    """sb3-contrib's LSTM policy (RecurrentPPO) with a fine-tuning strategy."""


# Most specific first: the memory and LSTM policies are actor-critic policies too.
_FINETUNE_POLICIES = ((DQNPolicy, FinetuneDQNPolicy), (MemoryActorCriticPolicy, FinetuneMemoryPolicy),
                      (RecurrentActorCriticPolicy, FinetuneLstmPolicy), (ActorCriticPolicy, FinetuneActorCriticPolicy))


def policy_class_for(algo_class: type[BaseAlgorithm]) -> type[BasePolicy]:
    """The fine-tuning policy class for an SB3 algorithm class (its default policy with the strategy mixed in).
    The Dict-observation variants differ only in their default extractor, which fine-tuning replaces anyway."""
    aliases = algo_class.policy_aliases
    default = aliases.get("MlpPolicy") or aliases.get("MlpLstmPolicy")
    for base, finetune_policy in _FINETUNE_POLICIES:
        if default is not None and issubclass(default, base):
            return finetune_policy
    raise ValueError(f"fine-tuning supports PPO, A2C, DQN, MemoryPPO and RecurrentPPO, not {algo_class.__name__}")


# ------------------------------------------------------------------------------------------------- strategies
def apply_strategy(policy: BasePolicy, config: FinetuneConfig, lr: float) -> None:
    """Freeze parameters and (for "discriminative") rebuild ``policy.optimizer`` with per-group ``lr_scale``.

    ``lr`` is the head's rate (SB3's ``lr_schedule(1)``; SB3 overwrites it on every group each update).
    """
    extractors = _lab_extractors(policy)
    if config.strategy == "frozen":
        for extractor in extractors:
            freeze(extractor.backbone)
    elif config.strategy == "top":
        for extractor in extractors:
            n_groups = len(extractor.layer_groups())
            if config.top_k > n_groups:
                raise ValueError(f"top_k={config.top_k} but {type(extractor).__name__} has {n_groups} layer groups")
            freeze_to(extractor, n_groups - config.top_k)
    elif config.strategy == "discriminative":
        policy.optimizer = discriminative_optimizer(policy, lr, lr / config.lr_ratio)


def discriminative_optimizer(policy: BasePolicy, lr_max: float, lr_min: float) -> torch.optim.Optimizer:
    """The policy's optimizer class and kwargs over groups body -> head with rates ``lr_min`` .. ``lr_max``.

    Groups: the extractor's layer groups (for non-shared actor / critic extractors, group i holds the i-th
    group of each), then one group with every other trainable parameter (MLP layers, action and value
    heads, log_std). Each gets ``lr = lr_max`` and ``lr_scale = rate / lr_max``.
    """
    module = _optimized_module(policy)
    extractors = _lab_extractors(policy)
    per_extractor = [extractor.layer_groups() for extractor in extractors]
    groups: list[nn.Module] = [nn.ModuleList(layer) for layer in zip(*per_extractor)]
    in_extractors = {id(p) for extractor in extractors for p in extractor.parameters()}
    heads = [p for p in module.parameters() if id(p) not in in_extractors]
    groups.append(nn.ParameterList(heads))  # holds the same Parameter objects, so names and ids match
    param_groups = discriminative_param_groups(module, lr_max, lr_min, groups=groups, as_scale=True)
    info = optimizer_info_for_class(policy.optimizer_class)  # its Lab* class honours lr_scale
    return make_optimizer(info.name, param_groups, lr=lr_max, **policy.optimizer_kwargs)


def _optimized_module(policy: BasePolicy) -> nn.Module:
    """The module SB3 builds the optimizer over: the whole actor-critic, or DQN's online Q-network."""
    return policy.q_net if isinstance(policy, DQNPolicy) else policy


def _lab_extractors(policy: BasePolicy) -> list[nn.Module]:
    """The distinct features extractors the optimizer trains (shared actor-critic extractors count once)."""
    if isinstance(policy, DQNPolicy):
        candidates = [policy.q_net.features_extractor]
    else:
        names = ("features_extractor", "pi_features_extractor", "vf_features_extractor")
        candidates = [getattr(policy, name, None) for name in names]
    unique = list({id(e): e for e in candidates if e is not None}.values())
    for extractor in unique:
        if not (hasattr(extractor, "backbone") and hasattr(extractor, "layer_groups")):
            raise TypeError(
                f"fine-tuning needs a lab extractor (agents.extractors: encoder 'transformer', 'conv' or 'fusion'), "
                f"got {type(extractor).__name__}"
            )
    return unique


# ------------------------------------------------------------------------------------------- pretrained weights
def load_pretrained(
    model: BaseAlgorithm | BasePolicy,
    encoder_state: Mapping[str, torch.Tensor] | str | os.PathLike | None = None,
    head_state: Mapping[str, torch.Tensor] | None = None,
    *,
    prefix: str = "",
) -> None:
    """Load a pretrained ``lab`` encoder into every extractor's ``backbone`` and optionally a head into ``action_net``.

    Args:
        model: an SB3 model or policy whose extractor comes from :mod:`agents.extractors`.
        encoder_state: the backbone's state dict (e.g. ``bc_model.fusion.state_dict()``), or a path to a
            ``torch.save``-d one or to a checkpoint dict whose ``"model"`` entry is one (supervised's format).
            Loaded strictly: every key must match (same transformer / conv options as the pretrained model).
        head_state: an ``nn.Linear`` state dict (one 2-d ``*weight``, one 1-d ``*bias``) for PPO/A2C's
            ``action_net``; its shape matches when the policy has ``net_arch=dict(pi=[], vf=[])`` (the
            latent is then the extractor output) and the head maps ``features_dim`` to the number of actions.
        prefix: keep only the keys that start with it, stripped (e.g. ``"fusion."`` for a whole BC model).
    """
    policy = model.policy if isinstance(model, BaseAlgorithm) else model
    if encoder_state is not None:
        state = read_state_dict(encoder_state, prefix)
        for extractor in _lab_extractors(policy):
            try:
                extractor.backbone.load_state_dict(state)
            except RuntimeError as error:
                raise ValueError(
                    f"pretrained weights do not fit {type(extractor).__name__}.backbone "
                    f"({type(extractor.backbone).__name__}); build the agent with the pretrained model's options "
                    f"(encoder_kwargs) or pass prefix= to select its encoder: {error}"
                ) from error
        if isinstance(policy, DQNPolicy):
            policy.q_net_target.load_state_dict(policy.q_net.state_dict())
    if head_state is not None:
        _load_head(policy, head_state)


def read_state_dict(
    source: Mapping[str, torch.Tensor] | str | os.PathLike, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """A state dict from a mapping or a ``torch.save``-d file (a checkpoint's ``"model"`` entry is unwrapped),
    keeping only the keys that start with ``prefix``, stripped."""
    if isinstance(source, (str, os.PathLike)):
        source = torch.load(source, map_location="cpu", weights_only=True)
        if isinstance(source, Mapping) and isinstance(source.get("model"), Mapping):
            source = source["model"]
    if not isinstance(source, Mapping):
        raise TypeError(f"encoder_state must be a state dict or a path to one, got {type(source).__name__}")
    state = {k[len(prefix):]: v for k, v in source.items() if k.startswith(prefix)}
    if not state:
        raise ValueError(f"no key starts with prefix {prefix!r}; keys look like {list(source)[:5]}")
    return state


def _load_head(policy: BasePolicy, head_state: Mapping[str, torch.Tensor]) -> None:
    if not isinstance(policy, ActorCriticPolicy) or not isinstance(policy.action_net, nn.Linear):
        raise TypeError(
            f"a pretrained action head loads into PPO/A2C's action_net (nn.Linear), not {type(policy).__name__}"
        )
    weights = [v for k, v in head_state.items() if k.endswith("weight") and v.dim() == 2]
    biases = [v for k, v in head_state.items() if k.endswith("bias") and v.dim() == 1]
    if len(weights) != 1 or len(biases) > 1:
        raise ValueError(
            f"head_state must hold one 2-d weight and at most one bias (an nn.Linear), got keys {list(head_state)}"
        )
    target = policy.action_net
    if weights[0].shape != target.weight.shape or (biases and biases[0].shape != target.bias.shape):
        raise ValueError(
            f"the head's weight has shape {tuple(weights[0].shape)} but action_net is {target}; build the policy "
            "with policy_kwargs=dict(net_arch=dict(pi=[], vf=[])) so its latent is the extractor output, and the "
            "same d_model / number of actions as the pretrained head"
        )
    with torch.no_grad():
        target.weight.copy_(weights[0])
        if biases:
            target.bias.copy_(biases[0])
