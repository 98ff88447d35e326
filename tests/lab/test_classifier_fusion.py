import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.classifier import ClassifierConfig, TransformerClassifier
from lab.embedding import FieldEmbedding, GridPatchEmbedding
from lab.fusion import FusionConfig, FusionTransformer, ModalitySpec
from lab.layers import TransformerConfig

SMALL = TransformerConfig(d_model=32, num_heads=4, num_layers=2, dropout=0.0)


def classifier(**kwargs):
    cfg = dict(num_classes=3, input_dim=4, max_len=16, transformer=SMALL)
    cfg.update(kwargs)
    return TransformerClassifier(ClassifierConfig(**cfg)).eval()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("source", ["features", "tokens"])
def test_padding_does_not_change_logits(pooling, source):
    if source == "tokens":
        model = classifier(pooling=pooling, input_dim=None, vocab_size=9)
        x, extra = torch.randint(0, 9, (2, 5)), torch.randint(0, 9, (2, 3))
    else:
        model = classifier(pooling=pooling)
        x, extra = torch.randn(2, 5, 4), torch.randn(2, 3, 4)
    padded = torch.cat([x, extra], dim=1)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, 5:] = True
    torch.testing.assert_close(model(x), model(padded, mask), atol=1e-5, rtol=0)
    assert model(x).shape == (2, 3)


@settings(max_examples=20, deadline=None)
@given(st.permutations(list(range(7))))
def test_set_classifier_without_positions_is_permutation_invariant(perm):
    torch.manual_seed(0)
    model = classifier(positional="none", pooling="mean")
    x = torch.randn(3, 7, 4)
    torch.testing.assert_close(model(x[:, list(perm)]), model(x), atol=1e-5, rtol=1e-5)


def test_positions_make_order_matter():
    model = classifier()
    x = torch.randn(1, 7, 4)
    assert not torch.allclose(model(x), model(x.flip(1)), atol=1e-4)


def test_classifier_learns_and_features_mode():
    torch.manual_seed(0)
    model = classifier(num_classes=2).train()
    x = torch.randn(64, 8, 4)
    y = (x[:, :4, 0].sum(1) > x[:, 4:, 0].sum(1)).long()  # needs position: first half vs second half
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    features = classifier(num_classes=None)
    assert features(torch.randn(2, 5, 4)).shape == (2, features.features_dim)


def test_classifier_errors():
    with pytest.raises(ValueError, match="exactly one"):
        ClassifierConfig(num_classes=2)
    with pytest.raises(ValueError, match="pooling"):
        ClassifierConfig(num_classes=2, input_dim=3, pooling="max")
    model = classifier()
    with pytest.raises(ValueError, match=r"\(batch, length, 4\)"):
        model(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="padding_mask"):
        model(torch.randn(2, 5, 4), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="maximum length"):
        model(torch.randn(1, 17, 4))
    tokens = classifier(input_dim=None, vocab_size=5)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        tokens(torch.tensor([[1, 5]]))


MODALITIES = [
    ModalitySpec("image", "tokens", size=11, max_len=9, num_fields=3),
    ModalitySpec("direction", "tokens", size=4, max_len=1),
    ModalitySpec("mission", "tokens", size=20, max_len=6),
    ModalitySpec("audio", "features", size=5, max_len=4),
]


def fusion(**kwargs):
    return FusionTransformer(FusionConfig(MODALITIES, SMALL, **kwargs)).eval()


def batch(n=2):
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randint(0, 11, (n, 9, 3), generator=g),
        "direction": torch.randint(0, 4, (n, 1), generator=g),
        "mission": torch.randint(1, 20, (n, 6), generator=g),
        "audio": torch.randn(n, 4, 5, generator=g),
    }


def test_fusion_shapes_and_order_independence():
    model = fusion()
    inputs = batch()
    out = model(inputs)
    assert out.fused.shape == (2, 32) and out.tokens.shape == (2, 1 + 9 + 1 + 6 + 4, 32) and out.padding_mask is None
    reordered = dict(reversed(list(inputs.items())))
    torch.testing.assert_close(model(reordered).fused, out.fused)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_fusion_padding_is_inert(pooling):
    model = fusion(pooling=pooling)
    inputs = batch()
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, 3:] = True
    changed = dict(inputs, mission=inputs["mission"].clone())
    changed["mission"][:, 3:] = 7
    a = model(inputs, {"mission": mask}).fused
    torch.testing.assert_close(a, model(changed, {"mission": mask}).fused, atol=1e-5, rtol=0)
    # and equal to feeding the mission without its padded tail
    short = FusionTransformer(FusionConfig(MODALITIES, SMALL, pooling=pooling)).eval()
    short.load_state_dict(model.state_dict())
    torch.testing.assert_close(a, short(dict(inputs, mission=inputs["mission"][:, :3])).fused, atol=1e-5, rtol=0)


