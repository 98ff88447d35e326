"""TensorBoard tag names shared by every trainer, agent and experiment.

Supervised and RL runs write the *same* tags for the same quantity so their curves overlay in one
TensorBoard view. Namespaces follow CleanRL: ``charts/`` for progress, ``losses/`` for optimisation,
``eval/`` for held-out evaluation. The x-axis (global step) is always the number of samples seen
(supervised) or environment steps taken (RL); ``SAMPLES`` records the other count where they differ.
"""
from __future__ import annotations

# losses/
TRAIN_LOSS = "losses/train_loss"
VAL_LOSS = "losses/val_loss"
POLICY_LOSS = "losses/policy_loss"
VALUE_LOSS = "losses/value_loss"
ENTROPY = "losses/entropy"

# charts/
LEARNING_RATE = "charts/learning_rate"
SPS = "charts/SPS"  # samples (supervised) or environment steps (RL) per second
TRAIN_ACCURACY = "charts/train_accuracy"
EPISODIC_RETURN = "charts/episodic_return"
EPISODIC_LENGTH = "charts/episodic_length"
GRAD_NORM = "charts/grad_norm"
EPOCH = "charts/epoch"

# eval/ : the quantities the comparison experiments put side by side
ACCURACY = "eval/accuracy"  # test-split accuracy (labels) or bandit accuracy (rewards): same meaning
VAL_ACCURACY = "eval/val_accuracy"
SUCCESS_RATE = "eval/success_rate"
MEAN_RETURN = "eval/mean_return"
SUCCESS_RATE_GREEDY = SUCCESS_RATE + "_greedy"  # argmax actions, next to the sampled headline (BabyAI reports both)
MEAN_RETURN_GREEDY = MEAN_RETURN + "_greedy"

# Counts that make "labels consumed" vs "reward signals consumed" comparable.
LABELS_SEEN = "charts/labels_seen"
REWARDS_SEEN = "charts/rewards_seen"
EPISODES_SEEN = "charts/episodes_seen"
WALL_TIME = "charts/wall_time_s"


# The one table from an evaluation's result keys (supervised final metrics, RL evaluation points) to tags.
EVAL_TAGS = {
    "accuracy": ACCURACY, "success_rate": SUCCESS_RATE, "mean_return": MEAN_RETURN,
    "success_rate_greedy": SUCCESS_RATE_GREEDY, "mean_return_greedy": MEAN_RETURN_GREEDY,
    "episodes": EPISODES_SEEN, "wall_time_s": WALL_TIME,
}


def hparams_markdown(hparams: dict) -> str:
    """Hyperparameters as a markdown table, for ``SummaryWriter.add_text("hyperparameters", ...)``."""
    rows = "\n".join(f"|{key}|{value}|" for key, value in sorted(hparams.items()))
    return f"|param|value|\n|-|-|\n{rows}"
