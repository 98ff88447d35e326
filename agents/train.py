"""Train one SB3 agent: ``python -m agents.train ENV_ID [--preset NAME] [--algo ppo] [--encoder transformer] [...]``.

    python -m agents.train lab/CartPoleNoVelHistory-v1 --preset cartpole-novel-deltas --seed 2
    python -m agents.train lab/BabyAI-GoToRedBallGrey-v0 --preset babyai-gotoredballgrey --algo-kwargs '{"n_epochs": 8}'
    python -m agents.train BabyAI-GoToLocal-v0 --encoder fusion --n-envs 16     # any MiniGrid / BabyAI level
    python -m agents.train CartPole-v1 --encoder transformer --timesteps 100000
    python -m agents.train lab/DigitsBandit-v0 --encoder conv --algo a2c --optimizer adamw --weight-decay 0.01
    python -m agents.train --resume runs/agents/CartPole-v1/CartPole-v1__ppo_transformer__1__1767000000

Every option of :class:`agents.config.AgentConfig` is a flag; a preset (``agents.presets``) fills the options it
names, explicit flags win, and JSON options merge key by key with the preset's (``--algo-kwargs
'{"n_epochs": 8}'`` changes only n_epochs). A run (:class:`agents.run.AgentRun`) writes, under
``RUNS_DIR/<env>/<run_name>`` (never an existing directory; ``RUNS_DIR`` defaults to ``runs/agents``, so
``tensorboard --logdir runs/agents`` shows only agents): TensorBoard events, ``progress.csv``, a resume
checkpoint every few minutes, then ``model.zip`` and ``results.json`` (evaluation curve from the untrained policy
on, final evaluation, steps, episodes, wall time, parameter counts).

Ctrl-C or SIGTERM: the current rollout and its update finish, a checkpoint is written, and the command to resume
is printed (exit 130 / 143); a second Ctrl-C stops at once (the last periodic checkpoint remains).
``--resume RUN_DIR`` continues; with in-process envs (``--vec-env dummy``, the default) the resumed run is
bit-identical to an uninterrupted one (:mod:`agents.checkpoint` says exactly what is and is not).

Exit status (``lab.exit_codes``): 0 done; 1 stopped by a NaN / inf in an observation, a reward or a gradient (the
message names it; the last checkpoint, from before, is kept); 2 a bad argument, or a checkpoint that is damaged or
belongs to another run (the message says what would work); 74 the disk refused a write (full, read-only: the
file and errno are named, the previous checkpoint is kept); 130 / 143 interrupted by Ctrl-C / SIGTERM in any
phase, evaluations included (resumable).
"""
from __future__ import annotations

import dataclasses
import json
import signal
import sys
import typing
import warnings
from collections.abc import Sequence
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import gymnasium as gym
import torch
import tyro

from agents.checkpoint import DamagedCheckpointError
from agents.config import DICT_FIELDS, EVAL_ACTIONS, AgentConfig, field_docs
from agents.factory import ALGORITHMS, ENCODERS, ORTHO_INITS, VEC_ENVS
from agents.finetune import STRATEGIES, FinetuneConfig, read_state_dict
from agents.presets import PRESETS, describe_presets, get_preset
from agents.finite import NonFiniteError
from agents.run import AgentRun, RunInterrupted, RunOptions
from envs.make import resolve_id
from lab import exit_codes
from lab.io import write_failure
from lab.optim import optimizer_names
from lab.portable import restart_if_requested
from lab.runtime import run_name

RUNS_DIR = "runs/agents"
CHOICES = {"algo": tuple(ALGORITHMS), "encoder": ENCODERS, "optimizer": optimizer_names(), "vec_env": tuple(VEC_ENVS),
           "ortho_init": ORTHO_INITS, "eval_actions": EVAL_ACTIONS}
NOT_FLAGS = ("env_id", "name", "description", "reference", "finetune")  # positional, or set by their own flags


