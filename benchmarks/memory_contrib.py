"""sb3-contrib's slow RecurrentPPO test (``tests/test_lstm.py::test_ppo_lstm_performance``) as a benchmark, for
MemoryPPO and RecurrentPPO with the peer's own settings (``benchmarks.memory --tasks contrib_performance``).

The peer: CartPole without velocities (500-step limit), 8 envs under VecNormalize, RecurrentPPO with n_steps 128,
lr 7e-4, batch 256, 10 epochs, max_grad_norm 1, gae_lambda 0.98, ``net_arch=dict(vf=[64], pi=[])``, LSTM 64,
no orthogonal init, a critic LSTM; an EvalCallback (20 episodes every 5,000 steps, VecNormalize statistics synced)
during 50k steps; then ``evaluate_policy(model, env, reward_threshold=450)`` on the training env (10 episodes):
it passes when that mean is >= 450. MemoryPPO runs the same with the LSTM options mapped
(``agents.memory.policy.LSTM_EQUIVALENTS``): ``memory_kwargs=dict(d_model=64)`` and ``share_features_extractor=False``
(the critic's own memory); everything else is PPO's default, ``segment_len`` included. The peer uses seed 1 and
unseeded evaluation envs; here every seed is a run and the evaluation envs are seeded from it (reproducible reads).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

import envs  # noqa: F401  (registers lab/*)
from agents.memory import MemoryPPO, RecurrentPPO
from lab.io import write_json

THRESHOLD = 450.0  # the peer's reward_threshold
TIMESTEPS = 50_000
PEER_ARGS = dict(n_steps=128, learning_rate=0.0007, batch_size=256, n_epochs=10, max_grad_norm=1, gae_lambda=0.98)
POLICY = {
    "lstm": (RecurrentPPO, "MlpLstmPolicy", dict(net_arch=dict(vf=[64], pi=[]), lstm_hidden_size=64,
                                                 ortho_init=False, enable_critic_lstm=True)),
    "memory": (MemoryPPO, "MlpPolicy", dict(net_arch=dict(vf=[64], pi=[]), memory_kwargs=dict(d_model=64),
                                            ortho_init=False, share_features_extractor=False)),
}
RESULT_FILE = "result.json"


def run_contrib(method: str, seed: int, run_dir: Path, device: str = "cpu") -> dict[str, Any]:
    """One run of the peer's test; its record is kept in ``run_dir`` and read back instead of running again."""
    path = run_dir / RESULT_FILE
    if path.exists():
        return json.loads(path.read_text())
    algo, policy, policy_kwargs = POLICY[method]
    env = VecNormalize(make_vec_env("lab/CartPoleNoVel-v1", n_envs=8, seed=seed))
    eval_env = VecNormalize(make_vec_env("lab/CartPoleNoVel-v1", n_envs=4, seed=seed + 10_000), training=False,
                            norm_reward=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    callback = EvalCallback(eval_env, n_eval_episodes=20, eval_freq=5000 // env.num_envs, verbose=0,
                            log_path=str(run_dir))  # SB3 keeps the curve only when it writes it
    model = algo(policy, env, seed=seed, device=device, policy_kwargs=policy_kwargs, **PEER_ARGS)
    started = time.perf_counter()
    model.learn(total_timesteps=TIMESTEPS, callback=callback)
    train_time = time.perf_counter() - started  # the callback's evaluations included (the peer's whole test)
    rewards, lengths = evaluate_policy(model, env, return_episode_rewards=True)  # the peer's final check
    final = float(np.mean(rewards))
    curve = [{"step": int(step), "mean_return": float(np.mean(r))}
             for step, r in zip(callback.evaluations_timesteps, callback.evaluations_results)]
    row = {"task": "contrib_performance", "method": method, "seed": seed, "steps": model.num_timesteps,
           "train_time_s": train_time, "steps_per_s": model.num_timesteps / train_time,
           "params": sum(p.numel() for p in model.policy.parameters()), "metric": "mean_return",
           "final_metric": final, "final_return": final, "final_std": float(np.std(rewards)),
           "passed": final >= THRESHOLD, "last_eval_callback": curve[-1]["mean_return"] if curve else None,
           "best_return": max((p["mean_return"] for p in curve), default=final), "curve": curve,
           "segment_len": getattr(model, "segment_len", None), "torch_threads": torch.get_num_threads(),
           "run_dir": str(run_dir)}
    env.close()
    eval_env.close()
    write_json(path, row)
    return row
