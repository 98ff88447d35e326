"""BabyAI trajectories as Minari datasets (Farama's standard for offline RL data): write, check, read.

    python -m envs.minari_io data/mixed/bot data/mixed/random --id lab/GoToRedBallGrey/mixed-v0

- :func:`write_minari`: lab trajectories (:class:`envs.trajectories.DemoSet`, or collection directories) -> a Minari
  dataset that ``minari.load_dataset(id)`` reads with Minari's own API (HDF5, no JPEG: exact);
- :func:`check_spaces`: whether a Minari dataset's spaces fit the lab's BabyAI models; a refusal names the space;
- :func:`read_minari`: any fitting Minari dataset (the lab's, one made with Minari's own tools, Minari's published
  ``minigrid/BabyAI-*/optimal-v0``) -> a DemoSet; :func:`load_minari` does it through a shard cache, so a dataset
  is decoded once, not at every training run (docs/ARCHITECTURE.md: why both formats).

Spaces the lab writes, and what fits when reading: observations ``Dict(image, direction, mission)`` where ``image``
is minigrid's symbolic (7, 7, 3) view (an integer Box; the lab writes minigrid's own ``Box(0, 255, (7, 7, 3),
uint8)``), ``direction`` ``Discrete(4)`` and ``mission`` a ``gymnasium.spaces.Text`` (the text, not token ids, so a
dataset does not depend on the lab's vocabulary; minigrid's ``MissionSpace`` cannot be serialised by Minari);
actions ``Discrete(n)``, n <= 7 (minigrid's action ids). Other observation keys are ignored. Per episode the lab
also records Minari's ``seed`` and, in Minari's episode metadata, ``source`` (the behaviour policy) and
``attempt``; returns are the sums of the stored rewards.

Datasets live under ``MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``), as Minari decides.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import minari
import numpy as np
from gymnasium import spaces
from gymnasium.spaces.text import alphanumeric
from minari.data_collector import EpisodeBuffer

from envs.babyai import IMAGE_HIGH, NUM_ACTIONS
from envs.tokenizer import DEFAULT_MAX_LEN, VOCAB_HASH, VOCAB_VERSION, MissionTokenizer, MissionTooLongError
from envs.trajectories import (FORMAT_VERSION, MANIFEST, DemoSet, Episode, concat_demos, demos_from_arrays,
                               episode_arrays, load_demos, read_manifest, write_manifest, write_shard)
from lab.io import TMP_SUFFIX

MISSION_CHARSET = "".join(alphanumeric) + " ,"  # BabyAI missions: words, spaces and commas (", then")
MISSION_MAX_CHARS = 512  # the longest mission the BabyAI grammar makes (72 tokens) has about 330 characters
DATA_FORMAT = "hdf5"  # measured: writes ~40x faster than Minari's arrow format (docs/ARCHITECTURE.md)
CACHE_ROOT = Path("data") / "minari"  # shard caches of read datasets, relative to the working directory
CACHE_SHARD_SIZE = 1000


class SpaceMismatchError(ValueError):
    """A Minari dataset whose observation or action space the lab's BabyAI models cannot read."""


def observation_space() -> spaces.Dict:
    """The observation space of the lab's Minari datasets (minigrid's, with the mission as Text)."""
    return spaces.Dict({
        "image": spaces.Box(0, 255, (7, 7, 3), np.uint8),  # minigrid's own declaration (values: symbolic indices)
        "direction": spaces.Discrete(4),
        "mission": spaces.Text(MISSION_MAX_CHARS, charset=MISSION_CHARSET),
    })


def action_space() -> spaces.Discrete:
    return spaces.Discrete(NUM_ACTIONS)


