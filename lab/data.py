"""Offline datasets with fixed splits, shared by the supervised tasks and their RL twins.

Nothing here downloads: scikit-learn ships the handwritten digits and ``mnist1d`` generates its benchmark
locally. Both are imported lazily so ``import lab`` needs only torch and numpy.

The split of each dataset is defined here and nowhere else, so the supervised classifier and the
``lab/DigitsBandit-v0`` environment see exactly the same train / val / test images.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

SPLIT_SEED = 0  # fixed forever: changing it changes every published number of the lab
DIGITS_FRACTIONS = (0.7, 0.1, 0.2)  # train / val / test: 1259 / 179 / 359 images (rounded per class)
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """One split: inputs ``x`` (N, ...) and integer labels ``y`` (N,)."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class DatasetSplits:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int

    def split(self, name: str) -> Split:
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLIT_NAMES)}")
        return getattr(self, name)


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int = SPLIT_SEED) -> list[np.ndarray]:
    """Indices for each fraction, stratified by label; every index is used exactly once.

    Rounding is done per class with the remainder going to the first split, so the partition is exact.
    """
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        sizes = [int(round(f * len(idx))) for f in fractions[1:]]
        sizes.insert(0, len(idx) - sum(sizes))
        start = 0
        for part, size in zip(parts, sizes):
            part.append(idx[start:start + size])
            start += size
    return [np.sort(np.concatenate(p)) for p in parts]


@functools.lru_cache(maxsize=1)
def digits_splits() -> DatasetSplits:
    """scikit-learn's 1797 handwritten digits as uint8 images (N, 1, 8, 8) in [0, 255], labels 0-9.

    The raw pixel values are 0..16; they are rescaled to the uint8 range so the same array is a valid SB3
    image observation (SB3 divides by 255) and, divided by 255, the supervised input.
    """
    from sklearn.datasets import load_digits  # lazy: keeps `import lab` torch+numpy only

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    train, val, test = stratified_split(labels, DIGITS_FRACTIONS)
    return DatasetSplits(
        name="digits",
        train=Split(images[train], labels[train]),
        val=Split(images[val], labels[val]),
        test=Split(images[test], labels[test]),
        num_classes=10,
    )


@functools.lru_cache(maxsize=4)
def mnist1d_splits(val_fraction: float = 0.1) -> DatasetSplits:
    """MNIST-1D generated locally with its default arguments: signals (N, 40) float32, labels 0-9.

    The benchmark's own 4000 / 1000 train / test split is kept; ``val_fraction`` of the 4000 training
    signals (stratified, fixed) is held out for validation. ``val_fraction=0`` keeps all 4000 for training
    and leaves ``val`` empty, as in the published baselines.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    from mnist1d.data import get_dataset_args, make_dataset  # lazy; never mnist1d's download helper

    data = make_dataset(get_dataset_args())
    x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
    train, val = stratified_split(y, (1.0 - val_fraction, val_fraction))
    return DatasetSplits(
        name="mnist1d",
        train=Split(x[train], y[train]),
        val=Split(x[val], y[val]),
        test=Split(data["x_test"].astype(np.float32), data["y_test"].astype(np.int64)),
        num_classes=10,
    )
