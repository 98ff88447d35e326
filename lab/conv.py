"""Depthwise-separable convolution, its plain twin, and a small image classifier built from either.

A depthwise-separable conv factors a k x k conv into a per-channel (depthwise, ``groups=C_in``) k x k conv
followed by a 1x1 (pointwise) conv that mixes channels. Weights drop from ``k*k*C_in*C_out`` to
``k*k*C_in + C_in*C_out`` and multiply-adds by the same factor, which is the point of MobileNet and Xception.

``SeparableConvNet`` and ``PlainConvNet`` share one layout (``ConvNet``) and one config, so an experiment can
swap the block type and nothing else. Both work for any image size whose strides leave at least one pixel.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

NORM_CHOICES = ("batch", "group", "none")
ACTIVATION_CHOICES = ("relu", "gelu", "silu", "none")
BLOCK_CHOICES = ("separable", "plain")
GROUP_NORM_MAX_GROUPS = 8  # at most 8 groups: keeps >= 4 channels per group for 32+ channels on tiny maps

NormSpec = str | Callable[[int], nn.Module]


def make_norm(norm: NormSpec, num_channels: int) -> nn.Module:
    """Normalization over ``num_channels`` feature maps; ``"none"`` gives ``nn.Identity()``.

    ``norm`` is a name from ``NORM_CHOICES`` or a factory ``num_channels -> nn.Module``. Group norm uses
    ``gcd(num_channels, 8)`` groups, so any channel count is valid (a single channel gets one group).
    """
    if callable(norm):
        return norm(num_channels)
    if norm == "batch":
        return nn.BatchNorm2d(num_channels)
    if norm == "group":
        return nn.GroupNorm(math.gcd(num_channels, GROUP_NORM_MAX_GROUPS), num_channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORM_CHOICES)} or pass a factory")


def make_activation(activation: str | type[nn.Module]) -> nn.Module:
    """Activation module from a name in ``ACTIVATION_CHOICES`` or a module class (instantiated without args)."""
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation()
    table = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "none": nn.Identity}
    if activation not in table:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATION_CHOICES)}")
    return table[activation]()


def _resolve_bias(bias: bool | None, norm: NormSpec) -> bool:
    # A norm right after a conv subtracts the mean, which cancels a conv bias: only add one without a norm.
    return (norm == "none") if bias is None else bias


def _init_conv(conv: nn.Conv2d) -> None:
    # Kaiming-normal with fan_in keeps activation variance through ReLU-like nets even with norm="none"
    # (fan_out, as in torchvision, would shrink a depthwise conv's output by sqrt(C) since its fan_in is k*k).
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class ConvBlock(nn.Module):
    """Plain k x k conv -> norm -> activation. ``(B, C_in, H, W) -> (B, C_out, ceil(H/stride), ceil(W/stride))``.

    The output size holds for odd ``kernel_size`` with the default ``padding=None`` (``kernel_size // 2``);
    an even kernel with that padding grows each side by one at stride 1. ``bias=None`` adds a bias only when
    ``norm="none"``. Parameters with no norm: ``k*k*C_in*C_out`` (+ ``C_out`` with bias).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        bias: bool | None = None,
        norm: NormSpec = "batch",
        activation: str | type[nn.Module] = "relu",
    ) -> None:
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=_resolve_bias(bias, norm))
        self.norm = make_norm(norm, out_channels)
        self.act = make_activation(activation)
        _init_conv(self.conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class DepthwiseSeparableConv(nn.Module):
    """Depthwise k x k conv (``groups=C_in``, carries the stride) -> norm -> act -> pointwise 1x1 -> norm -> act.

    Same interface and output shape as ``ConvBlock``. Normalization and activation follow *each* conv, as in
    MobileNetV1 and timm's ``DepthwiseSeparableConv``: without a nonlinearity between them the two convs
    compose to a single rank-limited linear conv. Optional parts are ``nn.Identity()``, so ``forward`` has no
    branches. Parameters with no norm: ``k*k*C_in + C_in*C_out`` (+ ``C_in + C_out`` with bias).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        bias: bool | None = None,
        norm: NormSpec = "batch",
        activation: str | type[nn.Module] = "relu",
    ) -> None:
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        bias = _resolve_bias(bias, norm)
        self.conv_dw = nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding, groups=in_channels, bias=bias)
        self.norm_dw = make_norm(norm, in_channels)
        self.act_dw = make_activation(activation)
        self.conv_pw = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        self.norm_pw = make_norm(norm, out_channels)
        self.act_pw = make_activation(activation)
        _init_conv(self.conv_dw)
        _init_conv(self.conv_pw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_dw(self.norm_dw(self.conv_dw(x)))  # (B, C_in, H', W'): spatial filtering per channel
        return self.act_pw(self.norm_pw(self.conv_pw(x)))  # (B, C_out, H', W'): channel mixing


BLOCKS: dict[str, type[nn.Module]] = {"separable": DepthwiseSeparableConv, "plain": ConvBlock}


@dataclass(frozen=True)
class ConvNetConfig:
    """Layout of ``ConvNet``; the defaults fit scikit-learn's 8x8 digits (1 channel, 10 classes)."""

    in_channels: int = 1  # grayscale digits; 3 for RGB or MiniGrid's (7, 7, 3) observations made channel-first
    num_classes: int | None = 10  # digits; None -> forward returns (B, features_dim) features (e.g. an SB3 extractor)
    channels: tuple[int, ...] = (32, 64, 128)  # output channels per stage (stem first); doubling as the map halves
    strides: tuple[int, ...] = (1, 2, 2)  # one per stage: 8x8 -> 8 -> 4 -> 2, enough context without a 1x1 map
    kernel_size: int = 3  # 3x3 is the standard spatial extent; must be odd so padding k//2 keeps the size
    plain_stem: bool = True  # a separable conv on 1 input channel is a rank-1 conv: keep the first layer plain
    norm: str = "batch"  # fastest to train supervised; use "group" or "none" for SB3 policies (train/eval drift)
    activation: str = "relu"  # cheap and standard for small conv nets
    dropout: float = 0.0  # before the head; the nets are small, so off unless a long run overfits
    block: str = "separable"  # block type of every stage after the stem ("plain" gives the twin net)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))  # accept lists from CLIs / JSON
        object.__setattr__(self, "strides", tuple(self.strides))
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None (features only), got {self.num_classes}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be a non-empty sequence of positive ints, got {self.channels}")
        if len(self.strides) != len(self.channels) or min(self.strides) < 1:
            raise ValueError(
                f"strides must hold one positive int per stage ({len(self.channels)} for channels {self.channels}), "
                f"got {self.strides}"
            )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (padding k//2 keeps the size), got {self.kernel_size}")
        if self.norm not in NORM_CHOICES:
            raise ValueError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORM_CHOICES)}")
        if self.activation not in ACTIVATION_CHOICES:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATION_CHOICES)}")
        if self.block not in BLOCK_CHOICES:
            raise ValueError(f"unknown block {self.block!r}; choose one of {', '.join(BLOCK_CHOICES)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def min_input_size(strides: Sequence[int]) -> int:
    """Smallest height/width that every stage can take: a stride-s stage needs an input of at least s pixels.

    With odd kernels and padding k//2 a stage maps size n to ceil(n / s); a stride-s stage fed fewer than s
    pixels would have to shrink the map below one pixel. Walks the stages backwards from a 1-pixel output.
    """
    need = 1  # size required after the last stage
    for s in reversed(strides):
        need = max(s, (need - 1) * s + 1)  # smallest n with n >= s and ceil(n / s) >= need
    return need


class ConvNet(nn.Module):
    """Stem -> stages -> global average pool -> dropout -> linear head.

    ``(B, C, H, W)`` float -> ``(B, num_classes)``, or ``(B, features_dim)`` when ``num_classes`` is None.
    Stage i has ``channels[i]`` outputs and ``strides[i]``; stage 0 (the stem) is a plain conv when
    ``plain_stem``, every other stage uses ``config.block``. Global average pooling makes the net accept any
    image of at least ``min_input_size`` pixels per side. The head's linear layer starts near zero
    (std 0.01, zero bias) so initial logits are uniform; convs use Kaiming-normal (fan_in).
    """

    def __init__(self, config: ConvNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else ConvNetConfig()
        block_kwargs = dict(kernel_size=config.kernel_size, norm=config.norm, activation=config.activation)
        stem_class = ConvBlock if config.plain_stem else BLOCKS[config.block]
        in_channels = (config.in_channels, *config.channels[:-1])
        self.stem = stem_class(config.in_channels, config.channels[0], stride=config.strides[0], **block_kwargs)
        self.blocks = nn.Sequential(*(
            BLOCKS[config.block](c_in, c_out, stride=s, **block_kwargs)
            for c_in, c_out, s in zip(in_channels[1:], config.channels[1:], config.strides[1:])
        ))
        self.features_dim = config.channels[-1]
        self.min_input_size = min_input_size(config.strides)
        if config.num_classes is None:
            self.head: nn.Module = nn.Identity()
        else:
            linear = nn.Linear(self.features_dim, config.num_classes)
            nn.init.normal_(linear.weight, std=0.01)
            nn.init.zeros_(linear.bias)
            self.head = nn.Sequential(nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity(), linear)

    def _check_input(self, x: torch.Tensor) -> None:
        c = self.config
        if x.dim() != 4:
            raise ValueError(
                f"expected images (B, {c.in_channels}, H, W), got a rank-{x.dim()} tensor of shape {tuple(x.shape)}"
            )
        if x.shape[1] != c.in_channels:
            raise ValueError(
                f"expected {c.in_channels} input channel(s) (B, {c.in_channels}, H, W), got shape {tuple(x.shape)}; "
                "channel-last images need x.permute(0, 3, 1, 2)"
            )
        if not x.is_floating_point():
            raise TypeError(f"expected a floating-point tensor, got {x.dtype}; divide uint8 images by 255")
        h, w = x.shape[-2:]
        if min(h, w) < self.min_input_size:
            raise ValueError(
                f"input of size {h}x{w} is too small for strides {c.strides}: a stage would shrink the feature map "
                f"below 1 pixel; these strides need at least {self.min_input_size}x{self.min_input_size} "
                "(use smaller strides or a larger input)"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, features_dim)``: the pooled output of the last stage."""
        self._check_input(x)
        x = self.blocks(self.stem(x))  # (B, features_dim, H', W')
        return x.mean(dim=(2, 3))  # (B, features_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def layer_groups(self) -> list[nn.Module]:
        """Modules ordered body -> head: stem, each later stage, then the head (left out when it has no
        parameters, i.e. ``num_classes=None``). Every parameter lies in exactly one group, for ``freeze_to(n)``
        and discriminative learning rates."""
        groups = [self.stem, *self.blocks]
        if self.config.num_classes is not None:
            groups.append(self.head)
        return groups


class SeparableConvNet(ConvNet):
    """``ConvNet`` whose stages are ``DepthwiseSeparableConv``; overrides ``config.block``."""

    def __init__(self, config: ConvNetConfig | None = None) -> None:
        super().__init__(replace(config or ConvNetConfig(), block="separable"))


class PlainConvNet(ConvNet):
    """The plain twin: same config and layout, ``ConvBlock`` stages; overrides ``config.block``."""

    def __init__(self, config: ConvNetConfig | None = None) -> None:
        super().__init__(replace(config or ConvNetConfig(), block="plain"))


def _attention_flops(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int], *args: Any,
                     out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# torch's FlopCounterMode counts SDPA's CUDA kernels but not the CPU one (it counted 0 for every attention layer).
_CPU_ATTENTION_FLOPS = {op: _attention_flops for op in (
    getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None),) if op is not None}


def count_flops(model: nn.Module, example: torch.Tensor | Mapping[str, torch.Tensor] | Sequence[int]) -> int:
    """Total FLOPs of one forward pass, as counted by ``torch.utils.flop_counter.FlopCounterMode``.

    ``example`` is an input tensor, a dict of input tensors (``model(example)``, e.g. a Dict observation), or
    a tensor's full shape including the batch, e.g. ``(1, 1, 8, 8)`` (zeros are used, in the model's dtype).
    Inputs go to the model's device first, so a CPU example counts a model trained on CUDA. Convs, linear
    layers and attention (scores and weighted sum, ``2 * 2 * B * H * Lq * Lk * d``, as torch counts its CUDA
    kernels; on the CPU too, where torch's counter has no formula for its fused kernel) count ``2 * MACs``;
    biases, norms, activations, softmax and pooling count nothing. Runs in eval mode under ``torch.no_grad()``
    and restores the model's training mode afterwards.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else None
    if isinstance(example, torch.Tensor):
        example = example.to(device)
    elif isinstance(example, Mapping):
        example = {key: value.to(device) for key, value in example.items()}
    else:
        example = torch.zeros(tuple(example), device=device, dtype=param.dtype if param is not None else None)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION_FLOPS)
        with torch.no_grad(), counter:
            model(example)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
