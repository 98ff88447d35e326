"""MemoryPPO: PPO whose policy attends over the current episode's last ``memory_length`` steps (Transformer-XL-style
cached memory).

Constructed exactly like SB3's ``PPO``::

    from agents.memory.ppo import MemoryPPO

    model = MemoryPPO("MlpPolicy", "lab/CartPoleNoVel-v1", n_steps=128, batch_size=256,
                      policy_kwargs=dict(memory_kwargs=dict(memory_length=32, d_model=64)), seed=0)
    model.learn(100_000)
    actions, state = model.predict(obs, state=None, episode_start=starts, deterministic=True)  # RecurrentPPO's API

Policies: ``"MlpPolicy"`` (Box / Discrete observations; default extractor ``FlattenExtractor``), ``"CnnPolicy"``
(``NatureCNN``) and ``"MultiInputPolicy"`` (Dict; ``CombinedExtractor``): PPO's names, the memory being implied by
the algorithm. Any SB3 features extractor plugs in through ``policy_kwargs["features_extractor_class"]``
(the lab's ``TransformerExtractor`` / ``ConvExtractor`` / ``FusionExtractor``), optimizers through
``optimizer_class`` / ``optimizer_kwargs`` (``lab.optim.sb3_optimizer``), memory options through
``memory_kwargs`` (:class:`agents.memory.transformer.MemoryConfig`). Every PPO argument keeps PPO's default, and
``segment_len`` (below) fits whatever ``n_steps`` and ``batch_size`` are given unless it is given too, so a script
written for ``PPO`` or sb3-contrib's ``RecurrentPPO`` runs with the class (and an LSTM policy's name and options:
:data:`agents.memory.policy.LSTM_EQUIVALENTS`) changed.

**How the update sees what the rollout saw.** During a rollout each env's memory is a ring of cached keys and
values (one step costs O(M)); every step also stores its per-layer inputs. PPO's minibatches are segments of
``segment_len`` consecutive steps of one env. For a segment, the transformer is **recomputed** with the current
weights over the segment's own steps (gradients flow through time inside the segment), and the up-to ``M - 1``
steps before it are **stored memory**: the layer inputs saved during the rollout (or carried over from the
previous rollout), used without gradient and with keys/values recomputed from them by the current weights -
Transformer-XL's segment recurrence and CleanRL ``ppo_trxl``'s stored memory. At the start of every rollout
the key/value cache is rebuilt from those stored inputs with the current weights, so in the first epoch the
update computes exactly the log-probabilities and values the rollout computed (tested to 1e-5). Why this
approximation: recomputing every step's whole window (up to M steps) for every sample would cost O(M) times
more per update, and storing keys/values instead would freeze the attention projections of the memory at the
rollout's weights; storing layer inputs costs L x D floats per step and keeps all projections trainable.

Memory never crosses an episode start (the ring is cleared, and segment masks block earlier episodes);
positions are the step's time since its episode started (see :mod:`agents.memory.transformer`).
"""
from __future__ import annotations

import dataclasses

import math
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from agents.memory.buffer import MemoryDictRolloutBuffer, MemoryRolloutBuffer
from agents.memory.policy import (
    MemoryActorCriticCnnPolicy,
    MemoryActorCriticPolicy,
    MultiInputMemoryActorCriticPolicy,
)
from agents.memory.transformer import MemoryConfig, MemoryState

MAX_SEGMENT_LEN = 32  # the default's cap: gradients through 32 steps, the memory further back is stored


def default_segment_len(n_steps: int, batch_size: int, cap: int = MAX_SEGMENT_LEN) -> int:
    """The longest segment of at most ``cap`` steps that tiles each env's rollout and every minibatch."""
    common = math.gcd(n_steps, batch_size)
    return max(d for d in range(1, min(cap, common) + 1) if common % d == 0)


