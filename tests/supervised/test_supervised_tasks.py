"""The tasks' own pieces: patching, augmentation, model descriptions."""
import pytest
import torch
from torch import nn

from supervised.digits import DigitsConfig, DigitsTask, random_translate
from supervised.mnist1d import SIGNAL_LENGTH, PatchTransformerClassifier, PatchTransformerConfig, augment_signals


def test_patch_embedding_equals_a_strided_conv1d():
    model = PatchTransformerClassifier(PatchTransformerConfig(window=8, stride=2, d_model=16, num_heads=2))
    x = torch.randn(3, SIGNAL_LENGTH)
    patches = model.patches(x)
    assert patches.shape == (3, (SIGNAL_LENGTH - 8) // 2 + 1, 8) == (3, model.config.num_patches, 8)
    linear = model.classifier.embed
    conv = nn.Conv1d(1, 16, kernel_size=8, stride=2)
    conv.weight.data.copy_(linear.weight[:, None, :])
    conv.bias.data.copy_(linear.bias)
    torch.testing.assert_close(linear(patches), conv(x[:, None, :]).transpose(1, 2))  # (B, T, D)
    assert model(x).shape == (3, 10)


def test_patch_transformer_rejects_other_signal_lengths():
    with pytest.raises(ValueError, match=r"\(batch, 40\)"):
        PatchTransformerClassifier()(torch.randn(2, 39))


def test_signal_shift_moves_samples_and_fills_zeros():
    x = torch.arange(1, SIGNAL_LENGTH + 1, dtype=torch.float32).repeat(64, 1)  # no zero samples
    shifted = augment_signals(x, torch.Generator().manual_seed(0), shift=3)
    seen = set()
    for row in shifted:
        leading, trailing = (int((r != 0).int().argmax()) for r in (row, row.flip(0)))  # zeros at each end
        k = leading - trailing  # samples moved right (k > 0) or left (k < 0)
        seen.add(k)
        assert (row == 0).sum() == abs(k) <= 3
        assert torch.equal(row[max(k, 0):SIGNAL_LENGTH + min(k, 0)], x[0, max(-k, 0):SIGNAL_LENGTH - max(k, 0)])
    assert seen == set(range(-3, 4))
    circular = augment_signals(x, torch.Generator().manual_seed(0), shift=3, circular=True)
    assert torch.equal(circular.sort(dim=1).values, x)  # a rotation keeps every sample
    assert len({tuple(r.tolist()) for r in circular}) == 7  # all shifts in [-3, 3] occur


def test_augmentation_depends_only_on_the_generator():
    x = torch.randn(16, SIGNAL_LENGTH)
    a = augment_signals(x, torch.Generator().manual_seed(5), shift=2, scale=0.2, noise=0.1)
    torch.manual_seed(123)  # global state must not matter
    b = augment_signals(x, torch.Generator().manual_seed(5), shift=2, scale=0.2, noise=0.1)
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert torch.equal(augment_signals(x, torch.Generator()), x)


def test_random_translate_shifts_whole_images():
    images = torch.zeros(200, 1, 8, 8)
    images[:, :, 3, 4] = 1.0
    moved = random_translate(images, torch.Generator().manual_seed(0), shift=1)
    assert moved.shape == images.shape
    assert torch.equal(moved.sum(dim=(1, 2, 3)), torch.ones(200))  # one bright pixel, moved not lost
    rows, cols = moved[:, 0].flatten(1).argmax(1).div(8, rounding_mode="floor"), moved[:, 0].flatten(1).argmax(1) % 8
    assert set(rows.tolist()) == {2, 3, 4} and set(cols.tolist()) == {3, 4, 5}
    assert torch.equal(random_translate(images, torch.Generator(), shift=0), images)


def test_default_separable_net_has_under_a_third_of_its_twins_parameters():
    task = DigitsTask(DigitsConfig())
    info = task.describe_model(task.build_model())
    assert info["params"] == info["separable_params"]
    assert info["params_ratio_separable_to_plain"] < 1 / 3
    assert info["flops_ratio_separable_to_plain"] < 1 / 3
