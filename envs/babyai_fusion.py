"""BabyAI observations as inputs of ``lab.FusionTransformer``: one definition for imitation and RL.

Behaviour cloning (``supervised``) and the SB3 agents (``agents``) both call these two functions, so a fusion
encoder pretrained on demonstrations loads into an RL policy unchanged.

Tokens: 49 grid cells (7 x 7, each three categorical fields: object, colour, state), or the 9 tokens of a conv
stem over them (``view_stem=(3, 2)``), 1 direction token, the mission words (padding trimmed to the longest
mission in the batch and masked) and, with an action history of k, k previous-action tokens, or one token of k
fields (``history_as_one_token``).
"""
from __future__ import annotations

from torch import Tensor

from envs.babyai import IMAGE_HIGH, NO_ACTION
from envs.tokenizer import DEFAULT_MAX_LEN, PAD_ID, VOCAB_SIZE
from lab.fusion import ModalitySpec

IMAGE_VOCAB = int(IMAGE_HIGH.max()) + 1  # one table for the three fields: indices 0..10
VIEW = (7, 7)
VIEW_CELLS = VIEW[0] * VIEW[1]


def babyai_modalities(max_mission_len: int = DEFAULT_MAX_LEN, action_history: int = 0,
                      view_stem: tuple[int, int] | None = None,
                      history_as_one_token: bool = False) -> list[ModalitySpec]:
    """The modalities of a BabyAI observation, in the order the fusion encoder sees them: image, direction,
    mission and, with ``action_history=k > 0``, the k previous actions (ids 0..6, ``NO_ACTION`` = 7).

    Cheaper variants (fewer tokens from the same observations; tell :func:`babyai_fusion_inputs` about the second):
    ``view_stem=(kernel, stride)``: the 7 x 7 cells are embedded by a conv stem (``lab.fusion.ModalitySpec``) and
    the image gives its patch tokens (9 for (3, 2)) instead of 49; ``history_as_one_token``: the k previous
    actions are one token of k fields (slot j's action embedded by a table of its own, summed) instead of k."""
    modalities = [
        ModalitySpec("image", "tokens", size=IMAGE_VOCAB, max_len=VIEW_CELLS, num_fields=3, grid=VIEW,
                     conv_stem=None if view_stem is None else tuple(view_stem)),
        ModalitySpec("direction", "tokens", size=4, max_len=1),
        ModalitySpec("mission", "tokens", size=VOCAB_SIZE, max_len=max_mission_len),
    ]
    if action_history:
        length, fields = (1, action_history) if history_as_one_token else (action_history, 1)
        modalities.append(ModalitySpec("prev_actions", "tokens", size=NO_ACTION + 1, max_len=length, num_fields=fields))
    return modalities


def babyai_fusion_inputs(
    image: Tensor, direction: Tensor, mission: Tensor, prev_actions: Tensor | None = None, *,
    history_as_one_token: bool = False,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Observation tensors -> (inputs, padding_masks) for ``FusionTransformer``.

    Accepts raw arrays (image uint8 (B, 7, 7, 3), integer direction (B,), mission int (B, L)) and SB3's
    preprocessed ones (floats; direction one-hot (B, 4) at rollout time, (B, 1, 4) from the rollout buffer).
    ``prev_actions`` (B, k), when the observation has it, becomes a modality of its own (never padded): k tokens,
    or one token of k fields with ``history_as_one_token`` (as :func:`babyai_modalities` was told). Mission
    padding beyond the longest mission of the batch is cut: padded tokens are masked anyway, and a 5-word mission
    then costs 5 tokens instead of ``max_len``.
    """
    if image.dim() != 4 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape (batch, 7, 7, 3), got {tuple(image.shape)}")
    batch = image.shape[0]
    if direction.is_floating_point():  # SB3 one-hot encodes Discrete(4): (B, 4), or (B, 1, 4) from its buffer
        if direction.numel() != batch * 4:
            raise ValueError(f"a float direction must be SB3's one-hot (batch, 4), got {tuple(direction.shape)}")
        direction = direction.reshape(batch, 4).argmax(dim=1)
    cells, direction, mission = (_as_ids(t) for t in (image.reshape(batch, -1, 3), direction.reshape(batch, 1), mission))
    if mission.dim() != 2 or mission.shape[0] != batch:
        raise ValueError(f"mission must have shape ({batch}, length), got {tuple(mission.shape)}")
    pad = mission == PAD_ID
    length = max(int((~pad).sum(dim=1).max()), 1) if mission.numel() else 1
    mission, pad = mission[:, :length], pad[:, :length]
    inputs = {"image": cells, "direction": direction, "mission": mission}
    if prev_actions is not None:
        history = _as_ids(prev_actions.reshape(batch, -1))  # (B, k)
        inputs["prev_actions"] = history.unsqueeze(1) if history_as_one_token else history  # (B, 1, k) or (B, k)
    return inputs, {"mission": pad}


def _as_ids(t: Tensor) -> Tensor:
    """Integer ids from an integer tensor or from SB3's float copy of one."""
    return t.round().long() if t.is_floating_point() else t.long()
