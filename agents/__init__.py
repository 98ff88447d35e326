"""Stable-Baselines3 agents whose policies use the lab's transformer / conv / fusion encoders.

- :mod:`agents.extractors`: ``TransformerExtractor``, ``ConvExtractor``, ``FusionExtractor`` (SB3 features
  extractors, plugged in through ``policy_kwargs=dict(features_extractor_class=..., features_extractor_kwargs=...)``);
- :mod:`agents.factory`: ``make_agent(algo, env_id, encoder, optimizer=..., ...)`` for PPO, A2C and DQN;
- :mod:`agents.finetune`: pretrained encoders inside SB3 (frozen / top / discriminative / full / scratch);
- :mod:`agents.callbacks`: the lab's TensorBoard tags, atomic checkpoints;
- :mod:`agents.train`: the command line, ``python -m agents.train ENV_ID --encoder transformer ...``.
"""
from agents.extractors import ConvExtractor, FusionExtractor, ObservationSpaceError, TransformerExtractor
from agents.factory import ALGORITHMS, ENCODERS, make_agent, make_env
from agents.finetune import STRATEGIES, FinetuneConfig, load_pretrained

__all__ = [
    "ConvExtractor", "FusionExtractor", "ObservationSpaceError", "TransformerExtractor",
    "ALGORITHMS", "ENCODERS", "make_agent", "make_env",
    "STRATEGIES", "FinetuneConfig", "load_pretrained",
]
