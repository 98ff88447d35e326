"""A fixed word-level tokenizer for the BabyAI mission language.

The vocabulary is written out here, not learned from data, so the supervised fusion task, the RL agents and
the stored expert demonstrations all agree on token ids without sharing a file. It covers the whole grammar
of minigrid's BabyAI levels (``minigrid/envs/babyai/core/verifier.py`` builds every mission):

- instructions: ``go to X``, ``pick up X``, ``open X``, ``put X next to Y``;
- connectives: ``A and B``, ``A, then B``, ``A after you B``;
- object descriptions: ``the|a [color] (box|ball|key|door|object) [in front of you|behind you|on your
  left|on your right]``.

Coverage, measured with :func:`envs.babyai.mission_coverage` (``python -m envs.babyai --seeds 50``) on
minigrid 3.2.0: all 96 registered ``BabyAI-*`` levels x 50 seeds (4,800 missions) give no ``<unk>`` token
and at most 37 tokens; BossLevel, BossLevelNoUnlock, MiniBossLevel, SynthSeq and GoToSeq x 2,000 seeds
(10,000 missions) give no ``<unk>`` and at most 49 tokens. The grammar's worst case is 72 tokens (two
``and``-clauses of two ``put ... next to ...`` instructions, every description with a location, joined by
``, then``), which is the default ``max_len``: every mission any level can generate fits.

Words are lower-cased letter runs; a comma is a token of its own (so ``decode(encode(m)) == m`` for every
BabyAI mission); any other character is dropped. The module needs only numpy: importing it does not import
minigrid.
"""
from __future__ import annotations

import hashlib
import re

import numpy as np

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1

# Order is part of the format: appending is safe (ids stay), reordering changes every stored demo.
COLORS = ("red", "green", "blue", "purple", "yellow", "grey")  # minigrid.core.constants.COLOR_NAMES
OBJECT_TYPES = ("box", "ball", "key", "door", "object")  # verifier.OBJ_TYPES; "object" when the type is free
GRAMMAR_WORDS = (
    "go", "to", "pick", "up", "open", "put", "next",  # the four action instructions
    "and", "then", "after", "you", ",",  # AndInstr / BeforeInstr (", then") / AfterInstr ("after you")
    "the", "a",  # one matching object vs several
    "in", "front", "of", "behind", "on", "your", "left", "right",  # locations relative to the agent
)
VOCABULARY: tuple[str, ...] = (PAD, UNK, *GRAMMAR_WORDS, *COLORS, *OBJECT_TYPES)
VOCAB_SIZE = len(VOCABULARY)  # 35
VOCAB_VERSION = 1  # bump when VOCABULARY changes; stored demos record it with VOCAB_HASH
VOCAB_HASH = hashlib.sha256("\n".join(VOCABULARY).encode()).hexdigest()[:16]
# Longest mission the BabyAI grammar can produce: (put D next to D and put D next to D), then (... same ...)
# where a description D is at most 7 tokens ("a red ball in front of you"): 2 * (2 * 17 + 1) + 2 = 72.
DEFAULT_MAX_LEN = 72

_TOKEN_RE = re.compile(r"[a-z]+|,")


class MissionTooLongError(ValueError):
    """A mission has more tokens than the requested ``max_len``."""


class MissionTokenizer:
    """Maps BabyAI missions to fixed-length int64 token ids and back.

    >>> tok = MissionTokenizer()
    >>> ids = tok.encode("go to the red ball", max_len=6)
    >>> ids.tolist()
    [2, 3, 14, 24, 31, 0]
    >>> tok.decode(ids)
    'go to the red ball'

    Args:
        max_len: default padded length for :meth:`encode` (``DEFAULT_MAX_LEN`` fits every BabyAI mission).
    """

    pad_id = PAD_ID
    unk_id = UNK_ID
    vocabulary = VOCABULARY
    version = VOCAB_VERSION
    vocab_hash = VOCAB_HASH

    def __init__(self, max_len: int = DEFAULT_MAX_LEN) -> None:
        if not isinstance(max_len, (int, np.integer)) or max_len < 1:
            raise ValueError(f"max_len must be a positive int, got {max_len!r}")
        self.max_len = int(max_len)
        self._ids = {word: i for i, word in enumerate(VOCABULARY)}

    @property
    def vocab_size(self) -> int:
        return len(VOCABULARY)

    def __len__(self) -> int:
        return len(VOCABULARY)

    def tokenize(self, mission: str) -> list[str]:
        """Lower-cased words and commas of ``mission``; other characters are dropped."""
        if not isinstance(mission, str):
            raise TypeError(f"mission must be a str, got {type(mission).__name__}")
        return _TOKEN_RE.findall(mission.lower())

    def token_ids(self, mission: str) -> list[int]:
        """Unpadded ids; words outside the vocabulary map to ``<unk>`` (id 1)."""
        return [self._ids.get(word, UNK_ID) for word in self.tokenize(mission)]

    def encode(self, mission: str, max_len: int | None = None) -> np.ndarray:
        """Token ids of ``mission`` as int64 (max_len,), right-padded with ``<pad>`` = 0.

        Raises:
            MissionTooLongError: the mission has more than ``max_len`` tokens (never truncated silently,
                since a cut-off instruction is a different instruction).
        """
        max_len = self.max_len if max_len is None else max_len
        ids = self.token_ids(mission)
        if len(ids) > max_len:
            raise MissionTooLongError(
                f"mission has {len(ids)} tokens but max_len={max_len}: {mission!r}; "
                f"use max_len >= {len(ids)} (DEFAULT_MAX_LEN={DEFAULT_MAX_LEN} fits every BabyAI mission)"
            )
        out = np.zeros(max_len, dtype=np.int64)
        out[: len(ids)] = ids
        return out

    def encode_batch(self, missions: list[str], max_len: int | None = None) -> np.ndarray:
        """Token ids of several missions, int64 (B, max_len)."""
        max_len = self.max_len if max_len is None else max_len
        out = np.zeros((len(missions), max_len), dtype=np.int64)
        for row, mission in enumerate(missions):
            out[row] = self.encode(mission, max_len)
        return out

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """Mission text of a 1-D id sequence; padding is skipped, ids out of range raise ``ValueError``."""
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"decode expects a 1-D id sequence (L,), got shape {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= len(VOCABULARY)):
            raise ValueError(f"token ids must lie in [0, {len(VOCABULARY) - 1}], got {ids.min()}..{ids.max()}")
        words = [VOCABULARY[i] for i in ids.tolist() if i != PAD_ID]
        return " ".join(words).replace(" ,", ",")

    def unknown_words(self, mission: str) -> list[str]:
        """Words of ``mission`` that are not in the vocabulary (empty for every BabyAI mission)."""
        return [word for word in self.tokenize(mission) if word not in self._ids]
