"""The lab's one RL run routine: train an :class:`agents.config.AgentConfig` into one run directory.

``agents.train`` (the CLI), the experiments and the benchmarks all run agents through :class:`AgentRun`; the
experiments subclass it through its hooks (:meth:`AgentRun.on_progress`, :meth:`AgentRun.extra_record`), as they
subclass the supervised ``Trainer``. A run writes into ``run_dir``:

- TensorBoard events (SB3's keys and the lab's shared tags, keyed by environment steps; hyperparameters as a
  markdown table) and ``progress.csv`` (``progress.resume<N>.csv`` after the N-th resume);
- ``config.json`` (the AgentConfig and RunOptions, when the run starts: a checkpoint of another run is refused);
- ``resume.pkl`` (:mod:`agents.checkpoint`), every ``checkpoint_every_s`` seconds and when a stop is requested,
  always between two rollouts; removed when the run has finished;
- at the end, ``model.zip`` (atomically, ``VecNormalize`` statistics beside it) and then ``results.json``: a
  run directory without ``results.json`` is unfinished, whatever else it holds.

Evaluation (:class:`agents.evaluation.Evaluator`) happens before training (the untrained policy, step 0), every
``config.eval_freq`` environment steps and after training. ``eval_between_rollouts=False`` evaluates as SB3's
``EvalCallback`` does (in the middle of a rollout, when the step count reaches a multiple of the interval);
``True`` only between rollouts, so each point scores the policy after every update that used the samples counted
so far (what the experiments plot). Evaluations never touch the global random state, and their time is not
counted as training wall time.

Stopping: :meth:`AgentRun.request_stop` (e.g. from a signal handler) lets the current rollout and its update
finish, checkpoints, and makes :meth:`AgentRun.run` raise :class:`RunInterrupted`; ``AgentRun.resume(run_dir)``
continues it (what is bit-identical after a resume: :mod:`agents.checkpoint`). An evaluation between rollouts,
at step 0 or at the end gives up at once and is done again after the resume; one in the middle of a rollout
(``eval_between_rollouts=False``) finishes first, as the rollout around it does. A stop requested at any time
before ``results.json`` is written ends the run this way.

Non-finite numbers: a NaN or inf in an observation, a reward or a gradient stops the run with
:class:`NonFiniteError` before the policy is updated from it (the message names what, which env and the step);
the last checkpoint, from before, is kept and ``FAILED`` says what happened.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import CSVOutputFormat, configure

from agents.callbacks import LabTagsCallback, save_model_atomic, tensorboard_writer
from agents.checkpoint import CHECKPOINT_FILE, read_checkpoint, restore_model, save_checkpoint
from agents.config import AgentConfig, plain
from agents.evaluation import EvaluationStopped, Evaluator
from agents.finite import NonFiniteError, non_finite_rows
from agents.factory import ALGORITHMS, VEC_ENVS, make_agent
from envs.make import make_env
from lab import tags
from lab.io import atomic_write_text, write_json
from lab.portable import kernel_set
from lab.runtime import count_parameters, select_device
from lab.tags import hparams_markdown

RESULTS_FILE = "results.json"
MODEL_FILE = "model.zip"
CONFIG_FILE = "config.json"  # written when the run starts: which run this directory holds
FAILED_FILE = "FAILED"  # a run stopped by a non-finite number: what and where (its last checkpoint is kept)


class RunInterrupted(Exception):
    """A run stopped on request after checkpointing; ``AgentRun.resume(run_dir)`` continues it."""

    def __init__(self, run_dir: Path, steps: int, total: int) -> None:
        super().__init__(f"stopped at {steps:,} of {total:,} environment steps; checkpoint in {run_dir}")
        self.run_dir, self.steps, self.total = run_dir, steps, total


class CheckpointMismatchError(ValueError):
    """A run directory's checkpoint belongs to another run (another config than the directory's config.json)."""


@dataclasses.dataclass
class RunOptions:
    """How a run trains besides its AgentConfig (saved in the checkpoint, so a resume runs the same way)."""

    seed: int = 1
    device: str = "auto"
    eval_between_rollouts: bool = False
    checkpoint_every_s: float = 300.0  # a crash loses at most ~5 minutes (and the rollout in progress)
    log_every: int = 1000  # the lab's training tags at most once per this many environment steps
    progress_bar: bool = False
    verbose: int = 0
    hparams: dict[str, Any] = dataclasses.field(default_factory=dict)  # extra rows of the hyperparameter table


@dataclasses.dataclass
class RunProgress:
    """A run's curve and counters so far: everything a resume checkpoint saves besides the model and its envs."""

    curve: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # evaluation points, step 0 first
    last_eval: int = -1  # environment steps at the last evaluation
    eval_seconds: float = 0.0  # of the wall time below, spent evaluating
    wall_time_s: float = 0.0  # wall time of the run so far (all processes), evaluations included
    episodes: int = 0  # training episodes finished
    updates: int = 0  # optimizer steps
    steps: int = 0  # environment steps when this progress was saved
    resumes: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # {"steps", "exact"} per resume
    # wall and CPU seconds of the processes that ran this run before this one (a resumed run's record adds them
    # to its own process's times, so a run's cost does not shrink with each resume)
    earlier_segments: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"wall_time_s": 0.0, "cpu_time_s": 0.0})


