"""What a task gives the trainer: in-memory data splits, a model, optional augmentation and a final evaluation.

A task is a classification problem in the broad sense: the model maps a batch of inputs to logits (B, C) and
is trained with cross-entropy against integer targets (B,). That covers the MNIST-1D and digits classifiers
and behaviour cloning, whose inputs are dicts of tensors (image, direction, mission tokens) and whose targets
are the expert's actions. A sequence model predicts one class per position instead: logits (B, T, C) against
targets (B, T), where :data:`IGNORE_INDEX` marks padding (no loss, no accuracy), as torch's cross-entropy does. What differs is the *final* evaluation: a test split for a classifier, rollouts in
an environment for a cloned policy; a task overrides :meth:`Task.final_metrics` for that.
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from lab import tags
from lab.runtime import count_parameters

Inputs = Tensor | dict[str, Tensor]  # (N, ...) or {name: (N, ...)}, batch first
IGNORE_INDEX = -100  # a sequence target that is padding (F.cross_entropy's default ignore_index)


def map_inputs(fn: Callable[[Tensor], Tensor], inputs: Inputs) -> Inputs:
    """Apply ``fn`` to a tensor, or to every tensor of a dict of inputs."""
    if isinstance(inputs, dict):
        return {name: fn(value) for name, value in inputs.items()}
    return fn(inputs)


@dataclass(frozen=True)
class InMemoryDataset:
    """Inputs (a tensor or a dict of tensors, all with N rows) and integer targets (N,) or, for sequence models,
    (N, T) with :data:`IGNORE_INDEX` at padding; indexed directly.

    Everything here fits in memory, so batches are gathered with tensor indexing: no DataLoader, no workers.
    """

    inputs: Inputs
    targets: Tensor

    def __post_init__(self) -> None:
        if self.targets.dim() not in (1, 2) or self.targets.dtype != torch.long:
            raise ValueError(f"targets must be an int64 tensor of shape (N,) or (N, T), got {self.targets.dtype} "
                             f"{tuple(self.targets.shape)}")
        rows = {name: len(value) for name, value in self._named_inputs().items()}
        if any(n != len(self.targets) for n in rows.values()):
            raise ValueError(f"every input needs one row per target ({len(self.targets)}), got rows {rows}")

    def _named_inputs(self) -> dict[str, Tensor]:
        return self.inputs if isinstance(self.inputs, dict) else {"inputs": self.inputs}

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, index: Tensor | slice) -> tuple[Inputs, Tensor]:
        """The rows ``index`` (an index tensor on the data's device, or a slice) as ``(inputs, targets)``."""
        return map_inputs(lambda value: value[index], self.inputs), self.targets[index]

    def to(self, device: torch.device | str) -> InMemoryDataset:
        return InMemoryDataset(map_inputs(lambda value: value.to(device), self.inputs), self.targets.to(device))

    @property
    def device(self) -> torch.device:
        return self.targets.device


@dataclass(frozen=True)
class TaskData:
    """The splits of a task. ``val`` may be None (no validation curve, no best.pt); ``test`` may be None when
    the task's final evaluation is not a test split (e.g. rollouts)."""

    train: InMemoryDataset
    val: InMemoryDataset | None = None
    test: InMemoryDataset | None = None

    def to(self, device: torch.device | str) -> TaskData:
        return TaskData(*(split.to(device) if split is not None and len(split) else None
                          for split in (self.train, self.val, self.test)))


Evaluate = Callable[[nn.Module, InMemoryDataset], dict[str, float]]  # -> {"loss": ..., "accuracy": ...}


class Task(abc.ABC):
    """One supervised task. ``config`` is the task's experiment dataclass; it must have a ``train`` field
    holding a :class:`supervised.configs.TrainConfig`, and is saved whole in every checkpoint.

    Subclasses set ``name`` and ``config_class`` and implement :meth:`load_data` and :meth:`build_model`.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    # Which final metrics (keys of final_metrics) go to TensorBoard, and under which tag.
    final_metric_tags: ClassVar[dict[str, str]] = {"test_accuracy": tags.ACCURACY}

    def __init__(self, config: Any | None = None) -> None:
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    @abc.abstractmethod
    def load_data(self) -> TaskData:
        """The splits, on the CPU; the trainer moves them to the device once."""

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A fresh model whose ``forward(inputs)`` returns logits (B, C). Initialised from torch's global RNG."""

    def run_label(self) -> str:
        """Extra words for the default run name (e.g. the block type), or ``""``."""
        return ""

    def augment(self, inputs: Inputs, generator: torch.Generator) -> Inputs:
        """Train-time augmentation of one batch. Draw randomness only from ``generator`` (a CPU generator the
        trainer saves in checkpoints), never from global state, so a resumed run augments identically."""
        return inputs

    def optimizer_params(self, model: nn.Module) -> nn.Module | list[dict[str, Any]]:
        """What ``lab.make_optimizer`` gets: the model, or param groups (e.g. from
        ``lab.discriminative_param_groups`` for fine-tuning; the schedule keeps their lr ratios)."""
        return model

    def describe_model(self, model: nn.Module) -> dict[str, int | float]:
        """Numbers about the model for ``results.json`` (parameters, FLOPs, ...)."""
        return {"params": count_parameters(model)}

    def final_metrics(self, model: nn.Module, data: TaskData, evaluate: Evaluate) -> dict[str, float]:
        """The held-out evaluation at the end of training; a classifier scores its test split."""
        if data.test is None:
            return {}
        metrics = evaluate(model, data.test)
        return {"test_loss": metrics["loss"], "test_accuracy": metrics["accuracy"]}

    def export(self, model: nn.Module, run_dir: Path) -> dict[str, Any]:
        """Called once at the end of a completed run, after the final evaluation, with the final model: write
        files besides the checkpoints into ``run_dir`` (e.g. weights for another program) and return entries
        for ``results.json``. Default: nothing."""
        return {}
