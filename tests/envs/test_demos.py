import json

import gymnasium as gym
import numpy as np
import pytest

import envs.demos as demos
from envs.babyai import is_success
from envs.demos import collect_demos, episode_seed, load_demos, read_manifest
from envs.tokenizer import MissionTokenizer
from lab.io import atomic_write

LEVEL = "BabyAI-GoToRedBallGrey-v0"
ARRAYS = ("image", "direction", "action", "episode", "episode_start", "length", "seed", "mission", "mission_text",
          "reward")


def collect(out, episodes, **kwargs):
    kwargs = {"shard_size": 8, "progress": False, **kwargs}
    return collect_demos(kwargs.pop("level", LEVEL), episodes, out, **kwargs)


def assert_same_demos(a, b):
    for key in ARRAYS:
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


@pytest.fixture(scope="module")
def demos_30(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos30")
    collect(out, 30)
    return out


def test_layout_manifest_and_loaded_arrays(demos_30):
    manifest = read_manifest(demos_30)
    assert manifest["level"] == LEVEL and manifest["episodes"] == 30
    assert [s["episodes"] for s in manifest["shards"]] == [8, 8, 8, 6]
    assert manifest["attempts"] == manifest["episodes"] + manifest["failures"]
    assert manifest["vocab_hash"] == MissionTokenizer.vocab_hash
    assert sorted(p.name for p in demos_30.iterdir()) == ["manifest.json"] + [f"shard_0000{i}.npz" for i in range(4)]
    d = load_demos(demos_30)
    n = d.num_steps
    assert d.num_episodes == 30 and n == manifest["steps"] == d.length.sum()
    assert d.image.shape == (n, 7, 7, 3) and d.image.dtype == np.uint8
    assert d.direction.shape == d.action.shape == (n,) and d.action.dtype == np.uint8
    assert d.mission.shape == (30, 72) and d.mission.dtype == np.int64
    assert d.step_mission().shape == (n, 72)
    np.testing.assert_array_equal(np.bincount(d.episode), d.length)
    assert (d.reward > 0).all()
    tok = MissionTokenizer()
    assert [tok.decode(m) for m in d.mission] == d.mission_text.tolist()
    assert load_demos(demos_30, max_episodes=10).num_episodes == 10


def test_replaying_recorded_actions_from_recorded_seeds_solves_every_episode(demos_30):
    d = load_demos(demos_30)
    env = gym.make(LEVEL)
    for i in range(d.num_episodes):
        steps = d.episode_slice(i)
        obs, _ = env.reset(seed=int(d.seed[i]))
        assert obs["mission"] == d.mission_text[i]
        for t, action in enumerate(d.action[steps]):
            np.testing.assert_array_equal(obs["image"], d.image[steps][t])  # the stored observations are real
            assert obs["direction"] == d.direction[steps][t]
            obs, reward, terminated, truncated, _ = env.step(int(action))
            last = t == d.length[i] - 1
            assert (terminated or truncated) == last
        assert is_success(reward, terminated) and reward == pytest.approx(d.reward[i])


def test_same_seed_reproduces_and_other_seed_differs(tmp_path, demos_30):
    collect(tmp_path / "again", 30)
    assert_same_demos(load_demos(tmp_path / "again"), load_demos(demos_30))
    assert read_manifest(tmp_path / "again") == read_manifest(demos_30)
    collect(tmp_path / "other", 5, seed=1)
    other = load_demos(tmp_path / "other")
    assert not set(other.seed.tolist()) & set(load_demos(demos_30).seed.tolist())
    assert other.seed[0] == episode_seed(1, 0)


def test_resume_equals_direct_collection_and_same_count_is_a_no_op(tmp_path):
    collect(tmp_path / "resumed", 20)  # 8 + 8 + a partial shard of 4
    collect(tmp_path / "resumed", 40)
    collect(tmp_path / "direct", 40)
    assert_same_demos(load_demos(tmp_path / "resumed"), load_demos(tmp_path / "direct"))
    assert read_manifest(tmp_path / "resumed") == read_manifest(tmp_path / "direct")

    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "direct").iterdir()}
    for episodes in (40, 25):
        assert collect(tmp_path / "direct", episodes)["episodes"] == 40
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "direct").iterdir()} == before


