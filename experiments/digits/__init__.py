"""Experiment 1, *same data, two signals*: one separable-conv net on scikit-learn's digits, trained with labels
(cross-entropy, supervised task ``digits``) or as a policy on ``lab/DigitsBandit-v0`` (PPO and A2C, reward only).

The same net: the supervised ``DigitsNetConfig`` and the RL ``ConvExtractor`` get one ``ConvNetConfig``
(channels, strides, kernel, plain stem, norm, activation), so the conv body is identical layer for layer.
Group norm in both: batch norm computes a different function in SB3's rollout (eval mode) and update (train
mode) phases. No dropout (the RL extractor has none) and no augmentation (the bandit shows the raw training
images), so the paradigms differ only in what comes after the body and in the training signal. The RL policy
adds ``ConvExtractor``'s projection (Linear + ReLU) and a value head; their sizes are in the report.

The same data: the bandit's training episodes draw from the same 1259 training images, and both paradigms are
scored on the same 359 test images (``lab.data.digits_splits``), deterministically (argmax / greedy action).
"""
from experiments.digits import analysis
from experiments.digits.plan import DigitsBudget, jobs
from experiments.spec import Experiment

EXPERIMENT = Experiment("digits", DigitsBudget, jobs, analysis)