# ------------------------------------------------------------------------------------------------------- writing
def write_minari(dataset_id: str, trajectories: DemoSet | Sequence[str | os.PathLike], *, level: str | None = None,
                 description: str | None = None, author: str | None = None,
                 algorithm_name: str | None = None) -> minari.MinariDataset:
    """Write lab trajectories as the Minari dataset ``dataset_id`` (e.g. ``"lab/GoToRedBallGrey/mixed-v0"``).

    Args:
        trajectories: a DemoSet, or collection directories whose episodes are concatenated in order.
        level: the BabyAI level (recorded as the dataset's environment); default: the collections' level.
        description, author, algorithm_name: Minari's metadata; algorithm_name defaults to the sources' names.

    Raises:
        ValueError: a format-1 collection (no final observations), no level, or ``dataset_id`` already exists.
    """
    demos = trajectories if isinstance(trajectories, DemoSet) else concat_demos([load_demos(d) for d in trajectories])
    if demos.last_image is None or demos.last_direction is None:
        raise ValueError("these trajectories have no final observations (a format-1 demo directory); Minari stores "
                         "T + 1 observations per episode: re-collect them with this version of envs.demos")
    level = level or _level(demos.manifest)
    if level is None:
        raise ValueError("the trajectories' manifests name no (single) level; pass level=")
    sources = list(dict.fromkeys(demos.source.tolist()))
    buffers = [_episode_buffer(demos, i) for i in range(demos.num_episodes)]
    with warnings.catch_warnings():  # Minari's advice to name an author e-mail and a code permalink
        warnings.filterwarnings("ignore", message=".* is set to None", category=UserWarning)
        dataset = minari.create_dataset_from_buffers(
            dataset_id, buffers, env=level, eval_env=level, observation_space=observation_space(),
            action_space=action_space(), algorithm_name=algorithm_name or " + ".join(sources),
            author=author or "DL-vs-RL lab", data_format=DATA_FORMAT, jpeg_encoding=False, requirements=["minigrid"],
            description=description or f"{level} episodes collected by the DL-vs-RL lab ({', '.join(sources)})",
        )
    dataset.storage.update_episode_metadata(  # one call: each call re-measures the dataset's size on disk
        [{"source": str(demos.source[i]), "attempt": int(i)} for i in range(demos.num_episodes)])
    return dataset


def _level(manifest: dict[str, Any]) -> str | None:
    levels = {part.get("level") for part in manifest.get("parts", [manifest])}
    return levels.pop() if len(levels) == 1 else None


def _episode_buffer(demos: DemoSet, i: int) -> EpisodeBuffer:
    steps, length = demos.episode_slice(i), int(demos.length[i])
    end = np.zeros(length, dtype=bool)
    end[-1] = True
    seed = int(demos.seed[i])
    return EpisodeBuffer(
        id=i, seed=seed if seed >= 0 else None,
        observations={
            "image": np.concatenate([demos.image[steps], demos.last_image[i][None]]),  # (T + 1, 7, 7, 3)
            "direction": np.append(demos.direction[steps], demos.last_direction[i]).astype(np.int64),
            "mission": [str(demos.mission_text[i])] * (length + 1),
        },
        actions=demos.action[steps].astype(np.int64),
        rewards=demos.step_reward[steps].astype(np.float64),
        terminations=end & bool(demos.terminated[i]),
        truncations=end & bool(demos.truncated[i]),
        infos={},  # an empty group, not none: Minari's EpisodeData cannot print itself without one
    )


# ------------------------------------------------------------------------------------------------------- reading
def check_spaces(observation: gym.Space, action: gym.Space, name: str = "this dataset") -> None:
    """Raise :class:`SpaceMismatchError`, naming the space, unless the lab's BabyAI models can read these spaces."""
    def refuse(what: str, space: Any, expected: str) -> None:
        raise SpaceMismatchError(f"{name} does not fit the lab's BabyAI models: its {what} is {space}; expected "
                                 f"{expected}")

    if not isinstance(observation, spaces.Dict):
        refuse("observation space", observation, "a Dict of image, direction and mission")
    missing = {"image", "direction", "mission"} - set(observation.spaces)
    if missing:
        refuse("observation space", observation, f"a Dict with image, direction and mission (missing: "
               f"{', '.join(sorted(missing))})")
    image, direction, mission = (observation[key] for key in ("image", "direction", "mission"))
    if not (isinstance(image, spaces.Box) and image.shape == (7, 7, 3) and np.issubdtype(image.dtype, np.integer)):
        refuse("observation space['image']", image, "minigrid's symbolic 7x7x3 egocentric view, an integer Box of "
               "shape (7, 7, 3) (not an RGB or fully observed grid: e.g. optimal-v0, not optimal-fullobs-v0)")
    if not (isinstance(direction, spaces.Discrete) and direction.n == 4 and direction.start == 0):
        refuse("observation space['direction']", direction, "Discrete(4)")
    if not isinstance(mission, spaces.Text):
        refuse("observation space['mission']", mission, "the mission as text, gymnasium.spaces.Text (the lab "
               "tokenizes it itself, so a dataset never depends on a vocabulary)")
    if not (isinstance(action, spaces.Discrete) and action.start == 0 and action.n <= NUM_ACTIONS):
        refuse("action space", action, f"Discrete(n) with n <= {NUM_ACTIONS}, minigrid's action ids")