@dataclass
class RunFlags:
    env_id: Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="ENV_ID")] = None
    """Gymnasium id: CartPole-v1, lab/CartPoleNoVelHistory-v1, lab/DigitsBandit-v0, BabyAI-GoToLocal-v0, mod:Id"""
    preset: Literal[tuple(PRESETS)] | None = None  # type: ignore[valid-type]
    """named recipe from agents.presets (listed above); explicit flags override its values, JSON options key by key"""
    resume: str | None = None
    """RUN_DIR of an interrupted run: continue it from its checkpoint (no other option may be given)"""
    seed: int = 1
    """seed of SB3, torch, numpy and the training envs"""
    device: str = "auto"
    """auto (CUDA > MPS > CPU), cpu, cuda, cuda:1, mps"""
    threads: int | None = 1
    """torch intra-op threads (1 is fastest for small policies); None keeps torch's default"""
    finetune: Literal[STRATEGIES] | None = None  # type: ignore[valid-type]
    """fine-tuning strategy for a pretrained encoder (needs --pretrained except for scratch)"""
    pretrained: str | None = None
    """path to the pretrained encoder's state dict (or a checkpoint with a 'model' entry)"""
    pretrained_prefix: str = ""
    """keep only the pretrained keys with this prefix, stripped (e.g. 'fusion.')"""
    top_k: int = 1
    """--finetune top: number of top encoder layer groups that train"""
    lr_ratio: float = 100.0
    """--finetune discriminative: head learning rate / first encoder group's"""
    checkpoint_minutes: float = 5.0
    """write the resume checkpoint every this many minutes of training (0: only when interrupted)"""
    log_every: int = 1_000
    """write the lab's training tags at most once per this many environment steps"""
    runs_dir: str = RUNS_DIR
    """root of the run directories: RUNS_DIR/<env>/<run_name>"""
    exp_name: str | None = None
    """experiment name in the run name; default: the preset's name, else ALGO_ENCODER"""
    progress_bar: bool = True
    """show SB3's progress bar (tqdm + rich)"""
    verbose: int = 0
    """SB3 verbosity (1 also prints SB3's logs)"""
    portable: bool = False
    """portable mode (lab.portable): kernels pinned to AVX2 and one thread, so the same command gives the same
    numbers on any x86-64 CPU with AVX2 (Adamax and NAdam unchecked: they may differ between Intel and AMD);
    slower (BENCHMARKS.md says how much)"""


def _agent_flags() -> list[tuple[str, Any, Any]]:
    """One ``--flag`` per AgentConfig option: its docstring as help, None = "not given" (the preset's, else the
    AgentConfig default, which the help shows); dict options as JSON text."""
    docs, hints = field_docs(AgentConfig), typing.get_type_hints(AgentConfig)
    flags = []
    for f in dataclasses.fields(AgentConfig):
        if f.name in NOT_FLAGS:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()
        kind: Any = Literal[CHOICES[f.name]] if f.name in CHOICES else hints[f.name]
        help_text = docs.get(f.name, "")
        if f.name in DICT_FIELDS:
            kind, help_text = str, f"JSON: {help_text}"
        arg = tyro.conf.arg(help=help_text, help_behavior_hint=f"(default: {json.dumps(default)}, or the preset's)")
        flags.append((f.name, Annotated[kind | None, arg], dataclasses.field(default=None)))
    return flags


Args = dataclasses.make_dataclass("Args", _agent_flags(), bases=(RunFlags,))


def parse_args(argv: Sequence[str] | None = None) -> Any:
    description = "\n\n".join(__doc__.split("\n\n")[:2]) + "\n\npresets (--preset NAME):\n" + describe_presets()
    return tyro.cli(Args, args=argv, prog="python -m agents.train", description=description)


def agent_config(args: Any) -> AgentConfig:
    """The preset (or the AgentConfig defaults for ``args.env_id``) with every given flag applied."""
    if args.env_id is None and args.preset is None:
        raise ValueError("give an ENV_ID (e.g. CartPole-v1), a --preset, or --resume RUN_DIR")
    base = get_preset(args.preset) if args.preset else AgentConfig(args.env_id)
    if args.preset and args.env_id and args.env_id != base.env_id:
        warnings.warn(f"preset {args.preset!r} was tuned on {base.env_id}, not {args.env_id}", stacklevel=2)
    given: dict[str, Any] = {}
    for name, _, _ in _agent_flags():
        value = getattr(args, name)
        if value is not None:
            given[name] = _json(value, name) if name in DICT_FIELDS else value
    if args.env_id:
        given["env_id"] = args.env_id
    if args.finetune is not None:
        given["finetune"] = FinetuneConfig(strategy=args.finetune, top_k=args.top_k, lr_ratio=args.lr_ratio)
    return base.merged(**given)


