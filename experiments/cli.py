"""Command line:
``python -m experiments {digits,imitation,optimizers,finetune,ladder,offline,flagship,report} [--full] [--seeds N]``.

    python -m experiments flagship                  # experiments 1 + 2, quick mode (a few minutes on 2 cores)
    python -m experiments digits --full             # experiment 1 with the full budget and 5 seeds
    python -m experiments optimizers --seeds 2 --budget.samples 4096
    python -m experiments digits --help             # every option, with its default
    python -m experiments flagship --resume         # continue an interrupted run in the same --out
    python -m experiments digits --address auto     # on a running Ray cluster instead of a local instance
    python -m experiments optimizers --tune-trials 8  # experiment 3 with each learning rate tuned first
    python -m experiments report runs/experiments/digits  # re-render plots and report.md from results.json

Every run writes TensorBoard events to ``OUT/<experiment>/<variant>/seed<N>`` (shared ``lab.tags``, x-axis =
samples or environment steps), and ``OUT/<experiment>/`` gets ``results.json``, ``runs.csv``, ``summary.csv``,
``plots/*.png`` and ``report.md`` (OUT defaults to ``runs/experiments``). Runs are Ray tasks
(:mod:`experiments.engine`): a local instance with ``--workers`` CPUs, or the cluster at ``--address``; every
run's files end up under OUT whichever node ran it. An ``OUT/<experiment>`` that already holds files is
refused (nothing is overwritten) unless ``--resume`` continues the interrupted run there: finished runs are
kept, the others run again (a damaged record of a finished run is named and that run runs again). One
invocation owns an ``OUT/<experiment>`` at a time: a second one is refused at once, naming the first
(:mod:`experiments.output_dir`). SIGINT / SIGTERM stop every worker and print the command that resumes.

Exit status (``lab.exit_codes``): 0 done; 1 some run failed (the others are reported; e.g. a NaN in an RL run);
2 refused before any work (a bad option or path, an output directory in use or holding an earlier run, a
``--resume`` with another command's settings, no Ray cluster joined at ``--address`` within
``--connect-timeout``); 74 the disk refused a write of the results (the file and errno are named); 130 / 143
interrupted by Ctrl-C / SIGTERM (resumable; while connecting to ``--address``, nothing started).
"""
from __future__ import annotations

import shlex
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Union

import tyro

from experiments.digits.plan import DigitsBudget
from experiments.engine import CONNECT_TIMEOUT_S, Interrupted, NotConnected, ResumeMismatchError, cpu_seconds
from experiments.finetune.plan import FinetuneBudget
from experiments.imitation.plan import ImitationBudget
from experiments.ladder.plan import LadderBudget
from experiments.offline.plan import OfflineBudget
from experiments.optimizers.plan import OptimizersBudget
from experiments.output_dir import OutputBusyError, OutputExistsError, check_output_free, check_output_path
from experiments.pipeline import Planned, render, run
from experiments.registry import EXPERIMENTS, FLAGSHIP
from experiments.report import print_closing
from lab import exit_codes
from lab.io import WriteError
from lab.portable import restart_if_requested

QUICK_SEEDS = 3  # quick mode: the fewest seeds with a (wide) interval in a few minutes
FULL_SEEDS = 5  # full mode


def seed_list(count: int) -> list[int]:
    """Seeds 1..count (seed 0 is left out: ``seed<N>`` directories then count from 1)."""
    return list(range(1, count + 1))


@dataclass
class Common:
    full: bool = False
    """full mode: the budgets meant to reach the targets (hours on 2 cores); default: quick mode (minutes)"""
    seeds: int | None = None
    """number of seeds, run as seed 1..N (default: 3 quick, 5 full)"""
    out: str = "runs/experiments"
    """output root: runs go to OUT/<experiment>/<variant>/seed<N>; an OUT/<experiment> holding files is refused
    unless --resume"""
    workers: int = 2
    """CPUs of the local Ray instance: runs in parallel, one torch thread each (0: all in this process, without
    Ray); ignored with --address"""
    address: str | None = None
    """join a running Ray cluster ('auto' or HOST:PORT) instead of starting a local instance;
    a cluster with Ray's token authentication needs its token here (RAY_AUTH_TOKEN or ~/.ray/auth_token)"""
    connect_timeout: float = CONNECT_TIMEOUT_S
    """with --address: seconds to wait for the cluster before giving up (exit 2, nothing started)"""
    resume: bool = False
    """continue an interrupted run in the same --out: finished runs are loaded, unfinished ones run again"""
    progress: bool = True
    """live display of what is running and what remains"""
    portable: bool = False
    """portable mode (lab.portable): kernels pinned to AVX2 and one thread per job, so the same command gives the
    same numbers on any x86-64 CPU with AVX2 (recorded in results.json; Adamax and NAdam unchecked, they may differ
    between Intel and AMD); slower, BENCHMARKS.md says how much"""


