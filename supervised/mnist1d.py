"""MNIST-1D with ``lab.TransformerClassifier``: a length-40 signal becomes a sequence of overlapping patches.

``x.unfold(1, window, stride)`` cuts the signal (B, 40) into T = (40 - window) // stride + 1 patches
(B, T, window); the classifier's linear input projection then embeds each patch, which is exactly a strided
``Conv1d(1, d_model, window, stride)`` patch embedding (as in ViT). Train-time augmentation (random shifts,
amplitude scaling, noise) draws from the trainer's saved generator.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lab.classifier import POOLINGS, ClassifierConfig, TransformerClassifier
from lab.data import mnist1d_splits
from lab.layers import TransformerConfig
from lab.positional import POSITIONAL_KINDS
from supervised.task import InMemoryDataset, Task, TaskData
from supervised.configs import TrainConfig

SIGNAL_LENGTH = 40  # samples per MNIST-1D signal with mnist1d's default arguments (what lab.data generates)
NUM_CLASSES = 10


@dataclass
class PatchTransformerConfig:
    """Patching and transformer size. Defaults: the recipe of the MNIST-1D spike (about 136k parameters)."""

    window: int = 8
    """samples per patch (the kernel size of the patch embedding); at most the signal length, 40"""
    stride: int = 2
    """step between patch starts; smaller than window gives overlapping patches (8 / 2 -> 17 patches)"""
    d_model: int = 64
    """token width; 64 is plenty for 17 tokens of a 10-class problem and keeps a CPU epoch at seconds"""
    num_heads: int = 4
    """attention heads; must divide d_model"""
    num_layers: int = 4
    """encoder layers"""
    dim_feedforward: int = 128
    """hidden width of each feed-forward block (2 x d_model: the 4x default gains nothing here)"""
    dropout: float = 0.1
    """dropout in attention, feed-forward and residual paths"""
    pooling: str = "cls"
    """cls (a learned summary token) or mean (average of the patch states)"""
    positional: str = "learned"
    """learned, sinusoidal or none; learned positions suit a short fixed-length sequence"""
    head_dropout: float = 0.0
    """dropout before the classification head"""

    def __post_init__(self) -> None:
        if not 1 <= self.window <= SIGNAL_LENGTH:
            raise ValueError(f"patch window must be between 1 and the signal length {SIGNAL_LENGTH}, got {self.window}")
        if self.stride < 1:
            raise ValueError(f"patch stride must be >= 1, got {self.stride}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}")
        if self.positional not in POSITIONAL_KINDS:
            raise ValueError(f"unknown positional {self.positional!r}; choose one of {', '.join(POSITIONAL_KINDS)}")
        self.classifier_config()  # d_model % num_heads, dropout, ... checked by lab's own configs

    @property
    def num_patches(self) -> int:
        return (SIGNAL_LENGTH - self.window) // self.stride + 1

    def classifier_config(self) -> ClassifierConfig:
        transformer = TransformerConfig(d_model=self.d_model, num_heads=self.num_heads, num_layers=self.num_layers,
                                        dim_feedforward=self.dim_feedforward, dropout=self.dropout)
        return ClassifierConfig(num_classes=NUM_CLASSES, input_dim=self.window, max_len=self.num_patches,
                                transformer=transformer, pooling=self.pooling, positional=self.positional,
                                head_dropout=self.head_dropout)


class PatchTransformerClassifier(nn.Module):
    """Signals (B, 40) -> overlapping patches (B, T, window) -> ``lab.TransformerClassifier`` -> logits (B, 10)."""

    def __init__(self, config: PatchTransformerConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or PatchTransformerConfig()
        self.classifier = TransformerClassifier(config.classifier_config())

    def patches(self, x: Tensor) -> Tensor:
        """(B, L) -> (B, T, window), T = (L - window) // stride + 1 (a trailing remainder is dropped)."""
        if x.dim() != 2 or x.shape[1] != SIGNAL_LENGTH:
            raise ValueError(f"expected signals of shape (batch, {SIGNAL_LENGTH}), got {tuple(x.shape)}")
        return x.unfold(1, self.config.window, self.config.stride)  # (B, T, window), a view

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.patches(x))

    def layer_groups(self) -> list[nn.Module]:
        return self.classifier.layer_groups()


