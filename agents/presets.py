"""Named hyperparameter recipes, RL Zoo style: one record per (env, recipe), usable from Python and the CLI.

    python -m agents.train lab/CartPoleNoVelHistory-v1 --preset cartpole-novel-deltas
    python -m agents.train lab/BabyAI-GoToRedBallGrey-v0 --preset babyai-gotoredballgrey --seed 2 --timesteps 50000

    from agents.factory import make_agent
    model = make_agent(PRESETS["cartpole-novel"], seed=0)          # a preset is an agents.config.AgentConfig
    model = make_agent(PRESETS["cartpole-novel"].merged(algo_kwargs={"n_epochs": 10}))

A preset fills every option it names; anything given explicitly wins (dict options such as ``algo_kwargs``
are merged key by key, so ``--algo-kwargs '{"n_epochs": 10}'`` changes only ``n_epochs``). Schedules are
RL Zoo strings: ``"lin_1e-3"`` goes linearly from 1e-3 to 0 over the run's ``timesteps`` (a shorter run
decays faster, as in the Zoo). ``reference`` says what the recipe reached and where that was measured;
``benchmarks/rl_targets.py`` re-measures the first three recipes.

Every transformer recipe turns SB3's orthogonal init off for the extractor (``ortho_init="heads"``): SB3 would
re-initialise every Linear of the lab blocks with gain sqrt(2); the RL spike ran them with their own init and
SB3's init on the MLP heads only.
"""
from __future__ import annotations

from agents.config import AgentConfig

# The spike's small transformer (d32, 2 heads, 1 layer, ff 64, no dropout); activations differ per recipe.
_SMALL_TRANSFORMER = dict(d_model=32, num_heads=2, num_layers=1, dim_feedforward=64)
# RL Zoo's ppo_lstm CartPoleNoVel-v1 hyperparameters (also its PPO CartPole-v1 ones).
_ZOO_CARTPOLE_PPO = dict(n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8, ent_coef=0.0,
                         clip_range="lin_0.2", max_grad_norm=0.5)
# The BabyAI PPO settings (rl-starter-files' epochs, batch, gamma, GAE lambda, clip; a smaller entropy bonus).
_BABYAI_PPO = dict(n_steps=64, batch_size=256, n_epochs=4, gamma=0.99, gae_lambda=0.95, ent_coef=0.005, vf_coef=0.5,
                   clip_range=0.2, max_grad_norm=0.5)
_BABYAI_FAST_REFERENCE = (
    "benchmarks/babyai_throughput.py (BENCHMARKS.md, 'PPO on BabyAI vs torch-ac'): 1.07x / 1.01x torch-ac + "
    "rl-starter-files' ACModel's frames per CPU-second (seeds 1 / 2, 151,552 frames, interleaved in one process, "
    "2 shared cores); success on 2,000 fresh episodes at those frames 0.994 / 0.992 sampled, 0.939 / 0.941 greedy "
    "(torch-ac 0.979 / 0.975, 0.734 / 0.678; the 49-cell recipe babyai-gotoredballgrey-cells 0.983 / 0.985, "
    "0.777 / 0.933 at 2x the CPU per frame). Patch tokens without a shared cell table learned more slowly (0.75-0.96).")


