"""Supervised tasks and their one trainer: ``fit(task)`` writes TensorBoard events, metrics, checkpoints and
``results.json`` for any :class:`Task`; ``python -m supervised.train TASK --help`` runs them from the shell."""
from supervised.babyai_bc import (
    BabyAIBCConfig,
    BabyAIBCTask,
    BCDataConfig,
    BCEvalConfig,
    BCModelConfig,
    BCPolicy,
    evaluate_checkpoint,
    evaluate_policy,
    load_bc_policy,
)
from supervised.babyai_dt import (
    BabyAIDecisionTransformer,
    BabyAIDTConfig,
    BabyAIDTTask,
    DecisionTransformerActor,
    DTEvalConfig,
    DTModelConfig,
    evaluate_dt,
    load_dt,
)
from supervised.checkpoint import load_checkpoint, resolve_checkpoint
from supervised.configs import ConfigError, TrainConfig
from supervised.digits import DigitsConfig, DigitsDataConfig, DigitsNetConfig, DigitsTask
from supervised.logger import read_metrics
from supervised.mnist1d import (
    Mnist1dConfig,
    Mnist1dDataConfig,
    Mnist1dTask,
    PatchTransformerClassifier,
    PatchTransformerConfig,
)
from supervised.task import InMemoryDataset, Task, TaskData
from supervised.trainer import (
    NonFiniteLossError,
    RunDirectoryExistsError,
    Trainer,
    TrainResult,
    evaluate,
    fit,
)
