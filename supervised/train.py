"""Command line: ``python -m supervised.train TASK [--train.FIELD VALUE] [--model.FIELD VALUE] [--data.FIELD VALUE]``.

    python -m supervised.train --help                       # the tasks
    python -m supervised.train mnist1d --help               # every field of one task, with its default
    python -m supervised.train mnist1d --train.epochs 5 --model.window 10 --data.shift 0
    python -m supervised.train digits --model.block plain --train.seed 1
    python -m supervised.train digits --train.resume runs/supervised/digits/digits__separable__0__1700000000
    python -m supervised.train babyai_bc --data.level BabyAI-GoToRedBall-v0 --data.demos 50000 --train.epochs 3
    python -m supervised.train babyai_bc --data.minari-dataset lab/GoToRedBallGrey/mixed-v0 --data.top-fraction 0.1
    python -m supervised.train babyai_dt --data.minari-dataset lab/GoToRedBallGrey/mixed-v0 --eval.target-return 0.9
    tensorboard --logdir runs/supervised                    # the curves of every supervised run, and nothing else

Runs go to runs/supervised/TASK/RUN_NAME unless --train.out-dir says otherwise. --train.resume takes a run
directory (its last.pt) or a checkpoint file (e.g. its best.pt). ``--portable`` (anywhere on the line) pins the
kernels so the numbers are the same on any x86-64 CPU with AVX2 (``lab.portable``; Adamax and NAdam runs are
unchecked and may differ between Intel and AMD CPUs).

Exit status (``lab.exit_codes``): 0 done, 1 training diverged (a NaN / inf loss, gradient or model state; the last
good checkpoint is named), 2 a bad config, run directory or checkpoint, 74 the disk refused a write (full,
read-only: the file and errno are named; the previous checkpoint is kept), 130 / 143 interrupted by Ctrl-C /
SIGTERM (continue with --train.resume).
"""
from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from typing import Annotated, Any, Union

from lab import exit_codes
from lab.io import WriteError
from lab.portable import FLAG as PORTABLE_FLAG
from lab.portable import restart_if_requested
from supervised.babyai_bc import BabyAIBCTask
from supervised.babyai_dt import BabyAIDTTask
from supervised.checkpoint import load_checkpoint, resolve_checkpoint
from supervised.configs import RUNTIME_FIELDS, ConfigError, config_from_dict, config_to_dict, flatten
from supervised.digits import DigitsTask
from supervised.mnist1d import Mnist1dTask
from supervised.task import Task
from supervised.trainer import NonFiniteLossError, RunDirectoryExistsError, TrainResult, fit

# Every task the CLI, the benchmark and the experiments know, by name. A new task subclasses
# supervised.task.Task (with a config dataclass that has a ``train: TrainConfig`` field) and is added here.
TASKS: dict[str, type[Task]] = {task.name: task for task in (Mnist1dTask, DigitsTask, BabyAIBCTask, BabyAIDTTask)}


def task_for(config: Any) -> Task:
    """The task that trains an experiment config (an instance of one of the ``TASKS``' config classes)."""
    for task_class in TASKS.values():
        if isinstance(config, task_class.config_class):
            return task_class(config)
    names = ", ".join(f"{t.config_class.__name__} ({name})" for name, t in TASKS.items())
    raise TypeError(f"no task takes a {type(config).__name__}; known configs: {names}")


