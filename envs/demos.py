"""BabyAI episodes of a behaviour policy, the bot's demonstrations first: collect, resume (the store and the
loaded :class:`~envs.trajectories.DemoSet` are :mod:`envs.trajectories`'; Minari datasets: :mod:`envs.minari_io`).

Usage::

    python -m envs.demos BabyAI-GoToRedBallGrey-v0 --episodes 1000 --out data/demos/GoToRedBallGrey
    python -m envs.demos BabyAI-GoToRedBallGrey-v0 --episodes 2700 --policy random --out data/mixed/random

Attempt ``i`` of a collection resets the level with ``episode_seed(base_seed, i)``; a behaviour policy
(:mod:`envs.behaviour`: the bot, the bot with random actions, a random policy, any callable) plays it with a
generator seeded from that seed. Demonstrations (:func:`collect_demos`: the bot, ``successes_only``) keep the
successful episodes only (failures are counted in the manifest); other collections keep every episode the
policy finished, with its return. The same call therefore always yields the same episodes, and a collection
can be extended: re-running with more ``--episodes`` continues after the last stored episode (the last, partly
filled shard is rewritten with more episodes), re-running with the same count does nothing, and a directory
collected with another level, policy, seed, shard size, vocabulary or minigrid version is refused.
"""
from __future__ import annotations

import argparse
import collections
import importlib.metadata
import os
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from envs.babyai import make_babyai_env
from envs.behaviour import POLICY_NAMES, BehaviourPolicy, BotPolicy, PolicyGaveUp, policy_from_name
from envs.tokenizer import DEFAULT_MAX_LEN, VOCAB_HASH, VOCAB_VERSION, MissionTokenizer
from envs.trajectories import FORMAT_VERSION, Episode, read_shard, shard_episodes, write_manifest, write_shard
from envs.trajectories import DemoSet, load_demos, read_manifest  # noqa: F401  (callers import them from here)
from lab.io import TMP_SUFFIX

DEFAULT_SHARD_SIZE = 1000  # ~6k steps, ~1 MB for GoToRedBallGrey: few files, little lost on a crash
SEED_RULE = "int(np.random.SeedSequence([base_seed, attempt]).generate_state(1)[0])"
POLICY_STREAM = 1  # a policy's draws in an episode come from np.random.default_rng([reset seed, POLICY_STREAM])
# Fields that must match for a directory to be extended; anything else would mix incompatible data.
IDENTITY_FIELDS = ("format_version", "level", "policy", "successes_only", "base_seed", "shard_size", "max_len",
                   "vocab_version", "vocab_hash", "minigrid_version")


def episode_seed(base_seed: int, attempt: int) -> int:
    """Reset seed of attempt ``attempt``: a 32-bit hash, so collections with nearby base seeds do not overlap."""
    return int(np.random.SeedSequence([base_seed, attempt]).generate_state(1)[0])

def run_episode(env: gym.Env, policy: BehaviourPolicy, seed: int, attempt: int = 0) -> tuple[Episode | None, str]:
    """Let ``policy`` play ``env`` (a :func:`envs.babyai.make_babyai_env` env) reset with ``seed``.

    Returns ``(episode, outcome)``: outcome "success", "failure" (ended by the level) or "timeout" (its step
    limit), or ``(None, reason)`` when the policy gave up (:class:`envs.behaviour.PolicyGaveUp`).
    """
    obs, _ = env.reset(seed=seed)
    policy.start(env, np.random.default_rng([seed, POLICY_STREAM]))
    images, directions, actions, rewards = [], [], [], []
    while True:
        try:
            action = policy.act(obs)
        except PolicyGaveUp as reason:
            return None, str(reason)
        images.append(obs["image"])
        directions.append(obs["direction"])
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(float(reward))
        if terminated or truncated:
            break
    episode = Episode(
        image=np.stack(images).astype(np.uint8, copy=False),
        direction=np.asarray(directions, dtype=np.uint8),
        action=np.asarray(actions, dtype=np.uint8),
        step_reward=np.asarray(rewards, dtype=np.float64),
        mission_text=env.unwrapped.mission,
        seed=seed,
        attempt=attempt,
        terminated=bool(terminated),
        truncated=bool(truncated),
        source=policy.name,
        last_image=np.asarray(obs["image"], dtype=np.uint8),
        last_direction=int(obs["direction"]),
    )
    outcome = "success" if episode.success else "timeout" if truncated and not terminated else "failure"
    return episode, outcome


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
    # Of the stored episodes (all successes in a demo directory): what the collection is worth as data.
    manifest["stored_success_rate"] = sum(s["successes"] for s in shards) / max(manifest["episodes"], 1)
    manifest["mean_return"] = sum(s["return_sum"] for s in shards) / max(manifest["episodes"], 1)


