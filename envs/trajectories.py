"""The lab's store of BabyAI trajectories: npz shards + a manifest, and :class:`DemoSet`, the loaded episodes.

Collections (:mod:`envs.demos`: the bot's demonstrations, any behaviour policy's episodes) and Minari datasets
read into the lab (:mod:`envs.minari_io`) are stored this way; docs/ARCHITECTURE.md says why beside Minari.

Layout of a directory (format version 2): ``manifest.json`` and shards ``shard_00000.npz``, ... Every file is
written to a temporary name and ``os.replace``-d, so a crash leaves the previous complete state. A shard holds

- per step (N = total steps, observation *before* the action): ``image`` uint8 (N, 7, 7, 3) raw symbolic
  encoding, ``direction`` uint8 (N,), ``action`` uint8 (N,), ``step_reward`` float64 (N,);
- per episode (E): ``length`` int32, ``seed`` int64 (-1: unknown, for imported episodes), ``attempt`` int64,
  ``reward`` float64 (the return: the sum of the step rewards), ``terminated`` / ``truncated`` bool (how the
  last step ended), ``mission`` uint8 (E, max_len) token ids of :mod:`envs.tokenizer`, ``mission_text`` str,
  ``source`` str (the behaviour policy's name), ``last_image`` uint8 (E, 7, 7, 3) and ``last_direction`` uint8
  (E,): the observation after the last action (Minari stores T + 1 observations per episode).

Format 1 directories (bot demos collected before the behaviour policies) still load: their episodes are bot
successes whose reward came at the last step; they have no final observations and cannot be extended.
:func:`load_demos` concatenates the shards into a :class:`DemoSet`.
"""
from __future__ import annotations

import collections
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs.babyai import NO_ACTION, is_success
from envs.tokenizer import VOCAB_HASH, VOCAB_VERSION, MissionTokenizer
from lab.io import atomic_write

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
MANIFEST = "manifest.json"
PER_STEP = ("image", "direction", "action", "step_reward")


@dataclass
class Episode:
    """One finished episode of T steps."""

    image: np.ndarray  # (T, 7, 7, 3) uint8, what the agent saw before each action
    direction: np.ndarray  # (T,) uint8
    action: np.ndarray  # (T,) uint8
    step_reward: np.ndarray  # (T,) float64, the reward of each action
    mission_text: str
    seed: int  # reset seed; -1 when unknown (episodes imported from a Minari dataset that has none)
    attempt: int
    terminated: bool  # how the last step ended: the level's own end (success or failure) ...
    truncated: bool  # ... or its step limit
    source: str  # the behaviour policy's name
    last_image: np.ndarray  # (7, 7, 3) uint8, the observation after the last action
    last_direction: int

    @property
    def reward(self) -> float:
        """The return (BabyAI: ``1 - 0.9 * steps / max_steps`` on success, 0 on failure)."""
        return float(self.step_reward.sum())

    @property
    def success(self) -> bool:
        return is_success(self.step_reward[-1], self.terminated)


def write_shard(path: Path, episodes: Sequence[Episode], tokenizer: MissionTokenizer) -> None:
    """One shard file (format :data:`FORMAT_VERSION`) holding ``episodes``, written atomically."""
    arrays = episode_arrays(episodes, tokenizer)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def episode_arrays(episodes: Sequence[Episode], tokenizer: MissionTokenizer) -> dict[str, np.ndarray]:
    """The arrays of a shard (the module docstring) holding ``episodes``."""
    if tokenizer.vocab_size > 256:
        raise ValueError("mission ids are stored as uint8; the vocabulary has grown past 256 words")
    return {
        "image": np.concatenate([e.image for e in episodes]),
        "direction": np.concatenate([e.direction for e in episodes]),
        "action": np.concatenate([e.action for e in episodes]),
        "step_reward": np.concatenate([e.step_reward for e in episodes]).astype(np.float64),
        "length": np.array([len(e.action) for e in episodes], dtype=np.int32),
        "seed": np.array([e.seed for e in episodes], dtype=np.int64),
        "attempt": np.array([e.attempt for e in episodes], dtype=np.int64),
        "reward": np.array([e.reward for e in episodes], dtype=np.float64),
        "terminated": np.array([e.terminated for e in episodes], dtype=bool),
        "truncated": np.array([e.truncated for e in episodes], dtype=bool),
        "mission": tokenizer.encode_batch([e.mission_text for e in episodes]).astype(np.uint8),
        "mission_text": np.array([e.mission_text for e in episodes], dtype=str),
        "source": np.array([e.source for e in episodes], dtype=str),
        "last_image": np.stack([e.last_image for e in episodes]).astype(np.uint8, copy=False),
        "last_direction": np.array([e.last_direction for e in episodes], dtype=np.uint8),
    }


