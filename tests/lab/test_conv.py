import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lab.conv import (
    ConvBlock,
    ConvNet,
    ConvNetConfig,
    DepthwiseSeparableConv,
    PlainConvNet,
    SeparableConvNet,
    count_flops,
    make_norm,
    min_input_size,
)
from lab.attention import MultiHeadAttention
from lab.data import digits_splits
from lab.runtime import count_parameters

DIGITS_SHAPE = (1, 1, 8, 8)


# --- DepthwiseSeparableConv ------------------------------------------------------------------------------


@pytest.mark.parametrize("c_in, c_out, k", [(1, 1, 1), (3, 8, 3), (16, 32, 3), (8, 4, 5), (32, 64, 7)])
@pytest.mark.parametrize("bias", [False, True])
def test_separable_parameter_count(c_in, c_out, k, bias):
    block = DepthwiseSeparableConv(c_in, c_out, k, bias=bias, norm="none")
    expected = k * k * c_in + c_in * c_out + (c_in + c_out if bias else 0)
    assert count_parameters(block) == expected
    plain = ConvBlock(c_in, c_out, k, bias=bias, norm="none")
    assert count_parameters(plain) == k * k * c_in * c_out + (c_out if bias else 0)


def test_separable_depthwise_and_pointwise_layout():
    block = DepthwiseSeparableConv(6, 10, kernel_size=5, stride=2)
    assert block.conv_dw.groups == 6
    assert block.conv_dw.weight.shape == (6, 1, 5, 5)
    assert block.conv_dw.stride == (2, 2) and block.conv_dw.padding == (2, 2)
    assert block.conv_pw.weight.shape == (10, 6, 1, 1)
    # a norm after each conv makes their biases redundant, so bias=None leaves them out
    assert block.conv_dw.bias is None and block.conv_pw.bias is None
    assert isinstance(block.norm_dw, nn.BatchNorm2d) and isinstance(block.norm_pw, nn.BatchNorm2d)
    no_norm = DepthwiseSeparableConv(6, 10, norm="none", activation="none")
    assert no_norm.conv_dw.bias is not None and isinstance(no_norm.norm_pw, nn.Identity)
    assert isinstance(no_norm.act_dw, nn.Identity)


@pytest.mark.parametrize("block_class", [DepthwiseSeparableConv, ConvBlock])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("h, w", [(8, 8), (7, 7), (9, 6), (1, 5)])
def test_block_output_shape(block_class, stride, h, w):
    block = block_class(3, 5, kernel_size=3, stride=stride)
    y = block(torch.randn(2, 3, h, w))
    assert y.shape == (2, 5, math.ceil(h / stride), math.ceil(w / stride))


@pytest.mark.parametrize("stride, padding", [(1, None), (2, None), (1, 0)])
def test_separable_equals_manual_convolutions(stride, padding):
    block = DepthwiseSeparableConv(4, 7, kernel_size=3, stride=stride, padding=padding, bias=True, norm="none")
    x = torch.randn(3, 4, 9, 8)
    pad = 1 if padding is None else padding
    dw = F.conv2d(x, block.conv_dw.weight, block.conv_dw.bias, stride=stride, padding=pad, groups=4)
    expected = F.relu(F.conv2d(F.relu(dw), block.conv_pw.weight, block.conv_pw.bias))
    torch.testing.assert_close(block(x), expected)


def test_separable_with_batch_norm_equals_manual_in_eval_mode():
    block = DepthwiseSeparableConv(4, 6, norm="batch", activation="silu")
    block.train()
    block(torch.randn(8, 4, 6, 6))  # move the running statistics away from (0, 1)
    block.eval()
    x = torch.randn(2, 4, 6, 6)

    def bn(t, m):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, training=False, eps=m.eps)

    h = F.silu(bn(F.conv2d(x, block.conv_dw.weight, padding=1, groups=4), block.norm_dw))
    expected = F.silu(bn(F.conv2d(h, block.conv_pw.weight), block.norm_pw))
    torch.testing.assert_close(block(x), expected)


def test_conv_block_equals_manual_convolution():
    block = ConvBlock(3, 5, kernel_size=5, stride=2, bias=True, norm="none", activation="gelu")
    x = torch.randn(2, 3, 11, 10)
    expected = F.gelu(F.conv2d(x, block.conv.weight, block.conv.bias, stride=2, padding=2))
    torch.testing.assert_close(block(x), expected)


@pytest.mark.parametrize("channels", [1, 3, 12, 32, 64])
def test_group_norm_accepts_any_channel_count(channels):
    norm = make_norm("group", channels)
    assert isinstance(norm, nn.GroupNorm) and channels % norm.num_groups == 0
    assert norm(torch.randn(2, channels, 3, 3)).shape == (2, channels, 3, 3)