class MemoryPPO(PPO):
    """SB3's PPO with an episodic transformer memory (see the module docstring).

    Args: those of ``stable_baselines3.PPO``, plus
        segment_len: steps per training sequence; ``n_steps`` and ``batch_size`` must be multiples of it.
            Longer segments let gradients reach further back through time (the memory before a segment is
            stored, without gradient) at the cost of fewer, longer sequences per minibatch. Default (None): the
            longest that fits, up to 32 steps (:func:`default_segment_len`): 32 for PPO's defaults, 16 for
            ``n_steps=16``.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MemoryActorCriticPolicy,
        "CnnPolicy": MemoryActorCriticCnnPolicy,
        "MultiInputPolicy": MultiInputMemoryActorCriticPolicy,
    }
    policy: MemoryActorCriticPolicy

    def __init__(self, policy: str | type[MemoryActorCriticPolicy], env: Any, *args: Any,
                 segment_len: int | None = None, _init_setup_model: bool = True, **kwargs: Any) -> None:
        if kwargs.get("rollout_buffer_class") is not None:
            raise ValueError("MemoryPPO chooses its own rollout buffer (agents.memory.buffer); "
                             "do not pass rollout_buffer_class")
        if segment_len is not None and (isinstance(segment_len, bool) or not isinstance(segment_len, int)
                                        or segment_len < 1):
            raise ValueError(f"segment_len must be a positive int (or None: fitted to n_steps and batch_size), "
                             f"got {segment_len!r}")
        super().__init__(policy, env, *args, _init_setup_model=False, **kwargs)
        if segment_len is None:
            segment_len = default_segment_len(self.n_steps, self.batch_size)
        self.segment_len = segment_len
        if self.n_steps % segment_len:
            raise ValueError(f"n_steps ({self.n_steps}) must be a multiple of segment_len ({segment_len}): "
                             "each env's rollout is cut into whole segments")
        if self.batch_size % segment_len:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of segment_len ({segment_len}): "
                             "minibatches are made of whole segments")
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        config = MemoryConfig.from_kwargs(self.policy_kwargs.get("memory_kwargs"))
        # every memory option explicit in what save() writes: a model loads with the memory it trained with,
        # whatever MemoryConfig's defaults are by then
        self.policy_kwargs = {**self.policy_kwargs, "memory_kwargs": dataclasses.asdict(config)}
        self.rollout_buffer_class = (
            MemoryDictRolloutBuffer if isinstance(self.observation_space, spaces.Dict) else MemoryRolloutBuffer
        )
        # SB3 builds the buffer before the policy: a critic with its own memory (share_features_extractor=False)
        # stores its layer inputs after the actor's
        critic_layers = 0 if self.policy_kwargs.get("share_features_extractor", True) else config.num_layers
        self.rollout_buffer_kwargs = dict(segment_len=self.segment_len, memory_length=config.memory_length,
                                          num_layers=config.num_layers + critic_layers, d_model=config.d_model)
        super()._setup_model()
        if not isinstance(self.policy, MemoryActorCriticPolicy):
            raise TypeError(f"MemoryPPO needs a MemoryActorCriticPolicy (or subclass), got {type(self.policy).__name__}")
        if self.policy.memory_layers != self.rollout_buffer.num_layers:
            raise TypeError(f"{type(self.policy).__name__} keeps {self.policy.memory_layers} layers of memory per step, "
                            f"the rollout buffer {self.rollout_buffer.num_layers}: a policy class that changes "
                            "share_features_extractor's default must be given it in policy_kwargs")
        self._memory_state: MemoryState = self.policy.initial_state(self.n_envs)
        buffer = self.rollout_buffer
        self._memory_prefix = (buffer.prefix.clone(), buffer.prefix_valid.clone())

    def set_parameters(self, load_path_or_dict: str | dict[str, Any], exact_match: bool = True,
                       device: torch.device | str = "auto") -> None:
        try:
            super().set_parameters(load_path_or_dict, exact_match, device)
        except RuntimeError as error:
            if "loading state_dict" not in str(error) or "memory." not in str(error):
                raise  # not a memory that fails to load (e.g. CUDA out of memory)
            raise RuntimeError(
                f"{error}\n\nThe saved memory is not the one policy_kwargs['memory_kwargs'] builds "
                f"({self.policy_kwargs['memory_kwargs']}). A zip saved before MemoryPPO recorded its memory options "
                "has empty memory_kwargs and was trained with the defaults of then, memory_length=64 and "
                "positional='sinusoidal': load it with MemoryPPO.load(path, custom_objects={'policy_kwargs': "
                "{**its_policy_kwargs, 'memory_kwargs': {'memory_length': 64, 'positional': 'sinusoidal'}}})."
            ) from error

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_memory_state", "_memory_prefix"]

    def episode_state(self) -> dict[str, Any]:
        """The memory of the episodes in progress, which the zip leaves out (a resume checkpoint saves it):
        each env's key/value cache and the stored layer inputs the next rollout's first segments start from."""
        return {"memory_state": self._memory_state, "memory_prefix": self._memory_prefix}

    def set_episode_state(self, state: dict[str, Any]) -> None:
        self._memory_state, self._memory_prefix = state["memory_state"], state["memory_prefix"]

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """SB3's on-policy collection, carrying each env's memory and storing every step's layer inputs."""
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        n_steps = 0
        rollout_buffer.reset()
        rollout_buffer.set_prefix(*self._memory_prefix)
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)
        state = self._memory_state
        with torch.no_grad():  # the cache, rebuilt with the current weights from what the update will use
            self.policy.load_memory(state, rollout_buffer.prefix, rollout_buffer.prefix_valid)
        callback.on_rollout_start()

        while n_steps < n_rollout_steps:
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)
            with torch.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)
                starts = torch.as_tensor(self._last_episode_starts, dtype=torch.bool, device=self.device)
                actions, values, log_probs, layer_inputs = self.policy(obs_tensor, state, starts)
            times = state.time - 1  # the time this step had (step() advanced it)
            actions = actions.cpu().numpy()
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                clipped_actions = (self.policy.unscale_action(clipped_actions) if self.policy.squash_output
                                   else np.clip(actions, self.action_space.low, self.action_space.high))

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)

            # Timeouts: bootstrap with the value of the terminal observation, seen with this env's memory.
            for idx, done in enumerate(dones):
                if done and infos[idx].get("terminal_observation") is not None and infos[idx].get("TimeLimit.truncated", False):
                    terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                    env_state = MemoryState(state.keys[:, idx:idx + 1], state.values[:, idx:idx + 1],
                                            state.time[idx:idx + 1])
                    with torch.no_grad():
                        terminal_value = self.policy.predict_values(
                            terminal_obs, env_state, torch.zeros(1, dtype=torch.bool, device=self.device))[0]
                    rewards[idx] += self.gamma * terminal_value.item()

            rollout_buffer.add(self._last_obs, actions, rewards, self._last_episode_starts, values, log_probs,
                               layer_inputs=layer_inputs, times=times)
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        with torch.no_grad():
            starts = torch.as_tensor(dones, dtype=torch.bool, device=self.device)
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device), state, starts)
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        self._memory_prefix = rollout_buffer.next_prefix()
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int = 1, tb_log_name: str = "MemoryPPO",
              reset_num_timesteps: bool = True, progress_bar: bool = False) -> MemoryPPO:
        return super().learn(total_timesteps=total_timesteps, callback=callback, log_interval=log_interval,
                             tb_log_name=tb_log_name, reset_num_timesteps=reset_num_timesteps, progress_bar=progress_bar)