def read_minari(dataset: str | minari.MinariDataset, max_episodes: int | None = None,
                max_len: int = DEFAULT_MAX_LEN) -> DemoSet:
    """The first ``max_episodes`` (all: None) episodes of a Minari dataset (an id or a loaded dataset) as a DemoSet.

    Raises:
        SpaceMismatchError: the dataset's spaces or values do not fit (the message names the space).
    """
    dataset = open_minari(dataset) if isinstance(dataset, str) else dataset
    tokenizer = MissionTokenizer(max_len)
    episodes = _read_episodes(dataset, max_episodes, tokenizer)
    return demos_from_arrays(episode_arrays(episodes, tokenizer), _cache_manifest(dataset, tokenizer, episodes))


def open_minari(dataset: str | os.PathLike, download: bool = False) -> minari.MinariDataset:
    """A Minari dataset by id (under ``MINARI_DATASETS_PATH``) or by its directory (the one holding ``data/``, or
    ``data/`` itself: a dataset shipped somewhere else). ``download``: fetch an id Minari's server has when it is
    not local (needs internet)."""
    path = Path(dataset)
    for data in (path / "data", path):
        if (data / "metadata.json").is_file():
            return minari.MinariDataset(data)
    return minari.load_dataset(str(dataset), download=download)


def load_minari(dataset: str | os.PathLike, *, max_episodes: int | None = None,
                cache_root: str | os.PathLike = CACHE_ROOT, download: bool = False) -> DemoSet:
    """A Minari dataset (an id or a directory: :func:`open_minari`) as a DemoSet, through a shard cache in
    ``cache_root``: the first call decodes it into shards, later calls load those (tens of times faster:
    docs/ARCHITECTURE.md), until the dataset's metadata changes.

    Raises:
        FileNotFoundError: no such dataset under ``MINARI_DATASETS_PATH`` (and ``download`` is off).
        SpaceMismatchError: the dataset's spaces or values do not fit (the message names the space).
    """
    dataset = open_minari(dataset, download)
    cache = Path(cache_root) / dataset.id.replace("/", "__")
    manifest = read_manifest(cache)
    if manifest is None or manifest.get("fingerprint") != _fingerprint(dataset) or \
            manifest.get("format_version") != FORMAT_VERSION:
        _write_cache(cache, dataset)
    return load_demos(cache, max_episodes=max_episodes)


def _read_episodes(dataset: minari.MinariDataset, max_episodes: int | None,
                   tokenizer: MissionTokenizer) -> list[Episode]:
    name = f"Minari dataset {dataset.id!r}"
    check_spaces(dataset.observation_space, dataset.action_space, name)
    count = dataset.total_episodes if max_episodes is None else min(max_episodes, dataset.total_episodes)
    indices = dataset.episode_indices[:count]
    if not len(indices):
        raise ValueError(f"{name} holds no episodes")
    metadata = dataset.storage.get_episode_metadata(indices)
    default_source = dataset.storage.metadata.get("algorithm_name") or dataset.id
    return [_episode(name, episode, info, default_source, tokenizer)
            for episode, info in zip(dataset.iterate_episodes(indices), metadata)]


