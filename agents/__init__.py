"""Stable-Baselines3 agents whose policies use the lab's transformer / conv / fusion encoders.

- :mod:`agents.config`: ``AgentConfig``, one dataclass for an agent and its run (a preset is one);
- :mod:`agents.extractors`: ``TransformerExtractor``, ``ConvExtractor``, ``FusionExtractor`` (SB3 features
  extractors, plugged in through ``policy_kwargs=dict(features_extractor_class=..., features_extractor_kwargs=...)``);
- :mod:`agents.factory`: ``make_agent(config)`` for PPO, A2C and DQN;
- :mod:`agents.run`: ``AgentRun``, the one RL run routine (evaluation, TensorBoard, checkpoints, resume);
- :mod:`agents.evaluation`: SB3 agents scored with :mod:`envs.evaluation` (the protocol behaviour cloning uses);
- :mod:`agents.memory`: ``MemoryPPO``, PPO whose policy attends over the whole episode (``--algo memory-ppo``),
  and sb3-contrib's ``RecurrentPPO`` (LSTM, ``--algo recurrent-ppo``);
- :mod:`agents.finetune`: pretrained encoders inside SB3 (frozen / top / discriminative / full / scratch);
- :mod:`agents.train`: the command line, ``python -m agents.train ENV_ID --encoder transformer ...``.
"""
from agents.config import AgentConfig
from agents.extractors import ConvExtractor, FusionExtractor, ObservationSpaceError, TransformerExtractor
from agents.factory import ALGORITHMS, ENCODERS, make_agent
from agents.finetune import STRATEGIES, FinetuneConfig, load_pretrained
from agents.memory import MemoryPPO
from agents.presets import PRESETS
from agents.run import AgentRun, RunInterrupted, RunOptions

__all__ = [
    "AgentConfig", "ConvExtractor", "FusionExtractor", "ObservationSpaceError", "TransformerExtractor",
    "ALGORITHMS", "ENCODERS", "make_agent", "STRATEGIES", "FinetuneConfig", "load_pretrained", "PRESETS",
    "AgentRun", "MemoryPPO", "RunInterrupted", "RunOptions",
]
