"""scikit-learn's 8x8 handwritten digits with ``lab.SeparableConvNet`` or, with ``--model.block plain``, its
plain-conv twin. Results report the parameters and FLOPs of both nets, so every run shows the trade-off."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lab.conv import (
    ACTIVATION_CHOICES,
    BLOCK_CHOICES,
    NORM_CHOICES,
    ConvNet,
    ConvNetConfig,
    PlainConvNet,
    SeparableConvNet,
    count_flops,
)
from lab.data import digits_splits
from lab.runtime import count_parameters
from supervised.task import InMemoryDataset, Task, TaskData
from supervised.configs import TrainConfig

IMAGE_SHAPE = (1, 8, 8)  # one grey channel, 8x8 pixels
NUM_CLASSES = 10
NETS: dict[str, type[ConvNet]] = {"separable": SeparableConvNet, "plain": PlainConvNet}  # twins: one config


@dataclass
class DigitsNetConfig:
    """``lab.ConvNetConfig`` for 1-channel 8x8 digits and 10 classes (those two are fixed by the task)."""

    block: str = "separable"
    """separable (depthwise + pointwise convs) or plain (the twin with ordinary convs)"""
    channels: tuple[int, ...] = (32, 64, 128, 128, 256)
    """output channels per stage, stem first (the spike's layout: 67k parameters, 1/8 of the plain twin's)"""
    strides: tuple[int, ...] = (1, 1, 2, 1, 2)
    """one stride per stage: 8x8 -> 8 -> 8 -> 4 -> 4 -> 2"""
    kernel_size: int = 3
    """odd spatial kernel size"""
    plain_stem: bool = True
    """keep the first conv plain: a separable conv of a 1-channel image is a rank-1 conv"""
    norm: str = "batch"
    """batch, group or none"""
    activation: str = "relu"
    """relu, gelu, silu or none"""
    dropout: float = 0.2
    """dropout before the linear head (1259 training images: the net would otherwise memorise them)"""

    def __post_init__(self) -> None:
        for name, value, choices in (("block", self.block, BLOCK_CHOICES), ("norm", self.norm, NORM_CHOICES),
                                     ("activation", self.activation, ACTIVATION_CHOICES)):
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
        self.conv_config()  # channels, strides, kernel size checked by lab.ConvNetConfig

    def conv_config(self, block: str | None = None) -> ConvNetConfig:
        """The lab config of this net, or of its twin with ``block`` swapped."""
        return ConvNetConfig(in_channels=IMAGE_SHAPE[0], num_classes=NUM_CLASSES, channels=self.channels,
                             strides=self.strides, kernel_size=self.kernel_size, plain_stem=self.plain_stem,
                             norm=self.norm, activation=self.activation, dropout=self.dropout,
                             block=block or self.block)


@dataclass
class DigitsDataConfig:
    """Train-time augmentation (the train / val / test split is fixed in lab.data)."""

    shift: int = 1
    """translate each training image by a random number of pixels in [-shift, shift] per axis, zero-filled"""

    def __post_init__(self) -> None:
        if not 0 <= self.shift < IMAGE_SHAPE[1]:
            raise ValueError(f"shift must lie in [0, {IMAGE_SHAPE[1]}), got {self.shift}")


def _digits_train_config() -> TrainConfig:
    # The spike's recipe: 60 epochs of AdamW at lr 3e-3 (5% warmup, cosine to 0), light weight decay, label
    # smoothing 0.1, no clipping. 1259 images are 19 steps an epoch at batch 64: about a minute on one core.
    return TrainConfig(epochs=60, batch_size=64, optimizer="adamw", lr=3e-3, weight_decay=5e-4,
                       warmup_fraction=0.05, grad_clip=None, label_smoothing=0.1, num_threads=1)


@dataclass
class DigitsConfig:
    """Separable-conv net (or its plain twin) on scikit-learn's 8x8 handwritten digits."""

    train: TrainConfig = field(default_factory=_digits_train_config)
    model: DigitsNetConfig = field(default_factory=DigitsNetConfig)
    data: DigitsDataConfig = field(default_factory=DigitsDataConfig)


def random_translate(images: Tensor, generator: torch.Generator, shift: int) -> Tensor:
    """Shift each image (B, C, H, W) by random (dy, dx) in [-shift, shift]^2 pixels; vacated pixels are 0."""
    if shift == 0:
        return images
    b, _, h, w = images.shape
    padded = nn.functional.pad(images, (shift, shift, shift, shift))  # (B, C, H + 2s, W + 2s)
    offsets = torch.randint(0, 2 * shift + 1, (b, 2), generator=generator).to(images.device)  # top-left corner
    rows = offsets[:, 0, None] + torch.arange(h, device=images.device)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=images.device)  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class DigitsTask(Task):
    """1797 digits, 8x8, split 1259 / 179 / 359 (train / val / test) by ``lab.data.digits_splits``."""

    name = "digits"
    config_class = DigitsConfig

    def run_label(self) -> str:
        return self.config.model.block

    def load_data(self) -> TaskData:
        splits = digits_splits()

        def dataset(split) -> InMemoryDataset:  # uint8 in [0, 255] -> float in [0, 1]
            return InMemoryDataset(torch.from_numpy(split.x).float() / 255.0, torch.from_numpy(split.y))

        return TaskData(dataset(splits.train), dataset(splits.val), dataset(splits.test))

    def build_model(self) -> nn.Module:
        return NETS[self.config.model.block](self.config.model.conv_config())

    def augment(self, inputs: Tensor, generator: torch.Generator) -> Tensor:
        return random_translate(inputs, generator, self.config.data.shift)

    def describe_model(self, model: nn.Module) -> dict[str, int | float]:
        """Parameters and FLOPs (per image) of the trained net and of both blocks' nets, and their ratios."""
        example = (1, *IMAGE_SHAPE)  # FLOPs per image
        info: dict[str, int | float] = {}
        for block in BLOCK_CHOICES:
            net = model if block == self.config.model.block else NETS[block](self.config.model.conv_config(block))
            info[f"{block}_params"] = count_parameters(net)
            info[f"{block}_flops"] = count_flops(net, example)
        info = {"params": info[f"{self.config.model.block}_params"], "flops": info[f"{self.config.model.block}_flops"],
                **info}
        info["params_ratio_separable_to_plain"] = info["separable_params"] / info["plain_params"]
        info["flops_ratio_separable_to_plain"] = info["separable_flops"] / info["plain_flops"]
        return info