def read_shard(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def shard_episodes(arrays: dict[str, np.ndarray]) -> list[Episode]:
    """Split a stored shard back into episodes (used to extend a partly filled last shard)."""
    bounds = np.concatenate([[0], np.cumsum(arrays["length"])])
    return [
        Episode(
            image=arrays["image"][a:b], direction=arrays["direction"][a:b], action=arrays["action"][a:b],
            step_reward=arrays["step_reward"][a:b], mission_text=str(arrays["mission_text"][i]),
            seed=int(arrays["seed"][i]), attempt=int(arrays["attempt"][i]),
            terminated=bool(arrays["terminated"][i]), truncated=bool(arrays["truncated"][i]),
            source=str(arrays["source"][i]), last_image=arrays["last_image"][i],
            last_direction=int(arrays["last_direction"][i]),
        )
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]


def read_manifest(out: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a demo directory, or None if it has none yet."""
    path = Path(out) / MANIFEST
    if not path.exists():
        return None
    return json.loads(path.read_text())


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=1)
    atomic_write(out / MANIFEST, lambda f: f.write(text.encode()))



@dataclass(frozen=True)
class DemoSet:
    """Concatenated trajectories: N steps in E episodes, episodes in collection order.

    ``image[t]``, ``direction[t]`` is what the agent saw before taking ``action[t]``; ``episode[t]`` is the
    episode of step t, so ``mission[episode]`` (:meth:`step_mission`) gives each step its token ids.
    """

    image: np.ndarray  # (N, 7, 7, 3) uint8, raw symbolic encoding
    direction: np.ndarray  # (N,) uint8 in 0..3
    action: np.ndarray  # (N,) uint8, minigrid action ids
    step_reward: np.ndarray  # (N,) float64, the reward of each action
    episode: np.ndarray  # (N,) int64 episode index of each step
    episode_start: np.ndarray  # (E,) int64 first step of each episode
    length: np.ndarray  # (E,) int64 steps per episode
    seed: np.ndarray  # (E,) int64 reset seed reproducing each episode (-1: unknown)
    mission: np.ndarray  # (E, max_len) int64 token ids (envs.tokenizer)
    mission_text: np.ndarray  # (E,) str
    reward: np.ndarray  # (E,) float64 return: the sum of the step rewards (demos: > 0, every one a success)
    terminated: np.ndarray  # (E,) bool: the last step ended the episode (success or failure) ...
    truncated: np.ndarray  # (E,) bool: ... or hit the level's step limit
    source: np.ndarray  # (E,) str, the behaviour policy of each episode
    last_image: np.ndarray | None  # (E, 7, 7, 3) uint8 observation after the last action (None: format 1)
    last_direction: np.ndarray | None  # (E,) uint8
    manifest: dict[str, Any]  # the directory's manifest; {"parts": [...]} for concatenated sets

    @property
    def num_steps(self) -> int:
        return len(self.action)

    @property
    def num_episodes(self) -> int:
        return len(self.length)

    @property
    def success(self) -> np.ndarray:
        """(E,) bool: BabyAI success (:func:`envs.babyai.is_success` of each episode's last step)."""
        last_reward = self.step_reward[self.episode_start + self.length - 1]
        return self.terminated & (last_reward > 0)

    def step_mission(self) -> np.ndarray:
        """Token ids per step, int64 (N, max_len)."""
        return self.mission[self.episode]

    def step_index(self) -> np.ndarray:
        """(N,) int64: each step's index within its episode (0 at the episode's first step)."""
        return np.arange(self.num_steps) - self.episode_start[self.episode]

    def returns_to_go(self) -> np.ndarray:
        """(N,) float64: the rewards from each step to the end of its episode (summed per episode, so a BabyAI
        episode's steps all hold exactly its return)."""
        out = np.empty(self.num_steps, dtype=np.float64)
        for i in range(self.num_episodes):
            steps = self.episode_slice(i)
            out[steps] = np.cumsum(self.step_reward[steps][::-1])[::-1]
        return out

    def prev_actions(self, k: int) -> np.ndarray:
        """The ``prev_actions`` observation of every step, int64 (N, k), as :class:`envs.babyai.BabyAIObservation`
        with ``action_history=k`` would have shown it: slot j = the action j + 1 steps earlier in the same
        episode, ``NO_ACTION`` before the episode start."""
        out = np.full((self.num_steps, k), NO_ACTION, dtype=np.int64)
        step_in_episode = self.step_index()
        for j in range(k):
            seen = step_in_episode > j  # the action j + 1 steps back exists in this episode
            out[seen, j] = self.action[np.flatnonzero(seen) - (j + 1)]
        return out

    def episode_slice(self, i: int) -> slice:
        """Steps of episode ``i``: ``demos.action[demos.episode_slice(i)]``."""
        start = int(self.episode_start[i])
        return slice(start, start + int(self.length[i]))

    def select(self, episodes: Sequence[int] | np.ndarray) -> DemoSet:
        """The episodes ``episodes`` (indices, in the order given) as a new set."""
        index = np.asarray(episodes, dtype=np.int64).reshape(-1)
        length = self.length[index]
        steps = (np.repeat(self.episode_start[index] - np.cumsum(length) + length, length)
                 + np.arange(int(length.sum())))  # each episode's steps, episode after episode
        per_episode = {key: getattr(self, key) for key in _EPISODE_FIELDS}
        return _build(
            {key: getattr(self, key)[steps] for key in PER_STEP},
            {key: None if value is None else value[index] for key, value in per_episode.items()},
            self.manifest,
        )


_EPISODE_FIELDS = ("length", "seed", "mission", "mission_text", "reward", "terminated", "truncated", "source",
                   "last_image", "last_direction")


def _build(steps: dict[str, np.ndarray], episodes: dict[str, Any], manifest: dict[str, Any]) -> DemoSet:
    """A DemoSet from per-step and per-episode arrays (the episode index arrays derived from the lengths)."""
    length = np.asarray(episodes["length"], dtype=np.int64)
    return DemoSet(**steps, **{**episodes, "length": length}, manifest=manifest,
                   episode=np.repeat(np.arange(len(length)), length),
                   episode_start=np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64))


def concat_demos(sets: Sequence[DemoSet]) -> DemoSet:
    """One set of the episodes of ``sets``, in order (e.g. a mixture of behaviour policies' collections). Missions
    are padded to the longest; final observations are kept only if every set has them."""
    if not sets:
        raise ValueError("concat_demos needs at least one DemoSet")
    width = max(s.mission.shape[1] for s in sets)
    missions = [np.pad(s.mission, ((0, 0), (0, width - s.mission.shape[1]))) for s in sets]
    has_last = all(s.last_image is not None for s in sets)
    episodes = {key: np.concatenate([getattr(s, key) for s in sets]) for key in _EPISODE_FIELDS
                if key not in ("mission", "last_image", "last_direction")}
    episodes.update(mission=np.concatenate(missions),
                    last_image=np.concatenate([s.last_image for s in sets]) if has_last else None,
                    last_direction=np.concatenate([s.last_direction for s in sets]) if has_last else None)
    steps = {key: np.concatenate([getattr(s, key) for s in sets]) for key in PER_STEP}
    return _build(steps, episodes, {"parts": [s.manifest for s in sets]})


def top_episodes(demos: DemoSet, fraction: float) -> DemoSet:
    """Filtered behaviour cloning's data (%BC): the ``ceil(fraction * E)`` episodes of highest return, in their
    original order; ties at the cut go to the earlier episodes."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    keep = int(np.ceil(fraction * demos.num_episodes - 1e-9))
    order = np.argsort(-demos.reward, kind="stable")  # highest return first, earlier episode first among ties
    return demos.select(np.sort(order[:keep]))


def load_demos(out: str | os.PathLike, max_episodes: int | None = None) -> DemoSet:
    """Load the episodes in ``out`` (all, or the first ``max_episodes``) as one :class:`DemoSet`.

    Raises:
        FileNotFoundError: no manifest or a missing shard.
        ValueError: the demos were stored with another format or mission vocabulary than this code's.
    """
    out = Path(out)
    manifest = read_manifest(out)
    if manifest is None:
        raise FileNotFoundError(f"no {MANIFEST} in {out}; collect demos with `python -m envs.demos LEVEL ...`")
    if manifest["format_version"] not in READABLE_FORMATS:
        raise ValueError(f"{out} has demo format {manifest['format_version']}, this code reads {READABLE_FORMATS}")
    if (manifest["vocab_version"], manifest["vocab_hash"]) != (VOCAB_VERSION, VOCAB_HASH):
        raise ValueError(
            f"{out} was tokenized with vocabulary v{manifest['vocab_version']} ({manifest['vocab_hash']}), "
            f"this code uses v{VOCAB_VERSION} ({VOCAB_HASH}); re-collect the demos"
        )
    parts: dict[str, list[np.ndarray]] = collections.defaultdict(list)
    remaining = manifest["episodes"] if max_episodes is None else min(max_episodes, manifest["episodes"])
    for shard in manifest["shards"]:
        if remaining <= 0:
            break
        arrays = read_shard(out / shard["file"])
        if manifest["format_version"] == 1:
            arrays = _upgrade_format_1(arrays)
        n_episodes = min(shard["episodes"], remaining)  # the manifest is authoritative (see collect_demos)
        n_steps = int(arrays["length"][:n_episodes].sum())
        for key, value in arrays.items():
            parts[key].append(value[: n_steps if key in PER_STEP else n_episodes])
        remaining -= n_episodes
    if not parts["length"]:
        raise ValueError(f"{out} holds no episodes")
    return demos_from_arrays({key: np.concatenate(value) for key, value in parts.items()}, manifest)


def demos_from_arrays(data: dict[str, np.ndarray], manifest: dict[str, Any]) -> DemoSet:
    """A DemoSet from the arrays of a shard (or of several, concatenated): :func:`episode_arrays`' output."""
    episodes = {key: data.get(key) for key in _EPISODE_FIELDS}
    episodes["mission"] = data["mission"].astype(np.int64)
    return _build({key: data[key] for key in PER_STEP}, episodes, manifest)


def _upgrade_format_1(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A format-1 shard (bot successes, reward at the last step) with the fields format 2 added."""
    length = arrays["length"].astype(np.int64)
    step_reward = np.zeros(int(length.sum()), dtype=np.float64)
    step_reward[np.cumsum(length) - 1] = arrays["reward"]
    n = len(length)
    return {**arrays, "step_reward": step_reward, "reward": arrays["reward"].astype(np.float64),
            "terminated": np.ones(n, dtype=bool), "truncated": np.zeros(n, dtype=bool),
            "source": np.full(n, "bot")}