class AgentRun:
    """One RL run (module docstring). Construct, then :meth:`run`; or :meth:`resume` an interrupted one."""

    def __init__(self, config: AgentConfig, run_dir: str | Path, options: RunOptions | None = None, *,
                 pretrained: Any = None, pretrained_head: Any = None) -> None:
        self.config, self.run_dir, self.options = config, Path(run_dir), options or RunOptions()
        self.pretrained, self.pretrained_head = pretrained, pretrained_head
        self._checkpoint: dict[str, Any] | None = None  # set by resume()
        self._stop_requested = False
        self.model: BaseAlgorithm | None = None
        self.evaluator: Evaluator | None = None
        self.progress = RunProgress()

    @classmethod
    def resume(cls, run_dir: str | Path) -> AgentRun:
        """The run whose checkpoint is in ``run_dir``; ValueError (a finished run, a damaged checkpoint) or
        FileNotFoundError (no checkpoint) say what is wrong."""
        run_dir = Path(run_dir)
        if (run_dir / RESULTS_FILE).exists():
            raise ValueError(f"{run_dir} has finished ({RESULTS_FILE} is there): nothing to resume")
        if not (run_dir / CHECKPOINT_FILE).exists():
            raise FileNotFoundError(f"no resume checkpoint in {run_dir} ({CHECKPOINT_FILE}): not a run directory, or "
                                    "it stopped before its first checkpoint (start it again)")
        payload = read_checkpoint(run_dir / CHECKPOINT_FILE)
        saved = payload["run"]
        check_belongs(run_dir, saved["config"])
        run = cls(saved["config"], run_dir, saved["options"])
        run._checkpoint = payload
        return run

    @staticmethod
    def can_resume(run_dir: str | Path) -> bool:
        return (Path(run_dir) / CHECKPOINT_FILE).exists() and not (Path(run_dir) / RESULTS_FILE).exists()

    # ---------------------------------------------------------------------------------------------- hooks
    def on_progress(self, steps: int, total: int) -> None:
        """Called after every environment step (a display's progress)."""

    def extra_record(self, model: BaseAlgorithm) -> dict[str, Any]:
        """More fields for results.json (e.g. an experiment's variant, FLOPs)."""
        return {}

    def request_stop(self) -> None:
        """Stop after the current rollout and update, with a checkpoint (safe to call from a signal handler)."""
        self._stop_requested = True

    # ------------------------------------------------------------------------------------------------ run
    def prepare(self) -> None:
        """Build (or restore) the agent and its evaluator: every bad option fails here, before the run
        directory is made. :meth:`run` calls it when it was not called."""
        if self.model is not None:
            return
        if self._checkpoint is None and self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise FileExistsError(f"run directory {self.run_dir} already exists and is not empty; runs are never "
                                  "overwritten")
        self._segment_start = (time.perf_counter(), time.process_time())  # this process's share of the run
        self.model = self._build()
        try:
            self.evaluator = Evaluator(self.config)
        except BaseException:
            self.model.get_env().close()
            raise
        self.evaluator.should_stop = lambda: self._stop_requested

    def run(self) -> dict[str, Any]:
        """Train (or continue) to ``config.timesteps``; the results (also in ``results.json``)."""
        self.prepare()
        model, progress, evaluator, options = self.model, self.progress, self.evaluator, self.options
        resumed = bool(progress.resumes)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not resumed:
            write_json(self.run_dir / CONFIG_FILE, {"config": self.config.to_dict(),
                                                   "options": dataclasses.asdict(self.options)})
        (self.run_dir / FAILED_FILE).unlink(missing_ok=True)  # a resume after a non-finite stop tries again
        try:
            segment = len(progress.resumes)
            csv = "progress.csv" if segment == 0 else f"progress.resume{segment}.csv"
            model.set_logger(configure(str(self.run_dir), ["tensorboard"] + (["stdout"] if options.verbose else [])))
            model.logger.output_formats.append(CSVOutputFormat(str(self.run_dir / csv)))
            writer = tensorboard_writer(model.logger)
            if not resumed:
                writer.add_text("hyperparameters", hparams_markdown(self.hyperparameters(model)))
            lab_tags = LabTagsCallback(log_every=options.log_every, episodes=progress.episodes)
            loop = _RunCallback(self, evaluator, lab_tags)
            model.policy.optimizer.register_step_pre_hook(loop.check_gradients)
            model.policy.optimizer.register_step_post_hook(self._count_update)
            try:
                model.learn(self.config.timesteps - model.num_timesteps, callback=[lab_tags, loop],
                            reset_num_timesteps=not resumed, progress_bar=options.progress_bar)
                loop.check_losses()  # the last update's
            except NonFiniteError as error:
                atomic_write_text(self.run_dir / FAILED_FILE, f"{error}\n")
                raise
            if loop.stopped:
                raise RunInterrupted(self.run_dir, loop.checkpoint_steps, self.config.timesteps)
            train_wall = loop.train_wall_time_s
            # the final model (skipped if the last evaluation was at this very step); a stop requested now, or
            # during it, checkpoints: the resumed run only evaluates and writes the results
            if self._stop_requested or not loop.evaluate(final=True):
                self.save_checkpoint(loop)
                raise RunInterrupted(self.run_dir, model.num_timesteps, self.config.timesteps)
            writer.flush()
            save_model_atomic(model, self.run_dir / MODEL_FILE)
        finally:
            model.get_env().close()
            evaluator.close()
        record = self._record(model, loop, evaluator, train_wall)
        write_json(self.run_dir / RESULTS_FILE, record)
        (self.run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
        return record

    def _count_update(self, *_: Any) -> None:
        self.progress.updates += 1

    def last_checkpoint(self) -> str:
        """Where the run can be resumed from, for messages."""
        path = self.run_dir / CHECKPOINT_FILE
        if not path.exists():
            return "no checkpoint had been written yet (start the run again)"
        return f"the last checkpoint ({path}) is from before, resume with: python -m agents.train --resume {self.run_dir}"

    def _build(self) -> BaseAlgorithm:
        """The agent of a fresh run, or the one of the checkpoint with its progress (``self.progress``)."""
        config, options = self.config, self.options
        if self._checkpoint is None:
            return make_agent(config, seed=options.seed, device=options.device, pretrained=self.pretrained,
                              pretrained_head=self.pretrained_head, verbose=options.verbose)
        progress: RunProgress = self._checkpoint["run"]["progress"]
        steps = progress.steps
        fresh_envs = functools.partial(make_vec_env, functools.partial(make_env, config.env_id, **config.env_kwargs),
                                       n_envs=config.n_envs, seed=options.seed + steps,
                                       vec_env_cls=VEC_ENVS[config.vec_env])
        model, exact = restore_model(self._checkpoint, ALGORITHMS[config.algo], fresh_envs,
                                     select_device(options.device), options.seed + steps)
        self.progress = dataclasses.replace(progress, resumes=[*progress.resumes, {"steps": steps, "exact": exact}])
        self._checkpoint = None
        return model

    def save_checkpoint(self, loop: _RunCallback) -> None:
        now = dataclasses.replace(self.progress, wall_time_s=loop.wall_time_s, episodes=loop.lab_tags.episodes,
                                  steps=self.model.num_timesteps, earlier_segments=self._segments_so_far())
        save_checkpoint(self.run_dir / CHECKPOINT_FILE, self.model,
                        {"config": self.config, "options": self.options, "progress": now})

    def _segments_so_far(self) -> dict[str, float]:
        """Wall and CPU seconds of the processes that ran this run up to now (a resumed run's later records add
        them to their own process's times, so a run's cost does not shrink with each resume)."""
        wall, cpu = self._segment_start
        earlier = self.progress.earlier_segments
        return {"wall_time_s": earlier["wall_time_s"] + time.perf_counter() - wall,
                "cpu_time_s": earlier["cpu_time_s"] + time.process_time() - cpu}

    def hyperparameters(self, model: BaseAlgorithm) -> dict[str, Any]:
        """The hyperparameter table: the config, the run options and what SB3 resolved."""
        options = {k: v for k, v in dataclasses.asdict(self.options).items() if k != "hparams"}
        return plain({**self.config.to_dict(), **options, **self.options.hparams, **describe_agent(model)})

    def _record(self, model: BaseAlgorithm, loop: _RunCallback, evaluator: Evaluator,
                train_wall: float) -> dict[str, Any]:
        policy, config, progress = model.policy, self.config, self.progress
        extractor = getattr(policy, "features_extractor", None) or policy.q_net.features_extractor
        final = progress.curve[-1]
        steps = model.num_timesteps
        return {
            "run_dir": str(self.run_dir), "env_id": config.env_id, "algo": config.algo, "encoder": _name(config.encoder),
            "seed": self.options.seed, "curve": progress.curve, "final": final, "samples": steps, "steps": steps,
            "episodes": loop.lab_tags.episodes, "rewards_seen": steps, "labels_seen": 0, "updates": progress.updates,
            "train_wall_time_s": train_wall, "steps_per_s": steps / max(train_wall, 1e-9),
            "params": count_parameters(policy), "trainable_params": count_parameters(policy, trainable_only=True),
            "encoder_params": count_parameters(getattr(extractor, "backbone", extractor)),
            "metric": evaluator.metric, "final_metric": final.get(evaluator.metric), "eval_actions": evaluator.actions,
            "resumes": progress.resumes, "earlier_segments": progress.earlier_segments,
            "stopped_early": loop.reached,  # config.stop_at_metric held at two evaluations before the last step
            "config": config.to_dict(), "machine": kernel_set(),
            "hyperparameters": self.hyperparameters(model),
            **self.extra_record(model),
        }


class _RunCallback(BaseCallback):
    """Evaluations, checkpoints, stop requests and progress of one :class:`AgentRun` (into ``run.progress``)."""

    def __init__(self, run: AgentRun, evaluator: Evaluator, lab_tags: LabTagsCallback) -> None:
        super().__init__()
        self.run, self.evaluator, self.lab_tags, self.progress = run, evaluator, lab_tags, run.progress
        self._wall_before = self.progress.wall_time_s  # wall time of earlier segments (evaluations included)
        self.stopped = False
        self.reached = False  # config.stop_at_metric held at two consecutive evaluations: training ends
        self.checkpoint_steps = 0  # environment steps of the last checkpoint
        self._start = self._last_checkpoint = 0.0
        config = run.config
        self._every = max(config.eval_freq // config.n_envs, 1) if config.eval_freq > 0 else 0

    @property
    def wall_time_s(self) -> float:
        return self._wall_before + time.perf_counter() - self._start

    @property
    def train_wall_time_s(self) -> float:
        return self.wall_time_s - self.progress.eval_seconds

    def _on_training_start(self) -> None:
        self._start = self._last_checkpoint = time.perf_counter()
        self.check_finite("observations (at reset)", self.model._last_obs)
        if self.progress.last_eval < 0:
            self.evaluate()  # the untrained policy (step 0); if a stop cut it short, the resumed run does it
        self.reached = self.held()  # a resumed run that had reached it does not train on

    def held(self) -> bool:
        """The last two evaluations read at least ``config.stop_at_metric`` (never without one)."""
        target, metric = self.run.config.stop_at_metric, self.evaluator.metric
        last = self.progress.curve[-2:]
        return target is not None and len(last) == 2 and all(p.get(metric) is not None and p[metric] >= target
                                                              for p in last)

    def evaluate(self, stoppable: bool = True, final: bool = False) -> bool:
        """Evaluate the policy at this step (unless done already); False if a stop request cut it short (then
        it counts as not done). ``stoppable=False`` in the middle of a rollout, which cannot be checkpointed;
        ``final``: the evaluation after training (``config.final_eval_episodes``)."""
        step = self.num_timesteps
        larger = final and self.evaluator.final_episodes != self.evaluator.episodes
        if step == self.progress.last_eval and not larger:
            return True
        began = time.perf_counter()
        self.evaluator.should_stop = (lambda: self.run._stop_requested) if stoppable else (lambda: False)
        try:
            metrics = self.evaluator(self.model, step=step, final=final)
        except EvaluationStopped:
            self.progress.eval_seconds += time.perf_counter() - began
            return False
        except NonFiniteError as error:
            raise NonFiniteError(f"training stopped: {error}, evaluating the policy at environment step {step:,}; "
                                 f"{self.run.last_checkpoint()}") from None
        self.progress.last_eval = step
        point = {**metrics, "steps": step, "samples": step, "episodes": self.lab_tags.episodes,
                 "rewards_seen": step, "wall_time_s": self.train_wall_time_s}
        if self.progress.curve and self.progress.curve[-1]["steps"] == step:  # the final, larger read replaces it
            self.progress.curve[-1] = point
        else:
            self.progress.curve.append(point)
        self.reached = self.held()
        writer = tensorboard_writer(self.logger)
        if writer is not None:
            for key, tag in tags.EVAL_TAGS.items():
                if point.get(key) is not None:
                    writer.add_scalar(tag, point[key], step)
        self.logger.dump(step)  # SB3's pending train/* values too (A2C dumps only every 100 updates by itself)
        self.progress.eval_seconds += time.perf_counter() - began
        return True

    def _on_rollout_start(self) -> None:
        # On-policy algorithms update between rollouts: a checkpoint here needs no rollout buffer.
        self.check_losses()  # of the update that just ran, before anything is saved from it
        config = self.run.config
        if self.run.options.eval_between_rollouts and config.eval_freq > 0 \
                and self.num_timesteps - max(self.progress.last_eval, 0) >= config.eval_freq:
            self.evaluate()
        every = self.run.options.checkpoint_every_s
        due = every > 0 and time.perf_counter() - self._last_checkpoint >= every
        if due or self.run._stop_requested:
            self.run.save_checkpoint(self)
            self._last_checkpoint, self.checkpoint_steps = time.perf_counter(), self.num_timesteps
            self.stopped = self.run._stop_requested

    def _on_step(self) -> bool:
        self.check_finite("observations", self.locals.get("new_obs"))
        self.check_finite("rewards", self.locals.get("rewards"))
        if self._every and not self.run.options.eval_between_rollouts \
                and (self.num_timesteps // self.run.config.n_envs) % self._every == 0:
            self.evaluate(stoppable=False)
        self.run.on_progress(self.num_timesteps, self.run.config.timesteps)
        return not (self.stopped or self.reached)

    # ----------------------------------------------------------------------------------------- non-finite
    def check_finite(self, what: str, values: Any) -> None:
        """NonFiniteError naming the env rows of ``values`` (one row per env) that hold a NaN or inf."""
        bad = non_finite_rows(values, what)
        if bad:
            config = self.run.config
            raise NonFiniteError(
                f"training stopped: {bad} of {config.env_id} ({config.n_envs} envs) at environment step "
                f"{self.num_timesteps:,}; the policy was not updated from it; {self.run.last_checkpoint()}")

    def check_losses(self) -> None:
        """A NaN / inf loss of the last update, as SB3 logged it (an inf loss can leave finite, clipped gradients:
        the gradient check alone would not see it)."""
        bad = {key: value for key, value in self.logger.name_to_value.items()
               if key.startswith("train/") and key != "train/explained_variance"  # NaN when returns do not vary
               and isinstance(value, float) and not math.isfinite(value)}
        if bad:
            raise NonFiniteError(
                f"training stopped: a non-finite loss ({', '.join(f'{k} = {v}' for k, v in bad.items())}) in the update "
                f"before environment step {self.num_timesteps:,} of {self.run.config.env_id}; "
                f"{self.run.last_checkpoint()}")

    def check_gradients(self, optimizer: torch.optim.Optimizer, *_: Any) -> None:
        """Before every optimizer step: a NaN / inf gradient (a non-finite loss) stops the run un-updated."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([torch.linalg.vector_norm(g) for g in grads])).all():
            raise NonFiniteError(
                f"training stopped: a non-finite gradient (NaN / inf loss) at update {self.progress.updates + 1:,} "
                f"(environment step {self.num_timesteps:,}) of {self.run.config.env_id}; the parameters were not "
                f"updated; {self.run.last_checkpoint()}")


def check_belongs(run_dir: Path, config: AgentConfig) -> None:
    """CheckpointMismatchError when ``run_dir``'s config.json names another run than the checkpoint's ``config``
    (e.g. another run's resume.pkl copied in); a directory from before config.json existed is not checked."""
    path = run_dir / CONFIG_FILE
    if not path.exists():
        return
    try:
        own = json.loads(path.read_text())["config"]
    except (ValueError, KeyError) as error:
        raise CheckpointMismatchError(f"{path} is damaged ({error}): cannot tell whether {run_dir / CHECKPOINT_FILE} "
                                      "belongs to this run") from None
    saved = json.loads(json.dumps(config.to_dict(), default=str))
    differ = sorted(k for k in set(own) | set(saved) if own.get(k) != saved.get(k))
    if differ:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, directory {own.get(k)!r}" for k in differ)
        raise CheckpointMismatchError(f"{run_dir / CHECKPOINT_FILE} is not a checkpoint of the run in {run_dir} "
                                      f"({path} says otherwise: {details}); resume each run from its own directory")


def describe_agent(model: BaseAlgorithm) -> dict[str, Any]:
    """What make_agent resolved: policy and extractor classes, optimizer, learning rate, parameter count."""
    policy = model.policy
    extractor = getattr(policy, "features_extractor", None) or policy.q_net.features_extractor
    return {
        "policy_class": type(policy).__name__, "features_extractor": type(extractor).__name__,
        "features_dim": extractor.features_dim, "optimizer_class": type(policy.optimizer).__name__,
        "resolved_optimizer_kwargs": policy.optimizer_kwargs, "resolved_learning_rate": model.lr_schedule(1.0),
        "policy_params": count_parameters(policy), "resolved_device": str(model.device),
    }


def _name(encoder: Any) -> str:
    return encoder.__name__ if isinstance(encoder, type) else str(encoder)
