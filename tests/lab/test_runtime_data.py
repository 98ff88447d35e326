import random

import numpy as np
import pytest
import torch

from lab import tags
from lab.data import SPLIT_NAMES, digits_splits, mnist1d_splits, stratified_split
from lab.runtime import autocast, count_parameters, run_name, seed_everything, select_device


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu":
        assert select_device("auto").type in ("cpu", "mps")
        with pytest.raises(RuntimeError, match="cuda"):
            select_device("cuda")
    with pytest.raises(ValueError, match="auto, cpu, cuda, mps"):
        select_device("tpu")


def test_autocast_is_noop_on_cpu():
    with autocast("cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_seed_everything_reproduces_all_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(3)
    first = draw()
    seed_everything(3)
    assert draw() == first
    with pytest.raises(ValueError):
        seed_everything(-1)


def test_count_parameters_and_run_name():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    assert count_parameters(model) == 16 + 5
    model[0].requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 5
    assert run_name("lab/CartPoleNoVel-v1", "ppo transformer", seed=1, timestamp=False) == "lab_CartPoleNoVel-v1__ppo_transformer__1"
    assert run_name("x").startswith("x__")


def test_hparams_markdown():
    text = tags.hparams_markdown({"lr": 0.1, "batch": 8})
    assert text.splitlines()[:2] == ["|param|value|", "|-|-|"] and "|lr|0.1|" in text


def test_stratified_split_partitions_exactly():
    labels = np.repeat(np.arange(3), [10, 7, 5])
    parts = stratified_split(labels, (0.6, 0.2, 0.2))
    joined = np.sort(np.concatenate(parts))
    assert np.array_equal(joined, np.arange(len(labels)))
    for part in parts:
        assert set(np.unique(labels[part])) <= {0, 1, 2}
    assert [len(p) for p in stratified_split(labels, (0.6, 0.2, 0.2))] == [len(p) for p in parts]
    with pytest.raises(ValueError):
        stratified_split(labels, (0.5, 0.6))


def test_digits_split_is_fixed_disjoint_and_stratified():
    d = digits_splits()
    sizes = [len(d.split(s)) for s in SPLIT_NAMES]
    assert sum(sizes) == 1797 and sizes == [1259, 179, 359]
    assert d.train.x.dtype == np.uint8 and d.train.x.shape[1:] == (1, 8, 8) and d.train.x.max() == 255
    for s in SPLIT_NAMES:  # every class in every split
        assert set(np.unique(d.split(s).y)) == set(range(10))
    again = digits_splits.__wrapped__()  # rebuilt from scratch: the split does not depend on state
    np.testing.assert_array_equal(again.test.x, d.test.x)
    np.testing.assert_array_equal(again.train.y, d.train.y)
    with pytest.raises(ValueError, match="train, val, test"):
        d.split("holdout")


def test_mnist1d_keeps_the_benchmark_split():
    full = mnist1d_splits(0.0)
    assert (len(full.train), len(full.val), len(full.test)) == (4000, 0, 1000)
    assert full.train.x.shape == (4000, 40) and full.train.x.dtype == np.float32
    held = mnist1d_splits(0.1)
    assert len(held.train) + len(held.val) == 4000
    np.testing.assert_array_equal(held.test.x, full.test.x)
