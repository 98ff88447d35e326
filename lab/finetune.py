"""The tutorial's three fine-tuning methods, fastai-style: freeze layers, train only some, discriminative rates.

A model is seen as ordered *layer groups*, body -> head (fastai's splitter). Models in this project define a
``layer_groups()`` method; any other model falls back to its top-level children.

* **Freezing**: :func:`freeze_to` freezes the groups before ``n`` (``freeze_to(model, -1)`` trains only the
  head), :func:`freeze` / :func:`unfreeze` act on whole modules.
* **Training chosen parameters**: :func:`train_only` keeps trainable only the parameters whose names match.
* **Discriminative learning rates**: :func:`discriminative_param_groups` spreads rates log-evenly from the
  body to the head, ready for :func:`lab.optim.make_optimizer`.

Build the optimizer *after* freezing: ``make_optimizer`` leaves frozen parameters out. Inside SB3 (whose
optimizer is built once and keeps every parameter) frozen parameters simply get no gradient.
"""
from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable

import torch
from torch import nn

from lab.optim import embedding_parameter_names

Pattern = str | re.Pattern[str]


# ----------------------------------------------------------------------------------------------- layer groups
def layer_groups(model: nn.Module) -> list[nn.Module]:
    """The model's layer groups ordered body -> head.

    Uses ``model.layer_groups()`` when defined (or a ``layer_groups`` ModuleList / list), else the top-level
    children that hold parameters, in registration order. Either way the groups must be disjoint and cover every
    parameter of the model, so no parameter escapes freezing or is silently left out of a discriminative optimizer.
    """
    defined = getattr(model, "layer_groups", None)
    if isinstance(defined, (nn.ModuleList, list, tuple)):
        groups = list(defined)
    elif callable(defined) and not isinstance(defined, nn.Module):
        groups = list(defined())
    else:
        groups = [child for child in model.children() if any(True for _ in child.parameters())]
    if not groups:
        raise ValueError(f"{type(model).__name__} has no layer groups: no child module holds parameters")
    for i, group in enumerate(groups):
        if not isinstance(group, nn.Module):
            raise TypeError(f"layer group {i} must be an nn.Module, got {type(group).__name__}")
    _check_partition(model, groups)
    return groups


def _check_partition(model: nn.Module, groups: list[nn.Module], trainable_only: bool = False) -> None:
    """Groups must be disjoint, inside the model, and cover all its (trainable) parameters."""
    names = {id(p): n for n, p in model.named_parameters()}
    seen: dict[int, int] = {}
    for i, group in enumerate(groups):
        for p in group.parameters():
            if id(p) not in names:
                raise ValueError(f"layer group {i} ({type(group).__name__}) holds a parameter that is not in the model")
            if seen.setdefault(id(p), i) != i:
                raise ValueError(
                    f"parameter {names[id(p)]!r} is in layer groups {seen[id(p)]} and {i}; groups must be disjoint"
                )
    missing = [n for n, p in model.named_parameters() if id(p) not in seen and (p.requires_grad or not trainable_only)]
    if missing:
        raise ValueError(
            f"parameters outside every layer group: {_preview(missing)}; define {type(model).__name__}.layer_groups() "
            "(or pass groups=) returning modules, body -> head, that cover them (parameters registered directly on "
            "the model are in no child)"
        )


# ----------------------------------------------------------------------------------------------------- freezing
def _parameters(target: nn.Module | nn.Parameter | Iterable[nn.Module | nn.Parameter]) -> list[nn.Parameter]:
    if isinstance(target, nn.Module):
        return list(target.parameters())
    if isinstance(target, torch.Tensor):
        return [target]
    params: list[nn.Parameter] = []
    for item in target:
        params += _parameters(item)
    return params


def freeze(target: nn.Module | nn.Parameter | Iterable[nn.Module | nn.Parameter]) -> None:
    """Stop gradients for every parameter of ``target`` (modules and/or parameters).

    Also drops any stored ``.grad`` so a stale gradient can never be applied by an optimizer that still
    holds the parameter. Unlike fastai's ``Learner.freeze`` this freezes *all* of ``target``; use
    ``freeze_to(model, -1)`` to keep the head trainable.
    """
    for p in _parameters(target):
        p.requires_grad_(False)
        p.grad = None


def unfreeze(target: nn.Module | nn.Parameter | Iterable[nn.Module | nn.Parameter]) -> None:
    """Make every parameter of ``target`` trainable again."""
    for p in _parameters(target):
        p.requires_grad_(True)


def freeze_to(model: nn.Module, n: int) -> None:
    """Freeze layer groups ``[0, n)`` and unfreeze the rest (fastai semantics).

    Negative ``n`` counts from the end: ``freeze_to(model, -1)`` trains only the head, ``freeze_to(model, 0)``
    trains everything, ``freeze_to(model, len(groups))`` freezes everything.
    """
    groups = layer_groups(model)
    if not isinstance(n, int) or isinstance(n, bool) or not -len(groups) <= n <= len(groups):
        k = len(groups)
        raise ValueError(f"n must be an int in [-{k}, {k}] for {k} layer groups, got {n!r}")
    cut = n % len(groups) if n < 0 else n
    unfreeze(groups[cut:])
    freeze(groups[:cut])


