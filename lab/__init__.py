"""Shared PyTorch building blocks for comparing supervised learning and RL (imports only torch and numpy)."""
import os as _os

import torch as _torch

if _os.environ.get("LAB_PORTABLE") == "1":  # portable mode (lab.portable): every process of a run, workers too
    _torch.use_deterministic_algorithms(True)

from lab.attention import GatedSelfAttention, MultiHeadAttention, copy_weights_from_torch
from lab.classifier import ClassifierConfig, TransformerClassifier
from lab.conv import ConvNet, ConvNetConfig, DepthwiseSeparableConv, PlainConvNet, SeparableConvNet, count_flops
from lab.decision_transformer import DecisionTransformer, DecisionTransformerConfig
from lab.decoder_only import DecoderOnlyConfig, DecoderOnlyTransformer
from lab.finetune import (
    discriminative_param_groups,
    freeze,
    freeze_to,
    layer_groups,
    train_only,
    trainable_parameters,
    unfreeze,
)
from lab.fusion import FusionConfig, FusionOutput, FusionTransformer, ModalitySpec
from lab.layers import DecoderLayer, EncoderLayer, TransformerConfig, TransformerDecoder, TransformerEncoder
from lab.optim import OPTIMIZERS, make_optimizer, optimizer_names, sb3_optimizer
from lab.positional import LearnedPositionalEncoding, SinusoidalPositionalEncoding, make_positional_encoding
from lab.runtime import autocast, count_parameters, run_name, seed_everything, select_device
from lab.seq2seq import Seq2SeqConfig, Seq2SeqTransformer

__version__ = "0.1.0"
