"""Sequence targets (B, T) with IGNORE_INDEX padding: one label per real position, padding counts nowhere."""
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from supervised.configs import TrainConfig
from supervised.logger import read_metrics
from supervised.task import IGNORE_INDEX, InMemoryDataset, Task, TaskData
from supervised.trainer import evaluate, fit

T, C = 4, 3


class PerPosition(nn.Module):
    """(B, T, 2) features -> (B, T, C) logits, each position on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, C)

    def forward(self, x):
        return self.linear(x)


def sequence_data(n: int = 64) -> InMemoryDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, T, 2, generator=generator)
    targets = (x[..., 0] > 0).long() + (x[..., 1] > 1).long()  # a rule a linear layer can learn
    lengths = torch.randint(1, T + 1, (n,), generator=generator)
    targets[torch.arange(T) >= lengths[:, None]] = IGNORE_INDEX  # right padding
    return InMemoryDataset(x, targets)


def test_evaluate_counts_real_positions_only():
    torch.manual_seed(0)
    model, data = PerPosition(), sequence_data()
    real = data.targets != IGNORE_INDEX
    flat = InMemoryDataset(data.inputs[real][:, None], data.targets[real][:, None])  # one position per row
    padded, unpadded = evaluate(model, data, batch_size=16), evaluate(model, flat, batch_size=16)
    assert padded["loss"] == pytest.approx(unpadded["loss"]) and padded["accuracy"] == pytest.approx(unpadded["accuracy"])


@dataclass
class SequenceConfig:
    train: TrainConfig = field(default_factory=TrainConfig)


class SequenceTask(Task):
    name = "sequence_test"
    config_class = SequenceConfig

    def load_data(self) -> TaskData:
        return TaskData(sequence_data(), val=sequence_data(32))

    def build_model(self) -> nn.Module:
        return PerPosition()


def test_a_sequence_task_trains_and_logs_accuracy_over_labels(tmp_path):
    train = TrainConfig(max_steps=40, batch_size=16, lr=0.05, log_every=40, out_dir=str(tmp_path), run_name="run",
                        quiet=True, device="cpu", warmup_fraction=0.0)
    result = fit(SequenceTask(SequenceConfig(train)))
    record = read_metrics(result.run_dir, "train")[-1]
    assert 0.5 < record["train_accuracy"] <= 1.0  # correct labels / real labels, never / padded positions
    real_labels = int((sequence_data().targets != IGNORE_INDEX).sum())
    assert record["labels_seen"] == 10 * real_labels  # 40 steps of 16 = 10 passes over 64 rows; padding is no label
    assert result.metrics["final_val_accuracy"] > 0.8
