"""Fine-tuning: layer groups, freezing, training chosen parameters, discriminative learning rates."""
from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lab import finetune
from lab.finetune import discriminative_param_groups, freeze, freeze_to, layer_groups, train_only, unfreeze
from lab.optim import make_optimizer


class TinyClassifier(nn.Module):
    """Four layer groups body -> head, the first holding an embedding table: (B, T) ids -> (B, 3) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(12, 8)
        self.block1 = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8))
        self.block2 = nn.Sequential(nn.Linear(8, 8), nn.GELU())
        self.head = nn.Linear(8, 3)

    def layer_groups(self) -> list[nn.Module]:
        return [self.embed, self.block1, self.block2, self.head]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.block1(self.embed(ids))).mean(dim=1))


def _loss(model: nn.Module) -> torch.Tensor:
    ids = torch.randint(0, 12, (4, 5))
    return F.cross_entropy(model(ids), torch.tensor([0, 1, 2, 0]))


def _trainable_groups(model: TinyClassifier) -> list[bool]:
    return [all(p.requires_grad for p in g.parameters()) for g in model.layer_groups()]


# ------------------------------------------------------------------------------------------------ layer groups
def test_layer_groups_use_the_model_method_else_top_level_children_with_parameters() -> None:
    model = TinyClassifier()
    assert layer_groups(model) == model.layer_groups()
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert layer_groups(seq) == [seq[0], seq[2]]
    holder = nn.Module()
    holder.layer_groups = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
    assert layer_groups(holder) == list(holder.layer_groups)


def test_layer_groups_reject_empty_overlapping_or_incomplete_groups() -> None:
    with pytest.raises(ValueError, match="no layer groups"):
        layer_groups(nn.Sequential(nn.ReLU()))

    class Direct(nn.Module):  # a parameter registered on the model itself is in no child
        def __init__(self) -> None:
            super().__init__()
            self.pos_embed = nn.Parameter(torch.zeros(3, 2))
            self.head = nn.Linear(2, 2)

    with pytest.raises(ValueError, match="outside every layer group: 'pos_embed'"):
        layer_groups(Direct())

    class Overlap(TinyClassifier):
        def layer_groups(self) -> list[nn.Module]:
            return [self.embed, self.block1, self.block1[0], self.block2, self.head]

    with pytest.raises(ValueError, match="must be disjoint"):
        layer_groups(Overlap())


# ----------------------------------------------------------------------------------------------------- freezing
def test_freeze_and_unfreeze_flip_requires_grad_and_drop_stale_grads() -> None:
    model = TinyClassifier()
    _loss(model).backward()
    freeze([model.embed, model.block1])
    assert _trainable_groups(model) == [False, False, True, True]
    assert model.embed.weight.grad is None and model.head.weight.grad is not None
    unfreeze(model.embed)
    assert _trainable_groups(model) == [True, False, True, True]
    freeze(model.head.bias)
    assert not model.head.bias.requires_grad and model.head.weight.requires_grad


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, [True] * 4), (1, [False, True, True, True]), (3, [False, False, False, True]), (4, [False] * 4),
     (-1, [False, False, False, True]), (-2, [False, False, True, True]), (-4, [True] * 4)],
)
def test_freeze_to_freezes_the_groups_before_n(n: int, expected: list[bool]) -> None:
    model = TinyClassifier()
    freeze(model)  # freeze_to must also unfreeze what comes after n
    freeze_to(model, n)
    assert _trainable_groups(model) == expected


@pytest.mark.parametrize("n", [5, -5])
def test_freeze_to_rejects_out_of_range(n: int) -> None:
    with pytest.raises(ValueError, match=r"n must be an int in \[-4, 4\]"):
        freeze_to(TinyClassifier(), n)


def test_frozen_parameters_get_no_gradient_and_do_not_move() -> None:
    model = TinyClassifier()
    freeze_to(model, -1)
    opt = make_optimizer("adam", model, lr=0.1)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(model.head.weight), id(model.head.bias)}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(2):
        opt.zero_grad()
        _loss(model).backward()
        assert all(p.grad is None for g in model.layer_groups()[:3] for p in g.parameters())
        opt.step()
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) == (not name.startswith("head.")), name


def test_train_only_keeps_matching_parameters_trainable() -> None:
    model = TinyClassifier()
    kept = train_only(model, ["head.*", re.compile(r"^block1\.1\.")])
    assert kept == ["block1.1.weight", "block1.1.bias", "head.weight", "head.bias"]
    assert finetune.trainable_parameter_names(model) == kept
    frozen = ["embed.weight", "block1.0.weight", "block1.0.bias", "block2.0.weight", "block2.0.bias"]
    assert finetune.frozen_parameter_names(model) == frozen
    assert [id(p) for p in finetune.trainable_parameters(model)] == [id(model.get_parameter(n)) for n in kept]
    assert train_only(model, "*.bias") == ["block1.0.bias", "block1.1.bias", "block2.0.bias", "head.bias"]
    assert not model.head.weight.requires_grad  # the second call freezes what the first kept


def test_train_only_pattern_matching_nothing_lists_parameter_names() -> None:
    model = TinyClassifier()
    with pytest.raises(ValueError, match=r"'heads\.\*' matches no parameter; names look like 'embed.weight'"):
        train_only(model, ["head.*", "heads.*"])
    assert all(p.requires_grad for p in model.parameters())  # nothing changed on error


# --------------------------------------------------------------------------------- discriminative learning rates
def _rate_by_layer(groups: list[dict]) -> dict[int, float]:
    rates: dict[int, float] = {}
    for g in groups:
        rate = g["lr"] * g.get("lr_scale", 1.0)
        assert rates.setdefault(g["layer_group"], rate) == rate  # split dicts of one layer share the rate
    return rates


def test_discriminative_rates_are_geometric_from_body_to_head() -> None:
    model = TinyClassifier()
    groups = discriminative_param_groups(model, lr_max=1e-2, lr_min=1e-5)
    assert [g["layer_group"] for g in groups] == [0, 1, 2, 3]  # body -> head
    rates = _rate_by_layer(groups)
    assert rates[0] == pytest.approx(1e-5) and rates[3] == pytest.approx(1e-2)
    for i in range(3):
        assert rates[i + 1] / rates[i] == pytest.approx(10.0)
    assert groups[0]["embedding"] is True and "embedding" not in groups[1]
    assert groups[1]["param_names"] == ["block1.0.weight", "block1.0.bias", "block1.1.weight", "block1.1.bias"]


def test_discriminative_defaults_follow_fastai_slice_hi() -> None:
    rates = _rate_by_layer(discriminative_param_groups(TinyClassifier(), lr_max=1e-3))
    assert list(rates.values()) == pytest.approx([1e-4, 1e-4, 1e-4, 1e-3])
    assert finetune.spread_learning_rates(1, 1e-3, 1e-6) == [1e-3]
    with pytest.raises(ValueError, match="lr_min must satisfy"):
        discriminative_param_groups(TinyClassifier(), lr_max=1e-3, lr_min=1e-2)
    with pytest.raises(ValueError, match="lr_max must be"):
        discriminative_param_groups(TinyClassifier(), lr_max=0.0)


def test_discriminative_as_scale_keeps_lr_max_and_moves_the_rate_to_lr_scale() -> None:
    model = TinyClassifier()
    plain = discriminative_param_groups(model, 1e-2, 1e-4)
    scaled = discriminative_param_groups(model, 1e-2, 1e-4, as_scale=True)
    assert all(g["lr"] == 1e-2 for g in scaled)
    assert [g["lr_scale"] * 1e-2 for g in scaled] == pytest.approx([g["lr"] for g in plain])
    assert math.isclose(scaled[-1]["lr_scale"], 1.0)


def test_discriminative_groups_skip_frozen_parameters_but_keep_the_full_spread() -> None:
    model = TinyClassifier()
    freeze_to(model, -2)
    model.head.bias.requires_grad_(False)
    groups = discriminative_param_groups(model, 1e-2, 1e-5)
    assert [g["layer_group"] for g in groups] == [2, 3]
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-2])
    assert groups[1]["param_names"] == ["head.weight"]
    freeze(model)
    with pytest.raises(ValueError, match="no trainable parameters"):
        discriminative_param_groups(model, 1e-2)


def test_explicit_groups_must_cover_the_trainable_parameters() -> None:
    model = TinyClassifier()
    body = nn.ModuleList([model.embed, model.block1, model.block2])
    groups = discriminative_param_groups(model, 1e-2, 1e-3, groups=[body, model.head])
    assert [g["layer_group"] for g in groups] == [0, 0, 1] and groups[-1]["lr"] == 1e-2
    with pytest.raises(ValueError, match="outside every layer group: 'embed.weight'"):
        discriminative_param_groups(model, 1e-2, groups=[model.block1, model.block2, model.head])
    freeze(model.embed)  # frozen parameters may stay outside the groups
    assert len(discriminative_param_groups(model, 1e-2, groups=[model.block1, model.block2, model.head])) == 3


@pytest.mark.parametrize("as_scale", [False, True])
def test_discriminative_groups_feed_make_optimizer_with_rates_and_decay_rules(as_scale: bool) -> None:
    model = TinyClassifier()
    groups = discriminative_param_groups(model, 1e-2, 1e-5, as_scale=as_scale)
    opt = make_optimizer("adamw", groups, weight_decay=0.05)
    decayed = {n for g in opt.param_groups if g["weight_decay"] > 0 for n in g["param_names"]}
    assert decayed == {"block1.0.weight", "block2.0.weight", "head.weight"}  # not embeddings, norms or biases
    expected = _rate_by_layer(groups)
    for g in opt.param_groups:
        assert g["lr"] * g["lr_scale"] == pytest.approx(expected[g["layer_group"]])
        assert g["lr"] == 1e-2 if as_scale else g["lr_scale"] == 1.0


def test_discriminative_rates_survive_an_sb3_style_overwrite() -> None:
    model = TinyClassifier()
    opt = make_optimizer("sgd", discriminative_param_groups(model, 1.0, 1e-3, as_scale=True))
    for group in opt.param_groups:  # what SB3's _update_learning_rate does before every update
        group["lr"] = 0.5
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.zero_grad()
    _loss(model).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    rates = {0: 1e-3, 1: 1e-2, 2: 1e-1, 3: 1.0}  # the spread, as fractions of lr
    for g in opt.param_groups:
        for name in g["param_names"]:
            p = model.get_parameter(name)
            torch.testing.assert_close(p.detach() - before[name], -0.5 * rates[g["layer_group"]] * grads[name])
