"""Optimizer factory: one registry of the tutorial's optimizers, timm-style, plus the SB3 bridge.

Every trainer and agent creates its optimizer here (``make_optimizer`` for plain PyTorch loops,
``sb3_optimizer`` for Stable-Baselines3), so weight-decay rules and learning-rate defaults live in one place.

Two rules hold everywhere:

* **Weight decay** goes only to tensors of rank >= 2 (matrices, conv kernels), as in nanoGPT: biases and norm
  scales never decay. Embeddings do not decay either unless ``decay_embeddings=True``; see
  :func:`is_embedding_name` and :func:`embedding_parameter_names` for how they are recognised.
* **``lr_scale``**: every optimizer built here is an ``Lab*`` subclass of the torch class that reads an optional
  per-group key ``lr_scale`` (default 1.0) and steps with ``group["lr"] * group["lr_scale"]``. ``group["lr"]``
  itself is never changed, so code that overwrites it on every group (SB3's ``_update_learning_rate``, torch
  LR schedulers) keeps working and the relative rates survive. Nothing else multiplies by ``lr_scale``.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import re
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from lab.portable import active as portable_mode

# Param-group keys that make_optimizer understands besides the optimizer's own keywords. ``embedding`` is
# consumed by make_optimizer; the others are kept in the group (torch stores unknown keys untouched).
_EXTRA_GROUP_KEYS = frozenset({"params", "param_names", "lr_scale", "embedding", "layer_group", "name"})


# --------------------------------------------------------------------------------------------------- Lab classes
class _LrScaleMixin:
    """Adds the per-group ``lr_scale`` key and rank-based decay splitting to a torch optimizer class.

    Must come before the torch class in the bases so that its ``add_param_group`` and ``step`` run first.
    """

    _torch_class: type[torch.optim.Optimizer]  # set by _lab_class

    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        if portable_mode() and "fused" in inspect.signature(self._torch_class.__init__).parameters:
            # Portable mode: the fused kernel takes its square roots with the CPU's own instruction; the other
            # kernels call MKL's vector maths, whose code path (and last bits) differs between CPU vendors.
            kwargs.setdefault("fused", True)
        if not kwargs.get("fused"):
            # torch picks the multi-tensor (foreach) kernels only on CUDA; on CPU they are also faster for the many
            # small tensors of the lab's models (Adam step ~30% faster at 29 tensors), with the same math.
            kwargs.setdefault("foreach", True)
        if not isinstance(params, torch.Tensor):  # a lone tensor: let torch raise its own error
            params = list(params)
            if params and not any(isinstance(p, dict) for p in params) and self._weight_decay(args, kwargs):
                params = _split_flat_by_rank(params)
        super().__init__(params, *args, **kwargs)

    def _weight_decay(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The weight decay these constructor arguments ask for, positional or keyword, else the class default."""
        signature = inspect.signature(self._torch_class.__init__)
        bound = signature.bind(self, None, *args, **kwargs)
        return bound.arguments.get("weight_decay", signature.parameters["weight_decay"].default)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        scale = param_group.setdefault("lr_scale", 1.0)
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale >= 0):
            raise ValueError(f"lr_scale must be a finite float >= 0, got {scale!r}")
        super().add_param_group(param_group)

    def step(self, closure: Callable[[], float] | None = None) -> Any:
        """One step of the base optimizer (in portable mode RMSprop's as :func:`_portable_rmsprop_step`) with each
        group's lr multiplied by its ``lr_scale`` for the step only."""
        saved = [(group, group["lr"]) for group in self.param_groups if group.get("lr_scale", 1.0) != 1.0]
        for group, lr in saved:
            group["lr"] = lr * group["lr_scale"]
        try:
            if portable_mode() and isinstance(self, torch.optim.RMSprop):
                return _portable_rmsprop_step(self, closure)
            return _unhooked(super().step)(closure)
        finally:
            for group, lr in saved:  # restore even if the step raised, so the scale never compounds
                group["lr"] = lr