_PRESETS = [  # each an AgentConfig: make_agent(preset) builds it, agents.train runs it
    AgentConfig(
        name="cartpole-novel",
        env_id="lab/CartPoleNoVelHistory-v1",
        description="PPO + transformer over the 8-step history, flatten readout, VecNormalize; no feature engineering",
        encoder="transformer", n_envs=8, lr="lin_1e-3", algo_kwargs=dict(_ZOO_CARTPOLE_PPO),
        encoder_kwargs=dict(_SMALL_TRANSFORMER, activation="gelu", pooling="flatten"),
        policy_kwargs=dict(net_arch=dict(pi=[64], vf=[64]), activation_fn="relu"),
        normalize_obs=True, ortho_init="heads", timesteps=100_000, eval_freq=2048, eval_episodes=20,
        reference="RL spike (2 CPU cores, seeds 0, 1): eval 500 first at 28.7k / 12.3k steps but unstable; final eval "
                  "500 / 330. Reading the newest token (or CLS) instead of flatten did not learn; without "
                  "VecNormalize the eval swung between 80 and 500.",
    ),
    AgentConfig(
        name="cartpole-novel-deltas",
        env_id="lab/CartPoleNoVelHistory-v1",
        description="cartpole-novel + frame differences as token features (deltas=True: FEATURE ENGINEERING)",
        encoder="transformer", n_envs=8, lr="lin_1e-3", algo_kwargs=dict(_ZOO_CARTPOLE_PPO),
        encoder_kwargs=dict(_SMALL_TRANSFORMER, activation="gelu", pooling="flatten", deltas=True, delta_scale=10.0),
        policy_kwargs=dict(net_arch=dict(pi=[64], vf=[64]), activation_fn="relu"),
        normalize_obs=True, ortho_init="heads", timesteps=100_000, eval_freq=2048, eval_episodes=20,
        reference="RL spike (seeds 0, 1, 2, 100k steps): eval (20 greedy episodes) 500 at every later eval from "
                  "49.2k / - / 41.0k steps (seed 1: 500 from 40k to 71k, then 424-499); final eval 500 / 498.5 / 500.",
    ),
    AgentConfig(
        name="babyai-gotoredballgrey",
        env_id="lab/BabyAI-GoToRedBallGrey-v0",
        description="PPO + fusion transformer over 17 tokens (the view as 9 patches of a conv stem, one token of "
                    "the 4 previous actions), CLS + patches flattened, 32 envs, lr 5e-4 -> 0",
        encoder="fusion", n_envs=32, lr="lin_5e-4",
        algo_kwargs=dict(_BABYAI_PPO),
        encoder_kwargs=dict(_SMALL_TRANSFORMER, num_heads=1, activation="relu", pooling="flat", view_stem=(3, 2),
                            history_as_one_token=True),
        policy_kwargs=dict(net_arch=dict(pi=[64], vf=[64]), activation_fn="tanh"),
        env_kwargs=dict(action_history=4),  # the memory behaviour cloning uses too (envs.babyai.BabyAIObservation)
        ortho_init="heads", timesteps=250_000, eval_freq=16_384, eval_episodes=500, eval_actions="both",
        reference=_BABYAI_FAST_REFERENCE,
    ),
    AgentConfig(
        name="babyai-gotoredballgrey-cells",
        env_id="lab/BabyAI-GoToRedBallGrey-v0",
        description="the BabyAI recipe before issue 19: fusion transformer over 60 tokens (one per view cell), "
                    "CLS + 49 cells flattened, 16 envs, lr 5e-4 -> 0",
        encoder="fusion", n_envs=16, lr="lin_5e-4",
        algo_kwargs=dict(_BABYAI_PPO),
        encoder_kwargs=dict(_SMALL_TRANSFORMER, activation="relu", pooling="flat"),
        policy_kwargs=dict(net_arch=dict(pi=[64], vf=[64]), activation_fn="tanh"),
        env_kwargs=dict(action_history=4),
        ortho_init="heads", timesteps=250_000, eval_freq=16_384, eval_episodes=500, eval_actions="both",
        reference="benchmarks/rl_targets.py --targets babyai (BENCHMARKS.md, measured with this recipe under the "
                  "name babyai-gotoredballgrey): sampled-action success >= 0.99 (500 episodes) within 16k training "
                  "episodes (BabyAI paper, RL: 15.9k-17.4k). Without the previous actions, 1 seed of 3 (6.4k "
                  "episodes); the others plateaued at 0.976-0.988. CLS-only readout plateaued at ~0.91 sampled (RL "
                  "spike). benchmarks/babyai_throughput.py: about half torch-ac's frames per CPU-second.",
    ),
    AgentConfig(
        name="cartpole-throughput",
        env_id="CartPole-v1",
        description="SB3's PPO defaults + the cheapest transformer: one token per scalar, d16, 1 head, flatten",
        encoder="transformer",
        encoder_kwargs=dict(d_model=16, num_heads=1, num_layers=1, dim_feedforward=32, activation="relu",
                            pooling="flatten"),
        timesteps=100_000,
        reference="RL spike: 0.66x MlpPolicy's PPO steps/s (n_envs 1, SB3 defaults, 2 CPU cores; with the final "
                  "LayerNorm removed, which this extractor keeps); d32 / 2 heads: ~0.54x. Learning not benchmarked.",
    ),
    AgentConfig(
        name="digits-bandit",
        env_id="lab/DigitsBandit-v0",
        description="PPO + separable conv on the digits bandit: one-step episodes, so gamma / GAE do not matter",
        encoder="conv", n_envs=8, lr=1e-3,
        algo_kwargs=dict(n_steps=16, batch_size=64, n_epochs=4, gamma=0.0, gae_lambda=1.0, ent_coef=0.01),
        timesteps=50_000, eval_freq=5_000,
        reference="measured for this preset (see its note in benchmarks/rl_targets.py)",
    ),
    AgentConfig(
        name="digits-bandit-a2c",
        env_id="lab/DigitsBandit-v0",
        description="A2C + separable conv on the digits bandit (RMSprop, SB3's A2C defaults otherwise)",
        algo="a2c", encoder="conv", n_envs=8, lr=7e-4,
        algo_kwargs=dict(n_steps=8, gamma=0.0, gae_lambda=1.0, ent_coef=0.01),
        timesteps=50_000, eval_freq=5_000,
        reference="measured for this preset (see its note in benchmarks/rl_targets.py)",
    ),
]
# Episodic memory (benchmarks/memory.py): MemoryPPO vs RecurrentPPO vs an 8-step window, same PPO settings per task.
_ZOO_CARTPOLE_LSTM = dict(_ZOO_CARTPOLE_PPO)  # RL Zoo's ppo_lstm CartPoleNoVel-v1 (normalize: true = obs + reward)
_REPEAT_FIRST_PPO = dict(n_steps=64, batch_size=256, n_epochs=4, gamma=0.9, gae_lambda=0.95, ent_coef=0.01,
                         clip_range=0.2, max_grad_norm=0.5)