def build_run(args: Any) -> AgentRun:
    """The run ``args`` ask for, prepared (built and checked): a bad option raises before any directory exists."""
    if args.resume is not None:
        defaults = Args()
        display = ("resume", "threads", "progress_bar", "verbose", "portable")  # how this process runs it
        given = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(Args)
                 if f.name not in display and getattr(args, f.name) != getattr(defaults, f.name)]
        if given:
            raise ValueError(f"--resume continues a run with its own options; drop {', '.join(given)}")
        run = AgentRun.resume(args.resume)
        run.options = dataclasses.replace(run.options, progress_bar=args.progress_bar, verbose=args.verbose)
    else:
        config = agent_config(args)
        exp_name = args.exp_name or args.preset or f"{config.algo}_{config.encoder}"
        env_name = resolve_id(config.env_id)  # the level actually trained (a mod:Id form without its module)
        run_dir = Path(args.runs_dir) / run_name(env_name, timestamp=False) / run_name(env_name, exp_name, seed=args.seed)
        if run_dir.exists():
            raise FileExistsError(f"run directory {run_dir} exists; runs are never overwritten (change --exp-name "
                                  "or wait a second)")
        pretrained = None if args.pretrained is None else read_state_dict(args.pretrained, args.pretrained_prefix)
        options = RunOptions(seed=args.seed, device=args.device, checkpoint_every_s=60 * args.checkpoint_minutes,
                             log_every=args.log_every, progress_bar=args.progress_bar, verbose=args.verbose)
        run = AgentRun(config, run_dir, options, pretrained=pretrained)
    run.prepare()
    return run


def _json(text: str, name: str) -> dict[str, Any]:
    option = "--" + name.replace("_", "-")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{option} must be a JSON object such as '{{\"key\": 1}}', got {text!r}: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object (a dict), got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    restart_if_requested(argv, ["-m", "agents.train"])
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # Worker processes (--vec-env subproc) are started while SIGINT / SIGTERM are ignored, so they inherit that:
    # a Ctrl-C (sent to the whole process group) then reaches only this process, which stops them cleanly.
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        run = build_run(args)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, gym.error.Error) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(exit_codes.BAD_INPUT) from None
    received: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        received.append(signum)
        for sig, handler in previous.items():  # a second signal acts at once
            signal.signal(sig, handler)
        print(f"\n{signal.Signals(signum).name}: stopping after this rollout (checkpoint, then exit); "
              "press Ctrl-C again to stop at once", file=sys.stderr, flush=True)
        run.request_stop()

    for sig in previous:
        signal.signal(sig, stop)
    resume = f"python -m agents.train --resume {run.run_dir}"
    try:
        results = run.run()
    except RunInterrupted as stopped:
        print(f"{stopped}. Resume with: {resume}", file=sys.stderr)
        raise SystemExit(exit_codes.INTERRUPTED_SIGTERM if received and received[0] == signal.SIGTERM
                         else exit_codes.INTERRUPTED_SIGINT) from None
    except KeyboardInterrupt:
        print(f"\nstopped at once; resume from the last checkpoint (if one was written) with: {resume}", file=sys.stderr)
        raise SystemExit(exit_codes.INTERRUPTED_SIGINT) from None
    except NonFiniteError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(exit_codes.FAILED) from None
    except (OSError, RuntimeError) as error:  # RuntimeError: torch reports a full disk as one
        failure = write_failure(error)
        if failure is None:
            raise
        failure.advice = run.last_checkpoint()
        print(f"error: {failure}", file=sys.stderr)
        raise SystemExit(exit_codes.IO_ERROR) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    final = results["final"]
    shown = {k: v for k, v in final.items() if k in ("accuracy", "success_rate", "success_rate_greedy", "mean_return",
                                                     "mean_return_greedy", "mean_length")}
    print(f"{results['steps']} steps, {results['episodes']} episodes in {results['train_wall_time_s']:.1f} s "
          f"({results['steps_per_s']:.0f} steps/s); final eval: " + ", ".join(f"{k} {v:.3f}" for k, v in shown.items())
          + f"; run: {results['run_dir']}")
    return results


if __name__ == "__main__":
    main()
