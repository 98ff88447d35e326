import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.tokenizer import (
    COLORS, DEFAULT_MAX_LEN, PAD_ID, UNK_ID, VOCAB_HASH, VOCAB_SIZE, VOCABULARY, MissionTokenizer,
    MissionTooLongError,
)

tok = MissionTokenizer()
WORDS = [w for w in VOCABULARY[2:] if w != ","]


def test_special_tokens_and_fixed_vocabulary():
    assert VOCABULARY[PAD_ID] == "<pad>" and PAD_ID == 0
    assert VOCABULARY[UNK_ID] == "<unk>"
    assert len(set(VOCABULARY)) == VOCAB_SIZE == len(tok) == 35
    assert len(VOCAB_HASH) == 16


def test_vocabulary_matches_minigrids_language_constants():
    from minigrid.core.constants import COLOR_NAMES
    from minigrid.envs.babyai.core.verifier import LOC_NAMES, OBJ_TYPES

    assert set(COLORS) == set(COLOR_NAMES)
    assert set(OBJ_TYPES) <= set(VOCABULARY)
    assert set(LOC_NAMES) <= set(VOCABULARY)


@pytest.mark.parametrize(
    "mission",
    [
        "go to the red ball",
        "pick up a key on your left",
        "open the purple door, then go to a blue box in front of you",
        "put the grey key behind you next to a yellow object and pick up the ball after you open a door",
    ],
)
def test_round_trip(mission):
    ids = tok.encode(mission)
    assert ids.dtype == np.int64 and ids.shape == (DEFAULT_MAX_LEN,)
    n = len(tok.tokenize(mission))
    assert (ids[:n] > UNK_ID).all() and (ids[n:] == PAD_ID).all()
    assert tok.decode(ids) == mission


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=DEFAULT_MAX_LEN))
def test_round_trip_any_word_sequence(words):
    mission = " ".join(words)
    assert tok.decode(tok.encode(mission)) == mission


def test_too_long_mission_raises_instead_of_truncating():
    mission = "go to the red ball"
    np.testing.assert_array_equal(tok.encode(mission, max_len=5), tok.encode(mission)[:5])
    with pytest.raises(MissionTooLongError, match="has 5 tokens but max_len=4"):
        tok.encode(mission, max_len=4)


def test_unknown_words_map_to_unk_and_bad_input_fails():
    ids = tok.encode("get to the green goal square", max_len=8)
    assert ids.tolist() == [UNK_ID, 3, 14, 25, UNK_ID, UNK_ID, PAD_ID, PAD_ID]
    assert tok.unknown_words("get to the green goal square") == ["get", "goal", "square"]
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 34\]"):
        tok.decode([2, 35])
    with pytest.raises(ValueError, match=r"1-D"):
        tok.decode(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="positive int"):
        MissionTokenizer(max_len=0)


def test_encode_batch():
    batch = tok.encode_batch(["go to the red ball", "open the door"], max_len=6)
    assert batch.shape == (2, 6) and batch.dtype == np.int64
    assert tok.decode(batch[1]) == "open the door"


def test_covers_missions_of_representative_levels():
    from envs.babyai import mission_coverage

    levels = ["BabyAI-GoToRedBallGrey-v0", "BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0", "BabyAI-OpenDoorLoc-v0",
              "BabyAI-PutNextLocal-v0", "BabyAI-SynthSeq-v0", "BabyAI-BossLevel-v0"]
    report = mission_coverage(levels, seeds=range(20))
    assert report.missions == 140
    assert report.ok, (report.unknown_words, report.too_long)
    assert 20 < report.max_tokens <= DEFAULT_MAX_LEN  # BossLevel's compound missions are long


def test_covers_missions_of_every_registered_babyai_level():
    # ~1.5 s; `python -m envs.babyai --seeds 50` is the fuller check recorded in envs/tokenizer.py.
    from envs.babyai import babyai_levels, mission_coverage

    assert len(babyai_levels()) >= 90
    report = mission_coverage(seeds=range(10))
    assert report.levels == len(babyai_levels())
    assert report.ok, (report.unknown_words, report.too_long)