_MEMORY_EVAL = dict(timesteps=100_000, eval_freq=8192, eval_actions="greedy")
_PRESETS += [
    AgentConfig(
        name="cartpole-novel-memory", env_id="lab/CartPoleNoVel-v1",
        description="MemoryPPO: a transformer over the episode (memory 32 steps, d64, relative positions), no window",
        algo="memory-ppo", n_envs=8, lr="lin_1e-3", normalize_obs=True, normalize_reward=True, ortho_init="none",
        algo_kwargs=dict(_ZOO_CARTPOLE_PPO, n_epochs=10, segment_len=32),  # the Zoo's 20 epochs oscillated
        policy_kwargs=dict(activation_fn="relu", net_arch=dict(pi=[64], vf=[64]),
                           # positional "none": the learned relative bias only; an absolute sinusoid swamped the
                           # 2-d observation's embedding (seeds 0, 1: final 326 / 320 with it, 500 / 500 without)
                           # memory 32: 5 of 6 seeds end at 500 (16: 1 of 3; benchmarks.memory, BENCHMARKS.md)
                           memory_kwargs=dict(memory_length=32, d_model=64, num_heads=4, num_layers=1,
                                              dim_feedforward=128, positional="none")),
        eval_episodes=20, **_MEMORY_EVAL, reference="benchmarks/memory.py --tasks cartpole (BENCHMARKS.md)"),
    AgentConfig(
        name="cartpole-novel-lstm", env_id="lab/CartPoleNoVel-v1",
        description="RecurrentPPO (sb3-contrib's LSTM) with RL Zoo's ppo_lstm CartPoleNoVel-v1 settings",
        algo="recurrent-ppo", n_envs=8, lr="lin_1e-3", normalize_obs=True, normalize_reward=True, ortho_init="none",
        algo_kwargs=_ZOO_CARTPOLE_LSTM,
        policy_kwargs=dict(activation_fn="relu", lstm_hidden_size=64, enable_critic_lstm=True,
                           net_arch=dict(pi=[64], vf=[64])),
        eval_episodes=20, **_MEMORY_EVAL, reference="RL Zoo ppo_lstm; benchmarks/memory.py --tasks cartpole"),
    AgentConfig(
        name="repeat-first-memory", env_id="lab/PopgymRepeatFirstEasy-v0",
        description="MemoryPPO on POPGym RepeatFirstEasy (name the first card's suit for 51 steps)",
        algo="memory-ppo", n_envs=8, lr=1e-3, algo_kwargs=dict(_REPEAT_FIRST_PPO, segment_len=32),
        policy_kwargs=dict(net_arch=[64], memory_kwargs=dict(memory_length=64, d_model=32, num_heads=2,
                                                             dim_feedforward=64, positional="sinusoidal")),
        eval_episodes=40, **_MEMORY_EVAL, reference="benchmarks/memory.py --tasks repeat_first (BENCHMARKS.md)"),
    AgentConfig(
        name="repeat-first-lstm", env_id="lab/PopgymRepeatFirstEasy-v0",
        description="RecurrentPPO on POPGym RepeatFirstEasy, the same PPO settings as repeat-first-memory",
        algo="recurrent-ppo", n_envs=8, lr=1e-3, algo_kwargs=_REPEAT_FIRST_PPO,
        policy_kwargs=dict(net_arch=[64], lstm_hidden_size=64, enable_critic_lstm=True),
        eval_episodes=40, **_MEMORY_EVAL, reference="benchmarks/memory.py --tasks repeat_first (BENCHMARKS.md)"),
    AgentConfig(
        name="repeat-first-window", env_id="lab/PopgymRepeatFirstEasyHistory-v0",
        description="PPO + TransformerExtractor over the last 8 steps only (the window the task's memory outlasts)",
        algo="ppo", encoder="transformer", n_envs=8, lr=1e-3, algo_kwargs=_REPEAT_FIRST_PPO,
        encoder_kwargs=dict(d_model=32, num_heads=2, num_layers=1, dim_feedforward=64, pooling="flatten"),
        policy_kwargs=dict(net_arch=[64]),
        eval_episodes=40, **_MEMORY_EVAL, reference="benchmarks/memory.py --tasks repeat_first (BENCHMARKS.md)"),
]
# MiniGrid's Memory levels as CleanRL's ppo_trxl sets them (a 3x3 view, 96 steps per episode: the object seen in
# the start room must be remembered down the hallway), through the fusion encoder on the symbolic view (an 84x84
# RGB CNN per step is beyond 2 CPU cores). The mission never changes: 12 token slots hold it. 96 steps is a time
# limit over the level's own max_steps (5 x size^2), as ppo_trxl's TimeLimit: the success reward
# 1 - 0.9 x steps / max_steps keeps the level's scale (max_steps=96 would make each step cost 4x more).
_MINIGRID_MEMORY_ENV = dict(agent_view_size=3, max_episode_steps=96, max_len=12)
# ppo_trxl's S9: 3 epochs over minibatches of 512 steps (its rollouts are 16 x 256 steps; ours 16 x 128)
_MINIGRID_MEMORY_PPO = dict(n_steps=128, batch_size=512, n_epochs=3, gamma=0.99, gae_lambda=0.95, ent_coef=0.001,
                            vf_coef=0.5, clip_range=0.2, max_grad_norm=0.5)
