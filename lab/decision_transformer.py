"""Decision Transformer (Chen et al. 2021) for discrete actions, built from the lab's blocks.

Step t of a trajectory is three tokens: its return-to-go R_t (the rewards still to come), its state s_t and its
action a_t. The causal stack of :mod:`lab.decoder_only` (:class:`lab.layers.TransformerEncoder` with
``is_causal=True``) runs over the 3K tokens of K steps, ``R_1, s_1, a_1, R_2, ...``, and a_t is read from the
output at s_t's token, which sees R_1..R_t, s_1..s_t and a_1..a_{t-1} only. Trained with cross-entropy on the
actions of logged trajectories, it acts by being asked for a return: R_1 = the target, R_{t+1} = R_t - r_t.

The state encoder is a module the caller passes in (e.g. a :class:`lab.fusion.FusionTransformer` behind an
adapter for the env's observations), so this file stays free of any environment. States enter only through it;
returns through a linear embedding of the scalar; actions and timesteps (the step's index in its episode,
added to its three tokens: there are no other positions) through embedding tables.

Shorter contexts (an episode's first steps) are padded on the right with any values: a real token never
attends to a later one, so padding cannot reach it, and no attention row is ever fully masked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lab.layers import TransformerConfig, TransformerEncoder


def _dt_transformer() -> TransformerConfig:
    # The width of the lab's BabyAI fusion encoder (64); dropout 0.1 as the DT paper; 4 x 3K tokens per sample.
    return TransformerConfig(d_model=64, num_heads=4, num_layers=2, dim_feedforward=128, dropout=0.1)


@dataclass
class DecisionTransformerConfig:
    state_dim: int
    """width of the state encoder's output (B, K, state_dim)"""
    num_actions: int
    """discrete actions (minigrid: 7)"""
    context: int = 16
    """K, steps seen per prediction: a whole bot episode on the BabyAI GoTo levels (6 steps on average on
    GoToRedBallGrey) and 4x the 4 previous actions BC needs there; the DT paper found context matters (Pong 50)"""
    max_timestep: int = 1024
    """size of the timestep table: episodes longer than this cannot be embedded (BabyAI levels: <= 1024 steps
    except the largest mazes)"""
    transformer: TransformerConfig = field(default_factory=_dt_transformer)
    """the causal stack over the 3K tokens"""

    def __post_init__(self) -> None:
        for name in ("state_dim", "num_actions", "context", "max_timestep"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class DecisionTransformer(nn.Module):
    """Returns-to-go, states, actions and timesteps of K steps -> action logits (B, K, num_actions).

    ``state_encoder(states)`` must map the states of B x K steps, in whatever structure it takes, to (B, K,
    state_dim); :meth:`forward_embedded` takes the encoded states directly (an actor caches them step by step).
    """

    def __init__(self, config: DecisionTransformerConfig, state_encoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        d_model = config.transformer.d_model
        self.state_encoder = state_encoder
        self.embed_state = nn.Linear(config.state_dim, d_model)
        self.embed_return = nn.Linear(1, d_model)
        self.embed_action = nn.Embedding(config.num_actions, d_model)
        self.embed_timestep = nn.Embedding(config.max_timestep, d_model)
        self.embed_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(config.transformer.dropout)
        self.decoder = TransformerEncoder(config.transformer)
        self.action_head = nn.Linear(d_model, config.num_actions)

    def forward(self, states: Any, actions: Tensor, returns_to_go: Tensor, timesteps: Tensor) -> Tensor:
        """Args:
            states: the state encoder's input for B x K steps.
            actions: (B, K) int, the action taken at each step (row t's own action never reaches its prediction:
                any value works where it is not known yet).
            returns_to_go: (B, K) float, the return still to come at each step.
            timesteps: (B, K) int in [0, max_timestep), each step's index in its episode.

        Returns:
            (B, K, num_actions) logits; row t predicts a_t.
        """
        return self.forward_embedded(self.state_encoder(states), actions, returns_to_go, timesteps)

    def forward_embedded(self, state_embeddings: Tensor, actions: Tensor, returns_to_go: Tensor,
                         timesteps: Tensor) -> Tensor:
        """:meth:`forward` with the states already encoded: ``state_embeddings`` (B, K, state_dim)."""
        batch, steps = actions.shape[:2] if actions.dim() == 2 else (None, None)
        expected = (batch, steps)
        if batch is None or returns_to_go.shape != expected or timesteps.shape != expected:
            raise ValueError(f"actions, returns_to_go and timesteps must share a shape (batch, steps), got "
                             f"{tuple(actions.shape)}, {tuple(returns_to_go.shape)}, {tuple(timesteps.shape)}")
        if state_embeddings.shape != (batch, steps, self.config.state_dim):
            raise ValueError(f"state embeddings must have shape ({batch}, {steps}, {self.config.state_dim}), got "
                             f"{tuple(state_embeddings.shape)}")
        if steps > self.config.context:
            raise ValueError(f"{steps} steps exceed the context of {self.config.context}")
        if timesteps.numel() and (int(timesteps.min()) < 0 or int(timesteps.max()) >= self.config.max_timestep):
            raise ValueError(f"timesteps must lie in [0, {self.config.max_timestep}) (max_timestep), got "
                             f"{int(timesteps.min())}..{int(timesteps.max())}")
        time = self.embed_timestep(timesteps)  # (B, K, D), added to the step's three tokens
        tokens = torch.stack([
            self.embed_return(returns_to_go.unsqueeze(-1).to(time.dtype)) + time,
            self.embed_state(state_embeddings) + time,
            self.embed_action(actions.long()) + time,
        ], dim=2).reshape(batch, 3 * steps, -1)  # (B, 3K, D): R_1, s_1, a_1, R_2, s_2, a_2, ...
        h = self.decoder(self.dropout(self.embed_norm(tokens)), is_causal=True)
        return self.action_head(h[:, 1::3])  # (B, K, A): the outputs at the state tokens