def parse_args(argv: Sequence[str] | None = None) -> Any:
    """The experiment config of ``argv`` (tyro: one subcommand per task; exits 2 with a message on bad input)."""
    import tyro  # lazy: only the command line needs it

    argv = list(sys.argv[1:] if argv is None else argv)
    if len(TASKS) == 1 or (argv and argv[0] in TASKS):
        # A task named first is parsed as its own config class, not as a member of tyro's subcommand Union: tyro
        # wraps a Union's member in an internal field, whose name ("__tyro-dummy-inner__.train") would then head
        # every error a config's validation raises. The Union is only for the task list, --help and typos.
        name = argv.pop(0) if argv and argv[0] in TASKS else next(iter(TASKS))
        config_class = TASKS[name].config_class
        return tyro.cli(config_class, args=argv, prog=f"python -m supervised.train {name}",
                        description=(config_class.__doc__ or "").strip())
    subcommands = tuple(
        Annotated[task.config_class, tyro.conf.subcommand(name, default=task.config_class(),
                                                           description=(task.config_class.__doc__ or "").strip())]
        for name, task in TASKS.items()
    )
    return tyro.cli(Union[subcommands], args=argv, prog="python -m supervised.train",  # type: ignore[valid-type]
                    description="Train one supervised task; every run writes TensorBoard events, metrics.jsonl, "
                                "checkpoints and results.json under OUT_DIR/TASK/RUN_NAME (OUT_DIR: runs/supervised "
                                "unless --train.out-dir says otherwise).")


def config_for_resume(config: Any) -> Any:
    """The config to continue ``config.train.resume`` with: the saved one, plus the runtime fields of ``config``.

    A field set on the command line (differing from the default) to a value other than the saved one is an
    error, rather than silently ignored: a resumed run keeps its recipe so it continues identically.
    """
    path = resolve_checkpoint(config.train.resume)
    checkpoint = load_checkpoint(path)
    task = task_for(config)
    if checkpoint["task"] != task.name:
        raise ConfigError(f"{path} is a {checkpoint['task']!r} checkpoint; resume it with "
                         f"'python -m supervised.train {checkpoint['task']} --train.resume {config.train.resume}'")
    given, defaults = flatten(config_to_dict(config)), flatten(config_to_dict(type(config)()))
    saved = flatten(checkpoint["experiment"])
    conflicts = [k for k, v in given.items() if k not in RUNTIME_FIELDS and v != defaults.get(k) and v != saved.get(k)]
    if conflicts:
        details = "; ".join(f"--{k} {given[k]!r} (saved: {saved.get(k)!r})" for k in conflicts)
        raise ConfigError(f"cannot change the recipe of a resumed run: {details}. Start a new run instead.")
    merged = dict(checkpoint["experiment"])
    merged["train"] = {**merged["train"], **{k.split(".", 1)[1]: given[k] for k in RUNTIME_FIELDS}}
    return config_from_dict(type(config), merged)


def run(config: Any) -> TrainResult:
    """Train an experiment config (resuming when ``config.train.resume`` is set)."""
    if config.train.resume:
        config = config_for_resume(config)
    return fit(task_for(config))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where training is (the trainer treats it as Ctrl-C: it names its last checkpoint)."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    restart_if_requested(argv, ["-m", "supervised.train"])
    config = parse_args([a for a in argv if a != PORTABLE_FLAG])
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        result = run(config)
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.FAILED
    except (ConfigError, RunDirectoryExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.BAD_INPUT
    except KeyboardInterrupt as stop:
        return exit_codes.INTERRUPTED_SIGTERM if isinstance(stop, Terminated) else exit_codes.INTERRUPTED_SIGINT
    except WriteError as error:  # the trainer names its last checkpoint
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.IO_ERROR
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(summary(result))
    return exit_codes.OK


def summary(result: TrainResult) -> str:
    """A few lines for the terminal: where the run is and its headline numbers."""
    m = result.metrics
    keys = ("test_accuracy", "best_test_accuracy", "final_val_accuracy", "best_val_accuracy", "success_rate",
            "params", "flops", "plain_params", "separable_params", "wall_time_s", "samples_seen")
    shown = [f"  {k}: {m[k]:.4f}" if isinstance(m[k], float) else f"  {k}: {m[k]}"
             for k in keys if m.get(k) is not None]
    return "\n".join([f"run: {result.run_dir}", *shown])


if __name__ == "__main__":
    sys.exit(main())
