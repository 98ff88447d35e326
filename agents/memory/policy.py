"""Actor-critic policies with episodic transformer memory, for :class:`agents.memory.ppo.MemoryPPO`.

obs -> SB3 features extractor (any: ``FlattenExtractor``, the lab's ``TransformerExtractor`` / ``ConvExtractor`` /
``FusionExtractor``, ...) -> :class:`agents.memory.transformer.EpisodeTransformer` over the episode's steps
-> SB3's ``MlpExtractor`` (``net_arch``) -> action and value heads.

With ``share_features_extractor=True`` (SB3's default) actor and critic read one extractor and one memory, and
both losses train them (CleanRL's ``ppo_trxl``). With ``False`` the critic has its own extractor **and** its own
memory (as sb3-contrib's ``enable_critic_lstm``): the rollout state and the stored layer inputs then hold the
actor's layers followed by the critic's. Memory options go in ``policy_kwargs["memory_kwargs"]``
(:class:`agents.memory.transformer.MemoryConfig` fields; both memories use them) and are saved with the model.
RecurrentPPO's LSTM options are refused with their equivalent named (:data:`LSTM_EQUIVALENTS`).

``predict(observation, state, episode_start, deterministic)`` works like sb3-contrib's ``RecurrentPPO``: it
returns ``(actions, state)``; ``state`` is a tuple of numpy arrays ``(keys, values, time)`` (see
:class:`agents.memory.transformer.MemoryState`; keys/values (L, N, H, M, hd), time (N,)), ``None`` to start. It
holds the actor's memory only (acting needs no critic), as RecurrentPPO's ``predict`` returns the actor's LSTM state.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy, BaseModel
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

# RecurrentPPO's policy options and what MemoryPPO's policy takes instead (an LSTM option fails with its equivalent).
LSTM_EQUIVALENTS = {
    "lstm_hidden_size": "memory_kwargs=dict(d_model=...)",
    "n_lstm_layers": "memory_kwargs=dict(num_layers=...)",
    "lstm_kwargs": "memory_kwargs (e.g. dict(dropout=...))",
    "enable_critic_lstm": "share_features_extractor=False for a critic with its own extractor and memory",
    "shared_lstm": "share_features_extractor=True, the default: actor and critic read one memory",
}


class MemoryActorCriticPolicy(ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` with an :class:`EpisodeTransformer` between the extractor and the heads.

    Args: those of ``ActorCriticPolicy``, plus ``memory_kwargs`` (:class:`MemoryConfig` fields, e.g.
    ``dict(memory_length=64, d_model=64, num_layers=1)``; unknown keys raise).

    States: :meth:`initial_state` / :meth:`forward` / :meth:`predict_values` carry the rollout state (the actor's
    layers, then the critic's own when it has one); :meth:`predict` and :meth:`get_distribution` the actor's.
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
        **unknown: Any,
    ) -> None:
        _refuse_unknown_options(unknown)
        self.memory_kwargs = dict(memory_kwargs or {})
        self.memory_config = MemoryConfig.from_kwargs(self.memory_kwargs)
        super().__init__(
            observation_space, action_space, lr_schedule, net_arch, activation_fn, ortho_init, use_sde,
            log_std_init, full_std, use_expln, squash_output, features_extractor_class, features_extractor_kwargs,
            share_features_extractor, normalize_images, optimizer_class, optimizer_kwargs,
        )

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        # After SB3's heads and their orthogonal init (the memory keeps its own init), then the optimizer again, over
        # every parameter; inside _build, so a subclass that rebuilds the optimizer after _build (agents.finetune's
        # strategies) sees the memory.
        self.memory = EpisodeTransformer(self.features_dim, self.memory_config)
        self.critic_memory: EpisodeTransformer | None = (
            None if self.share_features_extractor else EpisodeTransformer(self.features_dim, self.memory_config))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = MlpExtractor(
            self.memory_config.d_model, net_arch=self.net_arch, activation_fn=self.activation_fn, device=self.device
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "memory_kwargs": self.memory_kwargs}

    # ------------------------------------------------------------------------------------------------ rollouts
    @property
    def memory_layers(self) -> int:
        """Layers of memory per step in the rollout state and the buffer: the actor's, then the critic's own."""
        return self.memory_config.num_layers * (1 if self.critic_memory is None else 2)

    def initial_state(self, n_envs: int) -> MemoryState:
        """The empty rollout state of ``n_envs`` envs (keys / values over :attr:`memory_layers` layers)."""
        shape = (self.memory_layers, *self.memory.cache_shape(n_envs)[1:])
        return MemoryState(torch.zeros(shape, device=self.device), torch.zeros(shape, device=self.device),
                           torch.zeros(n_envs, dtype=torch.long, device=self.device))

    def _split(self, state: MemoryState) -> tuple[MemoryState, MemoryState | None]:
        """Views of a rollout state: the actor's memory and the critic's own (None when shared)."""
        if self.critic_memory is None:
            return state, None
        n = self.memory_config.num_layers
        return (MemoryState(state.keys[:n], state.values[:n], state.time),
                MemoryState(state.keys[n:], state.values[n:], state.time))

    def _actor_features(self, obs: Tensor | dict[str, Tensor]) -> Tensor:
        return BaseModel.extract_features(self, obs, self.pi_features_extractor)

    def _critic_features(self, obs: Tensor | dict[str, Tensor]) -> Tensor:
        return BaseModel.extract_features(self, obs, self.vf_features_extractor)

    def _distribution(self, actor_out: Tensor) -> Any:
        return self._get_action_dist_from_latent(self.mlp_extractor.forward_actor(actor_out))

    def _value(self, critic_out: Tensor) -> Tensor:
        return self.value_net(self.mlp_extractor.forward_critic(critic_out))

    def _step(self, obs: Tensor | dict[str, Tensor], state: MemoryState, starts: Tensor
              ) -> tuple[Tensor, Tensor, Tensor]:
        """One step of both memories (state updated in place) -> actor out, critic out, layer inputs (N, layers, D)."""
        actor, critic = self._split(state)
        if critic is None:
            out, layer_inputs = self.memory.step(self._actor_features(obs), state, starts)
            return out, out, layer_inputs
        # the critic steps on a copy of the time: the actor's step advances the one both share
        critic_out, critic_inputs = self.critic_memory.step(self._critic_features(obs),
                                                            critic._replace(time=state.time.clone()), starts)
        actor_out, actor_inputs = self.memory.step(self._actor_features(obs), actor, starts)
        return actor_out, critic_out, torch.cat([actor_inputs, critic_inputs], dim=1)

    def forward(  # type: ignore[override]
        self, obs: Tensor | dict[str, Tensor], state: MemoryState, episode_starts: Tensor, deterministic: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One step of N envs; updates ``state`` (a rollout state) in place.

        -> actions, values (N, 1), log_prob (N,), layer inputs (N, layers, D) (stored for the update).
        """
        actor_out, critic_out, layer_inputs = self._step(obs, state, episode_starts.to(torch.bool))
        distribution = self._distribution(actor_out)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        return actions.reshape((-1, *self.action_space.shape)), self._value(critic_out), log_prob, layer_inputs

    def predict_values(  # type: ignore[override]
        self, obs: Tensor | dict[str, Tensor], state: MemoryState, episode_starts: Tensor
    ) -> Tensor:
        """Values (N, 1) of ``obs`` after the memory in ``state`` (a rollout state), which is left unchanged."""
        actor, critic = self._split(MemoryState(*(t.clone() for t in state)))
        starts = episode_starts.to(torch.bool)
        if critic is None:  # shared: the one memory
            out, _ = self.memory.step(self._actor_features(obs), actor, starts)
        else:
            out, _ = self.critic_memory.step(self._critic_features(obs), critic, starts)
        return self._value(out)

    def load_memory(self, state: MemoryState, memory: Tensor, memory_valid: Tensor) -> None:
        """Refill a rollout state's caches from stored layer inputs (N, P, layers, D) with the current weights."""
        actor, critic = self._split(state)
        n = self.memory_config.num_layers
        self.memory.load_memory(actor, memory[:, :, :n], memory_valid)
        if critic is not None:
            self.critic_memory.load_memory(critic, memory[:, :, n:], memory_valid)

    # -------------------------------------------------------------------------------------------------- update
    def evaluate_actions(  # type: ignore[override]
        self, obs: SegmentBatch, actions: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Values, log-probabilities and entropy of B segments of T steps (``obs`` from the memory buffer)."""
        if not isinstance(obs, SegmentBatch):
            raise TypeError("MemoryActorCriticPolicy.evaluate_actions needs a SegmentBatch (from agents.memory.buffer); "
                            f"got {type(obs).__name__}: a memory policy cannot evaluate steps without their episode")
        b, t = obs.episode_starts.shape
        n = self.memory_config.num_layers

        def segment(memory: EpisodeTransformer, features: Tensor, stored: Tensor) -> Tensor:
            out = memory.forward_segment(features.view(b, t, -1), obs.times, obs.episode_starts, stored,
                                         obs.memory_valid)
            return out.reshape(b * t, -1)

        if self.critic_memory is None:
            actor_out = critic_out = segment(self.memory, self._actor_features(obs.observations), obs.memory)
        else:
            actor_out = segment(self.memory, self._actor_features(obs.observations), obs.memory[:, :n])
            critic_out = segment(self.critic_memory, self._critic_features(obs.observations), obs.memory[:, n:])
        distribution = self._distribution(actor_out)
        return self._value(critic_out), distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: Tensor | dict[str, Tensor], state: MemoryState | None = None,  # type: ignore[override]
                         episode_starts: Tensor | None = None):
        """The action distribution of one step after the actor's memory in ``state`` (a fresh episode when None;
        a rollout state is read for its actor's layers); state unchanged."""
        n = _batch_size(obs)
        actor = (self.memory.initial_state(n, self.device) if state is None
                 else MemoryState(*(s.clone() for s in self._split(state)[0])))
        starts = torch.zeros(n, dtype=torch.bool, device=self.device) if episode_starts is None else episode_starts
        out, _ = self.memory.step(self._actor_features(obs), actor, starts.to(torch.bool))
        return self._distribution(out)

    # ------------------------------------------------------------------------------------------------- predict
    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """RecurrentPPO's contract: ``(actions, state)``; pass the returned state back with the next observation.
        ``state`` is the actor's memory (:meth:`_state_from` checks it against this policy and the observation)."""
        self.set_training_mode(False)
        if isinstance(observation, tuple) and len(observation) == 2 and isinstance(observation[1], dict):
            # SB3's own check: tuple observations are not supported, so an (obs, info) pair is a mistake
            raise ValueError("predict() got a tuple (observation, info): you are probably mixing Gym API with SB3's "
                             "VecEnv API; Gymnasium's env.reset() returns (obs, info), pass obs (a VecEnv's reset() "
                             "returns obs alone)")
        obs_tensor, vectorized = self.obs_to_tensor(observation)
        n_envs = _batch_size(obs_tensor)
        memory = self.memory.initial_state(n_envs, self.device) if state is None else self._state_from(state, n_envs)
        starts = np.zeros(n_envs, dtype=bool) if episode_start is None else np.asarray(episode_start, dtype=bool)
        if starts.size != n_envs:
            raise ValueError(f"episode_start has {starts.size} entries for {n_envs} observation(s): one flag per env "
                             "(True where that env's episode has just begun)")
        with torch.no_grad():
            out, _ = self.memory.step(self._actor_features(obs_tensor), memory,
                                      torch.as_tensor(starts.reshape(n_envs), device=self.device))
            actions = self._distribution(out).get_actions(deterministic=deterministic)
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


def _refuse_unknown_options(options: dict[str, Any]) -> None:
    """An LSTM option names its memory equivalent; any other unknown option fails as Python's own would."""
    for name in options:
        if name in LSTM_EQUIVALENTS:
            raise TypeError(f"{name} is an option of RecurrentPPO's LSTM policy; MemoryPPO's equivalent: "
                            f"{LSTM_EQUIVALENTS[name]}")
    if options:
        raise TypeError(f"MemoryActorCriticPolicy got unexpected option(s) {sorted(options)}")


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
