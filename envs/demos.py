"""Expert demonstrations for BabyAI from minigrid's scripted bot: collect, store, resume, load.

Usage::

    python -m envs.demos BabyAI-GoToRedBallGrey-v0 --episodes 1000 --out data/demos/GoToRedBallGrey

Attempt ``i`` of a collection resets the level with ``episode_seed(base_seed, i)``; the bot
(``minigrid.utils.baby_ai_bot.BabyAIBot``) plays it and only successful episodes are kept (failures are
counted in the manifest). The same call therefore always yields the same demos, and a collection can be
extended: re-running with more ``--episodes`` continues after the last stored episode (the last, partly
filled shard is rewritten with more episodes), re-running with the same count does nothing, and a directory
collected with another level, seed, shard size, vocabulary or minigrid version is refused.

Layout of ``out/`` (format version 1): ``manifest.json`` and shards ``shard_00000.npz``, ... of
``shard_size`` episodes each (the last may hold fewer). Every file is written to a temporary name and
``os.replace``-d, so a crash leaves the previous complete state. A shard holds

- per step (N = total steps, observation *before* the action): ``image`` uint8 (N, 7, 7, 3) raw symbolic
  encoding, ``direction`` uint8 (N,), ``action`` uint8 (N,);
- per episode (E): ``length`` int32, ``seed`` int64, ``attempt`` int64, ``reward`` float32, ``mission``
  uint8 (E, max_len) token ids of :mod:`envs.tokenizer`, ``mission_text`` str.

:func:`load_demos` concatenates the shards into a :class:`DemoSet`.
"""
from __future__ import annotations

import argparse
import collections
import importlib.metadata
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from minigrid.utils.baby_ai_bot import BabyAIBot
from tqdm.auto import tqdm

from envs.babyai import NO_ACTION, is_success, silence_stdout
from lab.io import TMP_SUFFIX, atomic_write
from envs.tokenizer import DEFAULT_MAX_LEN, VOCAB_HASH, VOCAB_VERSION, MissionTokenizer

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_SHARD_SIZE = 1000  # ~6k steps, ~1 MB for GoToRedBallGrey: few files, little lost on a crash
SEED_RULE = "int(np.random.SeedSequence([base_seed, attempt]).generate_state(1)[0])"
# Fields that must match for a directory to be extended; anything else would mix incompatible data.
IDENTITY_FIELDS = ("format_version", "level", "base_seed", "shard_size", "max_len", "vocab_version",
                   "vocab_hash", "minigrid_version")


def episode_seed(base_seed: int, attempt: int) -> int:
    """Reset seed of attempt ``attempt``: a 32-bit hash, so collections with nearby base seeds do not overlap."""
    return int(np.random.SeedSequence([base_seed, attempt]).generate_state(1)[0])


@dataclass
class Episode:
    """One successful bot episode (T steps)."""

    image: np.ndarray  # (T, 7, 7, 3) uint8
    direction: np.ndarray  # (T,) uint8
    action: np.ndarray  # (T,) uint8
    mission_text: str
    seed: int
    attempt: int
    reward: float


def run_bot_episode(env: gym.Env, seed: int, attempt: int = 0) -> tuple[Episode | None, str]:
    """Let the bot play the level reset with ``seed``; returns ``(episode, "success")`` or ``(None, reason)``."""
    with silence_stdout():
        obs, _ = env.reset(seed=seed)
    bot = BabyAIBot(env.unwrapped)
    images, directions, actions = [], [], []
    while True:
        try:
            action = int(bot.replan())
        except Exception as error:  # the bot asserts on situations it cannot handle (e.g. KeyInBox)
            return None, f"bot {type(error).__name__}"
        images.append(obs["image"])
        directions.append(obs["direction"])
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    if not is_success(reward, terminated):
        return None, "timeout" if truncated and not terminated else "failure"
    episode = Episode(
        image=np.stack(images).astype(np.uint8, copy=False),
        direction=np.asarray(directions, dtype=np.uint8),
        action=np.asarray(actions, dtype=np.uint8),
        mission_text=obs["mission"],
        seed=seed,
        attempt=attempt,
        reward=float(reward),
    )
    return episode, "success"