def test_fusion_uses_every_modality_and_learns():
    torch.manual_seed(0)
    model = fusion().train()
    inputs = batch(64)
    for name in inputs:  # every modality influences the fused vector
        changed = dict(inputs)
        changed[name] = inputs[name].flip(0)
        assert not torch.allclose(model.eval()(changed).fused[:1], model(inputs).fused[:1])
    model.train()
    head = torch.nn.Linear(32, 4)
    target = (inputs["direction"][:, 0] + inputs["image"][:, 4, 0]) % 4  # needs two modalities
    opt = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = F.cross_entropy(head(model(inputs).fused), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_fusion_errors():
    model = fusion()
    inputs = batch()
    with pytest.raises(ValueError, match="exactly the modalities"):
        model({k: v for k, v in inputs.items() if k != "audio"})
    with pytest.raises(ValueError, match="unknown modalities"):
        model(inputs, {"video": torch.zeros(2, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="expects token ids of shape"):
        model(dict(inputs, image=inputs["image"][..., :2]))
    with pytest.raises(ValueError, match="more than its max_len"):
        model(dict(inputs, mission=torch.ones(2, 7, dtype=torch.long)))
    with pytest.raises(ValueError, match="batch size"):
        model(dict(inputs, audio=inputs["audio"][:1]))
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        model(dict(inputs, image=inputs["image"] + 11))
    with pytest.raises(ValueError, match="padding mask"):
        model(inputs, {"mission": torch.zeros(2, 5, dtype=torch.bool)})
    with pytest.raises(ValueError, match="unique"):
        FusionConfig([MODALITIES[0], MODALITIES[0]])
    with pytest.raises(ValueError, match="unknown kind"):
        ModalitySpec("x", "pixels", 3, 3)


# ------------------------------------------------------------------------------------------- conv stem (patches)
def test_grid_patch_embedding_is_a_field_embedding_then_a_convolution():
    """GridPatchEmbedding = FieldEmbedding of each cell (its table, init scale and sqrt(D)), then Conv2d(D, D, k,
    stride) over the embedded grid, whose weight is ``merge``'s laid out (row, col, channel); row-major patches."""
    torch.manual_seed(0)
    vocab, fields, d, grid, kernel, stride = 11, 3, 8, (7, 7), 3, 2
    patches = GridPatchEmbedding(vocab, fields, d, grid, kernel, stride)
    cells = FieldEmbedding(vocab, fields, d)
    conv = torch.nn.Conv2d(d, d, kernel, stride)
    with torch.no_grad():
        cells.weight.copy_(patches.weight)
        conv.weight.copy_(patches.merge.weight.view(d, kernel, kernel, d).permute(0, 3, 1, 2))
        conv.bias.copy_(patches.merge.bias)
    ids = torch.randint(0, vocab, (4, 49, fields))
    expected = conv(cells(ids).view(4, 7, 7, d).permute(0, 3, 1, 2)).flatten(2).transpose(1, 2)  # (B, 9, D)
    torch.testing.assert_close(patches(ids), expected)
    assert patches.num_patches == 9 and patches(ids).shape == (4, 9, d)
    with pytest.raises(ValueError, match=r"shape \(batch, 49, 3\)"):
        patches(ids[:, :48])
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        patches(ids + 11)
    with pytest.raises(ValueError, match="kernel <= min"):
        GridPatchEmbedding(vocab, fields, d, grid, kernel=8, stride=1)


def test_a_conv_stem_modality_gives_its_patch_tokens_and_each_patch_sees_only_its_cells():
    image = ModalitySpec("image", "tokens", size=11, max_len=49, num_fields=3, grid=(7, 7), conv_stem=(3, 2))
    assert image.num_tokens == 9 and MODALITIES[0].num_tokens == 9  # 9 cells either way here
    model = FusionTransformer(FusionConfig([image, *MODALITIES[1:]], SMALL)).eval()
    inputs = dict(batch(), image=torch.randint(0, 11, (2, 49, 3), generator=torch.Generator().manual_seed(1)))
    out = model(inputs)
    assert out.tokens.shape == (2, 1 + 9 + 1 + 6 + 4, 32)
    embed = model.modalities["image"]
    changed = inputs["image"].clone()
    changed[:, 48] = (changed[:, 48] + 1) % 11  # the bottom-right cell: only the bottom-right patch covers it
    with torch.no_grad():
        moved = embed(changed) != embed(inputs["image"])
    assert moved[:, 8].all() and not moved[:, :8].any()
    with pytest.raises(ValueError, match="needs all 49 tokens"):
        model(dict(inputs, image=inputs["image"][:, :40]))
    with pytest.raises(ValueError, match="needs kind 'tokens' and grid"):
        ModalitySpec("image", "tokens", size=11, max_len=49, num_fields=3, conv_stem=(3, 2))
    with pytest.raises(ValueError, match="holds 42 tokens but max_len is 49"):
        ModalitySpec("image", "tokens", size=11, max_len=49, num_fields=3, grid=(6, 7), conv_stem=(3, 2))
    with pytest.raises(ValueError, match=r"\(kernel, stride\)"):
        ModalitySpec("image", "tokens", size=11, max_len=49, num_fields=3, grid=(7, 7), conv_stem=(3, 0))
