"""BabyAI / MiniGrid levels as observations Stable-Baselines3 can consume.

minigrid's observation is ``{"image": (7, 7, 3) uint8, "direction": int, "mission": str}``; SB3 has no text
space, so :class:`BabyAIObservation` replaces the mission with token ids from :mod:`envs.tokenizer` (the
vocabulary the supervised fusion task uses) and silences the "Sampling rejected: ..." lines some levels print
while generating a mission. Use :func:`make_babyai_env` with any level id, or the registered ids
``lab/BabyAI-GoToRedBallGrey-v0``, ``lab/BabyAI-GoToRedBall-v0`` and ``lab/BabyAI-GoToLocal-v0``.

Image normalisation (a decision every agent relies on): the image holds symbolic indices per cell
(object type 0-10, color 0-5, state 0-2), not pixels. Its Box is declared with these tight bounds
(``high = IMAGE_HIGH``), so SB3's ``is_image_space`` rejects it: SB3 neither divides it by 255 nor transposes
it to channel-first, and the policy receives the raw indices as floats (B, 7, 7, 3), channel-last.
Extractors should cast to ``long`` and embed them (or one-hot them with ``IMAGE_HIGH + 1`` classes per
channel); ``normalize_images`` is irrelevant. SB3's ``check_env`` warns that the bounds are "not in
[0, 255]" and that 7x7 is below NatureCNN's 36x36: both are expected. The mission Box is int64
(max_len,) in [0, VOCAB_SIZE - 1]; SB3 passes it as float, so cast back with ``.long()``.

Episodes: a BabyAI level truncates after ``env.unwrapped.max_steps`` steps (set at each reset from the maze
size and the number of instructions, e.g. 64 for GoToRedBallGrey); it terminates with reward
``1 - 0.9 * steps / max_steps > 0`` on success and with reward 0 on failure (strict levels), so success is
``terminated and reward > 0`` (:func:`is_success`).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

from envs.tokenizer import DEFAULT_MAX_LEN, MissionTokenizer

# Largest index per channel of the symbolic image: object type, color, state. The state channel can hold
# 3 (not only door states 0-2) because a fully observable grid encodes the agent's direction there.
IMAGE_HIGH = np.array(
    [max(OBJECT_TO_IDX.values()), max(COLOR_TO_IDX.values()), max(max(STATE_TO_IDX.values()), 3)],
    dtype=np.uint8,
)


# BabyAI paper (Chevalier-Boisvert et al., ICLR 2019), sample-efficiency table: the minimum number of bot
# demonstrations (imitation learning, "il") and of training episodes (RL, "rl") to reach 99% success, as
# (low, high) over their runs. Published numbers for their model and protocol, never measured here.
PAPER_SOURCE = "BabyAI paper (Chevalier-Boisvert et al., ICLR 2019)"
PAPER_TARGET = 0.99
# BabyAI 1.0, Table 3: the fewest demonstrations (imitation) / RL episodes for 99% success, as intervals.
# PickupLoc, PutNextLocal and GoTo are quoted from a secondary write-up (shared/DESIGN.md); check the paper too.
PAPER_99: dict[str, dict[str, tuple[int, int]]] = {
    "BabyAI-GoToRedBallGrey-v0": {"il": (8_430, 12_400), "rl": (15_900, 17_400)},
    "BabyAI-GoToRedBall-v0": {"il": (49_700, 62_000), "rl": (261_000, 334_000)},
    "BabyAI-GoToLocal-v0": {"il": (148_000, 193_000), "rl": (903_000, 1_114_000)},
    "BabyAI-PickupLoc-v0": {"il": (204_000, 241_000), "rl": (1_447_000, 1_643_000)},
    "BabyAI-PutNextLocal-v0": {"il": (245_000, 323_000), "rl": (2_186_000, 2_727_000)},
    "BabyAI-GoTo-v0": {"il": (341_000, 409_000), "rl": (816_000, 1_964_000)},
}

NUM_ACTIONS = 7  # minigrid's action set: left, right, forward, pickup, drop, toggle, done
NO_ACTION = NUM_ACTIONS  # the ``prev_actions`` id of slots before the episode start


@contextlib.contextmanager
def silence_stdout() -> Iterator[None]:
    """Swallow ``print`` output (minigrid's "Sampling rejected: ..." during mission generation)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def is_success(reward: float, terminated: bool) -> bool:
    """BabyAI success: the episode terminated with a positive reward (time-outs truncate with reward 0)."""
    return bool(terminated) and float(reward) > 0.0


class BabyAIObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Dict observation ``{"image", "direction", "mission"}`` with the mission as int64 token ids.

    Spaces: ``image`` Box uint8 (H, W, 3) in [0, IMAGE_HIGH] (raw indices, see the module docstring),
    ``direction`` Discrete(4), ``mission`` Box int64 (max_len,) padded with 0 and, with ``action_history=k > 0``,
    ``prev_actions`` Box int64 (k,): slot j holds the action taken j + 1 steps ago, :data:`NO_ACTION` before the
    episode start (a reactive policy's only memory: it lets it notice it is turning in circles). Words outside the BabyAI
    vocabulary (non-BabyAI MiniGrid missions) become ``<unk>``; a mission longer than ``max_len`` raises
    :class:`envs.tokenizer.MissionTooLongError`. Anything the level prints during reset is discarded.

    Args:
        env: a MiniGrid / BabyAI env with minigrid's Dict observation.
        max_len: padded mission length (the default fits every BabyAI mission).
        action_history: how many previous actions to add as ``prev_actions`` (0: none).
    """

    def __init__(self, env: gym.Env, max_len: int = DEFAULT_MAX_LEN, action_history: int = 0) -> None:
        if action_history < 0:
            raise ValueError(f"action_history must be >= 0, got {action_history}")
        # lets env.spec re-create the wrapper
        gym.utils.RecordConstructorArgs.__init__(self, max_len=max_len, action_history=action_history)
        gym.ObservationWrapper.__init__(self, env)
        inner = env.observation_space
        if not isinstance(inner, spaces.Dict) or not {"image", "direction", "mission"} <= set(inner.spaces):
            raise TypeError(f"expected a MiniGrid Dict observation with image, direction and mission; got {inner}")
        image = inner["image"]
        if len(image.shape) != 3 or image.shape[-1] != len(IMAGE_HIGH):
            raise ValueError(f"expected a symbolic (H, W, 3) image, got shape {image.shape} (an RGB wrapper?)")
        self.tokenizer = MissionTokenizer(max_len)
        observation_spaces = {
            "image": spaces.Box(0, np.broadcast_to(IMAGE_HIGH, image.shape), dtype=np.uint8),
            "direction": spaces.Discrete(4),
            "mission": spaces.Box(0, self.tokenizer.vocab_size - 1, shape=(max_len,), dtype=np.int64),
        }
        if action_history:
            observation_spaces["prev_actions"] = spaces.Box(0, NO_ACTION, shape=(action_history,), dtype=np.int64)
        self.observation_space = spaces.Dict(observation_spaces)
        self.action_history = action_history
        self._prev_actions = np.full(action_history, NO_ACTION, dtype=np.int64)
        self._mission_text: str | None = None
        self._mission_ids = np.zeros(max_len, dtype=np.int64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._prev_actions[:] = NO_ACTION
        with silence_stdout():
            return super().reset(seed=seed, options=options)

    def step(self, action: Any):
        if self.action_history:  # shift before the observation of the new step is built
            self._prev_actions[1:] = self._prev_actions[:-1].copy()
            self._prev_actions[0] = int(action)
        obs, reward, terminated, truncated, info = super().step(action)
        if terminated or truncated:  # SB3's evaluation and envs.evaluation read success from here
            info["is_success"] = is_success(reward, terminated)
        return obs, reward, terminated, truncated, info

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        mission = observation["mission"]
        if mission != self._mission_text:  # encode once per episode, not once per step
            self._mission_ids = self.tokenizer.encode(mission)
            self._mission_text = mission
        out = {
            "image": observation["image"],
            "direction": int(observation["direction"]),
            "mission": self._mission_ids.copy(),
        }
        if self.action_history:
            out["prev_actions"] = self._prev_actions.copy()
        return out


def make_babyai_env(
    level: str, max_len: int = DEFAULT_MAX_LEN, action_history: int = 0, **kwargs: Any
) -> BabyAIObservation:
    """``gym.make(level, **kwargs)`` wrapped in :class:`BabyAIObservation`; any MiniGrid / BabyAI id works."""
    if level not in gym.registry:  # importing minigrid (above) registered every MiniGrid-* and BabyAI-* id
        raise gym.error.NameNotFound(f"{level!r} is not registered; BabyAI ids look like 'BabyAI-GoToRedBallGrey-v0'")
    return BabyAIObservation(gym.make(level, **kwargs), max_len=max_len, action_history=action_history)


def babyai_levels() -> list[str]:
    """Every registered ``BabyAI-*`` level id (96 in minigrid 3.2.0)."""
    return [env_id for env_id in gym.registry if env_id.startswith("BabyAI-")]


@dataclass
class CoverageReport:
    """What :func:`mission_coverage` found; ``ok`` when no mission has an unknown word or exceeds max_len."""

    missions: int = 0
    levels: int = 0
    max_tokens: int = 0
    longest: str = ""
    unknown_words: collections.Counter = field(default_factory=collections.Counter)
    too_long: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unknown_words and not self.too_long


def mission_coverage(
    levels: Iterable[str] | None = None, seeds: Iterable[int] = range(5), max_len: int = DEFAULT_MAX_LEN
) -> CoverageReport:
    """Reset each level with each seed and check its mission against the vocabulary and ``max_len``."""
    tokenizer = MissionTokenizer(max_len)
    report = CoverageReport()
    seeds = list(seeds)
    for level in babyai_levels() if levels is None else levels:
        env = gym.make(level)
        report.levels += 1
        for seed in seeds:
            with silence_stdout():
                obs, _ = env.reset(seed=seed)
            mission = obs["mission"]
            n_tokens = len(tokenizer.tokenize(mission))
            report.missions += 1
            report.unknown_words.update(tokenizer.unknown_words(mission))
            if n_tokens > max_len:
                report.too_long.append(mission)
            if n_tokens > report.max_tokens:
                report.max_tokens, report.longest = n_tokens, mission
        env.close()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Check that the mission vocabulary covers every BabyAI level.")
    parser.add_argument("--seeds", type=int, default=50, help="missions sampled per level (seeds 0..N-1)")
    parser.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN, help="padded mission length to check")
    args = parser.parse_args(argv)
    report = mission_coverage(seeds=range(args.seeds), max_len=args.max_len)
    print(f"{report.missions} missions from {report.levels} levels; longest {report.max_tokens} tokens "
          f"(max_len {args.max_len}): {report.longest!r}")
    print(f"unknown words: {dict(report.unknown_words) or 'none'}; too long: {len(report.too_long)}")
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
