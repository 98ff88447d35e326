"""The SB3 features extractors: observation-space checks, masking, layouts, normalisation, and tiny learn() runs."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.preprocessing import preprocess_obs

import envs  # noqa: F401  (registers lab/*)
from agents.extractors import (
    ConvExtractor,
    FeatureTokenizer,
    FusionExtractor,
    ObservationSpaceError,
    TransformerExtractor,
    with_deltas,
)
from agents.config import AgentConfig
from agents.factory import make_agent
from lab.fusion import FusionConfig, FusionTransformer
from lab.layers import TransformerConfig

HISTORY = spaces.Dict({"obs": spaces.Box(-5, 5, (6, 3), np.float32), "mask": spaces.MultiBinary(6)})


def _history_batch(padding_fill: float) -> dict[str, torch.Tensor]:
    """Two observations: an episode start (only the last slot real) and a step 3 (last three real)."""
    obs = torch.randn(2, 6, 3)
    mask = torch.tensor([[0, 0, 0, 0, 0, 1], [0, 0, 0, 1, 1, 1]], dtype=torch.float32)
    obs = torch.where(mask.bool().unsqueeze(-1), obs, torch.full_like(obs, padding_fill))
    return {"obs": obs, "mask": mask}


# ------------------------------------------------------------------------------------------------ transformer
@pytest.mark.parametrize("deltas", [False, True], ids=["obs", "deltas"])
@pytest.mark.parametrize("pooling", ["cls", "mean", "last", "flatten"])
def test_history_output_ignores_the_padding_slots(pooling, deltas):
    extractor = TransformerExtractor(HISTORY, pooling=pooling, deltas=deltas, d_model=16, num_heads=2,
                                     num_layers=2).eval()
    torch.manual_seed(1)
    zeros = _history_batch(0.0)
    torch.manual_seed(1)
    junk = _history_batch(123.0)  # same real slots, garbage in the padding
    with torch.no_grad():
        out_zeros, out_junk = extractor(zeros), extractor(junk)
        real_changed = dict(zeros, obs=zeros["obs"].clone())
        real_changed["obs"][:, -1] += 1.0
        out_real = extractor(real_changed)
    assert out_zeros.shape == (2, 6 * 16 if pooling == "flatten" else 16)
    torch.testing.assert_close(out_zeros, out_junk)
    assert not torch.allclose(out_zeros, out_real)  # the real observations do matter


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 8), real=st.integers(1, 8), pooling=st.sampled_from(["cls", "mean", "last", "flatten"]),
       deltas=st.booleans(), fill=st.floats(-1e3, 1e3, allow_nan=False) | st.just(float("nan")))
def test_any_history_length_ignores_whatever_the_padding_holds(k, real, pooling, deltas, fill):
    real = min(real, k)  # HistoryWrapper: after t steps the last min(t + 1, K) slots are real
    space = spaces.Dict({"obs": spaces.Box(-5, 5, (k, 2), np.float32), "mask": spaces.MultiBinary(k)})
    torch.manual_seed(0)
    extractor = TransformerExtractor(space, pooling=pooling, deltas=deltas, d_model=8, num_heads=2).eval()
    obs = torch.randn(1, k, 2)
    mask = torch.zeros(1, k)
    mask[:, k - real:] = 1
    filled = obs.clone()
    filled[:, : k - real] = fill
    with torch.no_grad():
        torch.testing.assert_close(extractor({"obs": obs, "mask": mask}), extractor({"obs": filled, "mask": mask}))


def test_history_with_every_slot_marked_padding_still_sees_the_current_observation():
    extractor = TransformerExtractor(HISTORY, pooling="mean", d_model=16, num_heads=2).eval()
    batch = {"obs": torch.randn(3, 6, 3), "mask": torch.zeros(3, 6)}  # never produced by HistoryWrapper
    with torch.no_grad():
        out = extractor(batch)
    assert torch.isfinite(out).all()


def test_flatten_pooling_concatenates_every_token_state_in_slot_order():
    box = TransformerExtractor(spaces.Box(-1, 1, (4,)), pooling="flatten", d_model=8, num_heads=2).eval()
    rows = TransformerExtractor(spaces.Box(-1, 1, (5, 3)), pooling="flatten", d_model=8, num_heads=2).eval()
    history = TransformerExtractor(HISTORY, pooling="flatten", d_model=8, num_heads=2).eval()
    assert (box.features_dim, rows.features_dim, history.features_dim) == (4 * 8, 5 * 8, 6 * 8)
    x = torch.randn(3, 5, 3)
    with torch.no_grad():
        out = rows(x)
        states = rows.classifier.encode(x)[0]  # (B, T, D), no CLS token
    assert out.shape == (3, 40) and box(torch.randn(3, 4)).shape == (3, 32)
    torch.testing.assert_close(out.view(3, 5, 8), states)


def test_deltas_are_scaled_frame_differences_and_zero_next_to_padding():
    x = torch.tensor([[[9.0], [9.0], [1.0], [3.0], [7.0]]])  # slots 0, 1: padding (junk values)
    padding = torch.tensor([[True, True, False, False, False]])
    out = with_deltas(x, padding, scale=10.0)
    assert out.shape == (1, 5, 2)
    torch.testing.assert_close(out[..., 0], x[..., 0])  # the observations themselves, unchanged
    torch.testing.assert_close(out[0, :, 1], torch.tensor([0.0, 0.0, 0.0, 20.0, 40.0]))  # 0 where t-1 or t is padding
    no_mask = with_deltas(torch.tensor([[[1.0], [3.0]]]), None, scale=2.0)
    torch.testing.assert_close(no_mask[0, :, 1], torch.tensor([0.0, 4.0]))  # a Box (T, D): first row has no past


def test_deltas_change_the_features_and_need_a_sequence():
    torch.manual_seed(0)
    plain = TransformerExtractor(HISTORY, pooling="flatten", d_model=8, num_heads=2)
    torch.manual_seed(0)
    engineered = TransformerExtractor(HISTORY, pooling="flatten", deltas=True, d_model=8, num_heads=2)
    assert plain.classifier.embed.in_features == 3 and engineered.classifier.embed.in_features == 6
    with pytest.raises(ValueError, match="deltas=True needs a sequence"):
        TransformerExtractor(spaces.Box(-1, 1, (4,)), deltas=True)


def test_per_feature_tokens_give_each_feature_its_own_projection():
    tokenizer = FeatureTokenizer(num_features=4, d_model=8)
    x = torch.tensor([[1.0, 2.0, 0.0, -1.0]])
    tokens = tokenizer(x.unsqueeze(-1))
    assert tokens.shape == (1, 4, 8)
    expected = x[0, 1] * tokenizer.value_weight[1] + tokenizer.feature_embedding[1]
    torch.testing.assert_close(tokens[0, 1], expected)
    torch.testing.assert_close(tokens[0, 2], tokenizer.feature_embedding[2])  # a zero feature is its identity


def test_flat_box_output_depends_on_which_feature_holds_a_value():
    extractor = TransformerExtractor(spaces.Box(-1, 1, (4,)), d_model=16, num_heads=2).eval()
    with torch.no_grad():
        a = extractor(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
        b = extractor(torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
    assert a.shape == (1, 16) and not torch.allclose(a, b)


def test_transformer_rejects_spaces_it_cannot_encode_and_says_what_works():
    with pytest.raises(ObservationSpaceError, match="HistoryWrapper"):
        TransformerExtractor(spaces.Box(0, 255, (8, 8, 1), np.uint8))
    with pytest.raises(ObservationSpaceError, match="fusion"):
        TransformerExtractor(gym.make("lab/BabyAI-GoToRedBallGrey-v0").observation_space)
    with pytest.raises(ValueError, match="pooling 'last' needs a sequence"):
        TransformerExtractor(spaces.Box(-1, 1, (4,)), pooling="last")
    with pytest.raises(TypeError, match="valid: d_model"):
        TransformerExtractor(spaces.Box(-1, 1, (4,)), d_modle=32)


# ------------------------------------------------------------------------------------------------------- conv
def test_conv_channel_last_and_channel_first_images_give_the_same_features():
    first = ConvExtractor(spaces.Box(0, 255, (1, 8, 8), np.uint8), features_dim=32)
    last = ConvExtractor(spaces.Box(0, 255, (8, 8, 1), np.uint8), features_dim=32)
    last.load_state_dict(first.state_dict())  # same parameter shapes: only the layout differs
    images = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(first(images), last(images.permute(0, 2, 3, 1)))


def test_conv_lets_sb3_scale_uint8_images_and_never_divides_again():
    model = make_agent(AgentConfig("lab/DigitsBandit-v0", "ppo", "conv", encoder_kwargs=dict(features_dim=32)),
                       device="cpu")
    extractor = model.policy.features_extractor
    assert extractor.convnet.config.norm == "group"  # the RL default (train/eval switching, batch size 1)
    raw = torch.as_tensor(np.stack([model.observation_space.sample() for _ in range(3)]))  # uint8 (3, 1, 8, 8)
    with torch.no_grad():
        via_policy = model.policy.extract_features(raw)  # SB3's preprocess_obs divides by 255 once
        by_hand = extractor.projection(extractor.convnet(raw.float() / 255.0))
        doubled = extractor.projection(extractor.convnet(raw.float() / 255.0 / 255.0))
    torch.testing.assert_close(via_policy, by_hand)
    assert not torch.allclose(via_policy, doubled)


def test_conv_with_normalize_images_false_is_told_its_inputs_are_normalised():
    model = make_agent(AgentConfig("lab/DigitsBandit-v0", "ppo", "conv", policy_kwargs=dict(normalize_images=False)),
                       device="cpu")
    assert model.policy.features_extractor_kwargs["normalized_image"] is True
    float_images = spaces.Box(-1.0, 1.0, (3, 16, 16), np.float32)
    with pytest.raises(ObservationSpaceError, match="normalized_image=True"):
        ConvExtractor(float_images)
    assert ConvExtractor(float_images, normalized_image=True)(torch.zeros(2, 3, 16, 16)).shape == (2, 128)


def test_conv_rejects_non_images_and_too_small_images():
    with pytest.raises(ObservationSpaceError, match="needs an image"):
        ConvExtractor(spaces.Box(-1, 1, (4,)))
    with pytest.raises(ObservationSpaceError, match="too small"):
        ConvExtractor(spaces.Box(0, 255, (1, 2, 2), np.uint8), strides=(2, 2, 2))


# ----------------------------------------------------------------------------------------------------- fusion
def test_fusion_exposes_its_fusion_transformer_and_matches_the_shared_babyai_mapping():
    from envs.babyai_fusion import babyai_fusion_inputs

    env = gym.make("lab/BabyAI-GoToRedBallGrey-v0")
    extractor = FusionExtractor(env.observation_space, d_model=32, num_heads=4).eval()
    assert isinstance(extractor.fusion, FusionTransformer) and extractor.features_dim == 32
    pretrained = FusionTransformer(extractor.fusion.config)
    extractor.fusion.load_state_dict(pretrained.state_dict())  # a BC encoder's state dict loads directly

    obs = [env.reset(seed=s)[0] for s in range(3)]
    raw = {k: torch.as_tensor(np.stack([o[k] for o in obs])) for k in obs[0]}
    sb3 = preprocess_obs(raw, env.observation_space)  # what the policy hands the extractor: floats, one-hot direction
    inputs, masks = babyai_fusion_inputs(raw["image"], raw["direction"], raw["mission"])
    buffer_style = dict(sb3, direction=sb3["direction"].unsqueeze(1))  # SB3's rollout buffer: (B, 1, 4)
    with torch.no_grad():
        expected = pretrained(inputs, masks).fused
        torch.testing.assert_close(extractor(sb3), expected)
        torch.testing.assert_close(extractor(buffer_style), expected)


def test_fusion_flat_readout_is_cls_and_the_49_image_cells_flattened():
    env = gym.make("lab/BabyAI-GoToRedBallGrey-v0")
    torch.manual_seed(0)
    flat = FusionExtractor(env.observation_space, pooling="flat", d_model=16, num_heads=2).eval()
    torch.manual_seed(0)
    cls = FusionExtractor(env.observation_space, d_model=16, num_heads=2).eval()
    assert flat.features_dim == (1 + 49) * 16 and cls.features_dim == 16
    assert flat.fusion.state_dict().keys() == cls.fusion.state_dict().keys()  # same encoder, only the readout differs
    batch = _sb3_batch(env, seeds=range(2))
    with torch.no_grad():
        out, summary = flat(batch), cls(batch)
    assert out.shape == (2, 50 * 16)
    torch.testing.assert_close(out.view(2, 50, 16)[:, 0], summary)  # the CLS state first, then the cells
    with pytest.raises(ValueError, match="'flat' reads BabyAI's image cells"):
        FusionExtractor(spaces.Dict({"state": spaces.Box(-1, 1, (3,))}), pooling="flat")


def test_fusion_with_a_view_stem_and_one_history_token_reads_cls_and_the_9_patches_of_the_shared_encoder():
    """The cheap recipe's encoder (agents.presets): the same FusionTransformer a BC policy would build from
    babyai_modalities(view_stem=(3, 2), history_as_one_token=True), read out flat as CLS + 9 patch tokens."""
    from envs.babyai_fusion import babyai_fusion_inputs, babyai_modalities

    env = gym.make("lab/BabyAI-GoToRedBallGrey-v0", action_history=4)
    extractor = FusionExtractor(env.observation_space, pooling="flat", view_stem=[3, 2], history_as_one_token=True,
                                d_model=16, num_heads=1).eval()
    assert extractor.features_dim == (1 + 9) * 16
    shared = FusionTransformer(FusionConfig(babyai_modalities(action_history=4, view_stem=(3, 2),
                                                              history_as_one_token=True), extractor.fusion.config.transformer))
    extractor.fusion.load_state_dict(shared.state_dict())  # strict: the same keys and shapes
    batch = _sb3_batch(env, seeds=range(2), steps=3)
    inputs, masks = babyai_fusion_inputs(batch["image"], batch["direction"], batch["mission"], batch["prev_actions"],
                                         history_as_one_token=True)
    with torch.no_grad():
        tokens = shared.eval()(inputs, masks).tokens
        torch.testing.assert_close(extractor(batch), tokens[:, :10].flatten(1))
    with pytest.raises(ValueError, match="other dicts have neither"):
        FusionExtractor(spaces.Dict({"state": spaces.Box(-1, 1, (3,))}), view_stem=(3, 2))
    with pytest.raises(ValueError, match="needs 'prev_actions'"):
        FusionExtractor(gym.make("lab/BabyAI-GoToRedBallGrey-v0").observation_space, history_as_one_token=True)


def _sb3_batch(env, seeds, steps: int = 0) -> dict[str, torch.Tensor]:
    """What SB3 hands the extractor: observations after ``steps`` random actions, preprocessed (floats, one-hot)."""
    obs = []
    for seed in seeds:
        o, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        for _ in range(steps):
            o, *_ = env.step(env.action_space.sample())
        obs.append(o)
    raw = {k: torch.as_tensor(np.stack([o[k] for o in obs])) for k in obs[0]}
    return preprocess_obs(raw, env.observation_space)


def test_a_behaviour_cloning_encoder_with_previous_actions_loads_and_computes_the_same_features():
    """supervised's BC policy: FusionTransformer(babyai_modalities(action_history=4), d64 / 4 heads / 2 layers)."""
    from envs.babyai_fusion import babyai_fusion_inputs, babyai_modalities

    bc_config = TransformerConfig(d_model=64, num_heads=4, num_layers=2, dim_feedforward=128, dropout=0.0)
    torch.manual_seed(3)
    bc = FusionTransformer(FusionConfig(babyai_modalities(action_history=4), bc_config)).eval()
    env = gym.make("lab/BabyAI-GoToRedBallGrey-v0", action_history=4)
    as_config = FusionExtractor(env.observation_space, config=bc_config).eval()
    as_kwargs = FusionExtractor(env.observation_space, d_model=64, num_heads=4, num_layers=2, dim_feedforward=128,
                                activation="gelu").eval()  # TransformerConfig's default activation, not FUSION_DEFAULTS'
    for extractor in (as_config, as_kwargs):
        extractor.fusion.load_state_dict(bc.state_dict())  # strict: every key and shape matches
    batch = _sb3_batch(env, seeds=range(3), steps=3)
    assert (batch["prev_actions"][:, :3] < 7).all()  # three real previous actions, then NO_ACTION
    inputs, masks = babyai_fusion_inputs(batch["image"], batch["direction"], batch["mission"], batch["prev_actions"])
    with torch.no_grad():
        expected = bc(inputs, masks).fused
        for extractor in (as_config, as_kwargs):
            torch.testing.assert_close(extractor(batch), expected)
        moved = dict(batch, prev_actions=torch.full_like(batch["prev_actions"], 2.0))
        assert not torch.allclose(as_config(moved), expected)  # the previous actions are an input
    with pytest.raises(TypeError, match="either config="):
        FusionExtractor(env.observation_space, config=bc_config, d_model=64)