@dataclass
class DigitsCommand(Common):
    """Experiment 1, same data, two signals: one separable-conv net on digits, trained with labels
    (cross-entropy) or with rewards only (PPO, A2C on lab/DigitsBandit-v0)."""

    budget: DigitsBudget = field(default_factory=DigitsBudget)


@dataclass
class ImitationCommand(Common):
    """Experiment 2, imitation vs RL on BabyAI (GoToRedBallGrey quick, GoToRedBall full): behaviour cloning
    from the bot's demonstrations vs PPO, the same fusion encoder, next to the BabyAI paper's table."""

    budget: ImitationBudget = field(default_factory=ImitationBudget)


@dataclass
class OptimizersCommand(Common):
    """Experiment 3, the optimizers of lab.optim in both paradigms: supervised digits and PPO on the digits
    bandit (the same net), final test accuracy and samples / wall time to a threshold."""

    budget: OptimizersBudget = field(default_factory=OptimizersBudget)
    tune_trials: int = 0
    """tune each optimizer's learning rate first (Ray Tune, this many trials per optimizer and paradigm, on the
    validation split; experiments.optimizers.tuning), then run the tuned rates over the seeds beside the default
    ones"""


@dataclass
class FinetuneCommand(Common):
    """Experiment 4, fine-tuning across paradigms: pretrain the fusion encoder by behaviour cloning, then PPO
    with the encoder frozen / top layer / discriminative rates / full, against PPO from scratch."""

    budget: FinetuneBudget = field(default_factory=FinetuneBudget)


@dataclass
class LadderCommand(Common):
    """The BabyAI ladder (issue 19): per level, the demonstrations behaviour cloning and the episodes PPO need to
    reach 99% success and keep it, on one fusion encoder, beside the BabyAI paper's table (quick: GoToRedBallGrey;
    full: up to PutNextLocal, days on 2 cores: it continues with --resume)."""

    budget: LadderBudget = field(default_factory=LadderBudget)


@dataclass
class OfflineCommand(Common):
    """The third paradigm (issue 20): BC, %BC and a Decision Transformer learning from logged BabyAI episodes of
    mixed quality (Minari datasets, expert-only to mostly noise), beside PPO online; the return DT achieves
    against the return it is asked for."""

    budget: OfflineBudget = field(default_factory=OfflineBudget)


@dataclass
class FlagshipCommand(Common):
    """Experiments 1 and 2 (digits: labels vs rewards; BabyAI: imitation vs RL) in one pool of workers, one
    report each. Quick mode takes about 2 minutes on 2 cores (3.3 CPU-minutes)."""

    digits: DigitsBudget = field(default_factory=DigitsBudget)
    imitation: ImitationBudget = field(default_factory=ImitationBudget)


@dataclass
class ReportCommand:
    """Re-render plots/ and report.md of an experiment directory from its results.json (no training)."""

    directory: Annotated[str, tyro.conf.Positional]
    """an experiment directory, e.g. runs/experiments/digits"""


# One command per experiment of experiments.registry, plus the flagship (two at once) and report.
COMMANDS = {"digits": DigitsCommand, "imitation": ImitationCommand, "optimizers": OptimizersCommand,
            "finetune": FinetuneCommand, "ladder": LadderCommand,
            "offline": OfflineCommand, "flagship": FlagshipCommand, "report": ReportCommand}


def option_names(cls: type, prefix: str = "") -> list[str]:
    """Every ``--option`` of a command (nested budgets as ``--budget.field``), for error messages."""
    names = []
    for f in fields(cls):
        if f.name == "directory":
            continue
        if isinstance(f.default_factory, type):  # a nested budget dataclass
            names += option_names(f.default_factory, f"{prefix}{f.name}.")
        else:
            names.append(f"--{prefix}{f.name.replace('_', '-')}")
    return names


