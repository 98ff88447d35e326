"""The one training loop of every supervised task.

``fit(task)`` trains ``task.build_model()`` on ``task.load_data().train`` with cross-entropy and writes a run
directory ``<out_dir>/<task>/<run_name>/`` holding TensorBoard events, ``metrics.jsonl``, ``config.json``,
``last.pt`` / ``best.pt`` and, at the end, ``results.json``.

Exact resume: the data order of epoch ``e`` is a pure function of ``(seed, e)``; augmentation draws from a
generator whose state is saved; dropout draws from torch's global RNG, saved too, together with the model,
optimizer, scheduler, counters and the partly accumulated training statistics. Training N steps straight
and training K steps, stopping and resuming give bit-identical parameters and metrics (on the same device
and thread count).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from lab.optim import effective_lrs, make_optimizer
from lab.portable import kernel_set
from lab.runtime import autocast, num_threads, run_name, seed_everything, select_device
from lab.io import atomic_torch_save, write_failure, write_json
from supervised.checkpoint import BEST, FORMAT_VERSION, LAST, load_checkpoint, resolve_checkpoint
from supervised.checkpoint import rng_state, set_rng_state
from supervised.configs import RUNTIME_FIELDS, ConfigError, config_to_dict, differences, flatten
from supervised.logger import CONFIG_FILE, RESULTS_FILE, RunLogger
from supervised.task import IGNORE_INDEX, InMemoryDataset, Task


class NonFiniteLossError(RuntimeError):
    """The loss or gradient became NaN / inf. Training stopped before the update; no checkpoint was written
    from the diverged state. ``checkpoint`` is the last good one (None if none was written yet)."""

    def __init__(self, message: str, step: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


class RunDirectoryExistsError(FileExistsError):
    """A new run was pointed at a non-empty directory (runs are never overwritten)."""


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]  # the content of results.json, config included


def fit(task: Task) -> TrainResult:
    """Train ``task`` with ``task.config.train``; see :class:`Trainer`."""
    return Trainer(task).fit()


class WarmupCosine:
    """``LambdaLR`` factor: linear warmup to 1 over ``warmup_steps``, then a cosine down to ``min_ratio``.

    A factor (not a learning rate) so every param group keeps its own base lr: discriminative fine-tuning
    groups keep their ratios. A callable object so ``LambdaLR.state_dict`` saves its settings.
    """

    def __init__(self, total_steps: int, warmup_steps: int, min_ratio: float) -> None:
        self.total_steps, self.warmup_steps, self.min_ratio = total_steps, warmup_steps, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def derived_seed(seed: int, *keys: str | int) -> int:
    """An independent 32-bit seed for one purpose (``"order"``, ``"augment"``) of a run seeded with ``seed``."""
    entropy = [seed, *(zlib.crc32(k.encode()) if isinstance(k, str) else k for k in keys)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def epoch_order(num_samples: int, seed: int, epoch: int) -> Tensor:
    """The shuffled sample order of one epoch, a pure function of ``(seed, epoch)``: resuming mid-epoch
    needs no saved state to continue the same order."""
    generator = torch.Generator().manual_seed(derived_seed(seed, "order", epoch))
    return torch.randperm(num_samples, generator=generator)


@torch.no_grad()
def evaluate(model: nn.Module, data: InMemoryDataset, batch_size: int = 1024, amp: bool = True) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data`` (in eval mode; the mode is restored)."""
    was_training = model.training
    model.eval()
    loss, correct = torch.zeros((), device=data.device), torch.zeros((), device=data.device)
    labels = torch.zeros((), dtype=torch.long, device=data.device)
    for start in range(0, len(data), batch_size):
        inputs, targets = data.take(slice(start, start + batch_size))
        with autocast(data.device, amp):
            logits = model(inputs)
        logits, targets = _per_label(logits, targets)
        loss += F.cross_entropy(logits, targets, reduction="sum")  # padding (IGNORE_INDEX) adds nothing
        labelled = targets != IGNORE_INDEX
        correct += ((logits.argmax(dim=-1) == targets) & labelled).sum()
        labels += labelled.sum()
    model.train(was_training)
    return {"loss": loss.item() / labels.item(), "accuracy": correct.item() / labels.item()}


