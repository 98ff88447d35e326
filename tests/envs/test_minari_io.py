"""Minari datasets: the lab's pass Minari's own reading API and round-trip exactly; one made with Minari's own tools
reads; spaces that do not fit are refused by name; the shard cache follows the dataset."""
from __future__ import annotations

import re

import gymnasium as gym
import minari
import numpy as np
import pytest
from gymnasium import spaces
from minari.data_collector import EpisodeBuffer

from envs.demos import collect_demos, collect_trajectories
from envs.minari_io import SpaceMismatchError, load_minari, observation_space, read_minari, write_minari
from envs.trajectories import concat_demos, load_demos

# Minari's advice to name an algorithm, an evaluation env and a spec for the hand-made datasets below
pytestmark = pytest.mark.filterwarnings("ignore:.*(is set to None|env_spec is None).*:UserWarning")
LEVEL = "BabyAI-GoToRedBallGrey-v0"
FIELDS = ("image", "direction", "action", "step_reward", "episode", "episode_start", "length", "seed", "mission",
          "mission_text", "reward", "terminated", "truncated", "source", "last_image", "last_direction")


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    """Every dataset of these tests under tmp_path, never ~/.minari."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixture")
    collect_trajectories(LEVEL, 4, root / "bot", "bot", progress=False)
    collect_trajectories(LEVEL, 3, root / "random", "random", seed=1, progress=False)
    return [root / "bot", root / "random"]


def assert_same(a, b):
    for key in FIELDS:
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == y.dtype, key
        np.testing.assert_array_equal(x, y, err_msg=key)


def test_a_lab_dataset_passes_minaris_own_reading_api_and_round_trips_exactly(mixture, tmp_path, minari_root):
    demos = concat_demos([load_demos(d) for d in mixture])
    write_minari("lab/grey/mixed-v0", mixture)
    assert "lab/grey/mixed-v0" in minari.list_local_datasets()
    dataset = minari.load_dataset("lab/grey/mixed-v0")  # Minari's API from here on
    assert dataset.total_episodes == 7 and dataset.total_steps == demos.num_steps
    assert dataset.env_spec.id == LEVEL and dataset.recover_environment().spec.id == LEVEL
    space = dataset.observation_space
    for i, episode in enumerate(dataset.iterate_episodes()):
        t = len(episode.actions)
        assert t == demos.length[i] and len(episode.observations["image"]) == t + 1
        for step in range(t + 1):
            assert space.contains({key: episode.observations[key][step] for key in space.spaces}), (i, step)
        assert episode.rewards.sum() == pytest.approx(demos.reward[i])
        assert episode.terminations[-1] == demos.terminated[i] and episode.truncations[-1] == demos.truncated[i]
    metadata = list(dataset.storage.get_episode_metadata(range(7)))
    assert [m["source"] for m in metadata] == ["bot"] * 4 + ["random"] * 3
    assert [m["seed"] for m in metadata] == demos.seed.tolist()

    assert_same(read_minari("lab/grey/mixed-v0"), demos)
    assert_same(load_minari("lab/grey/mixed-v0", cache_root=tmp_path / "cache"), demos)
    assert_same(load_minari(minari_root / "lab/grey/mixed-v0", cache_root=tmp_path / "by-path"), demos)  # shipped
    assert read_minari(dataset, max_episodes=2).num_episodes == 2


def test_the_shard_cache_is_built_once_and_rebuilt_when_the_dataset_changes(mixture, tmp_path):
    write_minari("lab/grey/cached-v0", mixture)
    cache = tmp_path / "cache"
    first = load_minari("lab/grey/cached-v0", cache_root=cache)
    shard = cache / "lab__grey__cached-v0" / "shard_00000.npz"
    built = shard.stat().st_mtime_ns
    assert load_minari("lab/grey/cached-v0", cache_root=cache, max_episodes=3).num_episodes == 3
    assert shard.stat().st_mtime_ns == built  # read from the cache
    dataset = minari.load_dataset("lab/grey/cached-v0")
    extra = read_minari(dataset, max_episodes=1)
    dataset.update_dataset_from_buffer([_buffer_of(extra)])  # Minari's own way to add episodes
    again = load_minari("lab/grey/cached-v0", cache_root=cache)
    assert again.num_episodes == first.num_episodes + 1


def _buffer_of(demos) -> EpisodeBuffer:
    """Episode 0 of a DemoSet as a plain Minari buffer (Minari's own format, no lab writer)."""
    steps = demos.episode_slice(0)
    end = np.zeros(int(demos.length[0]), dtype=bool)
    end[-1] = True
    return EpisodeBuffer(
        observations={"image": np.concatenate([demos.image[steps], demos.last_image[:1]]),
                      "direction": np.append(demos.direction[steps], demos.last_direction[0]).astype(np.int64),
                      "mission": [str(demos.mission_text[0])] * (int(demos.length[0]) + 1)},
        actions=demos.action[steps].astype(np.int64), rewards=demos.step_reward[steps],
        terminations=end & demos.terminated[0], truncations=end & demos.truncated[0], infos={})


def test_a_dataset_made_with_minaris_own_tools_reads(tmp_path, minari_made_dataset):
    dataset = minari_made_dataset("other/grey/random-v0")
    demos = load_minari("other/grey/random-v0", cache_root=tmp_path / "cache")
    assert demos.num_episodes == 3 and demos.num_steps == dataset.total_steps
    assert demos.seed.tolist() == [0, 1, 2] and set(demos.source) == {"random turns"}
    assert demos.manifest["level"] == LEVEL
    for i, episode in enumerate(dataset.iterate_episodes()):
        np.testing.assert_array_equal(demos.image[demos.episode_slice(i)], episode.observations["image"][:-1])
        np.testing.assert_array_equal(demos.action[demos.episode_slice(i)], episode.actions)
        assert demos.mission_text[i] == episode.observations["mission"][0]


def _dataset_with(dataset_id: str, observation: gym.Space, action: gym.Space = spaces.Discrete(7)):
    """A one-episode dataset with the given spaces (the values only need the right shapes)."""
    samples = [observation.sample() for _ in range(2)]
    if isinstance(observation, spaces.Dict):
        values = {key: [s[key] for s in samples] for key in observation.spaces}
        values = {key: v if isinstance(v[0], str) else np.stack(v) for key, v in values.items()}
    else:
        values = np.stack(samples)
    buffer = EpisodeBuffer(observations=values, actions=[action.sample()], rewards=[0.0], terminations=[True],
                           truncations=[False])
    return minari.create_dataset_from_buffers(dataset_id, [buffer], observation_space=observation, action_space=action,
                                              author="test", author_email="t@t", code_permalink="https://example.org")


FITTING = observation_space()
MISFITS = {
    "observation space['image']": spaces.Dict({**FITTING.spaces, "image": spaces.Box(0, 255, (19, 19, 3), np.uint8)}),
    "observation space['mission']": spaces.Dict({**FITTING.spaces, "mission": spaces.Box(0, 34, (72,), np.int64)}),
    "observation space['direction']": spaces.Dict({**FITTING.spaces, "direction": spaces.Discrete(3)}),
    "observation space ": spaces.Box(0, 255, (7, 7, 3), np.uint8),
}


@pytest.mark.parametrize("space_name", list(MISFITS))
def test_a_dataset_whose_spaces_do_not_fit_is_refused_naming_the_space(space_name):
    _dataset_with("bad/obs-v0", MISFITS[space_name])
    with pytest.raises(SpaceMismatchError, match=f"'bad/obs-v0' does not fit .*its {re.escape(space_name)}"):
        read_minari("bad/obs-v0")


def test_an_action_space_that_does_not_fit_and_non_symbolic_images_are_refused():
    _dataset_with("bad/actions-v0", FITTING, spaces.Box(-1, 1, (2,)))
    with pytest.raises(SpaceMismatchError, match=r"its action space is Box\(-1.0, 1.0, \(2,\), float32\)"):
        read_minari("bad/actions-v0")
    _dataset_with("bad/pixels-v0", FITTING)  # random 0..255 values in a fitting Box: not minigrid's encoding
    with pytest.raises(SpaceMismatchError, match=r"observation space\['image'\] holds values outside"):
        read_minari("bad/pixels-v0")


def test_format_1_demos_cannot_be_written(tmp_path):
    collect_demos(LEVEL, 2, tmp_path / "demos", progress=False)
    demos = load_demos(tmp_path / "demos")
    old = demos.select([0, 1])
    object.__setattr__(old, "last_image", None)
    with pytest.raises(ValueError, match="no final observations"):
        write_minari("lab/old-v0", old)


def test_cli_writes_directories_as_one_dataset(mixture, capsys):
    from envs.minari_io import main

    main([str(d) for d in mixture] + ["--id", "lab/grey/cli-v0"])
    assert "lab/grey/cli-v0: 7 episodes" in capsys.readouterr().out
    assert minari.load_dataset("lab/grey/cli-v0").total_episodes == 7
