"""A Decision Transformer on BabyAI trajectories, trained by the supervised trainer, scored by rollouts at a target
return.

    python -m supervised.train babyai_dt --data.minari-dataset lab/GoToRedBallGrey/mixed-v0
    python -m supervised.train babyai_dt --data.demos 2000 --eval.target-return 0.9   # the bot's demos

Data: the episodes :func:`supervised.babyai_bc.load_bc_demos` loads (bot demos or any fitting Minari dataset;
``data.top_fraction`` filters them as for %BC), cut into windows of ``model.context`` (K) consecutive steps of one
episode: steps 0..K-1, K..2K-1, ... (the last window of an episode shorter, padded on the right). Every step is a
label exactly once per epoch, as in BC, and costs one state encoding (padding costs none); the loss is the
cross-entropy of the action at every real step of a window (the trainer's sequence targets). Acting slides the
window one step at a time, so from step K on its windows start anywhere, not only at multiples of K; overlapping
training windows would match that, at K times the cost per label.

Model: :class:`BabyAIDecisionTransformer`, ``lab.DecisionTransformer`` over the returns-to-go, the states and the
actions, each state encoded by the fusion encoder BC and the RL agents use (view, direction, mission: a plain
``lab.FusionTransformer``, exported as ``encoder.pt`` like BC's). Returns-to-go are the undiscounted rewards
still to come (BabyAI: the episode's return, 0 after a failure), unscaled: BabyAI returns lie in [0, 1].

Acting: :class:`DecisionTransformerActor` plays through :mod:`envs.evaluation` (fresh seeded episodes in
lockstep) as a stateful actor: per env it keeps the last K steps' state encodings, actions, returns-to-go and
timesteps, asks for ``target_return`` at the first step and lowers it by each reward. :func:`evaluate_dt` scores
a model at a target return; ``eval.target_return`` None asks for the best return among the training episodes
(stored in the model as ``best_return``).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from envs.babyai import NUM_ACTIONS
from envs.babyai_fusion import babyai_fusion_inputs
from envs.evaluation import EVAL_SEED, RolloutResult, StatefulAct, choose_actions
from envs.tokenizer import DEFAULT_MAX_LEN, PAD_ID
from envs.trajectories import DemoSet
from lab.decision_transformer import DecisionTransformer, DecisionTransformerConfig
from lab.fusion import FusionTransformer
from lab.io import atomic_torch_save
from lab.layers import TransformerConfig
from lab.runtime import count_parameters
from supervised.babyai_bc import (ENCODER_FILE, ROLLOUTS_FILE, BabyAIBCTask, BCDataConfig, BCEvalConfig, BCModelConfig,
                                  data_info, dataset_seeds, load_bc_demos, load_trained, play_level,
                                  training_episodes)
from supervised.configs import ConfigError, TrainConfig
from supervised.task import IGNORE_INDEX, InMemoryDataset, TaskData

DT_FILE = "decision_transformer.pt"


# ------------------------------------------------------------------------------------------------------- configs
@dataclass
class DTModelConfig:
    """The fusion encoder of each state and the causal transformer over (return-to-go, state, action) tokens."""

    encoder: BCModelConfig = field(default_factory=BCModelConfig)
    """the state encoder: BC's fusion transformer (its encoder.pt loads where BC's does)"""
    context: int = 16
    """K, steps per window: a whole bot episode on the GoTo levels (6 steps on average on GoToRedBallGrey), 4x the
    4 previous actions BC needs there; the DT paper found context matters (Atari Pong: 50)"""
    d_model: int = 64
    """width of the causal transformer (the fusion encoder's 64)"""
    num_heads: int = 4
    """attention heads; must divide d_model"""
    num_layers: int = 2
    """causal layers over the 3K tokens (the fusion encoder has 2)"""
    dim_feedforward: int = 128
    """feed-forward width (2 x d_model, as the fusion encoder)"""
    dropout: float = 0.1
    """dropout of the causal transformer (the DT paper's 0.1)"""
    max_timestep: int = 1024
    """size of the timestep table; longer episodes are refused when loaded (BabyAI's GoTo levels: 64 steps)"""

    def __post_init__(self) -> None:
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        self.dt_config(state_dim=self.encoder.d_model)  # lab's own checks of every size

    def dt_config(self, state_dim: int) -> DecisionTransformerConfig:
        transformer = TransformerConfig(d_model=self.d_model, num_heads=self.num_heads, num_layers=self.num_layers,
                                        dim_feedforward=self.dim_feedforward, dropout=self.dropout)
        return DecisionTransformerConfig(state_dim=state_dim, num_actions=NUM_ACTIONS, context=self.context,
                                         max_timestep=self.max_timestep, transformer=transformer)


@dataclass
class DTEvalConfig(BCEvalConfig):
    """Rollouts in fresh episodes, asking for a return."""

    target_return: float | None = None
    """the return the model is asked for at each episode's start; None = the best return among the training
    episodes (the DT paper conditions on expert-level returns)"""


def _dt_data() -> BCDataConfig:
    return BCDataConfig(action_history=0)  # the window holds the previous actions as tokens


def _dt_train_config() -> TrainConfig:
    # BC's recipe (AdamW 2e-3, betas 0.9 / 0.98, 5% warmup, cosine to 0, clipping at 1, 20 epochs) with batches
    # of 32 windows (up to 512 labels; about 200 on bot demos, whose windows are short).
    return TrainConfig(epochs=20, batch_size=32, optimizer="adamw", lr=2e-3, weight_decay=0.01, betas=(0.9, 0.98),
                       warmup_fraction=0.05, min_lr_ratio=0.0, grad_clip=1.0, label_smoothing=0.0,
                       evaluate_best=False, num_threads=1)


@dataclass
class BabyAIDTConfig:
    """A Decision Transformer on BabyAI trajectories (bot demos or a Minari dataset), scored by rollouts at a
    target return."""

    train: TrainConfig = field(default_factory=_dt_train_config)
    model: DTModelConfig = field(default_factory=DTModelConfig)
    data: BCDataConfig = field(default_factory=_dt_data)
    eval: DTEvalConfig = field(default_factory=DTEvalConfig)

    def __post_init__(self) -> None:
        if self.eval.seed == self.data.demo_seed:
            raise ValueError(f"eval seed {self.eval.seed} equals the demo seed: evaluation episodes would be the demo "
                             "collection's own; choose another --eval.seed")


# --------------------------------------------------------------------------------------------------------- model
class FusionStateEncoder(nn.Module):
    """BabyAI states of B x K steps -> (B, K, d_model): the fusion encoder on each real step (padding: zeros).

    ``states``: ``image`` (B, K, 7, 7, 3), ``direction`` (B, K), ``mission`` (B, L) (one per window: a window
    never leaves its episode), optionally ``length`` (B,) real steps per window and ``prev_actions`` (B, K, k).
    """

    def __init__(self, fusion: FusionTransformer, action_history: int = 0, history_as_one_token: bool = False) -> None:
        super().__init__()
        self.fusion, self.action_history, self.history_as_one_token = fusion, action_history, history_as_one_token

    def forward(self, states: Mapping[str, Tensor]) -> Tensor:
        direction = states["direction"]
        batch, steps = direction.shape[:2]
        real = torch.ones(batch, steps, dtype=torch.bool, device=direction.device)
        if "length" in states:
            real = torch.arange(steps, device=direction.device) < states["length"][:, None]  # (B, K)
        window = real.nonzero()[:, 0]  # each real step's window, to give it its mission
        prev = states["prev_actions"][real] if self.action_history else None
        inputs, masks = babyai_fusion_inputs(states["image"][real], direction[real], states["mission"][window], prev,
                                             history_as_one_token=self.history_as_one_token)
        fused = self.fusion(inputs, masks).fused  # (real steps, D)
        out = fused.new_zeros(batch, steps, fused.shape[-1])
        out[real] = fused
        return out


class BabyAIDecisionTransformer(nn.Module):
    """Windows of BabyAI steps -> action logits (B, K, 7).

    ``inputs``: the states :class:`FusionStateEncoder` reads, plus ``actions`` (B, K) int, ``returns_to_go``
    (B, K) float and ``timesteps`` (B, K) int (:func:`dt_windows` builds them). ``best_return`` (a buffer, saved
    with the model) is the default return to ask for.
    """

    def __init__(self, config: DTModelConfig | None = None, action_history: int = 0,
                 max_mission_len: int = DEFAULT_MAX_LEN) -> None:
        super().__init__()
        config = config or DTModelConfig()
        self.action_history = action_history
        encoder = config.encoder  # BCPolicy's encoder, so that encoder.pt loads where BC's does
        fusion = encoder.build_encoder(action_history, max_mission_len)
        self.dt = DecisionTransformer(config.dt_config(state_dim=encoder.d_model),
                                      FusionStateEncoder(fusion, action_history, encoder.one_token(action_history)))
        self.register_buffer("best_return", torch.tensor(1.0))

    @property
    def encoder(self) -> FusionTransformer:
        """The plain FusionTransformer of the states (what ``encoder.pt`` holds)."""
        return self.dt.state_encoder.fusion

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.dt(inputs, inputs["actions"], inputs["returns_to_go"], inputs["timesteps"])


# ---------------------------------------------------------------------------------------------------------- data
def dt_windows(demos: DemoSet, context: int, action_history: int = 0) -> InMemoryDataset:
    """Every episode of ``demos`` in windows of ``context`` consecutive steps (the module docstring); targets (W, K)
    are the actions, :data:`supervised.task.IGNORE_INDEX` at padding."""
    first = [int(s) for i in range(demos.num_episodes)
             for s in range(int(demos.episode_start[i]), int(demos.episode_start[i] + demos.length[i]), context)]
    first = np.asarray(first, dtype=np.int64)  # (W,) first step of each window
    episode = demos.episode[first]
    end = demos.episode_start[episode] + demos.length[episode]
    length = np.minimum(end - first, context)  # (W,) real steps
    offsets = np.arange(context)
    real = offsets < length[:, None]  # (W, K)
    index = np.where(real, first[:, None] + offsets, first[:, None])  # padding repeats the first step (masked)
    mission_len = max(int((demos.mission != PAD_ID).sum(axis=1).max()), 1)
    actions = demos.action[index].astype(np.int64)
    inputs = {
        "image": torch.from_numpy(demos.image[index]),  # (W, K, 7, 7, 3) uint8
        "direction": torch.from_numpy(demos.direction[index]),  # (W, K) uint8
        "mission": torch.from_numpy(demos.mission[episode, :mission_len]),  # (W, L) int64
        "length": torch.from_numpy(length),  # (W,) int64
        "actions": torch.from_numpy(np.where(real, actions, 0)),  # (W, K) int64
        "returns_to_go": torch.from_numpy(np.where(real, demos.returns_to_go()[index], 0).astype(np.float32)),
        "timesteps": torch.from_numpy(np.where(real, demos.step_index()[index], 0)),  # (W, K) int64
    }
    if action_history:
        inputs["prev_actions"] = torch.from_numpy(demos.prev_actions(action_history)[index])  # (W, K, k)
    return InMemoryDataset(inputs, torch.from_numpy(np.where(real, actions, IGNORE_INDEX)))


# ---------------------------------------------------------------------------------------------------------- acting
class DecisionTransformerActor(StatefulAct):
    """Acts with a :class:`BabyAIDecisionTransformer` through :func:`envs.evaluation.evaluate`, asking for
    ``target_return``: per env, the last K steps' state encodings (each state is encoded once), actions,
    returns-to-go and timesteps (capped at the model's last timestep); argmax actions, or draws from the softmax
    with a generator of its own seeded ``seed``."""

    def __init__(self, model: BabyAIDecisionTransformer, target_return: float, greedy: bool = True,
                 seed: int = 0) -> None:
        self.model, self.target = model, float(target_return)
        self.generator = None if greedy else torch.Generator().manual_seed(seed)
        self.device = next(model.parameters()).device
        config = model.dt.config
        self.context, self.last_timestep = config.context, config.max_timestep - 1

    def reset(self, n: int) -> None:
        k, d = self.context, self.model.dt.config.state_dim
        self.states = torch.zeros(n, k, d, device=self.device)
        self.actions = torch.zeros(n, k, dtype=torch.long, device=self.device)
        self.returns = torch.zeros(n, k, device=self.device)
        self.timesteps = torch.zeros(n, k, dtype=torch.long, device=self.device)
        self.length = torch.zeros(n, dtype=torch.long, device=self.device)  # steps in each context
        self.step = torch.zeros(n, dtype=torch.long, device=self.device)  # steps taken in each episode
        self.to_go = torch.full((n,), self.target, device=self.device)

    @torch.no_grad()
    def __call__(self, observations: dict[str, np.ndarray], episode_start: np.ndarray) -> list[int]:
        start = torch.as_tensor(episode_start, device=self.device)
        self.length[start], self.step[start], self.to_go[start] = 0, 0, self.target
        batch = {key: torch.as_tensor(value, device=self.device) for key, value in observations.items()}
        states = {key: value[:, None] for key, value in batch.items() if key != "mission"}  # one step per env
        encoded = self.model.dt.state_encoder({**states, "mission": batch["mission"]})[:, 0]  # (n, D)
        full = self.length == self.context
        for buffer in (self.states, self.actions, self.returns, self.timesteps):  # drop the oldest step
            buffer[full] = buffer[full].roll(-1, dims=1)
        self.length = torch.clamp(self.length + 1, max=self.context)
        rows, at = torch.arange(len(self.length), device=self.device), self.length - 1
        self.states[rows, at], self.returns[rows, at] = encoded, self.to_go
        self.timesteps[rows, at], self.actions[rows, at] = self.step.clamp(max=self.last_timestep), 0
        steps = int(self.length.max())
        logits = self.model.dt.forward_embedded(self.states[:, :steps], self.actions[:, :steps],
                                                self.returns[:, :steps], self.timesteps[:, :steps])
        chosen = choose_actions(logits[rows, at], self.generator)
        self.actions[rows, at] = torch.as_tensor(chosen, device=self.device)
        self.step += 1
        return chosen

    def observe(self, rewards: np.ndarray) -> None:
        self.to_go -= torch.as_tensor(rewards, dtype=self.to_go.dtype, device=self.device)


@torch.no_grad()
def evaluate_dt(model: BabyAIDecisionTransformer, level: str, episodes: int = 500, *,
                target_return: float | None = None, seed: int = EVAL_SEED, exclude_seeds: Iterable[int] = (),
                greedy: bool = True, num_envs: int = 500) -> RolloutResult:
    """Play ``episodes`` fresh episodes of ``level``, asking ``model`` for ``target_return`` (None: its
    ``best_return``); the protocol of :func:`supervised.babyai_bc.evaluate_policy` (seeds, exclusions, lockstep)."""
    target = float(model.best_return) if target_return is None else target_return
    actor = DecisionTransformerActor(model, target, greedy=greedy, seed=seed)
    return play_level(model, level, actor, episodes, action_history=model.action_history, seed=seed,
                      exclude_seeds=exclude_seeds, greedy=greedy, num_envs=num_envs)


# ---------------------------------------------------------------------------------------------------------- task
class BabyAIDTTask(BabyAIBCTask):
    """Cross-entropy on the logged actions at every step of a window; the final metric is the success rate of
    rollouts at the target return. BC's task otherwise: the same data options, run names and unseen evaluation
    seeds."""

    name = "babyai_dt"
    config_class = BabyAIDTConfig

    def __init__(self, config: BabyAIDTConfig | None = None) -> None:
        super().__init__(config)
        self.best_return = 1.0  # of the training episodes: the default return to ask for

    def load_data(self) -> TaskData:
        d, k = self.config.data, self.config.model.context
        demos = load_bc_demos(d, progress=not self.config.train.quiet)
        kept, n_val = training_episodes(demos, d)
        longest = int(kept.length.max())
        if longest > self.config.model.max_timestep:
            raise ConfigError(f"an episode of {longest} steps does not fit the timestep table; raise "
                              f"--model.max-timestep to at least {longest}")
        train_episodes = kept.select(np.arange(kept.num_episodes - n_val))
        train = dt_windows(train_episodes, k, d.action_history)
        val = dt_windows(kept.select(np.arange(kept.num_episodes - n_val, kept.num_episodes)), k,
                         d.action_history) if n_val else None
        self.best_return = float(train_episodes.reward.max())
        self._demo_seeds = dataset_seeds(demos)
        self.rollouts = []
        self.demo_info = {**data_info(d, demos, kept, n_val), "train_transitions": train_episodes.num_steps,
                          "train_windows": len(train), "best_return": self.best_return}
        return TaskData(train, val)

    def build_model(self) -> nn.Module:
        model = BabyAIDecisionTransformer(self.config.model, self.config.data.action_history)
        model.best_return.fill_(self.best_return)
        return model

    def describe_model(self, model: nn.Module) -> dict[str, int | float]:
        return {"params": count_parameters(model), "encoder_params": count_parameters(model.encoder)}

    def play(self, model: nn.Module) -> RolloutResult:
        """Rollouts of ``model`` asking for ``eval.target_return``, in episodes the data never saw."""
        d, e = self.config.data, self.config.eval
        return evaluate_dt(model, d.level, e.episodes, target_return=e.target_return, seed=e.seed,
                           exclude_seeds=self.demo_seeds(), greedy=e.greedy, num_envs=e.num_envs)

    def export(self, model: nn.Module, run_dir: Path) -> dict[str, Any]:
        """``encoder.pt`` (the states' FusionTransformer, as BC's), ``decision_transformer.pt`` (the whole model's
        state dict) and ``rollouts.json``; returns the data used and the return asked for."""
        self.export_encoder_and_rollouts(model, run_dir)
        atomic_torch_save(model.state_dict(), run_dir / DT_FILE)
        target = self.config.eval.target_return
        return {**self.demo_info, "target_return": self.best_return if target is None else target,
                "eval_seed": self.config.eval.seed, "encoder_file": ENCODER_FILE, "model_file": DT_FILE,
                "rollouts_file": ROLLOUTS_FILE}


def load_dt(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[BabyAIDecisionTransformer,
                                                                                  BabyAIDTConfig]:
    """The model and config of a ``babyai_dt`` checkpoint, or of a run directory (its ``last.pt``)."""
    return load_trained(path, BabyAIDTTask, map_location)
