"""Optimizer factory: registry, weight-decay rules, input checks, lr_scale and the SB3 bridge."""
from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lab import optim
from lab.optim import OPTIMIZERS, make_optimizer, optimizer_names, sb3_optimizer

NAMES = ("sgd", "momentum", "nesterov", "adam", "adamw", "adagrad", "rmsprop", "adamax", "nadam")


class Tagger(nn.Module):
    """Embedding + learned positions + norm + frozen projection + head: every decay case in one model."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(10, 4)  # no "embed" in the name: only the type rule can spot it
        self.pos_embed = nn.Parameter(torch.randn(1, 3, 4))  # only the name rule can spot it
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(4, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, 3) -> (B, 3, 2)
        x = self.tok(ids) + self.pos_embed
        return self.head(self.frozen(self.norm(self.proj(x))))


def _decayed(opt: torch.optim.Optimizer) -> set[int]:
    return {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}


def _all(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for g in opt.param_groups for p in g["params"]]


# ---------------------------------------------------------------------------------------------------- registry
def test_registry_holds_exactly_the_tutorial_optimizers() -> None:
    assert optimizer_names() == NAMES
    assert set(OPTIMIZERS) == set(NAMES)
    assert OPTIMIZERS["sgd"].defaults["momentum"] == 0.0
    assert OPTIMIZERS["momentum"].defaults == {"momentum": 0.9}
    assert OPTIMIZERS["nesterov"].defaults == {"momentum": 0.9, "nesterov": True}


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry_is_consistent_with_its_class(name: str) -> None:
    info = OPTIMIZERS[name]
    accepted = inspect.signature(info.cls.__init__).parameters
    assert info.name == name and issubclass(info.lab_cls, info.cls) and info.default_lr > 0
    assert info.has_momentum == ("momentum" in accepted)
    assert info.has_betas == ("betas" in accepted)
    assert info.has_eps == ("eps" in accepted)
    assert set(info.defaults) <= set(accepted)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.default_lr = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        info.defaults["momentum"] = 0.5  # type: ignore[index]


@pytest.mark.parametrize("name", NAMES)
def test_default_lr_lowers_a_small_regression_loss(name: str) -> None:
    # Checked over 12 seeds: the worst final/initial ratio is 0.2 (adam/adamw), the best optimizers reach 0.02.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g) / 8**0.5 + 0.1 * torch.randn(64, 1, generator=g)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = make_optimizer(name, model)
    initial = F.mse_loss(model(x), y).item()
    for _ in range(150):
        loss = F.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert F.mse_loss(model(x), y).item() < 0.5 * initial


@pytest.mark.parametrize("name", NAMES)
def test_make_optimizer_builds_the_lab_subclass_with_registry_defaults(name: str) -> None:
    info = OPTIMIZERS[name]
    opt = make_optimizer(name, nn.Linear(3, 2))
    assert type(opt) is info.lab_cls and isinstance(opt, info.cls)
    for group in opt.param_groups:
        assert group["lr"] == info.default_lr and group["lr_scale"] == 1.0
        assert all(group[k] == v for k, v in info.defaults.items())


def test_overrides_and_lr_reach_the_optimizer() -> None:
    opt = make_optimizer("momentum", nn.Linear(3, 2), lr=0.3, momentum=0.5, dampening=0.1)
    assert {(g["lr"], g["momentum"], g["dampening"]) for g in opt.param_groups} == {(0.3, 0.5, 0.1)}
    assert make_optimizer("ADAMW", nn.Linear(3, 2)).param_groups[0]["betas"] == (0.9, 0.999)  # names ignore case


# ------------------------------------------------------------------------------------------------ weight decay
def test_module_decay_goes_only_to_non_embedding_matrices_and_frozen_params_are_absent() -> None:
    model = Tagger()
    opt = make_optimizer("adamw", model, weight_decay=0.1)
    assert _decayed(opt) == {id(model.proj.weight), id(model.head.weight)}
    held = {id(p) for p in _all(opt)}
    assert held == {id(p) for p in model.parameters() if p.requires_grad}
    assert id(model.frozen.weight) not in held and id(model.frozen.bias) not in held
    assert len(_all(opt)) == len(held)  # nothing twice

    with_embeddings = make_optimizer("adamw", model, weight_decay=0.1, decay_embeddings=True)
    expected = (model.proj.weight, model.head.weight, model.tok.weight, model.pos_embed)
    assert _decayed(with_embeddings) == {id(p) for p in expected}


def test_decay_behaviour_with_zero_gradients() -> None:
    # AdamW with zero gradients moves a parameter only through decay: p <- p * (1 - lr * wd).
    model = Tagger()
    opt = make_optimizer("adamw", model, lr=0.1, weight_decay=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    opt.step()
    for name, p in model.named_parameters():
        factor = 0.95 if name in ("proj.weight", "head.weight") else 1.0
        torch.testing.assert_close(p.detach(), before[name] * factor, msg=name)


def test_bare_parameters_use_the_rank_rule_only_and_named_ones_add_the_name_rule() -> None:
    model = Tagger()
    bare = make_optimizer("sgd", model.parameters(), weight_decay=0.1)
    matrices = {id(p) for p in model.parameters() if p.requires_grad and p.ndim >= 2}
    assert _decayed(bare) == matrices  # embeddings decay: no names or types to tell them apart
    named = make_optimizer("sgd", model.named_parameters(), weight_decay=0.1)
    assert _decayed(named) == matrices - {id(model.pos_embed)}  # name rule; nn.Embedding "tok" needs the module
    assert named.param_groups[0]["param_names"]  # names travel on to torch


def test_embedding_rule() -> None:
    assert optim.embedding_parameter_names(Tagger()) == {"tok.weight", "pos_embed"}
    for name in ("pos_embed", "enc.position_bias", "pos", "pos_encoding", "token_embeddings", "a.type_embed"):
        assert optim.is_embedding_name(name), name
    for name in ("patch_embed.proj.weight", "post_norm", "positive", "head.unembed", "weight"):
        assert not optim.is_embedding_name(name), name


def test_tied_embedding_and_output_weight_is_held_once_and_not_decayed() -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight
    opt = make_optimizer("adamw", model, weight_decay=0.1)
    assert [id(p) for p in _all(opt)] == [id(model[0].weight)] and not _decayed(opt)


def test_ready_param_groups_keep_their_keys_and_are_split_by_rank() -> None:
    body, head = nn.Linear(3, 3), nn.Linear(3, 2)
    groups = [{"params": body.parameters(), "lr": 1e-4, "momentum": 0.5}, {"params": list(head.parameters())}]
    opt = make_optimizer("momentum", groups, lr=1e-2, weight_decay=0.1)
    summary = {(id(p), g["lr"], g["momentum"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    assert summary == {
        (id(body.weight), 1e-4, 0.5, 0.1), (id(body.bias), 1e-4, 0.5, 0.0),
        (id(head.weight), 1e-2, 0.9, 0.1), (id(head.bias), 1e-2, 0.9, 0.0),
    }


def test_group_marked_embedding_or_with_own_weight_decay() -> None:
    table, proj = nn.Parameter(torch.randn(5, 3)), nn.Linear(3, 3)
    groups = [{"params": [table], "embedding": True}, {"params": proj.parameters(), "weight_decay": 0.3}]
    opt = make_optimizer("adamw", groups, weight_decay=0.1)
    assert {(id(p), g["weight_decay"]) for g in opt.param_groups for p in g["params"]} == {
        (id(table), 0.0), (id(proj.weight), 0.3), (id(proj.bias), 0.0)}
    assert all("embedding" not in g for g in opt.param_groups)  # consumed, never handed to torch


# ------------------------------------------------------------------------------------------------- bad input
def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'adamx'") as err:
        make_optimizer("adamx", nn.Linear(2, 2))
    assert all(n in str(err.value) for n in NAMES)


@pytest.mark.parametrize(("name", "bad"), [("sgd", "betas"), ("momentum", "momentun"), ("adam", "momentum")])
def test_override_the_class_does_not_take_names_the_accepted_keywords(name: str, bad: str) -> None:
    with pytest.raises(TypeError, match=f"does not accept '{bad}'") as err:
        make_optimizer(name, nn.Linear(2, 2), **{bad: 0.9})
    assert "accepted keywords:" in str(err.value)
    assert ("momentum" if name == "sgd" or name == "momentum" else "betas") in str(err.value)
    if bad == "momentun":
        assert "did you mean 'momentum'" in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"lr": -1e-3}, "lr must be"), ({"weight_decay": -0.1}, "weight_decay must be"),
     ({"lr": float("nan")}, "lr must be")],
)
def test_negative_or_nan_hyperparameters_are_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_optimizer("adam", nn.Linear(2, 2), **kwargs)


def test_empty_frozen_or_malformed_inputs_fail_clearly() -> None:
    with pytest.raises(ValueError, match="empty parameter list"):
        make_optimizer("adam", [])
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_optimizer("adam", nn.Linear(2, 2).requires_grad_(False))
    with pytest.raises(ValueError, match="group 0 lr must be"):
        make_optimizer("adam", [{"params": nn.Linear(2, 2).parameters(), "lr": -1.0}])
    with pytest.raises(ValueError, match="group 0 weight_decay must be"):
        make_optimizer("adam", [{"params": nn.Linear(2, 2).parameters(), "weight_decay": -1.0}])
    with pytest.raises(ValueError, match="unknown keys \\['lr_scal'\\]"):
        make_optimizer("adam", [{"params": nn.Linear(2, 2).parameters(), "lr_scal": 0.1}])
    with pytest.raises(TypeError, match="not a lone tensor"):
        make_optimizer("adam", nn.Parameter(torch.zeros(2)))
    with pytest.raises(ValueError, match="lr_scale must be"):
        make_optimizer("adam", [{"params": nn.Linear(2, 2).parameters(), "lr_scale": -1.0}])


# ------------------------------------------------------------------------------------------------- lr_scale
def _sgd_step_deltas(
    opt: torch.optim.Optimizer, params: list[nn.Parameter], grads: list[torch.Tensor]
) -> list[torch.Tensor]:
    before = [p.detach().clone() for p in params]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()
    return [p.detach() - b for p, b in zip(params, before)]


def test_lr_scale_survives_an_sb3_style_lr_overwrite() -> None:
    cls, kwargs = sb3_optimizer("sgd")
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    opt = cls(model.parameters(), lr=1e-3, **kwargs)  # exactly how SB3 builds it
    opt.param_groups[0]["lr_scale"] = 0.25
    opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "lr_scale": 0.5})
    for group in opt.param_groups:  # SB3's _update_learning_rate
        group["lr"] = 0.2
    params = _all(opt)
    grads = [torch.randn_like(p) for p in params]
    deltas = _sgd_step_deltas(opt, params, grads)
    scales = [g["lr_scale"] for g in opt.param_groups for _ in g["params"]]
    assert scales == [0.25] * 4 + [0.5]
    for delta, grad, scale in zip(deltas, grads, scales):
        torch.testing.assert_close(delta, -0.2 * scale * grad)
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.2]  # restored after the step: no compounding
    assert optim.effective_lrs(opt) == [0.2 * 0.25, 0.2 * 0.5]


def test_lr_scale_works_with_a_torch_scheduler_and_is_restored_after_an_error() -> None:
    p = nn.Parameter(torch.zeros(1))
    opt = optim.LabSGD([{"params": [p], "lr_scale": 0.1}], lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    p.grad = torch.ones(1)
    opt.step()
    scheduler.step()  # lr 1.0 -> 0.5, scale untouched
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([-(1.0 + 0.5) * 0.1]))

    def failing_closure() -> float:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        opt.step(failing_closure)
    assert opt.param_groups[0]["lr"] == 0.5


def test_step_hooks_run_once_even_when_the_torch_base_class_was_used() -> None:
    torch.optim.SGD([nn.Parameter(torch.zeros(1))]).step()  # torch now wraps SGD.step with its hook runner
    p = nn.Parameter(torch.zeros(1))
    opt = optim.LabSGD([p], lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda *_: calls.append("pre"))
    opt.register_step_post_hook(lambda *_: calls.append("post"))
    p.grad = torch.ones(1)
    opt.step()
    assert calls == ["pre", "post"]


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_lab_class_splits_flat_params_only_when_decaying(weight_decay: float) -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    opt = optim.LabAdamW(model.parameters(), lr=1e-3, weight_decay=weight_decay)
    if weight_decay:
        assert [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups] == [(1, 0.1), (3, 0.0)]
    else:
        assert [len(g["params"]) for g in opt.param_groups] == [4]
    ready = optim.LabAdamW([{"params": model.parameters(), "lr_scale": 0.5}], lr=1e-3, weight_decay=0.1)
    assert len(ready.param_groups) == 1 and ready.param_groups[0]["lr_scale"] == 0.5  # ready groups untouched
    assert len(optim.LabAdamW(model.parameters(), lr=1e-3).param_groups) == 2  # AdamW's own default decay 0.01


# ------------------------------------------------------------------------------------------------------- SB3
@pytest.mark.parametrize("name", NAMES)
def test_sb3_optimizer_class_pickles_by_reference_and_optimizer_round_trips(name: str) -> None:
    cls, kwargs = sb3_optimizer(name, weight_decay=1e-4)
    assert cls is OPTIMIZERS[name].lab_cls and cls.__module__ == "lab.optim"
    assert pickle.loads(pickle.dumps(cls)) is cls
    assert kwargs == {**OPTIMIZERS[name].defaults, "weight_decay": 1e-4}
    opt = cls(nn.Linear(3, 2).parameters(), lr=1e-3, **kwargs)
    clone = pickle.loads(pickle.dumps(opt))
    assert type(clone) is cls and clone.param_groups[0]["weight_decay"] == 1e-4
    copy.deepcopy(opt).step()  # deep copies (SB3 does this for its policies) keep a working step


def test_sb3_optimizer_rejects_lr_and_typos() -> None:
    with pytest.raises(TypeError, match="learning_rate"):
        sb3_optimizer("adam", lr=1e-3)
    with pytest.raises(TypeError, match="did you mean 'betas'"):
        sb3_optimizer("adam", beta=(0.9, 0.99))
    with pytest.raises(ValueError, match="weight_decay must be"):
        sb3_optimizer("adam", weight_decay=-1.0)


@pytest.mark.parametrize("name", NAMES)
def test_sb3_ppo_trains_with_each_optimizer(name: str) -> None:
    sb3 = pytest.importorskip("stable_baselines3")
    cls, kwargs = sb3_optimizer(name, weight_decay=1e-4)
    model = sb3.PPO(
        "MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1, device="cpu", seed=0,
        policy_kwargs=dict(optimizer_class=cls, optimizer_kwargs=kwargs),
    )
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(128)
    assert type(model.policy.optimizer) is cls
    assert {g["weight_decay"] for g in model.policy.optimizer.param_groups} == {1e-4, 0.0}
    assert any(not torch.equal(b, p) for b, p in zip(before, model.policy.parameters()))


def test_sb3_save_and_load_keep_the_optimizer_class(tmp_path) -> None:
    sb3 = pytest.importorskip("stable_baselines3")
    cls, kwargs = sb3_optimizer("adamw", weight_decay=0.01)
    model = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, n_epochs=1, device="cpu", seed=0,
                    policy_kwargs=dict(optimizer_class=cls, optimizer_kwargs=kwargs))
    model.learn(32)
    model.save(tmp_path / "ppo")
    loaded = sb3.PPO.load(tmp_path / "ppo", device="cpu")
    assert type(loaded.policy.optimizer) is cls
    assert [g["weight_decay"] for g in loaded.policy.optimizer.param_groups] == [0.01, 0.0]


@pytest.mark.parametrize("name", optimizer_names())
def test_optimizer_info_for_class_finds_the_registry_entry_of_its_classes(name):
    info = optim.OPTIMIZERS[name]
    for cls in (info.lab_cls, info.cls):
        assert optim.optimizer_info_for_class(cls).lab_cls is info.lab_cls
    with pytest.raises(ValueError, match="not an optimizer of lab.optim"):
        optim.optimizer_info_for_class(torch.optim.LBFGS)