def parse_args(argv: Sequence[str] | None = None):
    """tyro parses; on bad input (exit 2) the valid experiments or the valid options are listed too."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:  # one line, not tyro's whole usage
        print(f"usage: python -m experiments {{{','.join(COMMANDS)}}} [OPTIONS]\n"
              f"error: unknown experiment {argv[0]!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        raise SystemExit(exit_codes.BAD_INPUT)
    subcommands = tuple(Annotated[cls, tyro.conf.subcommand(name, prefix_name=False)]
                        for name, cls in COMMANDS.items())
    try:
        return tyro.cli(Union[subcommands], args=argv, prog="python -m experiments",  # type: ignore[valid-type]
                        description=__doc__.split("\n\n")[0])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            command = next((a for a in argv if not a.startswith("-")), None)
            if command in COMMANDS:
                print(f"error: valid options of '{command}': {', '.join(option_names(COMMANDS[command]))}",
                      file=sys.stderr)
            else:
                print(f"error: unknown experiment {command!r}; choose one of {', '.join(COMMANDS)}",
                      file=sys.stderr)
        raise


def plan(args: Common, name: str) -> list[Planned]:
    """The experiments of a command with resolved budgets; ValueError on bad values (before any work)."""
    if args.seeds is not None and args.seeds <= 0:
        raise ValueError(f"--seeds must be a positive number of seeds, got {args.seeds}")
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0 (0: run in this process), got {args.workers}")
    if args.address is not None and not args.address.strip():
        raise ValueError("--address must be 'auto' or HOST:PORT of a running Ray cluster")
    if not args.connect_timeout > 0:
        raise ValueError(f"--connect-timeout must be a positive number of seconds, got {args.connect_timeout}")
    seeds = seed_list(args.seeds or (FULL_SEEDS if args.full else QUICK_SEEDS))
    mode = "full" if args.full else "quick"
    own = {f.name for f in fields(Common)} | {"budget", *FLAGSHIP}
    options = {f.name: getattr(args, f.name) for f in fields(args) if f.name not in own}  # e.g. --tune-trials
    planned = []
    for n in FLAGSHIP if name == "flagship" else (name,):
        experiment = EXPERIMENTS[n]
        budget = (getattr(args, n) if name == "flagship" else args.budget).resolve(args.full)
        budget.check()
        if experiment.extra is not None:
            experiment.extra.check(options)
        planned.append(Planned(experiment, budget, seeds, mode, options))
    return planned


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    restart_if_requested(argv, ["-m", "experiments"])
    args = parse_args(argv)
    if isinstance(args, ReportCommand):
        directory = Path(args.directory)
        name = directory.name
        if name not in EXPERIMENTS or not (directory / "results.json").is_file():
            print(f"error: {directory} is not an experiment directory with results.json (its name must be one of "
                  f"{', '.join(EXPERIMENTS)})", file=sys.stderr)
            return exit_codes.BAD_INPUT
        results = render(directory, EXPERIMENTS[name])
        print(f"report: {results['report']}")
        return exit_codes.OK
    name = next(n for n, cls in COMMANDS.items() if type(args) is cls)
    out = Path(args.out)
    try:
        planned = plan(args, name)
        check_output_path(out, [p.name for p in planned])
        if not args.resume:
            check_output_free(out, [p.name for p in planned])
    except (ValueError, OutputExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.BAD_INPUT
    start_wall, start_cpu = time.perf_counter(), cpu_seconds()
    try:
        all_results = run(planned, out, args.workers, args.progress, ["python -m experiments", *argv],
                          address=args.address, resume=args.resume, connect_timeout=args.connect_timeout)
    except NotConnected as error:  # no cluster at --address, or SIGINT / SIGTERM while connecting: nothing started
        print(f"{'error' if error.signum is None else 'interrupted'}: {error}", file=sys.stderr, flush=True)
        return exit_codes.BAD_INPUT if error.signum is None else 128 + error.signum  # 130 / 143
    except Interrupted as stop:
        resume = shlex.join(["python", "-m", "experiments", *argv, *([] if args.resume else ["--resume"])])
        done = (f"{stop.finished} of {stop.total} runs finished and kept in {args.out}" if stop.total else
                "while tuning learning rates, before any run (the search starts again)")
        print(f"interrupted ({signal.Signals(stop.signum).name}): {done}; every worker stopped. Resume with: "
              f"{resume}", file=sys.stderr, flush=True)
        return stop.exit_code
    except (ResumeMismatchError, OutputBusyError, OutputExistsError) as error:
        # --resume into an output directory made by another command; another invocation owns it; it filled up
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.BAD_INPUT
    except WriteError as error:
        error.advice = "the runs that finished are kept: free some space and repeat the command with --resume"
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.IO_ERROR
    wall = time.perf_counter() - start_wall
    cpu = cpu_seconds() - start_cpu + all_results[0]["timing"]["worker_cpu_time_s"]  # Ray's workers are not children
    print_closing(all_results, EXPERIMENTS, out, wall, cpu)
    return exit_codes.FAILED if any(r["errors"] for r in all_results) else exit_codes.OK
