"""The variants of experiment 3: ``<paradigm>-<optimizer>`` at the registry's learning rate, and
``<paradigm>-<optimizer>-tuned`` at the rate Ray Tune chose (``--tune-trials``)."""
from __future__ import annotations

PARADIGMS = ("supervised", "ppo")  # labels (supervised digits) and rewards (PPO on the digits bandit)
TUNED = "-tuned"  # variant suffix of the runs at a tuned rate (experiments.optimizers.tuning)
