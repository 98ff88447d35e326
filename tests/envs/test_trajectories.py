"""Trajectories of behaviour policies of known quality (envs.behaviour, envs.demos.collect_trajectories) and the
loaded set's operations (envs.trajectories)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from envs.babyai import NO_ACTION, make_babyai_env
from envs.behaviour import BotPolicy, CallablePolicy, RandomPolicy, policy_from_name
from envs.demos import collect_demos, collect_trajectories, episode_seed
from envs.trajectories import concat_demos, load_demos, read_manifest, read_shard, top_episodes

LEVEL = "BabyAI-GoToRedBallGrey-v0"
FORWARD = 2


def collect(out, episodes, policy, **kwargs):
    return collect_trajectories(LEVEL, episodes, out, policy, **{"shard_size": 8, "progress": False, **kwargs})


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    out = tmp_path_factory.mktemp("noisy")
    collect(out, 20, "bot-noise0.5", seed=3)
    return out


def replay(demos, i):
    """Re-play episode i's actions from its seed: (observations before each action, final observation, rewards,
    terminated, truncated)."""
    env = make_babyai_env(LEVEL)
    obs, _ = env.reset(seed=int(demos.seed[i]))
    seen, rewards = [], []
    for action in demos.action[demos.episode_slice(i)]:
        seen.append(obs)
        obs, reward, terminated, truncated, _ = env.step(int(action))
        rewards.append(reward)
    return seen, obs, rewards, terminated, truncated, env.unwrapped.max_steps


def test_stored_episodes_replay_exactly_with_babyai_returns(noisy):
    d = load_demos(noisy)
    assert d.num_episodes == 20 and set(d.source) == {"bot-noise0.5"}
    for i in range(d.num_episodes):
        seen, last, rewards, terminated, truncated, max_steps = replay(d, i)
        steps = d.episode_slice(i)
        np.testing.assert_array_equal(np.stack([o["image"] for o in seen]), d.image[steps])
        np.testing.assert_array_equal([o["direction"] for o in seen], d.direction[steps])
        np.testing.assert_array_equal(last["image"], d.last_image[i])
        assert last["direction"] == d.last_direction[i]
        np.testing.assert_array_equal(rewards, d.step_reward[steps])
        assert (terminated, truncated) == (d.terminated[i], d.truncated[i])
        expected = 1 - 0.9 * d.length[i] / max_steps if d.success[i] else 0.0
        assert d.reward[i] == pytest.approx(expected)
    manifest = read_manifest(noisy)
    assert manifest["policy"] == "bot-noise0.5" and manifest["successes_only"] is False
    assert manifest["mean_return"] == pytest.approx(d.reward.mean())
    assert manifest["stored_success_rate"] == pytest.approx(d.success.mean())


def test_random_policy_keeps_failures_and_resumes_identically(tmp_path):
    collect(tmp_path / "resumed", 6, "random")
    collect(tmp_path / "resumed", 12, "random")
    collect(tmp_path / "direct", 12, RandomPolicy())
    a, b = load_demos(tmp_path / "resumed"), load_demos(tmp_path / "direct")
    for key in ("image", "action", "step_reward", "seed", "terminated", "truncated", "last_image"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert not a.success.all() and (a.reward[~a.success] == 0).all()  # failures stored, with return 0
    assert a.truncated[~a.success].all()
    with pytest.raises(ValueError, match="policy: stored 'random', requested 'bot'"):
        collect(tmp_path / "direct", 20, "bot")


def test_noise_replaces_a_fraction_of_the_bots_actions_and_zero_noise_is_the_bot(tmp_path):
    collect_demos(LEVEL, 10, tmp_path / "demos", shard_size=8, progress=False)
    collect(tmp_path / "bot", 10, BotPolicy(noise=0.0), successes_only=True)
    demos, bot = load_demos(tmp_path / "demos"), load_demos(tmp_path / "bot")
    np.testing.assert_array_equal(demos.action, bot.action)
    collect(tmp_path / "all-noise", 10, "bot-noise1")
    assert load_demos(tmp_path / "all-noise").length.mean() > 2 * bot.length.mean()  # random actions wander


def test_callable_policy_sees_the_lab_observations_and_is_reseeded_per_episode(tmp_path):
    batches, seeds = [], []

    def act(batch):
        batches.append(batch)
        return [FORWARD]

    policy = CallablePolicy(act, "forward", action_history=2, reseed=seeds.append)
    collect(tmp_path, 2, policy)
    d = load_demos(tmp_path)
    assert (d.action == FORWARD).all() and list(d.source) == ["forward", "forward"]
    first = batches[0]
    assert first["image"].shape == (1, 7, 7, 3) and first["mission"].shape == (1, 72)
    np.testing.assert_array_equal(first["prev_actions"], [[NO_ACTION, NO_ACTION]])
    np.testing.assert_array_equal(batches[2]["prev_actions"], [[FORWARD, FORWARD]])
    assert len(seeds) == 2 and seeds[0] != seeds[1]
    again = []
    collect(tmp_path / "again", 2, CallablePolicy(act, "forward", action_history=2, reseed=again.append))
    assert again == seeds  # drawn from the episode's seed: a collection reproduces
    with pytest.raises(ValueError, match="2 actions for a batch of one"):
        collect(tmp_path / "bad", 1, CallablePolicy(lambda batch: [0, 1], "bad"))


def test_policy_names(tmp_path):
    assert policy_from_name("bot-noise0.25").name == "bot-noise0.25" and policy_from_name("random").name == "random"
    for bad in ("bot-noise2", "expert", "bot-noise"):
        with pytest.raises(ValueError, match="unknown behaviour policy"):
            policy_from_name(bad)


def test_select_concat_top_episodes_and_returns_to_go(noisy, tmp_path):
    d = load_demos(noisy)
    picked = d.select([5, 2])
    for new, old in enumerate((5, 2)):
        np.testing.assert_array_equal(picked.action[picked.episode_slice(new)], d.action[d.episode_slice(old)])
        np.testing.assert_array_equal(picked.last_image[new], d.last_image[old])
    assert picked.mission_text.tolist() == [d.mission_text[5], d.mission_text[2]]

    collect(tmp_path, 5, "random", seed=9)
    other = load_demos(tmp_path)
    both = concat_demos([d, other])
    assert both.num_episodes == 25 and both.num_steps == d.num_steps + other.num_steps
    np.testing.assert_array_equal(both.action[both.episode_slice(21)], other.action[other.episode_slice(1)])
    assert both.source.tolist() == ["bot-noise0.5"] * 20 + ["random"] * 5

    top = top_episodes(both, 0.2)
    assert top.num_episodes == 5 and top.reward.min() >= np.sort(both.reward)[-5]
    assert top_episodes(both, 1.0).num_episodes == 25

    rtg = both.returns_to_go()
    for i in range(both.num_episodes):
        steps = both.episode_slice(i)
        assert (rtg[steps] == both.reward[i]).all()  # BabyAI pays at the end: every step's return-to-go
    np.testing.assert_array_equal(both.step_index()[both.episode_slice(3)], np.arange(both.length[3]))


def test_format_1_directories_still_load(tmp_path):
    """A bot-demo directory of format 1 (no step rewards, sources or final observations) loads as bot successes."""
    collect_demos(LEVEL, 4, tmp_path, shard_size=8, progress=False)
    new = load_demos(tmp_path)
    shard = read_shard(tmp_path / "shard_00000.npz")
    old_fields = ("image", "direction", "action", "length", "seed", "attempt", "mission", "mission_text")
    np.savez_compressed(tmp_path / "shard_00000.npz", reward=shard["reward"].astype(np.float32),
                        **{key: shard[key] for key in old_fields})
    manifest = read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    old = load_demos(tmp_path)
    assert old.last_image is None and set(old.source) == {"bot"} and old.success.all()
    np.testing.assert_array_equal(old.action, new.action)
    np.testing.assert_allclose(old.returns_to_go(), new.returns_to_go(), rtol=1e-6)
    with pytest.raises(ValueError, match="format 1, which this code loads but cannot extend"):
        collect_demos(LEVEL, 8, tmp_path, shard_size=8, progress=False)
    assert episode_seed(0, 0) == int(old.seed[0])


def test_cli_collects_any_policy_and_keeps_the_bots_failures_only_when_asked(tmp_path, capsys):
    from envs.demos import main

    main([LEVEL, "--episodes", "3", "--policy", "random", "--out", str(tmp_path / "random"), "--no-progress"])
    assert "3 random episodes" in capsys.readouterr().out
    assert read_manifest(tmp_path / "random")["successes_only"] is False
    main([LEVEL, "--episodes", "2", "--all-episodes", "--out", str(tmp_path / "bot"), "--no-progress"])
    assert read_manifest(tmp_path / "bot")["successes_only"] is False
    with pytest.raises(SystemExit):
        main([LEVEL, "--episodes", "2", "--policy", "expert", "--out", str(tmp_path / "x")])
    assert "unknown behaviour policy 'expert'" in capsys.readouterr().err