def train_only(model: nn.Module, patterns: Pattern | Iterable[Pattern]) -> list[str]:
    """Keep trainable only the parameters whose qualified names match a pattern; freeze all others.

    A ``str`` is a glob matched against the whole name (``fnmatch``: ``"head.*"``, ``"*.bias"``); a compiled
    regex is *searched* in the name (anchor it with ``^...$`` for a full match). A pattern that matches no
    parameter is an error, since it is almost always a typo. Returns the names left trainable.
    """
    patterns = [patterns] if isinstance(patterns, (str, re.Pattern)) else list(patterns)
    if not patterns:
        raise ValueError("train_only needs at least one pattern")
    for pattern in patterns:
        if not isinstance(pattern, (str, re.Pattern)):
            raise TypeError(f"patterns must be glob strings or compiled regexes, got {type(pattern).__name__}")
    named = list(model.named_parameters())

    def matches(pattern: Pattern, name: str) -> bool:
        return bool(pattern.search(name)) if isinstance(pattern, re.Pattern) else fnmatch.fnmatchcase(name, pattern)

    for pattern in patterns:
        if not any(matches(pattern, n) for n, _ in named):
            shown = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
            examples = _preview([n for n, _ in named])
            raise ValueError(f"pattern {shown!r} matches no parameter; names look like {examples}")
    kept = []
    for name, p in named:
        if any(matches(pattern, name) for pattern in patterns):
            unfreeze(p)
            kept.append(name)
        else:
            freeze(p)
    return kept


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters with ``requires_grad=True`` (shared ones once)."""
    return [p for p in model.parameters() if p.requires_grad]


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Qualified names of the trainable parameters."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def frozen_parameter_names(model: nn.Module) -> list[str]:
    """Qualified names of the frozen parameters."""
    return [n for n, p in model.named_parameters() if not p.requires_grad]


# --------------------------------------------------------------------------------- discriminative learning rates
def spread_learning_rates(n_groups: int, lr_max: float, lr_min: float | None = None) -> list[float]:
    """Per-group rates body -> head, fastai's ``slice`` semantics.

    ``lr_min`` given: geometric (log-even) from ``lr_min`` (first group) to ``lr_max`` (last group), like
    ``slice(lr_min, lr_max)``. ``lr_min=None``: ``lr_max / 10`` for every group but the head, which gets
    ``lr_max``, like ``slice(lr_max)``. One group always gets ``lr_max``.
    """
    if n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups}")
    if not (math.isfinite(lr_max) and lr_max > 0):
        raise ValueError(f"lr_max must be a finite number > 0, got {lr_max!r}")
    if lr_min is None:
        return [lr_max / 10] * (n_groups - 1) + [lr_max]
    if not (math.isfinite(lr_min) and 0 < lr_min <= lr_max):
        raise ValueError(f"lr_min must satisfy 0 < lr_min <= lr_max = {lr_max} (body slower than head), got {lr_min!r}")
    if n_groups == 1:
        return [lr_max]
    ratio = lr_max / lr_min
    return [lr_min * ratio ** (i / (n_groups - 1)) for i in range(n_groups)]


def discriminative_param_groups(
    model: nn.Module,
    lr_max: float,
    lr_min: float | None = None,
    *,
    groups: list[nn.Module] | None = None,
    as_scale: bool = False,
) -> list[dict]:
    """Param groups with learning rates spread over the layer groups (see :func:`spread_learning_rates`).

    Rates are spread over *all* layer groups, frozen ones included (as fastai does), so after
    ``freeze_to(model, -2)`` the last two groups get the top two rates of the full spread. Frozen parameters
    are left out and a layer group with nothing trainable yields no dict.

    Each dict has ``params``, ``param_names`` (qualified names, so make_optimizer's embedding rule applies),
    ``layer_group`` (index body -> head) and either ``lr`` = the group's rate or, with ``as_scale=True``,
    ``lr`` = ``lr_max`` and ``lr_scale`` = rate / lr_max for the ``lr_scale``-aware optimizers of
    :mod:`lab.optim` (whose ``lr`` SB3 overwrites on every group). A layer group holding embeddings is split in
    two dicts with the same rate, the embedding one marked ``embedding=True`` so make_optimizer can exempt
    it from weight decay. Typical use::

        opt = make_optimizer("adamw", discriminative_param_groups(model, 1e-3, 1e-5), weight_decay=0.05)
    """
    groups = layer_groups(model) if groups is None else list(groups)
    if not groups:
        raise ValueError("groups must hold at least one module")
    _check_partition(model, groups, trainable_only=True)
    rates = spread_learning_rates(len(groups), lr_max, lr_min)
    names = {id(p): n for n, p in model.named_parameters()}
    embeddings = embedding_parameter_names(model)
    out = []
    for index, (group, rate) in enumerate(zip(groups, rates)):
        params = [p for p in group.parameters() if p.requires_grad]
        for embedding in (False, True):
            chosen = [p for p in params if (names[id(p)] in embeddings) == embedding]
            if not chosen:
                continue
            rates_entry = {"lr": lr_max, "lr_scale": rate / lr_max} if as_scale else {"lr": rate}
            entry = {"params": chosen, "param_names": [names[id(p)] for p in chosen], **rates_entry}
            entry["layer_group"] = index
            if embedding:
                entry["embedding"] = True
            out.append(entry)
    if not out:
        raise ValueError("no trainable parameters in any layer group: unfreeze something first")
    return out


def _preview(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