def _portable_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt(x) computed as 1 / rsqrt(x): ATen's rsqrt and division are correctly rounded CPU instructions, the same
    bits on every x86-64 CPU, where ``torch.sqrt`` on CPU goes through MKL's vector maths, whose Intel and AMD code
    paths round differently. Not always the correctly rounded sqrt (two roundings): portable mode's own numbers."""
    return torch.ones_like(x).div_(torch.rsqrt(x))


@torch.no_grad()
def _portable_rmsprop_step(optimizer: torch.optim.RMSprop, closure: Callable[[], float] | None) -> Any:
    """torch's RMSprop update (``torch.optim.rmsprop._single_tensor_rmsprop``, the same state) with
    :func:`_portable_sqrt`: RMSprop has no fused CPU kernel that would avoid MKL (lab.portable)."""
    loss = None
    if closure is not None:
        with torch.enable_grad():
            loss = closure()
    for group in optimizer.param_groups:
        params, grads, square_avgs, grad_avgs, buffers, steps = [], [], [], [], [], []
        optimizer._init_group(group, params, grads, square_avgs, buffers, grad_avgs, steps)
        alpha, eps, lr, momentum = group["alpha"], group["eps"], group["lr"], group["momentum"]
        for i, (param, grad, square_avg, step) in enumerate(zip(params, grads, square_avgs, steps)):
            grad = -grad if group["maximize"] else grad
            step += 1
            if group["weight_decay"] != 0:
                grad = grad.add(param, alpha=group["weight_decay"])
            if torch.is_complex(param):
                param, grad, square_avg = map(torch.view_as_real, (param, grad, square_avg))
            square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
            if group["centered"]:
                grad_avg = torch.view_as_real(grad_avgs[i]) if torch.is_complex(grad_avgs[i]) else grad_avgs[i]
                grad_avg.lerp_(grad, 1 - alpha)
                avg = _portable_sqrt(square_avg.addcmul(grad_avg, grad_avg, value=-1))
            else:
                avg = _portable_sqrt(square_avg)
            avg.add_(eps)
            if momentum > 0:
                buf = torch.view_as_real(buffers[i]) if torch.is_complex(buffers[i]) else buffers[i]
                buf.mul_(momentum).addcdiv_(grad, avg)
                param.add_(buf, alpha=-lr)
            else:
                param.addcdiv_(grad, avg, value=-lr)
    return loss


def _unhooked(bound_step: Callable[..., Any]) -> Callable[..., Any]:
    """The base class's step without torch's hook wrapper.

    torch wraps ``type(opt).step`` once per class to run step pre/post hooks; if the torch base class was also
    instantiated somewhere, its ``step`` is wrapped too and calling it would run the hooks a second time.
    """
    func = getattr(bound_step, "__func__", bound_step)
    if getattr(func, "hooked", False):
        return types.MethodType(func.__wrapped__, bound_step.__self__)
    return bound_step