def _per_label(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Float logits (L, C) and targets (L,), one row per label: a sequence task's (B, T, C) and (B, T) flattened."""
    return logits.float().flatten(0, -2), targets.flatten()


@dataclass
class _Progress:
    """Everything about the run so far that is not a module's state; saved in every checkpoint."""

    step: int = 0
    labels: int = 0  # labels trained on: batch rows, or a sequence task's real (unpadded) positions
    wall_time_s: float = 0.0  # summed over sessions (a resumed run continues the clock)
    best_val_accuracy: float | None = None
    best_step: int | None = None
    val_history: list[dict[str, float]] = field(default_factory=list)
    window: dict[str, float] = field(default_factory=dict)  # training statistics since the last log line


class Trainer:
    """Sets up the run directory (new, or the one of the checkpoint resumed) at construction, so config and
    directory errors come before any data is loaded; :meth:`fit` does the work.

    ``run_dir`` fixes the run directory (it must be empty or absent) instead of ``out_dir/<task>/<run name>``.
    What a subclass adds to a run goes through public methods: :meth:`on_train_start`, :meth:`on_step` and
    :meth:`validate` (e.g. the experiments' test-split curve and progress display,
    ``experiments.runs.supervised``).
    """

    def __init__(self, task: Task, run_dir: str | Path | None = None) -> None:
        self.task, self.config = task, task.config.train
        self.experiment = config_to_dict(task.config)
        try:
            self.device = select_device(self.config.device)
        except RuntimeError as error:  # e.g. --train.device cuda on a machine without a GPU
            raise ConfigError(str(error)) from None
        self.resumed: dict[str, Any] | None = None
        path = None
        if self.config.resume:
            path = resolve_checkpoint(self.config.resume)
            self.resumed = load_checkpoint(path)
            self._check_resumable(path, self.resumed)
            self.run_dir = path.parent
        else:
            self.run_dir = self._new_run_dir(None if run_dir is None else Path(run_dir))
        self.last_checkpoint: Path | None = path if self.resumed else None  # the last good one, for messages

    def _new_run_dir(self, fixed: Path | None) -> Path:
        c = self.config
        if fixed is not None:
            run_dir, advice = fixed, ""
        else:
            name = c.run_name or run_name(self.task.name, self.task.run_label(), seed=c.seed)
            run_dir = Path(c.out_dir) / self.task.name / name
            advice = f"; choose another --train.run-name or continue that run with --train.resume {run_dir}"
        if run_dir.exists() and any(run_dir.iterdir()):
            raise RunDirectoryExistsError(f"run directory {run_dir} already exists and is not empty{advice}")
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir

    def _check_resumable(self, path: Path, checkpoint: dict[str, Any]) -> None:
        if checkpoint["task"] != self.task.name:
            raise ConfigError(f"{path} is a {checkpoint['task']!r} checkpoint, not {self.task.name!r}")
        changed = differences(checkpoint["experiment"], self.experiment, ignore=RUNTIME_FIELDS)
        if changed:
            saved, now = flatten(checkpoint["experiment"]), flatten(self.experiment)
            details = "; ".join(f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}" for k in changed)
            raise ConfigError(f"cannot resume {path}: a resumed run keeps its config, but these differ: {details}")

    # ------------------------------------------------------------------------------------------------ setup
    def fit(self) -> TrainResult:
        with num_threads(self.config.num_threads):
            return self._fit()

    def _fit(self) -> TrainResult:
        c, task = self.config, self.task
        seed_everything(c.seed, c.deterministic)
        data = task.load_data()
        if len(data.train) < c.batch_size:
            raise ConfigError(
                f"batch_size {c.batch_size} is larger than the training split ({len(data.train)} samples)")
        self.data = data.to(self.device)
        self.model = task.build_model().to(self.device)
        with torch.random.fork_rng(devices=[]):  # describing may build other nets: keep the RNG stream unchanged
            self.model_info = task.describe_model(self.model)
        self.optimizer = make_optimizer(c.optimizer, task.optimizer_params(self.model), lr=c.lr,
                                        weight_decay=c.weight_decay, **c.optimizer_kwargs())
        self.steps_per_epoch = len(data.train) // c.batch_size
        self.total_steps = c.max_steps or c.epochs * self.steps_per_epoch
        schedule = WarmupCosine(self.total_steps, round(c.warmup_fraction * self.total_steps), c.min_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.data_generator = torch.Generator().manual_seed(derived_seed(c.seed, "augment"))
        self.progress = _Progress()
        if self.resumed is not None:
            self._restore(self.resumed)
        resume_at = (self.progress.step, self.samples) if self.resumed is not None else None
        logger = RunLogger(self.run_dir, task.final_metric_tags, resume=resume_at)
        if self.resumed is None:
            write_json(self.run_dir / CONFIG_FILE, self.experiment)
            logger.hyperparameters(flatten(self.experiment))
        try:
            self._train(logger)
            return self._finish(logger)
        except NonFiniteLossError as error:
            write_json(self.run_dir / RESULTS_FILE, self._results({}, status="diverged", error=str(error)))
            raise
        except KeyboardInterrupt:
            print(f"\ninterrupted at step {self.progress.step}; {self._where_to_continue()}", file=sys.stderr)
            raise
        except (OSError, RuntimeError) as error:  # RuntimeError: torch.save reports a full disk as one
            failure = write_failure(error)
            if failure is None:
                raise
            failure.advice = f"training stopped at step {self.progress.step}; {self._where_to_continue()}"
            raise failure from error
        finally:
            logger.close()

    def _where_to_continue(self) -> str:
        if self.last_checkpoint is None:
            return "no checkpoint had been written yet (start the run again)"
        return f"last checkpoint: {self.last_checkpoint}; continue with --train.resume {self.run_dir}"

    @property
    def samples(self) -> int:
        return self.progress.step * self.config.batch_size

    # ------------------------------------------------------------------------------------------------ hooks
    def on_train_start(self, logger: RunLogger) -> None:
        """Called once per session before the first step (and before its clock starts)."""

    def on_step(self) -> None:
        """Called after every optimizer step (``self.progress.step`` counts it)."""

    # --------------------------------------------------------------------------------------------- training
    def _train(self, logger: RunLogger) -> None:
        c, p = self.config, self.progress
        train = self.data.train
        self.on_train_start(logger)
        session_start, clock_offset = time.perf_counter(), p.wall_time_s
        interval_start, order, order_epoch = time.perf_counter(), None, -1
        self.model.train()
        with tqdm(total=self.total_steps, initial=p.step, desc=self.task.name, unit="step", dynamic_ncols=True,
                  disable=True if c.quiet else None) as bar:  # None: off by itself when stderr is not a TTY
            while p.step < self.total_steps:
                epoch, batch = divmod(p.step, self.steps_per_epoch)
                if epoch != order_epoch:
                    order, order_epoch = epoch_order(len(train), c.seed, epoch).to(self.device), epoch
                inputs, targets = train.take(order[batch * c.batch_size:(batch + 1) * c.batch_size])
                inputs = self.task.augment(inputs, self.data_generator)
                stats = self._train_step(inputs, targets)
                for key, value in stats.items():
                    p.window[key] = p.window.get(key, 0.0) + value
                p.labels += stats["samples"]
                p.step += 1
                p.wall_time_s = clock_offset + time.perf_counter() - session_start
                self.on_step()
                bar.update(1)

                now = time.perf_counter()
                if p.step % c.log_every == 0 or p.step == self.total_steps:
                    record = self._train_record(sps=p.window["samples"] / max(now - interval_start, 1e-9))
                    logger.log("train", p.step, self.samples, record)
                    bar.set_postfix(loss=f"{record['train_loss']:.3f}", acc=f"{record['train_accuracy']:.3f}",
                                    sps=f"{record['sps']:.0f}", refresh=False)
                    p.window, interval_start = {}, now
                last = p.step == self.total_steps
                evaluate_now = p.step % (c.eval_every or self.steps_per_epoch) == 0 or last
                improved = self.data.val is not None and evaluate_now and self.validate(logger)
                if (p.step % c.checkpoint_every == 0 if c.checkpoint_every else evaluate_now) or last:
                    self._save(self.run_dir / LAST)
                if improved:
                    self._save(self.run_dir / BEST)
                interval_start += time.perf_counter() - now  # samples/s counts training time only

    def _train_step(self, inputs: Any, targets: Tensor) -> dict[str, float]:
        c = self.config
        with autocast(self.device, c.amp):
            logits = self.model(inputs)
        logits, labels = _per_label(logits, targets)
        loss = F.cross_entropy(logits, labels, label_smoothing=c.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip or math.inf)
        loss_value, grad_norm_value = loss.item(), grad_norm.item()
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm_value)):
            cause = "loss" if not math.isfinite(loss_value) else "gradient"
            raise self._diverged(f"non-finite {cause} (loss {loss_value}, gradient norm {grad_norm_value})",
                                 step=self.progress.step + 1, updated=False)
        lr = max(effective_lrs(self.optimizer))  # the rate this step uses (the largest group's)
        self.optimizer.step()
        self.scheduler.step()
        labelled = labels != IGNORE_INDEX
        correct = ((logits.argmax(dim=-1) == labels) & labelled).sum().item()
        # "samples" are labels: a sequence task's padding is no sample (one sync more, for sequence targets only)
        samples = len(labels) if targets.dim() == 1 else int(labelled.sum())
        return {"loss": loss_value * samples, "correct": correct, "samples": samples,
                "grad_norm": grad_norm_value, "steps": 1, "lr": lr}

    def _train_record(self, sps: float) -> dict[str, float]:
        w, p = self.progress.window, self.progress
        return {
            "train_loss": w["loss"] / w["samples"],
            "train_accuracy": w["correct"] / w["samples"],
            "learning_rate": w["lr"] / w["steps"],
            "grad_norm": w["grad_norm"] / w["steps"],
            "sps": sps,
            "labels_seen": p.labels,
            "epoch": p.step / self.steps_per_epoch,
            "wall_time_s": p.wall_time_s,
        }

    def _diverged(self, what: str, step: int, updated: bool) -> NonFiniteLossError:
        """The one divergence message (the loss / gradient check and the save guard): what, where, the last
        good checkpoint and what to try."""
        where = (f"last good checkpoint: {self.last_checkpoint}" if self.last_checkpoint
                 else "no checkpoint had been written yet")
        state = "no checkpoint was written from this state" if updated else \
            "the parameters were not updated and no checkpoint was written from this state"
        return NonFiniteLossError(
            f"training stopped: {what} at step {step} of {self.total_steps} "
            f"(epoch {(step - 1) // self.steps_per_epoch + 1}); {state}; {where}. "
            f"Try a lower --train.lr or --train.grad-clip.", step=step, checkpoint=self.last_checkpoint)

    def validate(self, logger: RunLogger) -> bool:
        """Evaluate on the val split, log it; True if it is the best val accuracy so far. A subclass may
        extend it (call ``super().validate``): the experiments also score the test split here."""
        p = self.progress
        metrics = evaluate(self.model, self.data.val, self.config.eval_batch_size, self.config.amp)
        record = {"val_loss": metrics["loss"], "val_accuracy": metrics["accuracy"],
                  "epoch": p.step / self.steps_per_epoch}
        logger.log("val", p.step, self.samples, record)
        p.val_history.append({"step": p.step, **record})
        if not self.config.quiet:
            tqdm.write(f"step {p.step:>6}  epoch {record['epoch']:6.2f}  val_loss {metrics['loss']:.4f}  "
                       f"val_accuracy {metrics['accuracy']:.4f}", file=sys.stderr)
        if p.best_val_accuracy is None or metrics["accuracy"] > p.best_val_accuracy:
            p.best_val_accuracy, p.best_step = metrics["accuracy"], p.step
            return True
        return False

    # ------------------------------------------------------------------------------------------ checkpoints
    def _save(self, path: Path) -> None:
        state = {name: t for name, t in self.model.state_dict().items() if t.is_floating_point()}
        if not torch.stack([torch.isfinite(t).all() for t in state.values()]).all():  # one device sync
            # Never save a diverged state. The loss can stay finite while buffers overflow (BatchNorm running
            # statistics), so this check is not redundant with the loss and gradient checks.
            bad = [name for name, t in state.items() if not torch.isfinite(t).all()]
            what = f"non-finite values in {', '.join(bad[:3])}{f' and {len(bad) - 3} more' if len(bad) > 3 else ''}"
            raise self._diverged(f"{what} (found before writing {path.name}; the loss was still finite)",
                                 step=self.progress.step, updated=True)
        atomic_torch_save({
            "format_version": FORMAT_VERSION,
            "task": self.task.name,
            "experiment": self.experiment,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.progress.step,
            "samples": self.samples,
            "progress": dataclasses.asdict(self.progress),
            "rng": rng_state(self.data_generator),
        }, path)
        if path.name == LAST:
            self.last_checkpoint = path

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        # checkpoints before the label count: batch rows (exact for one label per row)
        self.progress = _Progress(**{"labels": checkpoint["samples"], **checkpoint["progress"]})
        set_rng_state(checkpoint["rng"], self.data_generator)

    # ------------------------------------------------------------------------------------------------ final
    def _finish(self, logger: RunLogger) -> TrainResult:
        c, p = self.config, self.progress
        final = self.task.final_metrics(self.model, self.data, self._evaluate)
        if c.evaluate_best and p.best_step is not None:
            if p.best_step == p.step:
                best = dict(final)
            else:
                best_model = copy.deepcopy(self.model)
                best_model.load_state_dict(load_checkpoint(self.run_dir / BEST, self.device)["model"])
                best = self.task.final_metrics(best_model, self.data, self._evaluate)
            final.update({f"best_{k}": v for k, v in best.items()})
        logger.log("final", p.step, self.samples, final)
        results = self._results(final, status="completed", extra=self.task.export(self.model, self.run_dir))
        write_json(self.run_dir / RESULTS_FILE, results)
        return TrainResult(self.run_dir, results)

    def _evaluate(self, model: nn.Module, data: InMemoryDataset) -> dict[str, float]:
        return evaluate(model, data, self.config.eval_batch_size, self.config.amp)

    def _results(self, final: dict[str, float], status: str, error: str | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
        p = self.progress
        last_val = p.val_history[-1] if p.val_history else {}
        return {
            "task": self.task.name,
            "status": status,
            **({"error": error} if error else {}),
            "run_dir": str(self.run_dir),
            "seed": self.config.seed,
            **final,
            "final_val_loss": last_val.get("val_loss"),
            "final_val_accuracy": last_val.get("val_accuracy"),
            "best_val_accuracy": p.best_val_accuracy,
            "best_step": p.best_step,
            **self.model_info,
            **(extra or {}),
            "steps": p.step,
            "samples_seen": self.samples,
            "epochs": p.step / self.steps_per_epoch,
            "wall_time_s": p.wall_time_s,
            "device": str(self.device),
            "num_threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "machine": kernel_set(),
            "config": self.experiment,
        }
