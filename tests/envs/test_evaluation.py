"""envs.evaluation: seeded fresh episodes in lockstep, reproducible, blind to the global random state; exact bandit
accuracy."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.demos import episode_seed
from envs.evaluation import EVAL_SEED, StatefulAct, bandit_accuracy, evaluate, evaluation_seeds, logits_actor
from envs.make import make_env


def _cartpole_logits(seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Linear(4, 2)
    return lambda obs: net(obs.float())


def _cartpole() -> gym.Env:
    return gym.make("CartPole-v1")


def test_seeds_follow_the_demo_rule_and_skip_the_excluded_ones():
    seeds, skipped = evaluation_seeds(4, base_seed=5)
    assert seeds == [episode_seed(5, i) for i in range(4)] and skipped == 0
    excluded = {seeds[1], seeds[3]}
    kept, skipped = evaluation_seeds(4, base_seed=5, exclude=excluded)
    assert kept == [seeds[0], seeds[2], episode_seed(5, 4), episode_seed(5, 5)] and skipped == 2
    result = evaluate(_cartpole, logits_actor(_cartpole_logits(), greedy=True, seed=0), 4, seed=5,
                      exclude_seeds=excluded, num_envs=3)
    assert [e.seed for e in result.episodes] == kept and result.skipped_seeds == 2


def test_sampled_evaluation_is_reproducible_and_never_touches_the_global_random_state():
    def run(seed: int):
        act = logits_actor(_cartpole_logits(), greedy=False, seed=seed)
        torch.manual_seed(123)
        np.random.seed(7)
        torch_before, numpy_before = torch.get_rng_state(), np.random.get_state()[1].copy()
        result = evaluate(_cartpole, act, 6, seed=EVAL_SEED, num_envs=4, greedy=False)
        assert torch.equal(torch.get_rng_state(), torch_before)
        np.testing.assert_array_equal(np.random.get_state()[1], numpy_before)
        return result

    first, again, other = run(seed=11), run(seed=11), run(seed=12)
    assert [e.actions for e in first.episodes] == [e.actions for e in again.episodes]
    assert first.metrics()["mean_return"] == again.metrics()["mean_return"]
    assert [e.actions for e in first.episodes] != [e.actions for e in other.episodes]  # the draws are sampled
    assert not first.greedy and len(first.episodes) == 6 and first.success_rate is None  # CartPole says no success


def test_lockstep_batches_give_each_episode_its_own_observations():
    """Greedy actions depend on the observation only, so the batch layout (envs in lockstep) changes nothing."""
    results = [evaluate(_cartpole, logits_actor(_cartpole_logits(), greedy=True, seed=0), 5, num_envs=n)
               for n in (1, 2, 5)]
    for result in results[1:]:
        assert result.episodes == results[0].episodes
    lengths = [e.length for e in results[0].episodes]
    assert len(set(lengths)) > 1  # the episodes do differ (so a mix-up between envs would show)
    assert results[0].mean_length == pytest.approx(np.mean(lengths))


def test_success_is_read_at_episode_ends_and_act_must_answer_every_observation():
    result = evaluate(lambda: make_env("MiniGrid-Empty-5x5-v0", max_steps=20),
                      lambda obs: [2] * len(obs["image"]), 3, num_envs=3)  # always forward: into a wall
    assert [e.success for e in result.episodes] == [False] * 3 and result.success_rate == 0.0
    assert result.metrics()["success_rate_stderr"] == 0.0 and all(e.length == 20 for e in result.episodes)
    with pytest.raises(ValueError, match="returned 1 actions for 2 observations"):
        evaluate(_cartpole, lambda obs: [0], 2, num_envs=2)
    with pytest.raises(ValueError, match="must be >= 1"):
        evaluate(_cartpole, lambda obs: [0] * len(obs), 0)


def test_bandit_accuracy_equals_a_sequential_sweep_of_one_episode_per_image():
    train = make_env("lab/DigitsBandit-v0").unwrapped
    centroids = np.stack([train.x[train.y == c].reshape((train.y == c).sum(), -1).mean(0)
                          for c in range(train.action_space.n)])

    def nearest_centroid(images):
        flat = np.asarray(images, np.float64).reshape(len(images), -1)
        return ((flat[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)

    test = make_env("lab/DigitsBandit-v0", split="test", sequential=True)
    returns = []
    for _ in range(len(test.unwrapped.y)):
        obs, _ = test.reset()
        returns.append(test.step(int(nearest_centroid(obs[None])[0]))[1])
    result = bandit_accuracy(nearest_centroid, test)
    assert result["eval_episodes"] == len(returns) == len(test.unwrapped.y)
    assert result["accuracy"] == pytest.approx(np.mean(returns)) == pytest.approx(result["mean_return"])
    assert 0.5 < result["accuracy"] < 1.0  # a real classifier, not a degenerate one


def test_a_stateful_actor_observes_every_envs_reward_after_each_step():
    """What a return-conditioned actor needs: the rewards it observes add up to each episode's return, and a finished
    env's reward is 0 from its end on."""

    class Recorder(StatefulAct):
        def reset(self, n):
            self.rewards, self.steps = [], 0

        def __call__(self, observations, episode_start):
            self.steps += 1
            return [int(self.steps % 2) for _ in episode_start]  # alternate: CartPole episodes of different lengths

        def observe(self, rewards):
            self.rewards.append(rewards.copy())

    actor = Recorder()
    result = evaluate(_cartpole, actor, 3, num_envs=3)
    observed = np.stack(actor.rewards)  # (steps, envs)
    np.testing.assert_array_equal(observed.sum(axis=0), [e.reward for e in result.episodes])
    for env, episode in enumerate(result.episodes):
        assert (observed[episode.length:, env] == 0).all()