def _episode(name: str, episode: Any, info: dict[str, Any], default_source: str,
             tokenizer: MissionTokenizer) -> Episode:
    obs, length = episode.observations, len(episode.actions)
    image, direction = np.asarray(obs["image"]), np.asarray(obs["direction"]).reshape(-1)
    if len(image) != length + 1 or len(direction) != length + 1:
        raise SpaceMismatchError(f"{name}: episode {episode.id} has {len(image)} observations for {length} actions; "
                                 "Minari episodes hold T + 1 (the last one after the last action)")
    if (image.reshape(-1, 3) > IMAGE_HIGH).any() or (image < 0).any():
        raise SpaceMismatchError(f"{name}: observation space['image'] holds values outside minigrid's symbolic "
                                 f"encoding (at most {IMAGE_HIGH.tolist()} per channel) in episode {episode.id}")
    mission = str(obs["mission"][0])
    try:
        tokenizer.encode(mission)
    except MissionTooLongError as error:
        raise SpaceMismatchError(f"{name}: episode {episode.id}: {error}") from None
    seed = info.get("seed")
    return Episode(
        image=image[:-1].astype(np.uint8), direction=direction[:-1].astype(np.uint8),
        action=np.asarray(episode.actions).reshape(length).astype(np.uint8),
        step_reward=np.asarray(episode.rewards, dtype=np.float64).reshape(length),
        mission_text=mission, seed=-1 if seed is None else int(seed), attempt=int(info.get("attempt", episode.id)),
        terminated=bool(episode.terminations[-1]), truncated=bool(episode.truncations[-1]),
        source=str(info.get("source", default_source)), last_image=image[-1].astype(np.uint8),
        last_direction=int(direction[-1]),
    )


def _cache_manifest(dataset: minari.MinariDataset, tokenizer: MissionTokenizer,
                    episodes: Sequence[Episode]) -> dict[str, Any]:
    """What load_demos needs of a manifest, and where the episodes came from."""
    return {"format_version": FORMAT_VERSION, "vocab_version": VOCAB_VERSION, "vocab_hash": VOCAB_HASH,
            "max_len": tokenizer.max_len, "minari_dataset": dataset.id, "fingerprint": _fingerprint(dataset),
            "level": dataset.env_spec.id if dataset.env_spec is not None else None,
            "episodes": len(episodes), "steps": int(sum(len(e.action) for e in episodes)), "shards": []}


def _fingerprint(dataset: minari.MinariDataset) -> str:
    """A hash of the dataset's metadata.json (Minari rewrites it whenever episodes are added)."""
    metadata = Path(dataset.storage.data_path) / "metadata.json"
    return hashlib.sha256(metadata.read_bytes()).hexdigest()[:16]


def _write_cache(cache: Path, dataset: minari.MinariDataset) -> None:
    """Decode ``dataset`` into shards in ``cache``; the manifest is removed first and written last, so a crash
    leaves no cache that looks complete."""
    cache.mkdir(parents=True, exist_ok=True)
    for old in [cache / MANIFEST, *cache.glob("shard_*.npz"), *cache.glob(f".*{TMP_SUFFIX}")]:
        old.unlink(missing_ok=True)
    tokenizer = MissionTokenizer()
    episodes = _read_episodes(dataset, None, tokenizer)
    manifest = _cache_manifest(dataset, tokenizer, episodes)
    for first in range(0, len(episodes), CACHE_SHARD_SIZE):
        part = episodes[first:first + CACHE_SHARD_SIZE]
        name = f"shard_{len(manifest['shards']):05d}.npz"
        write_shard(cache / name, part, tokenizer)
        manifest["shards"].append({"file": name, "episodes": len(part), "steps": int(sum(len(e.action) for e in part))})
    write_manifest(cache, manifest)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m envs.minari_io",
                                     description="Write lab trajectory directories as one Minari dataset "
                                                 "(under MINARI_DATASETS_PATH, default ~/.minari/datasets).")
    parser.add_argument("dirs", nargs="+", help="collection directories (python -m envs.demos), concatenated in order")
    parser.add_argument("--id", required=True, help="Minari dataset id, e.g. lab/GoToRedBallGrey/mixed-v0")
    parser.add_argument("--description", default=None, help="the dataset's description")
    parser.add_argument("--author", default=None, help="the dataset's author")
    args = parser.parse_args(argv)
    dataset = write_minari(args.id, args.dirs, description=args.description, author=args.author)
    print(f"{dataset.id}: {dataset.total_episodes} episodes, {dataset.total_steps} steps at {dataset.storage.data_path}")


if __name__ == "__main__":
    main()
