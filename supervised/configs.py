"""``TrainConfig`` (how every task trains), and nested config dataclasses <-> plain dictionaries for
checkpoints, ``results.json`` and the hyperparameter table."""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from lab.optim import get_optimizer_info
from lab.runtime import DEVICE_CHOICES

T = TypeVar("T")


class ConfigError(ValueError):
    """A config or run setup that cannot work, found when the run starts (before any training step)."""


# Fields that only say where or how to run, not what is trained: a resumed run may change them.
RUNTIME_FIELDS = ("train.resume", "train.device", "train.num_threads", "train.quiet", "train.out_dir",
                  "train.run_name")


@dataclass
class TrainConfig:
    """How to train. Each task sets its own default recipe; these defaults are a safe generic start."""

    epochs: int = 10
    """passes over the training split (ignored when max_steps is set)"""
    max_steps: int | None = None
    """total optimizer steps, overriding epochs (e.g. for smoke tests); None = epochs * steps per epoch"""
    batch_size: int = 64
    """training samples per optimizer step; each epoch drops its last partial batch"""
    optimizer: str = "adamw"
    """name in lab.optim's registry: sgd, momentum, nesterov, adam, adamw, adagrad, rmsprop, adamax, nadam"""
    lr: float | None = None
    """peak learning rate (reached after warmup); None = the optimizer's registry default"""
    weight_decay: float = 0.05
    """weight decay of matrices and conv kernels (biases, norms and embeddings never decay: lab.optim's rule)"""
    betas: tuple[float, float] | None = None
    """Adam-family (beta1, beta2); None = the optimizer's default (0.9, 0.999)"""
    momentum: float | None = None
    """momentum of sgd / momentum / nesterov / rmsprop; None = the registry's value"""
    warmup_fraction: float = 0.05
    """fraction of all steps over which the learning rate rises linearly to its peak"""
    min_lr_ratio: float = 0.0
    """after warmup the learning rate follows a cosine down to min_lr_ratio * peak"""
    grad_clip: float | None = 1.0
    """clip the global gradient norm to this value; None = no clipping (the norm is still logged)"""
    label_smoothing: float = 0.0
    """label smoothing of the training loss (validation and test losses are plain cross-entropy)"""
    eval_every: int = 0
    """evaluate on the validation split every this many steps; 0 = at the end of every epoch"""
    checkpoint_every: int = 0
    """write last.pt every this many steps; 0 = at every evaluation (always also at the end)"""
    log_every: int = 10
    """log training loss / accuracy / learning rate / samples per second every this many steps"""
    eval_batch_size: int = 1024
    """batch size of evaluation (no gradients, so larger than the training batch)"""
    evaluate_best: bool = True
    """also run the final evaluation on best.pt (the best validation accuracy); reported as best_*"""
    seed: int = 0
    """seeds python, numpy and torch (initialisation, dropout) and the data order and augmentation"""
    deterministic: bool = False
    """ask torch for deterministic kernels (CPU runs are reproducible without it; this matters on CUDA)"""
    device: str = "auto"
    """auto (CUDA > MPS > CPU), cpu, cuda, cuda:N or mps"""
    amp: bool = True
    """bf16 autocast on CUDA; no effect on CPU, which always trains in float32"""
    num_threads: int | None = None
    """torch intra-op threads while training (small models are often fastest with 1); None = torch's default"""
    out_dir: str = "runs/supervised"
    """runs are written to OUT_DIR/TASK/RUN_NAME (runs/supervised: tensorboard --logdir runs/supervised shows
    the supervised runs alone, apart from agents' and experiments' runs)"""
    run_name: str | None = None
    """name of the run directory; None = TASK__[LABEL__]SEED__UNIXTIME (lab.runtime.run_name)"""
    resume: str | None = None
    """continue a run from a checkpoint file or a run directory (its last.pt), with the saved config"""
    quiet: bool = False
    """no progress bar and no per-evaluation lines"""

    def __post_init__(self) -> None:
        def require(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        require(self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1 or None, got {self.max_steps}")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        info = get_optimizer_info(self.optimizer)  # ValueError listing the valid names
        require(self.lr is None or (math.isfinite(self.lr) and self.lr > 0),
                f"lr must be a positive number (or None for the optimizer's default), got {self.lr}")
        require(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
                f"weight_decay must be >= 0, got {self.weight_decay}")
        require(self.betas is None or info.has_betas, f"optimizer {info.name!r} takes no betas; leave betas None")
        require(self.betas is None or all(0 <= b < 1 for b in self.betas), f"betas must be in [0, 1), got {self.betas}")
        require(self.momentum is None or info.has_momentum, f"optimizer {info.name!r} takes no momentum")
        require(self.momentum is None or 0 <= self.momentum < 1, f"momentum must lie in [0, 1), got {self.momentum}")
        require(0 <= self.warmup_fraction < 1, f"warmup_fraction must lie in [0, 1), got {self.warmup_fraction}")
        require(0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        require(self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0 or None, got {self.grad_clip}")
        require(0 <= self.label_smoothing < 1, f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        for name in ("eval_every", "checkpoint_every"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0 (0 = once per epoch), got {getattr(self, name)}")
        require(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        require(self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        require(isinstance(self.seed, int) and self.seed >= 0, f"seed must be an int >= 0, got {self.seed}")
        require(self.device.split(":")[0] in DEVICE_CHOICES,
                f"unknown device {self.device!r}; choose one of {', '.join(DEVICE_CHOICES)} (e.g. cuda:1)")
        require(self.num_threads is None or self.num_threads >= 1, f"num_threads must be >= 1, got {self.num_threads}")
        require(self.run_name is None or (self.run_name.strip() and "/" not in self.run_name),
                f"run_name must be a non-empty name without '/', got {self.run_name!r}")

    def optimizer_kwargs(self) -> dict[str, Any]:
        """Keyword overrides for ``lab.make_optimizer``: only those that were set."""
        kwargs: dict[str, Any] = {}
        if self.betas is not None:
            kwargs["betas"] = tuple(self.betas)
        if self.momentum is not None:
            kwargs["momentum"] = self.momentum
        return kwargs


def config_to_dict(config: Any) -> dict[str, Any]:
    """``dataclasses.asdict`` (tuples stay tuples, so a checkpoint round trip compares equal)."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Rebuild the dataclass ``cls`` (nested dataclass fields included) from :func:`config_to_dict` output.

    Missing fields take their defaults, so a run saved before a field was added still loads; unknown fields
    are an error naming them, since silently dropping one would change the experiment.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{cls.__name__} has no field(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    kwargs = {}
    for name, value in values.items():
        field_type = hints[name]
        if dataclasses.is_dataclass(field_type) and isinstance(value, dict):
            value = config_from_dict(field_type, value)
        kwargs[name] = value
    return cls(**kwargs)


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}`` (the names the CLI uses, as ``--train.lr``)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(a: dict[str, Any], b: dict[str, Any], ignore: typing.Iterable[str] = ()) -> list[str]:
    """Flattened field names whose values differ between two config dictionaries, ``ignore`` left out."""
    flat_a, flat_b = flatten(a), flatten(b)
    ignored = set(ignore)
    return sorted(k for k in set(flat_a) | set(flat_b) if k not in ignored and flat_a.get(k) != flat_b.get(k))