def _write_shard(path: Path, episodes: list[Episode], tokenizer: MissionTokenizer) -> None:
    if tokenizer.vocab_size > 256:
        raise ValueError("mission ids are stored as uint8; the vocabulary has grown past 256 words")
    arrays = {
        "image": np.concatenate([e.image for e in episodes]),
        "direction": np.concatenate([e.direction for e in episodes]),
        "action": np.concatenate([e.action for e in episodes]),
        "length": np.array([len(e.action) for e in episodes], dtype=np.int32),
        "seed": np.array([e.seed for e in episodes], dtype=np.int64),
        "attempt": np.array([e.attempt for e in episodes], dtype=np.int64),
        "reward": np.array([e.reward for e in episodes], dtype=np.float32),
        "mission": tokenizer.encode_batch([e.mission_text for e in episodes]).astype(np.uint8),
        "mission_text": np.array([e.mission_text for e in episodes], dtype=str),
    }
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def _read_shard(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _shard_episodes(arrays: dict[str, np.ndarray]) -> list[Episode]:
    """Split a stored shard back into episodes (used to extend a partly filled last shard)."""
    bounds = np.concatenate([[0], np.cumsum(arrays["length"])])
    return [
        Episode(
            image=arrays["image"][a:b], direction=arrays["direction"][a:b], action=arrays["action"][a:b],
            mission_text=str(arrays["mission_text"][i]), seed=int(arrays["seed"][i]),
            attempt=int(arrays["attempt"][i]), reward=float(arrays["reward"][i]),
        )
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]


def read_manifest(out: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a demo directory, or None if it has none yet."""
    path = Path(out) / MANIFEST
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    _summarize(manifest)
    text = json.dumps(manifest, indent=1)
    atomic_write(out / MANIFEST, lambda f: f.write(text.encode()))


def _summarize(manifest: dict[str, Any]) -> None:
    """Recompute the totals of a manifest from its shard records."""
    shards = manifest["shards"]
    failed = [a for s in shards for a in s["failed_attempts"]]
    reasons = collections.Counter(r for s in shards for r in s["failure_reasons"])
    manifest.update(
        episodes=sum(s["episodes"] for s in shards),
        steps=sum(s["steps"] for s in shards),
        attempts=shards[-1]["end_attempt"] if shards else 0,
        failures=len(failed),
        failure_reasons=dict(reasons),
        failed_seeds=[episode_seed(manifest["base_seed"], a) for a in failed],
    )
    manifest["success_rate"] = manifest["episodes"] / max(manifest["attempts"], 1)


def _identity(level: str, base_seed: int, shard_size: int, max_len: int) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION, "level": level, "base_seed": base_seed, "shard_size": shard_size,
        "max_len": max_len, "vocab_version": VOCAB_VERSION, "vocab_hash": VOCAB_HASH,
        "minigrid_version": importlib.metadata.version("minigrid"),
    }


def collect_demos(
    level: str,
    episodes: int,
    out: str | os.PathLike,
    seed: int = 0,
    shard_size: int = DEFAULT_SHARD_SIZE,
    max_len: int = DEFAULT_MAX_LEN,
    max_failures: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Collect ``episodes`` successful bot demos of ``level`` into ``out`` (resuming what is there).

    Args:
        level: a BabyAI level id, e.g. ``"BabyAI-GoToRedBallGrey-v0"``.
        episodes: total number of successful demos wanted in ``out``.
        out: directory for ``manifest.json`` and the shards (created if missing).
        seed: base seed; attempt ``i`` resets with ``episode_seed(seed, i)``.
        shard_size: episodes per shard file.
        max_len: padded mission length of the stored token ids.
        max_failures: give up (after saving what was collected) once more attempts of this call failed;
            default ``max(100, episodes)``, which stops levels the bot cannot solve (KeyInBox, PutNext*Carrying).
        progress: show a tqdm bar.

    Returns:
        The manifest (also in ``out/manifest.json``).

    Raises:
        ValueError: ``out`` holds demos of another level / seed / shard size / vocabulary / minigrid version.
        RuntimeError: more than ``max_failures`` failed attempts.
    """
    if episodes < 0 or shard_size < 1:
        raise ValueError(f"need episodes >= 0 and shard_size >= 1, got {episodes} and {shard_size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f".*{TMP_SUFFIX}"):  # left by a crash between writing and renaming
        stale.unlink()
    identity = _identity(level, seed, shard_size, max_len)
    manifest = read_manifest(out)
    if manifest is None:
        manifest = {**identity, "seed_rule": SEED_RULE, "shards": []}
        _summarize(manifest)
    else:
        mismatched = {k: (manifest.get(k), v) for k, v in identity.items() if manifest.get(k) != v}
        if mismatched:
            details = "; ".join(f"{k}: stored {old!r}, requested {new!r}" for k, (old, new) in mismatched.items())
            raise ValueError(f"{out} already holds demos that differ ({details}); use another --out directory")
    shards: list[dict[str, Any]] = manifest["shards"]
    stored = sum(s["episodes"] for s in shards)
    if stored >= episodes:
        return manifest

    buffer: list[Episode] = []
    failed: list[int] = []
    reasons: list[str] = []
    attempt = shards[-1]["end_attempt"] if shards else 0
    first_attempt = attempt
    if shards and shards[-1]["episodes"] < shard_size:  # reopen the partly filled shard and extend it
        last = shards.pop()
        # Trust the manifest, not the file: a crash between rewriting a shard and the manifest leaves a file
        # with more episodes, and those later ones are re-collected identically anyway.
        buffer = _shard_episodes(_read_shard(out / last["file"]))[: last["episodes"]]
        failed, reasons = list(last["failed_attempts"]), list(last["failure_reasons"])
        first_attempt = last["first_attempt"]
        stored -= last["episodes"]

    def flush() -> None:
        nonlocal buffer, failed, reasons, first_attempt, stored
        name = f"shard_{len(shards):05d}.npz"
        _write_shard(out / name, buffer, tokenizer)
        shards.append({
            "file": name, "episodes": len(buffer), "steps": int(sum(len(e.action) for e in buffer)),
            "first_attempt": first_attempt, "end_attempt": attempt,
            "failed_attempts": failed, "failure_reasons": reasons,
        })
        _write_manifest(out, manifest)
        stored += len(buffer)
        buffer, failed, reasons, first_attempt = [], [], [], attempt

    max_failures = max(100, episodes) if max_failures is None else max_failures
    tokenizer = MissionTokenizer(max_len)
    env = gym.make(level)
    run_failures: collections.Counter[str] = collections.Counter()
    bar = tqdm(total=episodes, initial=stored + len(buffer), unit="demo", desc=level, disable=not progress)
    try:
        while stored + len(buffer) < episodes:
            episode, reason = run_bot_episode(env, episode_seed(seed, attempt), attempt)
            attempt += 1
            if episode is None:
                failed.append(attempt - 1)
                reasons.append(reason)
                run_failures[reason] += 1
                bar.set_postfix(failures=run_failures.total(), refresh=False)
                if run_failures.total() > max_failures:
                    break
                continue
            tokenizer.encode(episode.mission_text)  # fail now, not when the shard is written, if too long
            buffer.append(episode)
            bar.update(1)
            if len(buffer) == shard_size:
                flush()
        if buffer:
            flush()
    finally:
        bar.close()
        env.close()
    if run_failures.total() > max_failures:
        raise RuntimeError(
            f"the bot failed {run_failures.total()} attempts on {level} ({dict(run_failures)}), more than "
            f"max_failures={max_failures}; it cannot solve KeyInBox or PutNext*Carrying. "
            f"{stored} demos are saved in {out}"
        )
    return manifest


@dataclass(frozen=True)
class DemoSet:
    """Concatenated demonstrations: N steps in E episodes, episodes in collection order.

    ``image[t]``, ``direction[t]`` is what the agent saw before taking ``action[t]``; ``episode[t]`` is the
    episode of step t, so ``mission[episode]`` (:meth:`step_mission`) gives each step its token ids.
    """

    image: np.ndarray  # (N, 7, 7, 3) uint8, raw symbolic encoding
    direction: np.ndarray  # (N,) uint8 in 0..3
    action: np.ndarray  # (N,) uint8, minigrid action ids
    episode: np.ndarray  # (N,) int64 episode index of each step
    episode_start: np.ndarray  # (E,) int64 first step of each episode
    length: np.ndarray  # (E,) int64 steps per episode
    seed: np.ndarray  # (E,) int64 reset seed reproducing each episode
    mission: np.ndarray  # (E, max_len) int64 token ids (envs.tokenizer)
    mission_text: np.ndarray  # (E,) str
    reward: np.ndarray  # (E,) float32 final reward (> 0: every stored episode is a success)
    manifest: dict[str, Any]

    @property
    def num_steps(self) -> int:
        return len(self.action)

    @property
    def num_episodes(self) -> int:
        return len(self.length)

    def step_mission(self) -> np.ndarray:
        """Token ids per step, int64 (N, max_len)."""
        return self.mission[self.episode]

    def prev_actions(self, k: int) -> np.ndarray:
        """The ``prev_actions`` observation of every step, int64 (N, k), as :class:`envs.babyai.BabyAIObservation`
        with ``action_history=k`` would have shown it: slot j = the action j + 1 steps earlier in the same
        episode, ``NO_ACTION`` before the episode start."""
        out = np.full((self.num_steps, k), NO_ACTION, dtype=np.int64)
        step_in_episode = np.arange(self.num_steps) - self.episode_start[self.episode]
        for j in range(k):
            seen = step_in_episode > j  # the action j + 1 steps back exists in this episode
            out[seen, j] = self.action[np.flatnonzero(seen) - (j + 1)]
        return out

    def episode_slice(self, i: int) -> slice:
        """Steps of episode ``i``: ``demos.action[demos.episode_slice(i)]``."""
        start = int(self.episode_start[i])
        return slice(start, start + int(self.length[i]))


def load_demos(out: str | os.PathLike, max_episodes: int | None = None) -> DemoSet:
    """Load the demos in ``out`` (all, or the first ``max_episodes``) as one :class:`DemoSet`.

    Raises:
        FileNotFoundError: no manifest or a missing shard.
        ValueError: the demos were stored with another format or mission vocabulary than this code's.
    """
    out = Path(out)
    manifest = read_manifest(out)
    if manifest is None:
        raise FileNotFoundError(f"no {MANIFEST} in {out}; collect demos with `python -m envs.demos LEVEL ...`")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{out} has demo format {manifest['format_version']}, this code reads {FORMAT_VERSION}")
    if (manifest["vocab_version"], manifest["vocab_hash"]) != (VOCAB_VERSION, VOCAB_HASH):
        raise ValueError(
            f"{out} was tokenized with vocabulary v{manifest['vocab_version']} ({manifest['vocab_hash']}), "
            f"this code uses v{VOCAB_VERSION} ({VOCAB_HASH}); re-collect the demos"
        )
    keys = ("image", "direction", "action", "length", "seed", "reward", "mission", "mission_text")
    parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    remaining = manifest["episodes"] if max_episodes is None else min(max_episodes, manifest["episodes"])
    for shard in manifest["shards"]:
        if remaining <= 0:
            break
        arrays = _read_shard(out / shard["file"])
        n_episodes = min(shard["episodes"], remaining)  # the manifest is authoritative (see collect_demos)
        n_steps = int(arrays["length"][:n_episodes].sum())
        for key in keys:
            per_step = key in ("image", "direction", "action")
            parts[key].append(arrays[key][: n_steps if per_step else n_episodes])
        remaining -= n_episodes
    if not parts["length"]:
        raise ValueError(f"{out} holds no episodes")
    data = {key: np.concatenate(value) for key, value in parts.items()}
    length = data["length"].astype(np.int64)
    return DemoSet(
        image=data["image"],
        direction=data["direction"],
        action=data["action"],
        episode=np.repeat(np.arange(len(length)), length),
        episode_start=np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64),
        length=length,
        seed=data["seed"],
        mission=data["mission"].astype(np.int64),
        mission_text=data["mission_text"],
        reward=data["reward"],
        manifest=manifest,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m envs.demos",
        description="Collect (or extend) successful BabyAI bot demonstrations into .npz shards + manifest.json.",
    )
    parser.add_argument("level", help="BabyAI level id, e.g. BabyAI-GoToRedBallGrey-v0")
    parser.add_argument("--episodes", type=int, required=True, help="total successful demos wanted in --out")
    parser.add_argument("--out", required=True, help="output directory (re-run with more episodes to extend)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; attempt i resets with a seed derived from it")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="episodes per .npz shard")
    parser.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN, help="padded mission length")
    parser.add_argument("--max-failures", type=int, default=None, help="give up after this many failed attempts")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)

    before = read_manifest(args.out)
    start = time.perf_counter()
    manifest = collect_demos(
        args.level, args.episodes, args.out, seed=args.seed, shard_size=args.shard_size, max_len=args.max_len,
        max_failures=args.max_failures, progress=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    new_attempts = manifest["attempts"] - (before["attempts"] if before else 0)
    print(
        f"{manifest['level']}: {manifest['episodes']} demos, {manifest['steps']} steps in "
        f"{len(manifest['shards'])} shards at {args.out}; {manifest['failures']} failed attempts "
        f"({manifest['failure_reasons'] or 'none'}); this run: {new_attempts} attempts in {seconds:.1f} s "
        f"({new_attempts / max(seconds, 1e-9):.0f} episodes/s)"
    )


if __name__ == "__main__":
    main()
