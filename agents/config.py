"""``AgentConfig``: everything that defines an RL agent and its run, in one dataclass with one set of defaults.

:func:`agents.factory.make_agent` builds the agent from it, :class:`agents.run.AgentRun` trains and evaluates it,
a preset (:mod:`agents.presets`) is an instance of it, and ``python -m agents.train`` overrides a preset's (or
these) values with the flags it is given. ``encoder_kwargs`` may hold a whole encoder config dataclass
(``config=TransformerConfig(...)`` for the fusion / transformer extractors, ``config=ConvNetConfig(...)`` for
the conv one), e.g. the one a behaviour-cloning encoder was built with.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.finetune import FinetuneConfig

DICT_FIELDS = ("encoder_kwargs", "algo_kwargs", "policy_kwargs", "optimizer_kwargs", "env_kwargs")
EVAL_ACTIONS = ("greedy", "sampled", "both")  # "both": the headline metrics sampled, "*_greedy" the argmax ones
EVAL_SEEDS = ("fresh", "fixed")  # fresh: other episodes at every evaluation; fixed: the same ones (before issue 19)


@dataclass(frozen=True)
class AgentConfig:
    """One agent and its run budget. Dict fields merge key by key in :meth:`merged`."""

    env_id: str
    """Gymnasium id: CartPole-v1, lab/CartPoleNoVelHistory-v1, lab/DigitsBandit-v0, BabyAI-GoToLocal-v0, mod:Id"""
    algo: str = "ppo"
    """RL algorithm: ppo, a2c or dqn (DQN needs a Discrete action space)"""
    encoder: str = "mlp"
    """features extractor: mlp (SB3's default: the baseline), transformer, conv (images) or fusion (Dict)"""
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    """the extractor's options, e.g. d_model, pooling, or config= a whole encoder config dataclass"""
    optimizer: str | None = None
    """a lab.optim name; None = SB3's own choice (Adam eps 1e-5 for PPO, RMSprop for A2C)"""
    lr: float | str | None = None
    """learning rate, or 'lin_<value>' (linear to 0); None = SB3's default for the algorithm"""
    weight_decay: float = 0.0
    """weight decay on tensors of rank >= 2 only (lab.optim's rule)"""
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    """extra optimizer keywords (betas, eps, momentum, ...)"""
    n_envs: int = 1
    """parallel training environments"""
    vec_env: str = "dummy"
    """dummy (every env in this process) or subproc (one process per env: worth it for slow envs)"""
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    """other SB3 algorithm arguments (n_steps, batch_size, gamma, clip_range='lin_0.2', ...)"""
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    """other policy arguments (net_arch, activation_fn by name, ...)"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """keywords of gym.make for the training and evaluation envs"""
    normalize_obs: bool = False
    """VecNormalize the float observations; statistics saved beside every model"""
    normalize_reward: bool = False
    """VecNormalize the training rewards too (by a running return's std; RL Zoo's normalize: true is obs + reward)"""
    ortho_init: str | None = None
    """SB3's orthogonal init on: all (the extractor too), heads (MLP heads only), none; None = SB3 decides"""
    finetune: FinetuneConfig | None = None
    """fine-tuning strategy of a pretrained encoder (agents.finetune); None = train everything from scratch"""
    timesteps: int = 100_000
    """total environment steps"""
    eval_freq: int = 10_000
    """environment steps between evaluations (0: only before and after training)"""
    eval_episodes: int = 20
    """fresh episodes per evaluation (bandits: ignored, the whole test split is scored)"""
    eval_envs: int = 100
    """envs stepping the evaluation episodes in lockstep (at most eval_episodes are used)"""
    eval_actions: str | None = None
    """greedy (argmax), sampled, or both; None = both on BabyAI (sampled headline, as the paper), else greedy"""
    final_eval_episodes: int | None = None
    """fresh episodes of the evaluation after training (None = eval_episodes): a final figure wants more"""
    stop_at_metric: float | None = None
    """end training once two consecutive evaluations read at least this value of the headline metric (success
    rate, accuracy, return: the held rule of experiments.curves), then evaluate a last time; None = all timesteps"""
    eval_seeds: str = "fresh"
    """fresh: each evaluation plays episodes no other evaluation plays (a threshold read at one point is checked
    on other episodes at the next); fixed: the same episodes at every evaluation (before issue 19)"""
    name: str = ""
    """a preset's name (empty for an ad-hoc config)"""
    description: str = ""
    """what the recipe is (presets)"""
    reference: str = ""
    """where its measured figures are (presets)"""

    def __post_init__(self) -> None:
        for name in DICT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise TypeError(f"{name} must be a dict, got {type(value).__name__}: {value!r}")
        if self.eval_actions is not None and self.eval_actions not in EVAL_ACTIONS:
            raise ValueError(f"unknown eval_actions {self.eval_actions!r}; choose one of {', '.join(EVAL_ACTIONS)}")
        if self.eval_seeds not in EVAL_SEEDS:
            raise ValueError(f"unknown eval_seeds {self.eval_seeds!r}; choose one of {', '.join(EVAL_SEEDS)}")
        if self.final_eval_episodes is not None and (isinstance(self.final_eval_episodes, bool) or not isinstance(
                self.final_eval_episodes, int) or self.final_eval_episodes < 1):
            raise ValueError(f"final_eval_episodes must be a positive int or None, got {self.final_eval_episodes!r}")
        object.__setattr__(self, "finetune", FinetuneConfig.coerce(self.finetune))
        budgets = {"timesteps": self.timesteps, "eval_episodes": self.eval_episodes, "eval_envs": self.eval_envs,
                   "n_envs": self.n_envs}
        for name, value in budgets.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.eval_freq, bool) or not isinstance(self.eval_freq, int) or self.eval_freq < 0:
            raise ValueError(f"eval_freq must be an int >= 0 (0: evaluate only before and after training), "
                             f"got {self.eval_freq!r}")

    def merged(self, **overrides: Any) -> AgentConfig:
        """A copy with ``overrides`` applied; a dict field merges key by key (``algo_kwargs={"n_epochs": 8}``
        changes only n_epochs). Unknown names are refused with the valid ones."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise TypeError(f"unknown agent option(s) {unknown}; valid: {', '.join(sorted(valid))}")
        for name in DICT_FIELDS:
            if name in overrides and overrides[name] is not None:
                overrides[name] = {**getattr(self, name), **overrides[name]}
        return dataclasses.replace(copy.deepcopy(self), **overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: nested dataclasses (encoder configs, the fine-tuning config) become dicts."""
        return plain(dataclasses.asdict(self))


def plain(value: Any) -> Any:
    """Dataclasses, tuples and classes as JSON-able values (a class by its name)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, type):
        return value.__name__
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (what tyro shows as ``--help``), read from its source."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            docs[node.target.id] = " ".join(str(following.value.value).split())
    return docs