def _split_flat_by_rank(params: list[Any]) -> list[dict[str, Any]]:
    """Flat params (tensors or ``(name, tensor)`` pairs) -> a decay group (rank >= 2) and a no-decay group."""
    decay = [p for p in params if _tensor_of(p).ndim >= 2]
    no_decay = [p for p in params if _tensor_of(p).ndim < 2]
    groups: list[dict[str, Any]] = []
    if decay:
        groups.append({"params": decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _tensor_of(item: Any) -> torch.Tensor:
    return item[1] if isinstance(item, tuple) else item


def _lab_class(base: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    name = f"Lab{base.__name__}"
    doc = (
        f"``torch.optim.{base.__name__}`` that honours a per-group ``lr_scale`` and, given a flat iterable of\n"
        f"parameters with weight_decay > 0, decays only the tensors of rank >= 2. Picklable by reference as\n"
        f"``lab.optim.{name}`` (SB3 saves ``optimizer_class`` with cloudpickle)."
    )
    namespace = {"__module__": __name__, "__qualname__": name, "__doc__": doc, "_torch_class": base}
    return type(name, (_LrScaleMixin, base), namespace)


# Bound to module-level names so pickle / cloudpickle store them by reference (``lab.optim.LabAdamW``). One per
# torch class: sgd / momentum / nesterov differ only in keyword defaults, which travel in the kwargs.
LabSGD = _lab_class(torch.optim.SGD)
LabAdam = _lab_class(torch.optim.Adam)
LabAdamW = _lab_class(torch.optim.AdamW)
LabAdagrad = _lab_class(torch.optim.Adagrad)
LabRMSprop = _lab_class(torch.optim.RMSprop)
LabAdamax = _lab_class(torch.optim.Adamax)
LabNAdam = _lab_class(torch.optim.NAdam)


# ------------------------------------------------------------------------------------------------------ registry
@dataclasses.dataclass(frozen=True)
class OptimInfo:
    """One registered optimizer: the torch class, its ``Lab*`` subclass, default lr and fixed keyword defaults."""

    name: str
    cls: type[torch.optim.Optimizer]  # the plain torch class
    lab_cls: type[torch.optim.Optimizer]  # what make_optimizer / sb3_optimizer actually build
    default_lr: float
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    description: str = ""
    has_momentum: bool = False  # accepts a ``momentum`` keyword
    has_betas: bool = False  # accepts ``betas``
    has_eps: bool = False  # accepts ``eps``

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", types.MappingProxyType(dict(self.defaults)))

    def accepted_kwargs(self) -> tuple[str, ...]:
        """Keywords the optimizer class takes besides ``params`` (``lr`` and ``weight_decay`` included)."""
        return tuple(n for n in inspect.signature(self.cls.__init__).parameters if n not in ("self", "params"))


# Default learning rates are the usual starting points for small nets (MLPs / small transformers, a few k-1M
# params). Plain SGD takes 0.1; with momentum 0.9 the effective step is lr / (1 - 0.9) = 10x, so 0.01 gives
# the same 0.1 effective step instead of an unstable 1.0. Adam-family 1e-3 (Kingma & Ba; Karpathy's "3e-4 is
# safe, 1e-3 is fast"); Adamax and NAdam 2e-3 as in their papers and torch. Adagrad 1e-2 (Duchi et al., torch
# default): its accumulated denominator only grows, so it needs a larger start. RMSprop 1e-3 (Hinton's
# lecture value; torch's 1e-2 diverges easily without Adam's bias correction).
_REGISTRY: tuple[OptimInfo, ...] = (
    OptimInfo("sgd", torch.optim.SGD, LabSGD, 0.1, {"momentum": 0.0},
              "plain stochastic gradient descent", has_momentum=True),
    OptimInfo("momentum", torch.optim.SGD, LabSGD, 0.01, {"momentum": 0.9},
              "SGD with heavy-ball momentum 0.9", has_momentum=True),
    OptimInfo("nesterov", torch.optim.SGD, LabSGD, 0.01, {"momentum": 0.9, "nesterov": True},
              "SGD with Nesterov momentum 0.9", has_momentum=True),
    OptimInfo("adam", torch.optim.Adam, LabAdam, 1e-3, {},
              "Adam (weight decay is L2 added to the gradient)", has_betas=True, has_eps=True),
    OptimInfo("adamw", torch.optim.AdamW, LabAdamW, 1e-3, {},
              "AdamW (decoupled weight decay; pass weight_decay, else it equals Adam)", has_betas=True, has_eps=True),
    OptimInfo("adagrad", torch.optim.Adagrad, LabAdagrad, 1e-2, {},
              "Adagrad (per-coordinate rates from the sum of squared gradients)", has_eps=True),
    OptimInfo("rmsprop", torch.optim.RMSprop, LabRMSprop, 1e-3, {},
              "RMSprop (running average of squared gradients, alpha 0.99)", has_momentum=True, has_eps=True),
    OptimInfo("adamax", torch.optim.Adamax, LabAdamax, 2e-3, {},
              "Adamax (Adam with the infinity norm)", has_betas=True, has_eps=True),
    OptimInfo("nadam", torch.optim.NAdam, LabNAdam, 2e-3, {},
              "NAdam (Adam with Nesterov momentum)", has_betas=True, has_eps=True),
)
OPTIMIZERS: dict[str, OptimInfo] = {info.name: info for info in _REGISTRY}


def optimizer_names() -> tuple[str, ...]:
    """The registered optimizer names, in registry order."""
    return tuple(OPTIMIZERS)


def get_optimizer_info(name: str) -> OptimInfo:
    """The registry entry for ``name`` (case-insensitive); ValueError listing the valid names otherwise."""
    info = OPTIMIZERS.get(str(name).strip().lower())
    if info is None:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return info


def optimizer_info_for_class(optimizer_class: type) -> OptimInfo:
    """The registry entry an optimizer class belongs to (its ``Lab*`` class or the torch class), e.g. to rebuild
    an SB3 policy's optimizer over new param groups with :func:`make_optimizer`. sgd / momentum / nesterov share
    ``LabSGD``: the first is returned, and the keyword arguments carry the difference."""
    for info in OPTIMIZERS.values():
        if optimizer_class in (info.lab_cls, info.cls):
            return info
    raise ValueError(f"{optimizer_class.__name__} is not an optimizer of lab.optim ({', '.join(OPTIMIZERS)}): "
                     "build it with lab.optim.make_optimizer or sb3_optimizer")


# ----------------------------------------------------------------------------------------------- embedding rule
# Matches the attribute name of a parameter declared directly as an embedding table: ``pos_embed``,
# ``token_embeddings``, ``pos``, ``position_bias``, ``pos_encoding``. Not ``unembed`` (an output projection) and
# not ``post_norm`` / ``positive``.
_EMBEDDING_NAME = re.compile(r"(?<!un)embed|^pos(?![a-z])|^position", re.IGNORECASE)
_EMBEDDING_MODULES = (nn.Embedding, nn.EmbeddingBag)


def is_embedding_name(qualified_name: str) -> bool:
    """True if the parameter's own name (the last dotted component) marks it as an embedding table.

    Only the last component counts: a Linear inside a module called ``patch_embed`` is a projection and decays
    (as in timm), while ``model.pos_embed = nn.Parameter(...)`` does not.
    """
    return bool(_EMBEDDING_NAME.search(qualified_name.rsplit(".", 1)[-1]))


def embedding_parameter_names(model: nn.Module) -> set[str]:
    """Qualified names of ``model``'s embedding parameters.

    Rule: a parameter owned by an ``nn.Embedding`` / ``nn.EmbeddingBag`` (by identity, so a weight tied to an
    output layer counts too), or one whose own name satisfies :func:`is_embedding_name`.
    """
    owned = {id(p) for m in model.modules() if isinstance(m, _EMBEDDING_MODULES) for p in m.parameters(recurse=False)}
    return {n for n, p in model.named_parameters() if id(p) in owned or is_embedding_name(n)}


# ---------------------------------------------------------------------------------------------------- factories
def make_optimizer(
    name: str,
    model_or_params: nn.Module | Iterable[Any],
    lr: float | None = None,
    weight_decay: float = 0.0,
    *,
    decay_embeddings: bool = False,
    **overrides: Any,
) -> torch.optim.Optimizer:
    """Build the registered optimizer ``name`` with weight decay only where it belongs.

    Args:
        name: one of :func:`optimizer_names`.
        model_or_params: an ``nn.Module`` (decay rule uses rank, module types and names); an iterable of
            parameters (rank rule only: no names or types are known) or of ``(name, parameter)`` pairs such as
            ``model.named_parameters()`` (rank + name rule); or a list of param-group dicts. Groups keep their
            own keys (``lr``, ``lr_scale``, ...) and are each split into a decay and a no-decay sub-group; names
            come from ``(name, tensor)`` pairs or a ``param_names`` key, and a group with ``embedding=True``
            (as :func:`lab.finetune.discriminative_param_groups` marks them) is treated as embeddings.
        lr: learning rate for groups without their own ``lr``; ``None`` means the registry default.
        weight_decay: decay for tensors of rank >= 2 (non-embeddings unless ``decay_embeddings``). Note AdamW
            with the default 0.0 is plain Adam: pass e.g. 0.01-0.1.
        decay_embeddings: also decay embedding tables.
        **overrides: keywords of the optimizer class (``momentum``, ``betas``, ``eps``, ...); a keyword the
            class does not take raises TypeError naming the accepted ones.

    Returns:
        An instance of ``OPTIMIZERS[name].lab_cls`` (a subclass of the torch class, so ``isinstance(opt,
        torch.optim.AdamW)`` holds) holding only parameters with ``requires_grad=True``.
    """
    info = get_optimizer_info(name)
    lr = info.default_lr if lr is None else lr
    _check_non_negative("lr", lr)
    _check_non_negative("weight_decay", weight_decay)
    kwargs = {**info.defaults, **_checked_overrides(info, overrides)}

    groups = []
    for group in _raw_groups(model_or_params, info):
        groups += _split_group(group, weight_decay, decay_embeddings)
    if not groups:
        raise ValueError("no trainable parameters: every parameter given has requires_grad=False (or none given)")
    if not all("param_names" in g for g in groups):  # torch wants names on all groups or on none
        for g in groups:
            g.pop("param_names", None)
    return info.lab_cls(groups, lr=lr, weight_decay=weight_decay, **kwargs)


def sb3_optimizer(name: str, weight_decay: float = 0.0, **overrides: Any) -> tuple[type[torch.optim.Optimizer], dict]:
    """``(optimizer_class, optimizer_kwargs)`` for SB3's ``policy_kwargs``.

    SB3 calls ``optimizer_class(policy.parameters(), lr=lr_schedule(1), **optimizer_kwargs)``, so the learning
    rate is SB3's ``learning_rate``, not a keyword here. The class is the entry's ``Lab*`` subclass: given the
    policy's flat parameters it decays only rank >= 2 tensors, and it honours ``lr_scale`` in param groups that
    survive SB3 overwriting ``lr`` on every group. Frozen policy parameters stay in the optimizer (SB3 builds it
    once; unfrozen later they train) but get no gradient, so torch leaves them untouched.

    >>> cls, kwargs = sb3_optimizer("nesterov", weight_decay=1e-4)
    >>> cls.__name__, kwargs
    ('LabSGD', {'momentum': 0.9, 'nesterov': True, 'weight_decay': 0.0001})
    """
    info = get_optimizer_info(name)
    _check_non_negative("weight_decay", weight_decay)
    if "lr" in overrides:
        raise TypeError("sb3_optimizer takes no lr: SB3 passes lr itself; set the model's learning_rate instead")
    return info.lab_cls, {**info.defaults, **_checked_overrides(info, overrides), "weight_decay": float(weight_decay)}


def effective_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    """The learning rate each group actually steps with: ``lr * lr_scale`` (for logging)."""
    return [float(g["lr"]) * float(g.get("lr_scale", 1.0)) for g in optimizer.param_groups]


# ------------------------------------------------------------------------------------------------------ helpers
def _check_non_negative(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")


def _checked_overrides(info: OptimInfo, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Reject keywords the optimizer class does not take, so a typo (``momentun``) fails loudly."""
    accepted = [k for k in info.accepted_kwargs() if k not in ("lr", "weight_decay")]
    unknown = [k for k in overrides if k not in accepted]
    if unknown:
        close = {k: difflib.get_close_matches(k, accepted, n=1) for k in unknown}
        hints = [f"{k!r} -> did you mean {m[0]!r}?" for k, m in close.items() if m]
        raise TypeError(
            f"optimizer {info.name!r} ({info.cls.__name__}) does not accept {', '.join(map(repr, unknown))}; "
            f"accepted keywords: {', '.join(accepted)} (lr and weight_decay are arguments of their own)"
            + (f". {' '.join(hints)}" if hints else "")
        )
    return dict(overrides)


def _raw_groups(model_or_params: nn.Module | Iterable[Any], info: OptimInfo) -> list[dict[str, Any]]:
    """Normalise the input to groups ``{"entries": [(name | None, tensor, is_embedding)], **options}``."""
    if isinstance(model_or_params, nn.Module):
        embeddings = embedding_parameter_names(model_or_params)
        entries = [(n, p, n in embeddings) for n, p in model_or_params.named_parameters()]
        return [{"entries": entries}]
    if isinstance(model_or_params, torch.Tensor):
        raise TypeError("pass an iterable of parameters (e.g. [tensor]) or a module, not a lone tensor")
    items = list(model_or_params)
    if not items:
        raise ValueError("empty parameter list: make_optimizer needs a module, parameters or param groups")
    if not all(isinstance(i, dict) for i in items):
        if any(isinstance(i, dict) for i in items):
            raise TypeError("mix of param-group dicts and bare parameters; pass one or the other")
        return [{"entries": _entries(items, None, False)}]
    accepted = set(info.accepted_kwargs()) | _EXTRA_GROUP_KEYS
    groups = []
    for i, item in enumerate(items):
        if "params" not in item:
            raise ValueError(f"param group {i} has no 'params' key")
        unknown = sorted(set(item) - accepted)
        if unknown:
            raise ValueError(f"param group {i} has unknown keys {unknown}; accepted: {', '.join(sorted(accepted))}")
        for key in ("lr", "weight_decay"):
            if key in item:
                _check_non_negative(f"param group {i} {key}", item[key])
        group = {k: v for k, v in item.items() if k not in ("params", "param_names", "embedding")}
        params = item["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        group["entries"] = _entries(params, item.get("param_names"), bool(item.get("embedding", False)))
        groups.append(group)
    return groups


def _entries(items: list[Any], names: list[str] | None, embedding: bool) -> list[tuple[str | None, torch.Tensor, bool]]:
    if names is not None and len(names) != len(items):
        raise ValueError(f"param_names has {len(names)} names for {len(items)} parameters")
    entries = []
    for i, item in enumerate(items):
        name, tensor = item if isinstance(item, tuple) else (names[i] if names is not None else None, item)
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"expected parameters (tensors), got {type(tensor).__name__}")
        entries.append((name, tensor, embedding or (name is not None and is_embedding_name(name))))
    return entries


def _split_group(group: dict[str, Any], weight_decay: float, decay_embeddings: bool) -> list[dict[str, Any]]:
    """One normalised group -> up to two torch groups (decay, no-decay), frozen parameters dropped."""
    entries = [e for e in group.pop("entries") if e[1].requires_grad]  # frozen params never reach the optimizer
    group_decay = group.get("weight_decay", weight_decay)

    def decays(entry: tuple[str | None, torch.Tensor, bool]) -> bool:
        _, tensor, embedding = entry
        return group_decay > 0 and tensor.ndim >= 2 and (decay_embeddings or not embedding)

    decay = [e for e in entries if decays(e)]
    no_decay = [e for e in entries if not decays(e)]
    out = []
    for chosen, extra in ((decay, {}), (no_decay, {"weight_decay": 0.0})):
        if not chosen:
            continue
        torch_group = {**group, **extra, "params": [e[1] for e in chosen]}
        if all(e[0] is not None for e in chosen):
            torch_group["param_names"] = [e[0] for e in chosen]
        out.append(torch_group)
    return out
