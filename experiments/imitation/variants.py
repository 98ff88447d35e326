"""The RL variants of experiment 2 (and their names in reports), each one run per seed on the same fusion encoder and
observations: the agents' PPO recipe, and MemoryPPO (``agents.MemoryPPO``): the same PPO with a causal
transformer over the episode's past step embeddings between the encoder and the heads, so the policy remembers
more than the 4 previous actions it sees."""
from __future__ import annotations

RL_NAMES = {"ppo": "PPO", "memory-ppo": "MemoryPPO"}  # --budget.rl-algos name -> name in reports