_MINIGRID_MEMORY_COMMON = dict(
    env_id="MiniGrid-MemoryS9-v0", encoder="fusion", n_envs=16, lr="lin_3e-4", env_kwargs=_MINIGRID_MEMORY_ENV,
    algo_kwargs=_MINIGRID_MEMORY_PPO, encoder_kwargs=dict(_SMALL_TRANSFORMER, activation="relu", pooling="flat"),
    ortho_init="heads", timesteps=2_048_000, eval_freq=128_000, eval_episodes=100, eval_actions="both",
    reference="benchmarks/memory.py --tasks minigrid_memory_s9 (BENCHMARKS.md); CleanRL ppo_trxl solves S9 in 2.05M")
_PRESETS += [
    AgentConfig(
        name="minigrid-memorys9-memory", algo="memory-ppo",
        description="MemoryPPO on MiniGrid-MemoryS9 (3x3 view, 96 steps): fusion encoder -> memory 64, d64",
        policy_kwargs=dict(net_arch=dict(pi=[64], vf=[64]), activation_fn="tanh",
                           memory_kwargs=dict(memory_length=64, d_model=64, num_heads=4, dim_feedforward=128,
                                              positional="sinusoidal")),
        **_MINIGRID_MEMORY_COMMON),
    AgentConfig(
        name="minigrid-memorys9-lstm", algo="recurrent-ppo",
        description="RecurrentPPO on MiniGrid-MemoryS9 (3x3 view, 96 steps): fusion encoder -> LSTM 64",
        policy_kwargs=dict(net_arch=dict(pi=[64], vf=[64]), activation_fn="tanh", lstm_hidden_size=64,
                           enable_critic_lstm=True),
        **_MINIGRID_MEMORY_COMMON),
]
PRESETS: dict[str, AgentConfig] = {preset.name: preset for preset in _PRESETS}


def get_preset(name: str) -> AgentConfig:
    """The preset called ``name``; an unknown name lists the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def presets_for(env_id: str) -> list[AgentConfig]:
    """Every preset tuned on ``env_id``."""
    return [preset for preset in PRESETS.values() if preset.env_id == env_id]


def describe_presets() -> str:
    """One line per preset (``--help`` shows this)."""
    return "\n".join(f"  {p.name}: {p.env_id}, {p.algo} + {p.encoder}; {p.description}" for p in PRESETS.values())


__all__ = ["PRESETS", "describe_presets", "get_preset", "presets_for"]