def _identity(level: str, policy: str, successes_only: bool, base_seed: int, shard_size: int,
              max_len: int) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION, "level": level, "policy": policy, "successes_only": successes_only,
        "base_seed": base_seed, "shard_size": shard_size, "max_len": max_len, "vocab_version": VOCAB_VERSION,
        "vocab_hash": VOCAB_HASH, "minigrid_version": importlib.metadata.version("minigrid"),
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
    """Collect ``episodes`` successful bot demos of ``level`` into ``out`` (resuming what is there): the bot's
    successes only; see :func:`collect_trajectories` for the arguments."""
    return collect_trajectories(level, episodes, out, BotPolicy(), seed=seed, successes_only=True,
                                shard_size=shard_size, max_len=max_len, max_failures=max_failures, progress=progress)


def collect_trajectories(
    level: str,
    episodes: int,
    out: str | os.PathLike,
    policy: BehaviourPolicy | str = "bot",
    seed: int = 0,
    successes_only: bool = False,
    shard_size: int = DEFAULT_SHARD_SIZE,
    max_len: int = DEFAULT_MAX_LEN,
    max_failures: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Collect ``episodes`` episodes of ``policy`` on ``level`` into ``out`` (resuming what is there).

    Args:
        level: a BabyAI level id, e.g. ``"BabyAI-GoToRedBallGrey-v0"``.
        episodes: total number of episodes wanted in ``out``.
        out: directory for ``manifest.json`` and the shards (created if missing).
        policy: a :class:`envs.behaviour.BehaviourPolicy` or the name of a scripted one (bot, random,
            bot-noiseP); its name labels every episode's ``source``.
        seed: base seed; attempt ``i`` resets with ``episode_seed(seed, i)``.
        successes_only: keep successful episodes only (the bot's demonstrations); otherwise every episode the
            policy finished is kept, failures and time-outs included, with its return.
        shard_size: episodes per shard file.
        max_len: padded mission length of the stored token ids.
        max_failures: give up (after saving what was collected) once more attempts of this call failed (were not
            kept); default ``max(100, episodes)``, which stops levels the bot cannot solve (KeyInBox,
            PutNext*Carrying).
        progress: show a tqdm bar.

    Returns:
        The manifest (also in ``out/manifest.json``).

    Raises:
        ValueError: ``out`` holds episodes of another level / policy / seed / shard size / vocabulary / minigrid
            version or format.
        RuntimeError: more than ``max_failures`` failed attempts.
    """
    if episodes < 0 or shard_size < 1:
        raise ValueError(f"need episodes >= 0 and shard_size >= 1, got {episodes} and {shard_size}")
    policy = policy_from_name(policy) if isinstance(policy, str) else policy
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f".*{TMP_SUFFIX}"):  # left by a crash between writing and renaming
        stale.unlink()
    identity = _identity(level, policy.name, successes_only, seed, shard_size, max_len)
    manifest = read_manifest(out)
    if manifest is None:
        manifest = {**identity, "seed_rule": SEED_RULE, "shards": []}
        _summarize(manifest)
    elif manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{out} holds episodes of format {manifest.get('format_version')}, which this code loads "
                         f"but cannot extend (it writes format {FORMAT_VERSION}); use another --out directory")
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
        buffer = shard_episodes(read_shard(out / last["file"]))[: last["episodes"]]
        failed, reasons = list(last["failed_attempts"]), list(last["failure_reasons"])
        first_attempt = last["first_attempt"]
        stored -= last["episodes"]

    def flush() -> None:
        nonlocal buffer, failed, reasons, first_attempt, stored
        name = f"shard_{len(shards):05d}.npz"
        write_shard(out / name, buffer, tokenizer)
        shards.append({
            "file": name, "episodes": len(buffer), "steps": int(sum(len(e.action) for e in buffer)),
            "first_attempt": first_attempt, "end_attempt": attempt,
            "failed_attempts": failed, "failure_reasons": reasons,
            "successes": sum(e.success for e in buffer), "return_sum": float(sum(e.reward for e in buffer)),
        })
        _summarize(manifest)
        write_manifest(out, manifest)
        stored += len(buffer)
        buffer, failed, reasons, first_attempt = [], [], [], attempt

    max_failures = max(100, episodes) if max_failures is None else max_failures
    tokenizer = MissionTokenizer(max_len)
    env = make_babyai_env(level, max_len=max_len, action_history=policy.action_history)
    run_failures: collections.Counter[str] = collections.Counter()
    bar = tqdm(total=episodes, initial=stored + len(buffer), unit="episode", desc=f"{level} {policy.name}",
               disable=not progress)
    try:
        while stored + len(buffer) < episodes:
            episode, outcome = run_episode(env, policy, episode_seed(seed, attempt), attempt)
            attempt += 1
            if episode is None or (successes_only and outcome != "success"):
                failed.append(attempt - 1)
                reasons.append(outcome)
                run_failures[outcome] += 1
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
            f"{policy.name} failed {run_failures.total()} attempts on {level} ({dict(run_failures)}), more than "
            f"max_failures={max_failures}; the bot cannot solve KeyInBox or PutNext*Carrying. "
            f"{stored} episodes are saved in {out}"
        )
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m envs.demos",
        description="Collect (or extend) BabyAI episodes of a behaviour policy into .npz shards + manifest.json: "
                    "the bot's successful demonstrations by default.",
    )
    parser.add_argument("level", help="BabyAI level id, e.g. BabyAI-GoToRedBallGrey-v0")
    parser.add_argument("--episodes", type=int, required=True, help="total episodes wanted in --out")
    parser.add_argument("--out", required=True, help="output directory (re-run with more episodes to extend)")
    parser.add_argument("--policy", default="bot", help=f"behaviour policy: {POLICY_NAMES}")
    parser.add_argument("--all-episodes", action="store_true",
                        help="keep every episode with its return (default for policies other than the bot: the "
                             "bot keeps its successes only, as demonstrations)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; attempt i resets with a seed derived from it")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="episodes per .npz shard")
    parser.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN, help="padded mission length")
    parser.add_argument("--max-failures", type=int, default=None, help="give up after this many failed attempts")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    try:
        policy = policy_from_name(args.policy)
    except ValueError as error:
        parser.error(str(error))
    successes_only = args.policy == "bot" and not args.all_episodes

    before = read_manifest(args.out)
    start = time.perf_counter()
    manifest = collect_trajectories(
        args.level, args.episodes, args.out, policy, seed=args.seed, successes_only=successes_only,
        shard_size=args.shard_size, max_len=args.max_len, max_failures=args.max_failures,
        progress=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    new_attempts = manifest["attempts"] - (before["attempts"] if before else 0)
    kind = "demos" if successes_only else f"{policy.name} episodes"
    print(
        f"{manifest['level']}: {manifest['episodes']} {kind}, {manifest['steps']} steps in "
        f"{len(manifest['shards'])} shards at {args.out}; mean return {manifest['mean_return']:.3f}, "
        f"{manifest['stored_success_rate']:.1%} successes; {manifest['failures']} failed attempts "
        f"({manifest['failure_reasons'] or 'none'}); this run: {new_attempts} attempts in {seconds:.1f} s "
        f"({new_attempts / max(seconds, 1e-9):.0f} episodes/s)"
    )


if __name__ == "__main__":
    main()
