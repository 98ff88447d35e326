"""Behaviour cloning of minigrid's BabyAIBot with ``lab.FusionTransformer``, scored by rollouts in fresh episodes.

    python -m supervised.train babyai_bc                  # GoToRedBallGrey, 5k demos, 20 epochs, 500 eval episodes
    python -m supervised.train babyai_bc --data.level BabyAI-GoToRedBall-v0 --data.demos 50000 --train.epochs 3
    python -m supervised.train babyai_bc --data.demos 1000 --data.val-fraction 0.05 --eval.episodes 2000
    python -m supervised.train babyai_bc --data.minari-dataset lab/GoToRedBallGrey/mixed-v0 --data.top-fraction 0.1

Data: the first ``data.demos`` episodes of the bot collection in ``data.demo_dir`` (default
``data/demos/<level>__seed<demo_seed>``), collected on first use and extended when more are asked for
(:func:`envs.demos.collect_demos`), or of the Minari dataset ``data.minari_dataset`` (any whose spaces fit:
:mod:`envs.minari_io`; e.g. a mixed-quality set). ``data.top_fraction`` < 1 is filtered behaviour cloning (%BC):
only that fraction of the episodes, those of highest return, is cloned. Each step is one sample: the
observation the behaviour policy saw (7x7x3 view, direction, mission tokens and, with ``action_history=k``, its
k previous actions as :class:`envs.babyai.BabyAIObservation` shows them) and its action as the target.
``val_fraction`` holds out the last episodes (whole episodes, never single steps) for the trainer's validation
accuracy.

Model: :class:`BCPolicy`, observations -> :func:`envs.babyai_fusion.babyai_fusion_inputs` -> ``encoder`` (a plain
``lab.FusionTransformer``) -> ``head`` (``nn.Linear(d_model, 7)`` on the fused CLS vector): the same mapping
the RL agents' ``FusionExtractor`` uses, so ``encoder.pt`` (written at the end of every run, with ``head.pt``)
loads into an RL policy's fusion encoder.

Evaluation: :func:`evaluate_policy` plays ``eval.episodes`` fresh episodes, reset with seeds
``episode_seed(eval.seed, i)`` (the demo seed rule with another base) minus the seeds of the demos used,
greedy by default, all envs stepped in lockstep with one batched forward per step; success is
:func:`envs.babyai.is_success` before the level's ``max_steps`` truncation. ``results.json`` holds the success
rate, the demos used (episodes and transitions) and the BabyAI paper's demo counts for 99% as a reference;
``rollouts.json`` every episode (seed, success, length, return, actions).
"""
from __future__ import annotations

import collections
import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from envs.babyai import NUM_ACTIONS, PAPER_99, PAPER_SOURCE, babyai_levels, make_babyai_env
from envs.babyai_fusion import babyai_fusion_inputs, babyai_modalities
from envs.demos import collect_demos
from envs.minari_io import CACHE_ROOT, SpaceMismatchError, load_minari
from envs.trajectories import DemoSet, load_demos, read_manifest, top_episodes
from envs.evaluation import EVAL_SEED, Act, RolloutResult, StatefulAct, evaluate, logits_actor
from envs.tokenizer import DEFAULT_MAX_LEN, PAD_ID
from lab import tags
from lab.fusion import FusionConfig, FusionTransformer
from lab.io import atomic_torch_save, write_json
from lab.layers import ACTIVATIONS, TransformerConfig
from lab.runtime import count_parameters
from supervised.checkpoint import load_checkpoint, resolve_checkpoint
from supervised.configs import ConfigError, TrainConfig, config_from_dict
from supervised.task import Evaluate, InMemoryDataset, Task, TaskData

ENCODER_FILE, HEAD_FILE, ROLLOUTS_FILE = "encoder.pt", "head.pt", "rollouts.json"
Policy = Callable[[dict[str, Tensor]], Tensor]  # stacked observations -> action logits (B, 7)


