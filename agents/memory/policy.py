"""Actor-critic policies with episodic transformer memory, for :class:`agents.memory.ppo.MemoryPPO`.

obs -> SB3 features extractor (any: ``FlattenExtractor``, the lab's ``TransformerExtractor`` / ``ConvExtractor`` /
``FusionExtractor``, ...) -> :class:`agents.memory.transformer.EpisodeTransformer` over the episode's steps
-> SB3's ``MlpExtractor`` (``net_arch``) -> action and value heads.

The memory is shared by actor and critic (as in CleanRL's ``ppo_trxl``); ``share_features_extractor`` must stay
True. Memory options go in ``policy_kwargs["memory_kwargs"]`` (:class:`agents.memory.transformer.MemoryConfig`
fields) and are saved with the model.

``predict(observation, state, episode_start, deterministic)`` works like sb3-contrib's ``RecurrentPPO``: it
returns ``(actions, state)``; ``state`` is a tuple of numpy arrays ``(keys, values, time)`` (see
:class:`agents.memory.transformer.MemoryState`; keys/values (L, N, H, M, hd), time (N,)), ``None`` to start.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    MlpExtractor,
    NatureCNN,
)
from stable_baselines3.common.type_aliases import Schedule
from torch import Tensor, nn

from agents.memory.buffer import SegmentBatch
from agents.memory.transformer import EpisodeTransformer, MemoryConfig, MemoryState


class MemoryActorCriticPolicy(ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` with an :class:`EpisodeTransformer` between the extractor and the heads.

    Args: those of ``ActorCriticPolicy``, plus ``memory_kwargs`` (:class:`MemoryConfig` fields, e.g.
    ``dict(memory_length=64, d_model=64, num_layers=1)``; unknown keys raise).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        use_sde: bool = False,
        log_std_init: float = 0.0,
        full_std: bool = True,
        use_expln: bool = False,
        squash_output: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        share_features_extractor: bool = True,
        normalize_images: bool = True,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        memory_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not share_features_extractor:
            raise ValueError("MemoryActorCriticPolicy shares its extractor and memory between actor and critic; "
                             "leave share_features_extractor=True")
        self.memory_kwargs = dict(memory_kwargs or {})
        self.memory_config = MemoryConfig.from_kwargs(self.memory_kwargs)
        super().__init__(
            observation_space, action_space, lr_schedule, net_arch, activation_fn, ortho_init, use_sde,
            log_std_init, full_std, use_expln, squash_output, features_extractor_class, features_extractor_kwargs,
            share_features_extractor, normalize_images, optimizer_class, optimizer_kwargs,
        )
        self.memory = EpisodeTransformer(self.features_dim, self.memory_config)
        # ActorCriticPolicy built its optimizer before the memory existed: rebuild it over every parameter.
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = MlpExtractor(
            self.memory_config.d_model, net_arch=self.net_arch, activation_fn=self.activation_fn, device=self.device
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "memory_kwargs": self.memory_kwargs}

    # ------------------------------------------------------------------------------------------------ rollouts
    def initial_state(self, n_envs: int) -> MemoryState:
        return self.memory.initial_state(n_envs, self.device)

    def _heads(self, memory_out: Tensor) -> tuple[Any, Tensor]:
        latent_pi, latent_vf = self.mlp_extractor(memory_out)
        return self._get_action_dist_from_latent(latent_pi), self.value_net(latent_vf)

    def forward(  # type: ignore[override]
        self, obs: Tensor | dict[str, Tensor], state: MemoryState, episode_starts: Tensor, deterministic: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One step of N envs; updates ``state`` in place.

        -> actions, values (N, 1), log_prob (N,), layer inputs (N, L, D) (stored for the update).
        """
        out, layer_inputs = self.memory.step(self.extract_features(obs), state, episode_starts.to(torch.bool))
        distribution, values = self._heads(out)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        return actions.reshape((-1, *self.action_space.shape)), values, log_prob, layer_inputs

    def predict_values(  # type: ignore[override]
        self, obs: Tensor | dict[str, Tensor], state: MemoryState, episode_starts: Tensor
    ) -> Tensor:
        """Values (N, 1) of ``obs`` after the memory in ``state``, which is left unchanged."""
        peek = MemoryState(*(t.clone() for t in state))
        out, _ = self.memory.step(self.extract_features(obs), peek, episode_starts.to(torch.bool))
        return self._heads(out)[1]

    # -------------------------------------------------------------------------------------------------- update
    def evaluate_actions(  # type: ignore[override]
        self, obs: SegmentBatch, actions: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Values, log-probabilities and entropy of B segments of T steps (``obs`` from the memory buffer)."""
        if not isinstance(obs, SegmentBatch):
            raise TypeError("MemoryActorCriticPolicy.evaluate_actions needs a SegmentBatch (from agents.memory.buffer); "
                            f"got {type(obs).__name__}: a memory policy cannot evaluate steps without their episode")
        b, t = obs.episode_starts.shape
        features = self.extract_features(obs.observations)  # (B * T, F)
        out = self.memory.forward_segment(
            features.view(b, t, -1), obs.times, obs.episode_starts, obs.memory, obs.memory_valid
        ).reshape(b * t, -1)
        distribution, values = self._heads(out)
        return values, distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: Tensor | dict[str, Tensor], state: MemoryState | None = None,  # type: ignore[override]
                         episode_starts: Tensor | None = None):
        """The action distribution of one step after ``state`` (a fresh episode when None); state unchanged."""
        n = _batch_size(obs)
        state = self.initial_state(n) if state is None else MemoryState(*(s.clone() for s in state))
        starts = torch.zeros(n, dtype=torch.bool, device=self.device) if episode_starts is None else episode_starts
        out, _ = self.memory.step(self.extract_features(obs), state, starts.to(torch.bool))
        return self._heads(out)[0]

    # ------------------------------------------------------------------------------------------------- predict
    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """RecurrentPPO's contract: ``(actions, state)``; pass the returned state back with the next observation."""
        self.set_training_mode(False)
        obs_tensor, vectorized = self.obs_to_tensor(observation)
        n_envs = _batch_size(obs_tensor)
        memory = self.initial_state(n_envs) if state is None else self._state_from(state, n_envs)
        starts = np.zeros(n_envs, dtype=bool) if episode_start is None else np.asarray(episode_start, dtype=bool)
        if starts.size != n_envs:
            raise ValueError(f"episode_start has {starts.size} entries for {n_envs} observation(s): one flag per env "
                             "(True where that env's episode has just begun)")
        with torch.no_grad():
            out, _ = self.memory.step(self.extract_features(obs_tensor), memory,
                                      torch.as_tensor(starts.reshape(n_envs), device=self.device))
            actions = self._heads(out)[0].get_actions(deterministic=deterministic)
        actions = actions.cpu().numpy().reshape((-1, *self.action_space.shape))
        if isinstance(self.action_space, spaces.Box):
            actions = self.unscale_action(actions) if self.squash_output else np.clip(
                actions, self.action_space.low, self.action_space.high)
        if not vectorized:
            actions = actions.squeeze(axis=0)
        return actions, tuple(t.cpu().numpy() for t in memory)


    def _state_from(self, state: Any, n_envs: int) -> MemoryState:
        """The memory of a ``state`` that ``predict`` returned, checked against this policy and the observation."""
        if not isinstance(state, (tuple, list)) or len(state) != 3:
            raise ValueError("state must be the (keys, values, time) tuple a previous predict() returned, or None")
        expected = self.memory.cache_shape(n_envs)
        names = "(layers, envs, heads, memory_length, d_model / heads)"
        for name, array in zip(("keys", "values"), state[:2]):
            shape = tuple(np.shape(array))
            if shape != expected:
                raise ValueError(f"state's {name} have shape {shape}, this policy's memory {expected} {names} for "
                                 f"{n_envs} env(s): pass the state this policy's predict() returned (or None), not "
                                 "another model's or another batch's")
        if tuple(np.shape(state[2])) != (n_envs,):
            raise ValueError(f"state's time has shape {tuple(np.shape(state[2]))}; expected ({n_envs},), one step "
                             "count per env of the observation")
        return MemoryState(torch.as_tensor(state[0], dtype=torch.float32, device=self.device).clone(),
                           torch.as_tensor(state[1], dtype=torch.float32, device=self.device).clone(),
                           torch.as_tensor(state[2], dtype=torch.long, device=self.device).clone())


def _batch_size(obs: Tensor | dict[str, Tensor]) -> int:
    return int(next(iter(obs.values())).shape[0]) if isinstance(obs, dict) else int(obs.shape[0])


class MemoryActorCriticCnnPolicy(MemoryActorCriticPolicy):
    """:class:`MemoryActorCriticPolicy` with SB3's ``NatureCNN`` as the default extractor (images)."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class MultiInputMemoryActorCriticPolicy(MemoryActorCriticPolicy):
    """:class:`MemoryActorCriticPolicy` with SB3's ``CombinedExtractor`` as the default extractor (Dict spaces)."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
                 **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)
