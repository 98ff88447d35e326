"""The BabyAI recipe every BabyAI experiment shares (imitation, fine-tuning, the ladder, offline): one fusion
encoder for behaviour cloning and PPO, and how each paradigm reads it, trains and is scored.

The encoder is the agents' faster BabyAI recipe (issue 19, ``agents.presets.PRESETS["babyai-gotoredballgrey"]``):
the 7x7 view as 9 patch tokens of a 3x3 conv stem over a shared cell table, the 4 previous actions as one token,
width 32, one head, one layer. Behaviour cloning reads its summary token with a linear head (``babyai_bc``); PPO
reads the summary token and the patches with the recipe's MLP heads (``readout="flat"``) or, to start from a
cloned policy, the summary token with linear heads (``"cls"``: the cloned head loads too). Both are scored on fresh
episodes of the level, with sampled actions unless asked for greedy ones (the BabyAI paper samples).
"""
from __future__ import annotations

from dataclasses import replace

from agents.config import AgentConfig
from agents.presets import PRESETS
from supervised.babyai_bc import BabyAIBCConfig, BCDataConfig, BCEvalConfig, BCModelConfig

ENCODER = BCModelConfig(d_model=32, num_heads=1, num_layers=1, dim_feedforward=64, activation="relu",
                        view_stem=(3, 2), history_as_one_token=True)
ACTION_HISTORY = 4  # the previous actions both paradigms see (BC's recipe; the preset's env_kwargs)
PRESET = "babyai-gotoredballgrey"
READOUTS = ("flat", "cls")
EVAL_ENVS = 100  # episodes played in lockstep per evaluation


def bc_config(level: str, demos: int, seed: int, *, steps: int, eval_episodes: int, greedy: bool = False,
              demo_seed: int = 0, action_history: int = ACTION_HISTORY, top_fraction: float = 1.0) -> BabyAIBCConfig:
    """``babyai_bc``'s recipe on the shared encoder: at least ``steps`` optimizer steps (a run may take more
    passes), scored on ``eval_episodes`` fresh episodes. The data's directory or dataset is set by the run."""
    config = BabyAIBCConfig(model=ENCODER)
    train = replace(config.train, max_steps=steps, log_every=min(10, steps), seed=seed, quiet=True, device="auto",
                    num_threads=1)
    data = BCDataConfig(level=level, demos=demos, demo_seed=demo_seed, action_history=action_history,
                        top_fraction=top_fraction)
    evaluation = BCEvalConfig(episodes=eval_episodes, greedy=greedy, num_envs=min(eval_episodes, EVAL_ENVS))
    return replace(config, train=train, data=data, eval=evaluation)


def ppo_config(level: str, steps: int, eval_every: int, eval_episodes: int, *, readout: str = "flat",
               final_episodes: int | None = None, greedy: bool = False,
               stop_at_metric: float | None = None) -> AgentConfig:
    """The agents' BabyAI PPO recipe on the shared encoder, for ``steps`` environment steps on ``level``."""
    preset = PRESETS[PRESET]
    n_steps = max(1, min(preset.algo_kwargs["n_steps"], steps // preset.n_envs))
    algo_kwargs = dict(n_steps=n_steps, batch_size=min(preset.algo_kwargs["batch_size"], n_steps * preset.n_envs))
    config = preset.merged(
        env_id=f"lab/{level}", algo_kwargs=algo_kwargs, env_kwargs=dict(action_history=ACTION_HISTORY),
        policy_kwargs=dict(net_arch=dict(pi=[], vf=[])) if readout == "cls" else {}, timesteps=steps,
        eval_freq=eval_every, eval_episodes=eval_episodes, final_eval_episodes=final_episodes,
        eval_envs=EVAL_ENVS, eval_actions="greedy" if greedy else "sampled", stop_at_metric=stop_at_metric, name="",
        reference="")
    encoder = dict(config=ENCODER.transformer_config(), pooling="flat" if readout == "flat" else ENCODER.pooling,
                   view_stem=ENCODER.view_stem, history_as_one_token=ENCODER.history_as_one_token)
    return replace(config, encoder_kwargs=encoder)  # all of the encoder is the shared one, none of the preset's