# --- FLOPs ----------------------------------------------------------------------------------------------


def test_count_flops_matches_hand_computation_for_one_conv():
    conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
    # (2, 3, 9, 9) -> (2, 8, 5, 5): every output value is 3*3*3 multiply-adds, counted as 2 FLOPs each
    assert count_flops(conv, (2, 3, 9, 9)) == 2 * (2 * 8 * 5 * 5) * (3 * 3 * 3)
    depthwise = nn.Conv2d(4, 4, kernel_size=3, padding=1, groups=4)
    assert count_flops(depthwise, torch.zeros(1, 4, 6, 6)) == 2 * (4 * 6 * 6) * (3 * 3)
    assert count_flops(nn.Linear(16, 10), (5, 16)) == 2 * 5 * 16 * 10


def test_count_flops_takes_a_dict_of_inputs():
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(6, 3)

        def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.a(x["a"]) + self.b(x["b"])

    example = {"a": torch.zeros(2, 4), "b": torch.zeros(2, 6)}
    assert count_flops(TwoInputs(), example) == 2 * 2 * (4 * 3 + 6 * 3)


def test_count_flops_leaves_the_model_untouched():
    net = SeparableConvNet()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    count_flops(net, torch.randn(*DIGITS_SHAPE))
    assert net.training
    for key, value in net.state_dict().items():  # eval mode: BatchNorm running stats did not move
        torch.testing.assert_close(value, before[key])


def test_separable_net_is_much_cheaper_than_its_plain_twin():
    config = ConvNetConfig(in_channels=1, num_classes=10)  # the default: digits
    separable, plain = SeparableConvNet(config), PlainConvNet(config)
    param_ratio = count_parameters(separable) / count_parameters(plain)
    flop_ratio = count_flops(separable, DIGITS_SHAPE) / count_flops(plain, DIGITS_SHAPE)
    print(f"separable / plain on 1x8x8 digits: params {param_ratio:.3f}, FLOPs {flop_ratio:.3f}")
    assert param_ratio <= 1 / 3, f"params ratio {param_ratio:.3f}"
    assert flop_ratio <= 1 / 3, f"FLOPs ratio {flop_ratio:.3f}"


def test_net_flops_match_hand_computation():
    # default layout on 8x8: stem 1->32 at 8x8, stage 32->64 at 4x4, stage 64->128 at 2x2, head 128->10
    stem, head = 2 * 64 * 9 * 1 * 32, 2 * 128 * 10
    separable = stem + 2 * 16 * (9 * 32 + 32 * 64) + 2 * 4 * (9 * 64 + 64 * 128) + head
    plain = stem + 2 * 16 * 9 * 32 * 64 + 2 * 4 * 9 * 64 * 128 + head
    assert count_flops(SeparableConvNet(), DIGITS_SHAPE) == separable
    assert count_flops(PlainConvNet(), DIGITS_SHAPE) == plain


# --- ConvNet --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("net_class", [SeparableConvNet, PlainConvNet])
@pytest.mark.parametrize("in_channels, h, w", [(1, 8, 8), (1, 7, 7), (3, 7, 7), (1, 28, 28), (3, 32, 48), (3, 64, 64)])
def test_net_works_for_many_image_sizes(net_class, in_channels, h, w):
    net = net_class(ConvNetConfig(in_channels=in_channels, num_classes=10))
    x = torch.randn(2, in_channels, h, w)
    assert net(x).shape == (2, 10)
    assert net.forward_features(x).shape == (2, net.features_dim) == (2, 128)


def test_net_without_classes_returns_features():
    net = SeparableConvNet(ConvNetConfig(num_classes=None, channels=(8, 16), strides=(1, 2)))
    x = torch.randn(3, 1, 8, 8)
    assert net.features_dim == 16
    torch.testing.assert_close(net(x), net.forward_features(x))


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "silu"])
def test_net_norm_and_activation_choices(norm, activation):
    config = ConvNetConfig(in_channels=3, channels=(8, 16), strides=(2, 2), norm=norm, activation=activation,
                           plain_stem=False, dropout=0.2)
    net = SeparableConvNet(config)
    assert isinstance(net.stem, DepthwiseSeparableConv)  # plain_stem=False: every stage is separable
    assert torch.isfinite(net(torch.randn(2, 3, 9, 9))).all()


def test_thin_constructors_pick_the_block_type():
    config = ConvNetConfig(block="plain")
    assert all(isinstance(b, DepthwiseSeparableConv) for b in SeparableConvNet(config).blocks)
    assert SeparableConvNet(config).config.block == "separable"
    assert all(isinstance(b, ConvBlock) for b in PlainConvNet(ConvNetConfig()).blocks)
    assert all(isinstance(b, ConvBlock) for b in ConvNet(config).blocks)
    assert isinstance(SeparableConvNet().stem, ConvBlock)  # the default stem is plain