# ------------------------------------------------------------------------------------------------------- configs
@dataclass
class BCDataConfig:
    """Which demonstrations train the policy."""

    level: str = "BabyAI-GoToRedBallGrey-v0"
    """BabyAI level id (demos and evaluation episodes both come from it)"""
    demos: int = 5000
    """bot episodes used (training + validation): the first N of the collection, collected if missing"""
    demo_seed: int = 0
    """base seed of the demo collection: attempt i resets with envs.demos.episode_seed(demo_seed, i)"""
    demo_dir: str | None = None
    """demo directory; None = data/demos/<level>__seed<demo_seed> (relative to the working directory)"""
    minari_dataset: str | None = None
    """a Minari dataset to learn from instead of the bot's demos (an id under MINARI_DATASETS_PATH, or a dataset's
    directory): its first `demos` episodes (all, if it has fewer); its spaces must fit (envs.minari_io)"""
    minari_download: bool = False
    """download the Minari dataset from Farama's server when it is not local (needs internet)"""
    minari_cache: str | None = None
    """where the Minari dataset is decoded into shards once (None: data/minari); runs reading one dataset at the
    same time each want their own (the experiments give every run one in its directory)"""
    top_fraction: float = 1.0
    """filtered behaviour cloning (%BC): clone only this fraction of the episodes, those of highest return
    (1 = all, plain BC; 0.1 = 10%BC)"""
    action_history: int = 4
    """previous actions shown to the policy, its only memory (spike: 0 plateaus near 92%, 4 reaches 99%)"""
    val_fraction: float = 0.0
    """fraction of the demo episodes (the last ones) held out for validation; 0 = all train (the 99% recipe)"""

    def __post_init__(self) -> None:
        check_level(self.level)
        _require(self.demos >= 1, f"demos must be >= 1, got {self.demos}")
        _require(self.demo_seed >= 0, f"demo_seed must be >= 0, got {self.demo_seed}")
        _require(self.action_history >= 0, f"action_history must be >= 0 (0 = none), got {self.action_history}")
        _require(0 <= self.val_fraction < 1, f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        _require(self.demos - self.val_episodes >= 1,
                 f"val_fraction {self.val_fraction} of {self.demos} demos leaves no training episode")
        _require(self.demo_dir is None or bool(self.demo_dir.strip()), "demo_dir must be a path or None")
        _require(self.minari_dataset is None or bool(self.minari_dataset.strip()),
                 "minari_dataset must be a dataset id (e.g. lab/GoToRedBallGrey/mixed-v0) or None")
        _require(0 < self.top_fraction <= 1, f"top_fraction must lie in (0, 1] (1 = every episode), got "
                 f"{self.top_fraction}")

    @property
    def val_episodes(self) -> int:
        return math.ceil(self.val_fraction * self.demos) if self.val_fraction > 0 else 0

    def resolved_demo_dir(self) -> Path:
        return Path(self.demo_dir) if self.demo_dir else Path("data") / "demos" / f"{self.level}__seed{self.demo_seed}"


@dataclass
class BCModelConfig:
    """Fusion transformer and action head. Defaults: the spike's recipe (81k parameters)."""

    d_model: int = 64
    """token width; 64 fits ~60 tokens of a 7-action problem and keeps a CPU step at milliseconds"""
    num_heads: int = 4
    """attention heads; must divide d_model"""
    num_layers: int = 2
    """encoder layers (the RL extractor must use the same number to load encoder.pt)"""
    dim_feedforward: int = 128
    """feed-forward width (2 x d_model: 4x was slower per sample and no better in the spike)"""
    dropout: float = 0.0
    """dropout in the encoder (the 99% recipe uses none)"""
    activation: str = "gelu"
    """gelu or relu (the RL extractor's default is relu: match it when transferring encoder.pt)"""
    pooling: str = "cls"
    """cls (a learned summary token) or mean: what the action head reads"""
    view_stem: tuple[int, int] | None = None
    """(kernel, stride) of a conv stem giving the 7x7 view as patch tokens ((3, 2): 9 for 49); None: one per cell"""
    history_as_one_token: bool = False
    """the previous actions as one token of k fields instead of k tokens (fewer tokens, same inputs)"""

    def __post_init__(self) -> None:
        _require(self.activation in ACTIVATIONS, f"unknown activation {self.activation!r}; choose one of "
                 f"{', '.join(ACTIVATIONS)}")
        _require(self.pooling in ("cls", "mean"), f"unknown pooling {self.pooling!r}; choose cls or mean")
        _require(0 <= self.dropout < 1, f"dropout must lie in [0, 1), got {self.dropout}")
        self.transformer_config()  # d_model a multiple of num_heads, num_layers >= 0: lab's own checks

    def transformer_config(self) -> TransformerConfig:
        return TransformerConfig(d_model=self.d_model, num_heads=self.num_heads, num_layers=self.num_layers,
                                 dim_feedforward=self.dim_feedforward, dropout=self.dropout,
                                 activation=self.activation)

    def one_token(self, action_history: int) -> bool:
        """Whether the ``action_history`` previous actions enter as one token."""
        return self.history_as_one_token and action_history > 0

    def build_encoder(self, action_history: int, max_mission_len: int = DEFAULT_MAX_LEN) -> FusionTransformer:
        """The FusionTransformer this config describes: BC's encoder, the DT's state encoder, ``encoder.pt``."""
        modalities = babyai_modalities(max_mission_len, action_history, self.view_stem, self.one_token(action_history))
        return FusionTransformer(FusionConfig(modalities, self.transformer_config(), self.pooling))


@dataclass
class BCEvalConfig:
    """Rollouts of the trained policy in fresh episodes."""

    episodes: int = 500
    """evaluation episodes (500: a standard error of 0.45 points at 99%)"""
    seed: int = EVAL_SEED
    """base seed of the evaluation episodes, episode_seed(seed, i) minus demo seeds (and of sampled actions)"""
    greedy: bool = True
    """argmax actions; off = sample from the policy's softmax"""
    num_envs: int = 500
    """envs stepped in lockstep (one batched forward per step); episodes run in groups of this many"""

    def __post_init__(self) -> None:
        _require(self.episodes >= 1, f"eval episodes must be >= 1, got {self.episodes}")
        _require(self.seed >= 0, f"eval seed must be >= 0, got {self.seed}")
        _require(self.num_envs >= 1, f"eval num_envs must be >= 1, got {self.num_envs}")


def _bc_train_config() -> TrainConfig:
    # The spike's recipe: AdamW lr 2e-3 (betas 0.9 / 0.98, weight decay 0.01), 5% warmup then a cosine to 0,
    # clipping at 1, batch 256, no label smoothing; 20 epochs of 5k GoToRedBallGrey demos (~2,300 steps).
    # No best.pt re-evaluation: without a validation split there is no best.pt, and with one it would double
    # the rollouts.
    return TrainConfig(epochs=20, batch_size=256, optimizer="adamw", lr=2e-3, weight_decay=0.01,
                       betas=(0.9, 0.98), warmup_fraction=0.05, min_lr_ratio=0.0, grad_clip=1.0,
                       label_smoothing=0.0, evaluate_best=False, num_threads=1)


@dataclass
class BabyAIBCConfig:
    """Behaviour cloning of the BabyAI bot with a fusion transformer, scored by the success rate of rollouts."""

    train: TrainConfig = field(default_factory=_bc_train_config)
    model: BCModelConfig = field(default_factory=BCModelConfig)
    data: BCDataConfig = field(default_factory=BCDataConfig)
    eval: BCEvalConfig = field(default_factory=BCEvalConfig)

    def __post_init__(self) -> None:
        _require(self.eval.seed != self.data.demo_seed,
                 f"eval seed {self.eval.seed} equals the demo seed: evaluation episodes would be the demo "
                 "collection's own; choose another --eval.seed")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def check_level(level: str) -> None:
    """ValueError naming close matches unless ``level`` is a registered ``BabyAI-*`` id (the bot's levels)."""
    levels = babyai_levels()
    if level not in levels:
        close = difflib.get_close_matches(level, levels, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"e.g. {', '.join(sorted(PAPER_99))}"
        raise ValueError(f"unknown BabyAI level {level!r} ({len(levels)} BabyAI-* ids are registered); {hint}")


def paper_reference(level: str) -> dict[str, Any] | None:
    """The BabyAI paper's demo counts for 99% success on ``level`` (None when the paper has none)."""
    if level not in PAPER_99:
        return None
    low, high = PAPER_99[level]["il"]
    return {"source": f"{PAPER_SOURCE}, imitation learning from the bot",
            "quantity": "demonstrations needed for 99% success", "demos_low": low, "demos_high": high}


# --------------------------------------------------------------------------------------------------------- model
class BCPolicy(nn.Module):
    """BabyAI observations -> action logits (B, 7).

    ``observations``: ``image`` int (B, 7, 7, 3), ``direction`` int (B,), ``mission`` int (B, L) token ids and,
    when ``action_history`` k > 0, ``prev_actions`` int (B, k) (what ``make_babyai_env(level, action_history=k)``
    shows, stacked). ``encoder`` is a plain ``FusionTransformer`` (its ``state_dict()`` has no prefix: it loads
    into an RL policy's fusion encoder), ``head`` the linear action head on the fused vector.
    """

    def __init__(self, config: BCModelConfig | None = None, action_history: int = 4,
                 max_mission_len: int = DEFAULT_MAX_LEN) -> None:
        super().__init__()
        config = config or BCModelConfig()
        self.action_history = action_history
        self.history_as_one_token = config.one_token(action_history)
        self.encoder = config.build_encoder(action_history, max_mission_len)
        self.head = nn.Linear(config.d_model, NUM_ACTIONS)

    def forward(self, observations: Mapping[str, Tensor]) -> Tensor:
        prev_actions = None
        if self.action_history:
            prev_actions = observations.get("prev_actions")
            if prev_actions is None or prev_actions.shape[-1] != self.action_history:
                got = "none" if prev_actions is None else f"shape {tuple(prev_actions.shape)}"
                raise ValueError(f"this policy reads the {self.action_history} previous actions: observations need "
                                 f"'prev_actions' (batch, {self.action_history}) as make_babyai_env(level, "
                                 f"action_history={self.action_history}) gives them; got {got}")
        inputs, masks = babyai_fusion_inputs(observations["image"], observations["direction"],
                                             observations["mission"], prev_actions,
                                             history_as_one_token=self.history_as_one_token)
        return self.logits(inputs, masks)

    def logits(self, inputs: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> Tensor:
        """FusionTransformer inputs and padding masks (``babyai_fusion_inputs``' output) -> logits (B, 7)."""
        return self.head(self.encoder(inputs, masks).fused)


# ---------------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_policy(policy: Policy, level: str, episodes: int = 500, *, action_history: int | None = None,
                    seed: int = EVAL_SEED, exclude_seeds: Iterable[int] = (), greedy: bool = True,
                    num_envs: int = 500) -> RolloutResult:
    """Play ``episodes`` fresh episodes of ``level`` with ``policy`` (:func:`envs.evaluation.evaluate`'s protocol).

    Args:
        policy: a module or function mapping stacked observations (see :class:`BCPolicy`; tensors on the
            policy's device) to action logits (B, 7). A module is put in eval mode and restored.
        level: BabyAI level id.
        episodes: how many episodes (any number >= 1).
        action_history: k previous actions in the observations; None = ``policy.action_history`` (or 0).
        seed: episodes are reset with ``episode_seed(seed, i)`` for i = 0, 1, ... minus ``exclude_seeds`` (pass
            the training demos' seeds: the episodes are then unseen); also seeds the sampling.
        greedy: argmax actions; False samples from the softmax of the logits.
        num_envs: envs stepped in lockstep, one batched forward per step; episodes run in groups of this many.
    """
    k = getattr(policy, "action_history", 0) if action_history is None else action_history
    parameters = policy.parameters() if isinstance(policy, nn.Module) else iter(())
    device = next((p.device for p in parameters), torch.device("cpu"))

    def logits(batch: dict[str, Tensor]) -> Tensor:
        out = policy(batch)
        if out.shape != (len(batch["direction"]), NUM_ACTIONS):
            raise ValueError(f"the policy must return logits of shape (batch, {NUM_ACTIONS}), got {tuple(out.shape)}")
        return out

    return play_level(policy, level, logits_actor(logits, greedy, seed, device), episodes, action_history=k,
                      seed=seed, exclude_seeds=exclude_seeds, greedy=greedy, num_envs=num_envs)


def play_level(model: object, level: str, actor: Act | StatefulAct, episodes: int, *, action_history: int,
               seed: int, exclude_seeds: Iterable[int], greedy: bool, num_envs: int) -> RolloutResult:
    """:func:`envs.evaluation.evaluate` on ``level`` (observations with ``action_history`` previous actions) with
    ``actor``; a module ``model`` (the actor's network) is in eval mode meanwhile, then restored."""
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    try:
        return evaluate(lambda: make_babyai_env(level, action_history=action_history), actor, episodes, seed=seed,
                        exclude_seeds=exclude_seeds, num_envs=num_envs, greedy=greedy, env_id=level)
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)


# ---------------------------------------------------------------------------------------------------------- data
def load_bc_demos(data: BCDataConfig, progress: bool = True) -> DemoSet:
    """The episodes ``data`` names: the first ``data.demos`` of ``data.minari_dataset`` (all, if it has fewer), or
    the first ``data.demos`` bot demos of ``data.resolved_demo_dir()``, collected (or extended) first."""
    if data.minari_dataset:
        return _load_minari_episodes(data, progress)
    out = data.resolved_demo_dir()
    stored = (read_manifest(out) or {}).get("episodes", 0)
    if stored < data.demos and progress:
        print(f"collecting {data.demos - stored} {data.level} bot demos into {out} ({stored} stored)", flush=True)
    try:
        collect_demos(data.level, data.demos, out, seed=data.demo_seed, progress=progress)
    except (ValueError, RuntimeError) as error:  # another level / seed in that directory, or a level the bot fails
        raise ConfigError(f"cannot get {data.demos} demos of {data.level} in {out}: {error}") from None
    demos = load_demos(out, max_episodes=data.demos)
    if demos.num_episodes != data.demos:
        raise ConfigError(f"{out} holds {demos.num_episodes} demos, {data.demos} needed")
    return demos


def _load_minari_episodes(data: BCDataConfig, progress: bool) -> DemoSet:
    cache = data.minari_cache or CACHE_ROOT
    if progress:
        print(f"reading Minari dataset {data.minari_dataset} (decoded once into {cache})", flush=True)
    try:
        demos = load_minari(data.minari_dataset, max_episodes=data.demos, cache_root=cache,
                            download=data.minari_download)
    except (FileNotFoundError, SpaceMismatchError) as error:
        raise ConfigError(f"cannot learn from Minari dataset {data.minari_dataset!r}: {error}") from None
    level = demos.manifest.get("level")
    if level is not None and level != data.level:
        raise ConfigError(f"Minari dataset {data.minari_dataset!r} was collected on {level}, not on {data.level}; "
                          f"pass --data.level {level} (its policies are evaluated on that level)")
    return demos


def dataset_seeds(demos: DemoSet) -> set[int]:
    """The known reset seeds of a dataset's episodes (filtered-out ones too: all of them were available data)."""
    return {int(seed) for seed in demos.seed if seed >= 0}


def data_label(data: BCDataConfig) -> str:
    """Run-name words for the data: level and demos, or the Minari dataset; and the %BC fraction."""
    source = (data.minari_dataset.strip("/").replace("/", "-") if data.minari_dataset else
              f"{data.level.removeprefix('BabyAI-').removesuffix('-v0')}_{data.demos}demos")
    return source if data.top_fraction == 1 else f"{source}_top{data.top_fraction:g}"


def data_info(data: BCDataConfig, demos: DemoSet, kept: DemoSet, n_val: int) -> dict[str, Any]:
    """What a run learned from, for results.json: the dataset, its sources and returns, the episodes kept."""
    return {
        "demo_dir": None if data.minari_dataset else str(data.resolved_demo_dir()),
        "minari_dataset": data.minari_dataset, "demos_in_dir": int(demos.manifest.get("episodes", demos.num_episodes)),
        "demo_episodes": demos.num_episodes, "demo_transitions": demos.num_steps,
        "demo_mean_length": float(demos.length.mean()), "demo_mean_return": float(demos.reward.mean()),
        "demo_sources": dict(collections.Counter(demos.source.tolist())),
        "top_fraction": data.top_fraction, "kept_episodes": kept.num_episodes,
        "kept_mean_return": float(kept.reward.mean()), "train_episodes": kept.num_episodes - n_val,
        "val_episodes": n_val,
    }


def training_episodes(demos: DemoSet, data: BCDataConfig) -> tuple[DemoSet, int]:
    """The episodes to learn from (the top ``data.top_fraction`` by return: %BC) and how many of them, the last
    ones, are held out for validation. Raises ConfigError when no training episode is left."""
    kept = top_episodes(demos, data.top_fraction) if data.top_fraction < 1 else demos
    val = math.ceil(data.val_fraction * kept.num_episodes) if data.val_fraction > 0 else 0
    if kept.num_episodes - val < 1:
        raise ConfigError(f"{kept.num_episodes} episodes (top_fraction {data.top_fraction}, val_fraction "
                          f"{data.val_fraction}) leave no training episode")
    return kept, val


def demo_dataset(demos: DemoSet, episodes: slice, action_history: int) -> InMemoryDataset:
    """The steps of ``demos``' episodes ``episodes`` (a slice) as observations (what :class:`BCPolicy` reads) and
    the bot's actions as targets. Images stay uint8; the mission is cut to the longest one in ``demos``."""
    first, stop = episodes.indices(demos.num_episodes)[:2]
    steps = slice(int(demos.episode_start[first]) if first < demos.num_episodes else demos.num_steps,
                  int(demos.episode_start[stop]) if stop < demos.num_episodes else demos.num_steps)
    mission_len = max(int((demos.mission != PAD_ID).sum(axis=1).max()), 1)
    inputs = {
        "image": torch.from_numpy(demos.image[steps]),  # (N, 7, 7, 3) uint8
        "direction": torch.from_numpy(demos.direction[steps]),  # (N,) uint8
        "mission": torch.from_numpy(demos.mission[:, :mission_len][demos.episode[steps]]),  # (N, L) int64
    }
    if action_history:
        inputs["prev_actions"] = torch.from_numpy(demos.prev_actions(action_history)[steps])  # (N, k) int64
    return InMemoryDataset(inputs, torch.from_numpy(demos.action[steps].astype(np.int64)))


# ---------------------------------------------------------------------------------------------------------- task
class BabyAIBCTask(Task):
    """Cross-entropy on the bot's actions; the final metric is the success rate of rollouts in fresh episodes."""

    name = "babyai_bc"
    config_class = BabyAIBCConfig
    final_metric_tags = {key: tags.EVAL_TAGS[key] for key in ("success_rate", "mean_return")}  # as RL's evaluations

    def __init__(self, config: BabyAIBCConfig | None = None) -> None:
        super().__init__(config)
        self.demo_info: dict[str, Any] = {}  # what load_data used, for results.json
        self.rollouts: list[RolloutResult] = []  # one per final_metrics call: the final model's, then best.pt's
        self._demo_seeds: set[int] | None = None

    def run_label(self) -> str:
        return data_label(self.config.data)

    def load_data(self) -> TaskData:
        d = self.config.data
        demos = load_bc_demos(d, progress=not self.config.train.quiet)
        kept, n_val = training_episodes(demos, d)
        n_train = kept.num_episodes - n_val
        train = demo_dataset(kept, slice(0, n_train), d.action_history)
        val = demo_dataset(kept, slice(n_train, None), d.action_history) if n_val else None
        self._demo_seeds = dataset_seeds(demos)
        self.rollouts = []
        self.demo_info = {**data_info(d, demos, kept, n_val), "train_transitions": len(train),
                          "val_transitions": len(val) if val is not None else 0}
        return TaskData(train, val)

    def demo_seeds(self) -> set[int]:
        """Reset seeds of the episodes this config's data holds (loads them if load_data has not): evaluation
        episodes exclude them, so every one is unseen."""
        if self._demo_seeds is None:
            self._demo_seeds = dataset_seeds(load_bc_demos(self.config.data, progress=False))
        return self._demo_seeds

    def build_model(self) -> nn.Module:
        return BCPolicy(self.config.model, self.config.data.action_history)

    def describe_model(self, model: nn.Module) -> dict[str, int | float]:
        return {"params": count_parameters(model), "encoder_params": count_parameters(model.encoder),
                "head_params": count_parameters(model.head)}

    def final_metrics(self, model: nn.Module, data: TaskData, evaluate: Evaluate) -> dict[str, float]:
        result = self.play(model)
        self.rollouts.append(result)
        return result.metrics()

    def play(self, model: nn.Module) -> RolloutResult:
        """Rollouts of ``model`` with the config's evaluation protocol, in episodes the data never saw."""
        d, e = self.config.data, self.config.eval
        return evaluate_policy(model, d.level, e.episodes, action_history=d.action_history, seed=e.seed,
                               exclude_seeds=self.demo_seeds(), greedy=e.greedy, num_envs=e.num_envs)

    def export_encoder_and_rollouts(self, model: nn.Module, run_dir: Path) -> None:
        """``encoder.pt`` (the plain state dict of ``model.encoder``, a FusionTransformer: it loads into an RL
        policy's fusion encoder) and ``rollouts.json`` (every evaluation episode, final model then best.pt)."""
        atomic_torch_save(model.encoder.state_dict(), run_dir / ENCODER_FILE)
        write_json(run_dir / ROLLOUTS_FILE, {label: r.to_dict() for label, r in zip(("final", "best"), self.rollouts)})

    def export(self, model: nn.Module, run_dir: Path) -> dict[str, Any]:
        """``encoder.pt`` / ``head.pt`` (plain state dicts of the final model's FusionTransformer and head),
        ``rollouts.json`` (every evaluation episode); returns the demos used and the paper's reference."""
        self.export_encoder_and_rollouts(model, run_dir)
        atomic_torch_save(model.head.state_dict(), run_dir / HEAD_FILE)
        encoder_config = model.encoder.config
        return {
            **self.demo_info,
            "eval_seed": self.config.eval.seed,
            "eval_skipped_demo_seeds": self.rollouts[0].skipped_seeds if self.rollouts else None,
            "paper_reference": paper_reference(self.config.data.level),
            "encoder_file": ENCODER_FILE, "head_file": HEAD_FILE, "rollouts_file": ROLLOUTS_FILE,
            "encoder_config": {"modalities": [asdict(m) for m in encoder_config.modalities],
                               "transformer": asdict(encoder_config.transformer), "pooling": encoder_config.pooling},
        }


# ------------------------------------------------------------------------------------------------ trained runs
def load_bc_policy(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[BCPolicy, BabyAIBCConfig]:
    """The policy and config of a ``babyai_bc`` checkpoint, or of a run directory (its ``last.pt``)."""
    return load_trained(path, BabyAIBCTask, map_location)


def load_trained(path: str | Path, task: type[BabyAIBCTask],
                 map_location: str | torch.device = "cpu") -> tuple[nn.Module, Any]:
    """The model and config of a checkpoint of ``task`` (BC's, DT's), or of a run directory (its ``last.pt``)."""
    checkpoint = load_checkpoint(resolve_checkpoint(path), map_location)
    if checkpoint["task"] != task.name:
        raise ConfigError(f"{path} is a {checkpoint['task']!r} checkpoint, not {task.name!r}")
    config = config_from_dict(task.config_class, checkpoint["experiment"])
    model = task(config).build_model()
    model.load_state_dict(checkpoint["model"])
    return model.to(map_location), config


def evaluate_checkpoint(path: str | Path, episodes: int | None = None, *, greedy: bool | None = None,
                        num_envs: int | None = None) -> RolloutResult:
    """Re-evaluate a trained run (e.g. on 2,000 episodes) with its own protocol: the first ``episodes`` seeds of
    the same rule, so the run's own evaluation episodes come first. Needs the run's demo directory (seeds)."""
    policy, config = load_bc_policy(path)
    e = config.eval
    return evaluate_policy(policy, config.data.level, episodes or e.episodes, seed=e.seed,
                           exclude_seeds=BabyAIBCTask(config).demo_seeds(),
                           greedy=e.greedy if greedy is None else greedy, num_envs=num_envs or e.num_envs)