def test_a_bc_encoder_and_head_load_into_a_ppo_agent_on_the_action_history_env(tiny_algo_kwargs):
    from envs.babyai_fusion import babyai_modalities

    bc_config = TransformerConfig(d_model=64, num_heads=4, num_layers=2, dim_feedforward=128, dropout=0.0)
    bc = FusionTransformer(FusionConfig(babyai_modalities(action_history=4), bc_config))
    head = torch.nn.Linear(64, 7)
    config = AgentConfig("lab/BabyAI-GoToRedBallGrey-v0", "ppo", "fusion", env_kwargs=dict(action_history=4),
                         encoder_kwargs=dict(config=bc_config), policy_kwargs=dict(net_arch=dict(pi=[], vf=[])),
                         algo_kwargs=tiny_algo_kwargs["ppo"])
    model = make_agent(config, device="cpu", seed=0, pretrained=bc.state_dict(), pretrained_head=head.state_dict())
    for key, value in bc.state_dict().items():
        torch.testing.assert_close(model.policy.features_extractor.fusion.state_dict()[key], value, rtol=0, atol=0)
    torch.testing.assert_close(model.policy.action_net.weight, head.weight, rtol=0, atol=0)
    model.learn(32)
    model.get_env().close()


def test_fusion_accepts_a_generic_dict_and_rejects_a_box():
    space = spaces.Dict({
        "state": spaces.Box(-1, 1, (3,)), "frames": spaces.Box(-1, 1, (5, 2)), "mode": spaces.Discrete(4),
    })
    extractor = FusionExtractor(space, d_model=16, num_heads=2)
    samples = [space.sample() for _ in range(2)]
    batch = preprocess_obs({k: torch.as_tensor(np.stack([s[k] for s in samples])) for k in space.spaces}, space)
    assert extractor(batch).shape == (2, 16)
    with pytest.raises(ObservationSpaceError, match="encoder 'transformer'"):
        FusionExtractor(spaces.Box(-1, 1, (4,)))


