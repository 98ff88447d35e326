"""Train one SB3 agent: ``python -m agents.train ENV_ID [--preset NAME] [--algo ppo] [--encoder transformer] [...]``.

    python -m agents.train lab/CartPoleNoVelHistory-v1 --preset cartpole-novel-deltas --seed 2
    python -m agents.train lab/BabyAI-GoToRedBallGrey-v0 --preset babyai-gotoredballgrey --algo-kwargs '{"n_epochs": 8}'
    python -m agents.train CartPole-v1 --encoder transformer --algo ppo --timesteps 100000
    python -m agents.train lab/CartPoleNoVelHistory-v1 --encoder transformer --encoder-kwargs '{"pooling": "last"}'
    python -m agents.train lab/DigitsBandit-v0 --encoder conv --algo a2c --optimizer adamw --weight-decay 0.01
    python -m agents.train lab/BabyAI-GoToRedBallGrey-v0 --encoder fusion --n-envs 8 --vec-env subproc \\
        --finetune frozen --pretrained bc_fusion.pt --policy-kwargs '{"net_arch": {"pi": [], "vf": []}}'

A run writes, under ``RUNS_DIR/<env>/<run_name>`` (never overwriting an existing directory): TensorBoard
events (SB3's keys and the lab's shared tags, keyed by environment steps; hyperparameters as a markdown
table), ``progress.csv``, checkpoints, the final ``model.zip`` (written atomically) and ``results.json``
(final evaluation, steps, episodes, wall time, steps/s, parameter counts).

A preset (``agents.presets``) fills every option it names; explicit flags win, and the JSON options merge key by
key with the preset's (``--algo-kwargs '{"n_epochs": 8}'`` changes only n_epochs).

Evaluation uses a separate env, wrapped like the training env (``VecNormalize`` statistics synced before each
evaluation): for the classification bandits it sweeps the whole *test* split once (``eval/accuracy`` is the
exact test accuracy); for BabyAI it reports the success rate with sampled actions (``eval/success_rate``, as
the BabyAI paper evaluates) and with greedy ones (``eval/success_rate_greedy``), and every evaluation records
the training episodes completed so far (``charts/episodes_seen``, ``results.json``'s ``eval_history``).

Exit status: 0 done, 2 a bad argument (the message says what would work).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import gymnasium as gym
import torch
import tyro
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList, EvalCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, sync_envs_normalization

from agents.callbacks import (
    EVAL_ACTIONS, MEAN_RETURN_GREEDY, SUCCESS_RATE_GREEDY, AtomicCheckpointCallback, EvalTagsCallback,
    LabTagsCallback, evaluate_agent, save_model_atomic, tensorboard_writer,
)
from agents.factory import ORTHO_INITS, make_agent, make_env, normalized_like
from agents.finetune import FinetuneConfig, read_state_dict
from agents.presets import OPTION_FIELDS, PRESETS, describe_presets, get_preset, merge_options
from lab import tags
from lab.io import write_json
from lab.optim import optimizer_names
from lab.runtime import count_parameters, run_name
from lab.tags import hparams_markdown

OptimizerName = Literal[optimizer_names()]  # type: ignore[valid-type]
PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
OrthoInit = Literal[ORTHO_INITS]  # type: ignore[valid-type]
EvalActions = Literal[EVAL_ACTIONS]  # type: ignore[valid-type]
# What an option left at None becomes without a preset (a preset's value comes first).
BUILTIN_DEFAULTS: dict[str, Any] = dict(algo="ppo", encoder="mlp", timesteps=100_000, n_envs=1, eval_freq=10_000,
                                        eval_episodes=20, eval_envs=1, normalize_obs=False)
JSON_FIELDS = ("encoder_kwargs", "algo_kwargs", "policy_kwargs", "optimizer_kwargs", "env_kwargs")


def _or_preset(default: Any) -> Any:
    """--help text of an option that a preset may set (its dataclass default is None: "not given")."""
    return tyro.conf.arg(help_behavior_hint=f"(default: {default}, or the preset's)")


@dataclass
class Args:
    env_id: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="ENV_ID")]
    """Gymnasium id: CartPole-v1, lab/CartPoleNoVelHistory-v1, lab/DigitsBandit-v0, lab/BabyAI-GoToRedBallGrey-v0"""
    preset: PresetName | None = None
    """named recipe from agents.presets (listed above); explicit flags override its values, JSON options key by key"""
    algo: Annotated[Literal["ppo", "a2c", "dqn"] | None, _or_preset("ppo")] = None
    """RL algorithm (DQN needs a Discrete action space)"""
    encoder: Annotated[Literal["mlp", "transformer", "conv", "fusion"] | None, _or_preset("mlp")] = None
    """features extractor: mlp (SB3's default, the baseline), transformer (flat Box or history Dict), conv (images),
    fusion (BabyAI / Dict)"""
    timesteps: Annotated[int | None, _or_preset(100_000)] = None
    """total environment steps"""
    optimizer: OptimizerName | None = None
    """optimizer from lab.optim; default: SB3's own choice (adam for PPO/DQN, rmsprop for A2C)"""
    lr: Annotated[float | str | None, _or_preset("SB3's: PPO 3e-4, A2C 7e-4, DQN 1e-4")] = None
    """learning rate, or 'lin_1e-3' (linear from 1e-3 to 0 over the run)"""
    weight_decay: float = 0.0
    """weight decay on tensors of rank >= 2 (lab.optim's rule)"""
    n_envs: Annotated[int | None, _or_preset(1)] = None
    """parallel training environments"""
    vec_env: Literal["dummy", "subproc"] = "dummy"
    """dummy: all envs in this process; subproc: one process per env (worth it for slow envs)"""
    seed: int = 1
    """seed of SB3, torch, numpy and the envs (the eval env gets seed + 10000)"""
    device: str = "auto"
    """auto (CUDA > MPS > CPU), cpu, cuda, cuda:1, mps"""
    threads: int | None = 1
    """torch intra-op threads (1 is fastest for small policies); None keeps torch's default"""
    encoder_kwargs: str = "{}"
    """JSON: features extractor options, e.g. '{"d_model": 64, "num_layers": 2, "pooling": "flatten", "deltas": true}'"""
    algo_kwargs: str = "{}"
    """JSON: other SB3 algorithm arguments, e.g. '{"n_steps": 256, "batch_size": 64, "clip_range": "lin_0.2"}'"""
    policy_kwargs: str = "{}"
    """JSON: other policy arguments, e.g. '{"net_arch": {"pi": [64], "vf": [64]}, "activation_fn": "relu"}'"""
    optimizer_kwargs: str = "{}"
    """JSON: extra optimizer keywords, e.g. '{"betas": [0.9, 0.99]}'"""
    env_kwargs: str = "{}"
    """JSON: keywords of gym.make for the training env (the eval env gets them too)"""
    normalize_obs: Annotated[bool | None, _or_preset(False)] = None
    """VecNormalize the observations (float Box keys; not rewards); statistics saved beside every model zip"""
    ortho_init: Annotated[OrthoInit | None, _or_preset("SB3's: all")] = None
    """SB3's orthogonal init on: all (the extractor included), heads (the MLP heads only; lab init elsewhere), none"""
    finetune: Literal["scratch", "full", "frozen", "top", "discriminative"] | None = None
    """fine-tuning strategy for a pretrained encoder (needs --pretrained except for scratch)"""
    pretrained: str | None = None
    """path to the pretrained encoder's state dict (or a checkpoint with a 'model' entry)"""
    pretrained_prefix: str = ""
    """keep only the pretrained keys with this prefix, stripped (e.g. 'fusion.')"""
    top_k: int = 1
    """--finetune top: number of top encoder layer groups that train"""
    lr_ratio: float = 100.0
    """--finetune discriminative: head learning rate / first encoder group's"""
    eval_freq: Annotated[int | None, _or_preset(10_000)] = None
    """evaluate every this many environment steps (0: only at the end)"""
    eval_episodes: Annotated[int | None, _or_preset(20)] = None
    """evaluation episodes (bandits: ignored, the whole test split is swept)"""
    eval_envs: Annotated[int | None, _or_preset(1)] = None
    """parallel eval envs (the episodes are split evenly among them; bandits sweep with one)"""
    eval_actions: Annotated[EvalActions | None, _or_preset("both on BabyAI, else greedy")] = None
    """greedy (argmax), sampled, or both (the headline eval tags sampled, *_greedy argmax)"""
    checkpoint_freq: int = 50_000
    """save a checkpoint every this many environment steps (0: none)"""
    log_every: int = 1_000
    """write the lab's training tags at most once per this many environment steps"""
    runs_dir: str = "runs"
    """root of the run directories: RUNS_DIR/<env>/<run_name>"""
    exp_name: str | None = None
    """experiment name in the run name; default ALGO_ENCODER"""
    progress_bar: bool = True
    """show SB3's progress bar (tqdm + rich)"""
    verbose: int = 0
    """SB3 verbosity (1 also prints SB3's logs)"""

    def __post_init__(self) -> None:
        """Fill the options left at None from the preset, then from :data:`BUILTIN_DEFAULTS`; JSON options are
        merged key by key with the preset's (so this is idempotent: re-running it changes nothing)."""
        preset = None if self.preset is None else get_preset(self.preset)
        for name in OPTION_FIELDS:
            if name in JSON_FIELDS:
                if preset is not None:
                    merged = merge_options(getattr(preset, name), _json(self, name))
                    setattr(self, name, json.dumps(merged))
            elif getattr(self, name) is None:
                value = getattr(preset, name) if preset is not None else None
                setattr(self, name, BUILTIN_DEFAULTS.get(name) if value is None else value)


def parse_args(argv: Sequence[str] | None = None) -> Args:
    description = "\n\n".join(__doc__.split("\n\n")[:2]) + "\n\npresets (--preset NAME):\n" + describe_presets()
    return tyro.cli(Args, args=argv, prog="python -m agents.train", description=description)


@dataclass
class Setup:
    """Everything :func:`setup` built and checked; :func:`train` runs it."""

    args: Args
    model: BaseAlgorithm
    eval_env: VecEnv
    eval_kind: str  # "bandit", "babyai" or "control"
    eval_episodes: int
    run_dir: Path
    eval_actions: str = "greedy"  # resolved: "greedy", "sampled" or "both"

    def close(self) -> None:
        self.eval_env.close()
        self.model.get_env().close()


def setup(args: Args) -> Setup:
    """Check the arguments and build the agent and its eval env; a bad argument raises ValueError / TypeError."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    kwargs = {name: _json(args, name) for name in JSON_FIELDS}
    if args.preset is not None and get_preset(args.preset).env_id != args.env_id:
        warnings.warn(f"preset {args.preset!r} was tuned on {get_preset(args.preset).env_id}, not {args.env_id}",
                      stacklevel=2)
    run_dir = run_directory(args)
    if run_dir.exists():
        raise FileExistsError(
            f"run directory {run_dir} exists; runs are never overwritten (change --exp-name or wait a second)"
        )
    finetune = None
    if args.finetune is not None:
        finetune = FinetuneConfig(strategy=args.finetune, top_k=args.top_k, lr_ratio=args.lr_ratio)
    pretrained = None if args.pretrained is None else read_state_dict(args.pretrained, args.pretrained_prefix)
    model = make_agent(
        args.algo, args.env_id, args.encoder, optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        n_envs=args.n_envs, vec_env=args.vec_env, seed=args.seed, device=args.device, finetune=finetune,
        pretrained=pretrained, verbose=args.verbose, normalize_obs=args.normalize_obs, ortho_init=args.ortho_init,
        **kwargs,
    )
    try:
        eval_env, kind, episodes = make_eval_env(
            args.env_id, kwargs["env_kwargs"], args.seed + 10_000, args.eval_episodes, n_envs=args.eval_envs
        )
        eval_env = normalized_like(eval_env, model)
    except BaseException:
        model.get_env().close()
        raise
    actions = args.eval_actions or ("both" if kind == "babyai" else "greedy")
    return Setup(args, model, eval_env, kind, episodes, run_dir, eval_actions=actions)


def run_directory(args: Args) -> Path:
    """``RUNS_DIR/<env>/<env>__<exp_name>__<seed>__<unix time>`` (lab.runtime.run_name, CleanRL-style)."""
    exp_name = args.exp_name or args.preset or f"{args.algo}_{args.encoder}"
    env_dir = run_name(args.env_id, timestamp=False)
    return Path(args.runs_dir) / env_dir / run_name(args.env_id, exp_name, seed=args.seed)


def run(args: Args) -> dict[str, Any]:
    """Train per ``args`` and return the results (also written to ``results.json`` in the run directory)."""
    built = setup(args)
    try:
        return train(built)
    finally:
        built.close()


def train(built: Setup) -> dict[str, Any]:
    """Create the run directory (never an existing one), train with evaluation and checkpoints, save, report."""
    args, model, eval_env, eval_kind, eval_episodes, run_dir = (
        built.args, built.model, built.eval_env, built.eval_kind, built.eval_episodes, built.run_dir
    )
    run_dir.mkdir(parents=True, exist_ok=False)
    model.set_logger(configure(str(run_dir), ["tensorboard", "csv"] + (["stdout"] if args.verbose else [])))
    hparams = {**dataclasses.asdict(args), **describe_agent(model)}
    writer = tensorboard_writer(model.logger)
    writer.add_text("hyperparameters", hparams_markdown(hparams))

    lab_tags = LabTagsCallback(log_every=args.log_every)
    actions = built.eval_actions
    eval_tags = EvalTagsCallback(eval_kind, greedy_too=actions == "both", episodes_seen=lambda: lab_tags.episodes)
    callbacks = [lab_tags]  # first: its episode count includes this step's episodes when an evaluation reads it
    if args.eval_freq > 0:
        callbacks.append(EvalCallback(
            eval_env, n_eval_episodes=eval_episodes, eval_freq=max(args.eval_freq // args.n_envs, 1),
            deterministic=actions == "greedy", callback_after_eval=eval_tags, warn=False, verbose=args.verbose,
        ))
    if args.checkpoint_freq > 0:
        save_freq = max(args.checkpoint_freq // args.n_envs, 1)
        callbacks.append(AtomicCheckpointCallback(save_freq, str(run_dir / "checkpoints"), "model"))

    start = time.perf_counter()
    with warnings.catch_warnings():  # the eval env is in-process on purpose, whatever the training envs are
        warnings.filterwarnings("ignore", message="Training and eval env are not of the same type")
        model.learn(args.timesteps, callback=CallbackList(callbacks), progress_bar=args.progress_bar)
    wall_time = time.perf_counter() - start

    if model.get_vec_normalize_env() is not None:
        sync_envs_normalization(model.get_env(), eval_env)
    final = evaluate(model, eval_env, eval_episodes, eval_kind, actions)
    step = model.num_timesteps
    writer.add_scalar(tags.MEAN_RETURN, final["mean_return"], step)
    for key, tag in (("accuracy", tags.ACCURACY), ("success_rate", tags.SUCCESS_RATE),
                     ("mean_return_greedy", MEAN_RETURN_GREEDY), ("success_rate_greedy", SUCCESS_RATE_GREEDY)):
        if key in final:
            writer.add_scalar(tag, final[key], step)
    writer.flush()
    save_model_atomic(model, run_dir / "model.zip")
    results = {
        "env_id": args.env_id, "preset": args.preset, "algo": args.algo, "encoder": args.encoder,
        "run_dir": str(run_dir), "eval_actions": actions,
        "steps": step, "episodes": lab_tags.episodes, "wall_time_s": wall_time,
        "steps_per_s": step / max(wall_time, 1e-9), "params": count_parameters(model.policy),
        "trainable_params": count_parameters(model.policy, trainable_only=True),
        "final_eval": final, "eval_history": eval_tags.history, "hyperparameters": hparams,
    }
    write_json(run_dir / "results.json", results)
    return results


def make_eval_env(
    env_id: str, env_kwargs: dict[str, Any], seed: int, episodes: int, n_envs: int = 1
) -> tuple[VecEnv, str, int]:
    """(eval env, kind, episodes): bandits sweep their test split in order with one env, kind "bandit"; BabyAI
    "babyai"; anything else "control". ``n_envs`` envs (seeds ``seed``, ``seed + 1``, ...) share the episodes.
    Wrap the result with :func:`agents.factory.normalized_like` for an agent trained on normalised observations.
    """
    from envs.bandit import ClassificationBanditEnv

    probe = make_env(env_id, **env_kwargs)
    kind = "control"
    if isinstance(probe.unwrapped, ClassificationBanditEnv):
        probe.close()
        env = make_env(env_id, **{**env_kwargs, "split": "test", "sequential": True})
        venv = DummyVecEnv([lambda: Monitor(env)])
        venv.seed(seed)
        return venv, "bandit", len(env.unwrapped)
    if type(probe.unwrapped).__module__.startswith("minigrid."):
        kind = "babyai"
    envs = [probe] + [make_env(env_id, **env_kwargs) for _ in range(max(n_envs, 1) - 1)]
    venv = DummyVecEnv([lambda env=env: Monitor(env) for env in envs])
    venv.seed(seed)
    return venv, kind, episodes


def evaluate(
    model: BaseAlgorithm, env: VecEnv, episodes: int, kind: str = "control", actions: str = "greedy"
) -> dict[str, float]:
    """Mean/std return, mean length, success rate (if reported), accuracy (bandits: always greedy).

    ``actions``: "greedy" (argmax), "sampled", or "both": the plain keys from sampled actions and
    ``mean_return_greedy`` / ``success_rate_greedy`` from greedy ones (the same number of new episodes).
    """
    if actions not in EVAL_ACTIONS:
        raise ValueError(f"unknown eval actions {actions!r}; choose one of {', '.join(EVAL_ACTIONS)}")
    out = evaluate_agent(model, env, episodes, deterministic=actions == "greedy" or kind == "bandit")
    if actions == "both" and kind != "bandit":
        greedy = evaluate_agent(model, env, episodes, deterministic=True)
        out.update({f"{key}_greedy": greedy[key] for key in ("mean_return", "success_rate") if key in greedy})
    if kind == "bandit" and "success_rate" in out:
        out["accuracy"] = out["success_rate"]
    return out


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


def _json(args: Args, name: str) -> dict[str, Any]:
    text, option = getattr(args, name), "--" + name.replace("_", "-")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{option} must be a JSON object such as '{{\"key\": 1}}', got {text!r}: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object (a dict), got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    try:
        args = parse_args(argv)  # a preset merges the JSON options here, so bad JSON can fail already
        built = setup(args)
    except (ValueError, TypeError, FileExistsError, gym.error.Error) as error:  # a bad argument: say what works
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        results = train(built)
    finally:
        built.close()
    final = results["final_eval"]
    print(f"{results['steps']} steps, {results['episodes']} episodes in {results['wall_time_s']:.1f} s "
          f"({results['steps_per_s']:.0f} steps/s); final eval: "
          + ", ".join(f"{k} {v:.3f}" for k, v in final.items() if k != "episodes") + f"; run: {results['run_dir']}")
    return results


if __name__ == "__main__":
    main()