@pytest.mark.parametrize(
    ("change", "field"),
    [({"level": "BabyAI-GoToRedBall-v0"}, "level"), ({"seed": 7}, "base_seed"), ({"shard_size": 4}, "shard_size"),
     ({"max_len": 16}, "max_len")],
)
def test_mismatched_directory_is_refused(demos_30, change, field):
    with pytest.raises(ValueError, match=f"differ \\({field}: stored .*use another --out"):
        collect(demos_30, 40, **change)


def test_mismatched_vocabulary_is_refused_by_collector_and_loader(tmp_path):
    collect(tmp_path, 3)
    manifest = read_manifest(tmp_path)
    manifest["vocab_hash"] = "0" * 16
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="vocab_hash"):
        collect(tmp_path, 6)
    with pytest.raises(ValueError, match="re-collect the demos"):
        load_demos(tmp_path)


def _crashing_writer(real_write, crash_at):
    """A shard writer that dies half-way through its ``crash_at``-th shard (after creating the temp file)."""
    calls = []

    def write(path, episodes, tokenizer):
        calls.append(path)
        if len(calls) < crash_at:
            return real_write(path, episodes, tokenizer)

        def half_written(f):
            f.write(b"PK\x03\x04 truncated")
            raise KeyboardInterrupt

        atomic_write(path, half_written)

    return write


def test_crash_while_writing_leaves_complete_shards_only_and_resume_recovers(tmp_path, monkeypatch):
    real_write = demos.write_shard
    monkeypatch.setattr(demos, "write_shard", _crashing_writer(real_write, crash_at=3))
    with pytest.raises(KeyboardInterrupt):
        collect(tmp_path / "crashed", 30)
    names = sorted(p.name for p in (tmp_path / "crashed").iterdir())
    assert names == ["manifest.json", "shard_00000.npz", "shard_00001.npz"]  # no temp file, no torn shard
    assert read_manifest(tmp_path / "crashed")["episodes"] == 16
    assert load_demos(tmp_path / "crashed").num_episodes == 16

    monkeypatch.setattr(demos, "write_shard", real_write)
    (tmp_path / "crashed" / ".shard_00002.npz.x1y2z3.tmp").write_bytes(b"left by a killed process")
    collect(tmp_path / "crashed", 30)
    collect(tmp_path / "direct", 30)
    assert_same_demos(load_demos(tmp_path / "crashed"), load_demos(tmp_path / "direct"))
    assert not list((tmp_path / "crashed").glob("*.tmp"))


def test_failed_episodes_are_skipped_and_counted(tmp_path, monkeypatch):
    real_run = demos.run_episode

    def fail_every_third(env, policy, seed, attempt=0):
        if attempt % 3 == 1:
            return None, "timeout"
        return real_run(env, policy, seed, attempt)

    monkeypatch.setattr(demos, "run_episode", fail_every_third)
    manifest = collect(tmp_path, 10)
    d = load_demos(tmp_path)
    assert d.num_episodes == 10
    assert manifest["attempts"] == 15 and manifest["failures"] == 5
    assert manifest["failure_reasons"] == {"timeout": 5}
    assert manifest["failed_seeds"] == [episode_seed(0, a) for a in (1, 4, 7, 10, 13)]
    assert not set(manifest["failed_seeds"]) & set(d.seed.tolist())


def test_level_the_bot_cannot_solve_stops_with_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="bot failed 6 attempts on BabyAI-KeyInBox-v0"):
        collect(tmp_path, 5, level="BabyAI-KeyInBox-v0", max_failures=5)
    assert read_manifest(tmp_path) is None  # nothing succeeded, nothing written


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demos.main(["--help"])
    assert exit_info.value.code == 0
    assert "--episodes" in capsys.readouterr().out
    demos.main([LEVEL, "--episodes", "12", "--out", str(tmp_path), "--shard-size", "5", "--no-progress"])
    out = capsys.readouterr().out
    assert "12 demos" in out and "3 shards" in out and "episodes/s" in out
    assert load_demos(tmp_path).num_episodes == 12