@pytest.mark.parametrize("env_id", ["BabyAI-GoToLocal-v0", "MiniGrid-Empty-5x5-v0"])
def test_fusion_on_a_raw_minigrid_space_names_the_wrapper_to_use(env_id):
    import minigrid  # noqa: F401  (registers the raw ids)

    from envs.make import make_env

    raw = gym.make(env_id)
    assert not isinstance(raw.observation_space["mission"], spaces.Box)  # minigrid's MissionSpace: text
    wrappers = r"raw MiniGrid .*envs\.babyai\.BabyAIObservation.*envs\.make\.make_env"
    with pytest.raises(ObservationSpaceError, match=wrappers):
        FusionExtractor.check_observation_space(raw.observation_space)
    with pytest.raises(ObservationSpaceError, match="raw MiniGrid"):
        FusionExtractor(raw.observation_space)
    wrapped = make_env(env_id)  # what the message recommends works
    FusionExtractor.check_observation_space(wrapped.observation_space)
    assert FusionExtractor(wrapped.observation_space, d_model=16, num_heads=2).features_dim == 16
    raw.close()
    wrapped.close()


# ---------------------------------------------------------------------------------------------- tiny learning
CASES = [  # (env, encoder, encoder_kwargs)
    ("CartPole-v1", "transformer", {}),
    ("lab/CartPoleNoVelHistory-v1", "transformer", {"pooling": "last"}),
    ("lab/DigitsBandit-v0", "conv", {"channels": (8, 16), "strides": (1, 2), "features_dim": 32}),
    ("lab/BabyAI-GoToRedBallGrey-v0", "fusion", {}),
]


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn"])
@pytest.mark.parametrize("env_id,encoder,encoder_kwargs", CASES, ids=[c[1] + "-" + c[0] for c in CASES])
def test_each_extractor_trains_with_each_algorithm(
    env_id, encoder, encoder_kwargs, algo, tiny_algo_kwargs, tiny_transformer, track
):
    if encoder in ("transformer", "fusion"):
        encoder_kwargs = {**tiny_transformer, **encoder_kwargs}
    config = AgentConfig(env_id, algo, encoder, encoder_kwargs=encoder_kwargs, algo_kwargs=tiny_algo_kwargs[algo])
    model = make_agent(config, seed=0, device="cpu")
    extractor = model.policy.q_net.features_extractor if algo == "dqn" else model.policy.features_extractor
    tracker = track(extractor)
    model.learn(64)
    changed = tracker.changed()
    assert sum(changed.values()) > len(changed) // 2, "gradients should reach most extractor parameters"
    model.get_env().close()
