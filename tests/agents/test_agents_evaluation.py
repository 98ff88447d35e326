"""agents.evaluation: one Evaluator per env kind (bandit accuracy, BabyAI success sampled + greedy, returns), SB3
agents acting as SB3's predict does, and evaluations that leave the global random state and the policy's mode alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import agents.evaluation
from agents.config import AgentConfig
from agents.evaluation import Evaluator, sb3_actor
from agents.factory import make_agent
from envs.evaluation import EVAL_SEED, evaluate
from envs.make import make_env

TINY_FUSION = {"d_model": 16, "num_heads": 2, "dim_feedforward": 32}


def _untouched_global_rng(fn):
    """``fn()``, asserting it neither reads nor advances torch's and numpy's global generators."""
    torch.manual_seed(42)
    np.random.seed(42)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    out = fn()
    assert torch.equal(torch.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    return out


def test_bandit_evaluation_is_the_exact_greedy_test_split_accuracy():
    config = AgentConfig("lab/DigitsBandit-v0", encoder="conv", eval_actions="sampled",
                         encoder_kwargs={"channels": (8, 16), "strides": (1, 2)})
    model = make_agent(config, seed=0, device="cpu")
    evaluator = Evaluator(config)
    assert (evaluator.kind, evaluator.metric, evaluator.actions) == ("bandit", "accuracy", "greedy")  # always greedy
    result = evaluator(model)
    split = make_env("lab/DigitsBandit-v0", split="test").unwrapped
    predicted, _ = model.predict(split.x, deterministic=True)
    assert result["eval_episodes"] == len(split.y)
    assert result["accuracy"] == pytest.approx(float(np.mean(predicted == split.y))) == result["mean_return"]
    evaluator.close()
    model.get_env().close()


def test_babyai_evaluation_scores_sampled_and_greedy_success_reproducibly():
    config = AgentConfig("lab/BabyAI-GoToRedBallGrey-v0", encoder="fusion", encoder_kwargs=TINY_FUSION,
                         eval_episodes=4, eval_envs=2)
    model = make_agent(config, seed=0, device="cpu")
    evaluator = Evaluator(config)
    assert (evaluator.kind, evaluator.metric, evaluator.actions) == ("babyai", "success_rate", "both")
    model.policy.set_training_mode(True)
    first = _untouched_global_rng(lambda: evaluator(model))
    assert model.policy.training  # evaluated in eval mode, handed back in training mode
    assert first == evaluator(model)  # the same episodes and draws every time
    assert first["eval_episodes"] == 4 and 0.0 <= first["success_rate"] <= 1.0
    assert {"success_rate_greedy", "mean_return_greedy", "success_rate_stderr", "mean_length"} <= set(first)
    assert "eval_wall_time_s" not in first  # the run's clock counts evaluation time itself
    greedy_only = Evaluator(config.merged(eval_actions="greedy"))(model)
    assert greedy_only["success_rate"] == first["success_rate_greedy"] and "success_rate_greedy" not in greedy_only
    model.get_env().close()


def test_greedy_sb3_actor_plays_the_episodes_sb3s_predict_would():
    config = AgentConfig("lab/BabyAI-GoToRedBallGrey-v0", encoder="fusion", encoder_kwargs=TINY_FUSION)
    model = make_agent(config, seed=1, device="cpu")

    def play(act):
        return evaluate(lambda: make_env(config.env_id), act, 3, num_envs=3).episodes

    assert play(sb3_actor(model, greedy=True, seed=EVAL_SEED)) == play(
        lambda obs: model.predict(obs, deterministic=True)[0])
    model.get_env().close()


def test_control_envs_score_the_mean_return_and_eval_actions_chooses_the_rule():
    config = AgentConfig("CartPole-v1", eval_episodes=3)
    model = make_agent(config, seed=0, device="cpu")
    greedy = Evaluator(config)
    assert (greedy.kind, greedy.metric, greedy.actions) == ("control", "mean_return", "greedy")
    result = greedy(model)
    assert "success_rate" not in result and result["eval_episodes"] == 3
    both = Evaluator(config.merged(eval_actions="both"))(model)
    assert both["mean_return_greedy"] == result["mean_return"] and "success_rate_greedy" not in both
    sampled = Evaluator(config.merged(eval_actions="sampled"))(model)
    assert sampled["mean_return"] == both["mean_return"] and "mean_return_greedy" not in sampled
    model.get_env().close()


def test_continuous_actions_sample_from_a_forked_generator_and_see_normalised_observations():
    config = AgentConfig("Pendulum-v1", normalize_obs=True, algo_kwargs={"n_steps": 64, "batch_size": 64})
    model = make_agent(config, seed=0, device="cpu")
    model.learn(128)  # statistics that are not the identity
    stats = model.get_vec_normalize_env()
    raw = np.stack([make_env("Pendulum-v1").reset(seed=s)[0] for s in range(5)])
    greedy = sb3_actor(model, greedy=True, seed=0)(raw)
    np.testing.assert_array_equal(greedy, model.predict(stats.normalize_obs(raw), deterministic=True)[0])
    assert not np.array_equal(greedy, model.predict(raw, deterministic=True)[0])  # the statistics matter

    def draws(seed):
        act = sb3_actor(model, greedy=False, seed=seed)
        return [act(raw) for _ in range(2)]

    first = _untouched_global_rng(lambda: draws(7))
    np.testing.assert_array_equal(np.stack(first), np.stack(draws(7)))  # reproducible per seed
    assert not np.array_equal(first[0], first[1])  # successive calls draw anew
    assert not np.array_equal(first[0], greedy) and not np.array_equal(first[0], draws(8)[0])
    model.get_env().close()


def test_each_evaluation_plays_fresh_episodes_and_the_final_one_more():
    """(Issue 19) A fixed sample re-read at every point rewards a lucky read: with eval_seeds="fresh" the evaluation
    at step s plays episodes reset with episode_seed(EVAL_SEED + s, i), other ones at every step; "fixed" keeps
    the earlier protocol. The final evaluation plays final_eval_episodes."""
    config = AgentConfig("lab/BabyAI-GoToRedBallGrey-v0", encoder="fusion", encoder_kwargs=TINY_FUSION,
                         eval_episodes=3, eval_envs=3, eval_actions="greedy", final_eval_episodes=5)
    model = make_agent(config, seed=0, device="cpu")
    played = []
    evaluator = Evaluator(config)
    real = agents.evaluation.evaluate

    def recording(make_env, act, episodes, *, seed, **kwargs):
        played.append((seed, episodes))
        return real(make_env, act, episodes, seed=seed, **kwargs)

    agents.evaluation.evaluate = recording
    try:
        evaluator(model, step=0), evaluator(model, step=2048), evaluator(model, step=4096, final=True)
        Evaluator(config.merged(eval_seeds="fixed"))(model, step=2048)
    finally:
        agents.evaluation.evaluate = real
    assert played == [(EVAL_SEED, 3), (EVAL_SEED + 2048, 3), (EVAL_SEED + 4096, 5), (EVAL_SEED, 3)]
    with pytest.raises(ValueError, match="eval_seeds"):
        config.merged(eval_seeds="sometimes")
    model.get_env().close()