def test_bad_inputs_raise_clear_errors():
    net = SeparableConvNet()
    with pytest.raises(ValueError, match=r"1 input channel.*\(2, 3, 8, 8\)"):
        net(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"rank-3"):
        net(torch.randn(1, 8, 8))
    with pytest.raises(TypeError, match="255"):
        net(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    deep = SeparableConvNet(ConvNetConfig(channels=(8, 16, 32, 64), strides=(2, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"8x8.*\(2, 2, 2, 2\).*9x9"):
        deep(torch.randn(2, 1, 8, 8))
    assert deep(torch.randn(2, 1, 9, 9)).shape == (2, 10)


@pytest.mark.parametrize("kwargs, match", [
    (dict(norm="layer"), "batch, group, none"),
    (dict(activation="tanh"), "relu, gelu, silu"),
    (dict(block="mbconv"), "separable, plain"),
    (dict(strides=(1, 2)), "one positive int per stage"),
    (dict(kernel_size=4), "odd"),
    (dict(channels=()), "non-empty"),
    (dict(dropout=1.0), "dropout"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvNetConfig(**kwargs)


@pytest.mark.parametrize("strides", [(1,), (2,), (3,), (1, 2, 2), (2, 2, 2, 2), (3, 1, 2), (2, 3), (4, 4)])
def test_min_input_size_is_the_exact_boundary(strides):
    def survives(n):  # odd kernel, padding k//2: a stage maps n -> ceil(n / s) and needs n >= s
        for s in strides:
            if n < s:
                return False
            n = math.ceil(n / s)
        return True

    m = min_input_size(strides)
    assert survives(m) and not survives(m - 1)
    net = SeparableConvNet(ConvNetConfig(channels=(4,) * len(strides), strides=strides, norm="none"))
    assert net(torch.randn(1, 1, m, m + 3)).shape == (1, 10)
    with pytest.raises(ValueError, match="too small"):
        net(torch.randn(1, 1, m + 3, m - 1))


@pytest.mark.parametrize("num_classes", [10, None])
def test_layer_groups_cover_every_parameter_once_in_order(num_classes):
    net = SeparableConvNet(ConvNetConfig(num_classes=num_classes))
    groups = net.layer_groups()
    assert groups[0] is net.stem
    assert groups[1:len(net.blocks) + 1] == list(net.blocks)
    if num_classes is not None:
        assert groups[-1] is net.head and len(groups) == len(net.blocks) + 2
    ids = [id(p) for g in groups for p in g.parameters()]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in net.parameters()}
    assert all(any(True for _ in g.parameters()) for g in groups)


@pytest.mark.parametrize("net_class", [SeparableConvNet, PlainConvNet])
def test_loss_goes_down_on_real_digits(net_class):
    train = digits_splits().train
    x = torch.as_tensor(train.x[:128], dtype=torch.float32) / 255.0  # (128, 1, 8, 8)
    y = torch.as_tensor(train.y[:128])
    net = net_class(ConvNetConfig())
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], f"{net_class.__name__} losses {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_count_flops_moves_the_example_to_the_models_device():
    # A model trained on CUDA is counted with the CPU observation the RL runs use (experiments.runs.bc); the meta
    # device stands in for another device here, so this runs without a GPU.
    model = nn.Linear(16, 10).to("meta")
    assert count_flops(model, torch.zeros(5, 16)) == 2 * 5 * 16 * 10
    two = nn.ModuleDict({"a": nn.Linear(4, 3)}).to("meta")

    class DictInput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = two

        def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.inner["a"](x["a"])

    assert count_flops(DictInput(), {"a": torch.zeros(2, 4)}) == 2 * 2 * 4 * 3


def test_count_flops_counts_attention_on_the_cpu_as_torch_counts_it_on_cuda():
    # scores Q K^T and the weighted sum of V: 2 x 2 x B x H x Lq x Lk x d (torch's sdpa_flop_count)
    class Attend(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)

    assert count_flops(Attend(), torch.randn(2, 4, 10, 16)) == 2 * 2 * 2 * 4 * 10 * 10 * 16

    class SelfAttention(nn.Module):  # the lab's attention block, as its transformers use it
        def __init__(self) -> None:
            super().__init__()
            self.attention = MultiHeadAttention(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attention(x, x, x)[0]

    projections = 2 * 5 * (3 * 16 * 16 + 16 * 16)  # q, k, v and output projections of 5 tokens
    assert count_flops(SelfAttention(), torch.randn(1, 5, 16)) == projections + 2 * 2 * 2 * 5 * 5 * 8