@dataclass
class Mnist1dDataConfig:
    """Validation split and train-time augmentation."""

    val_fraction: float = 0.1
    """fraction of the 4000 training signals held out for validation (0 trains on all 4000, as published)"""
    shift: int = 3
    """shift each training signal by a random integer in [-shift, shift] samples; 0 = off"""
    circular: bool = False
    """wrap shifted samples around instead of filling with zeros"""
    scale: float = 0.0
    """multiply each training signal by a random factor in [1 - scale, 1 + scale]; 0 = off"""
    noise: float = 0.0
    """add Gaussian noise of this standard deviation to training signals; 0 = off"""

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        if not 0 <= self.shift < SIGNAL_LENGTH:
            raise ValueError(f"shift must lie in [0, {SIGNAL_LENGTH}), got {self.shift}")
        if not 0 <= self.scale < 1 or self.noise < 0:
            raise ValueError(f"scale must lie in [0, 1) and noise be >= 0, got {self.scale} and {self.noise}")


def _mnist1d_train_config() -> TrainConfig:
    # The spike's recipe: 60 epochs of AdamW (betas 0.9 / 0.98), lr 1e-3 with 5% warmup and a cosine to 0.
    return TrainConfig(epochs=60, batch_size=64, optimizer="adamw", lr=1e-3, weight_decay=0.05, betas=(0.9, 0.98),
                       warmup_fraction=0.05, min_lr_ratio=0.0, grad_clip=1.0, label_smoothing=0.1, num_threads=1)


@dataclass
class Mnist1dConfig:
    """Transformer classifier on MNIST-1D signals cut into overlapping patches."""

    train: TrainConfig = field(default_factory=_mnist1d_train_config)
    model: PatchTransformerConfig = field(default_factory=PatchTransformerConfig)
    data: Mnist1dDataConfig = field(default_factory=Mnist1dDataConfig)


def augment_signals(x: Tensor, generator: torch.Generator, shift: int = 0, circular: bool = False,
                    scale: float = 0.0, noise: float = 0.0) -> Tensor:
    """Random shift, amplitude scale and additive noise of signals (B, L), drawn from ``generator`` (CPU).

    A shift by k moves sample i to i + k; with ``circular=False`` the samples shifted in are zeros.
    """
    b, length = x.shape
    if shift > 0:
        k = torch.randint(-shift, shift + 1, (b, 1), generator=generator).to(x.device)
        source = torch.arange(length, device=x.device) - k  # (B, L): where each output sample comes from
        if circular:
            x = x.gather(1, source % length)
        else:
            inside = (source >= 0) & (source < length)
            x = x.gather(1, source.clamp(0, length - 1)) * inside
    if scale > 0:
        x = x * (1 + scale * (2 * torch.rand(b, 1, generator=generator) - 1)).to(x.device)
    if noise > 0:
        x = x + noise * torch.randn(x.shape, generator=generator).to(x.device)
    return x


class Mnist1dTask(Task):
    """MNIST-1D (4000 train / 1000 test signals of length 40, 10 classes) with a patch transformer."""

    name = "mnist1d"
    config_class = Mnist1dConfig

    def load_data(self) -> TaskData:
        splits = mnist1d_splits(self.config.data.val_fraction)
        if splits.train.x.shape[1] != SIGNAL_LENGTH:
            raise ValueError(f"expected MNIST-1D signals of length {SIGNAL_LENGTH}, got {splits.train.x.shape[1]}")

        def dataset(split) -> InMemoryDataset:
            return InMemoryDataset(torch.from_numpy(split.x), torch.from_numpy(split.y))

        return TaskData(dataset(splits.train), dataset(splits.val), dataset(splits.test))

    def build_model(self) -> nn.Module:
        return PatchTransformerClassifier(self.config.model)

    def augment(self, inputs: Tensor, generator: torch.Generator) -> Tensor:
        d = self.config.data
        return augment_signals(inputs, generator, d.shift, d.circular, d.scale, d.noise)

    def describe_model(self, model: nn.Module) -> dict[str, int | float]:
        from lab.conv import count_flops  # FLOPs of one signal, for comparison with the conv nets

        return {**super().describe_model(model), "flops": count_flops(model, (1, SIGNAL_LENGTH)),
                "num_patches": self.config.model.num_patches}
