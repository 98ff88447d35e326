"""The trainer's behaviour: learning, reproducibility, exact resume, atomic checkpoints, divergence, schedule."""
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from lab.io import atomic_torch_save as atomic_save
from supervised.checkpoint import load_checkpoint
from supervised.configs import ConfigError
from supervised.digits import DigitsTask
from supervised.logger import read_metrics
from supervised.mnist1d import Mnist1dTask
from supervised.task import InMemoryDataset, Task, TaskData
from supervised.train import run
from supervised.trainer import NonFiniteLossError, Trainer, WarmupCosine, epoch_order, fit


TIMING = ("sps", "wall_time_s")  # the only logged values that differ between identical runs


def with_train(config, **overrides):
    """A copy of an experiment config with some train fields replaced."""
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **overrides))


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class FixedBatchDigits(DigitsTask):
    """The same 32 training images every step, no augmentation, no val / test split."""

    def load_data(self):
        train = super().load_data().train
        inputs, targets = train.take(slice(0, 32))
        return TaskData(InMemoryDataset(inputs, targets))

    def augment(self, inputs, generator):
        return inputs


def test_loss_decreases_on_a_fixed_batch(make_digits):
    config = make_digits(max_steps=50, lr=0.03, log_every=1, label_smoothing=0.0, weight_decay=0.0, grad_clip=None,
                         warmup_fraction=0.0, min_lr_ratio=1.0)  # a constant learning rate
    result = fit(FixedBatchDigits(config))
    losses = [r["train_loss"] for r in read_metrics(result.run_dir, "train")]
    assert len(losses) == 50
    assert losses[-1] < 0.2 * losses[0]
    assert read_metrics(result.run_dir, "train")[-1]["train_accuracy"] == 1.0
    assert not (result.run_dir / "best.pt").exists()  # no val split, no best checkpoint


def test_same_seed_gives_identical_metrics_and_other_seed_does_not(make_mnist1d):
    first = run(make_mnist1d(run_name="a"))
    second = run(make_mnist1d(run_name="b"))
    other = run(make_mnist1d(run_name="c", seed=1))
    records = without_timing(read_metrics(first.run_dir))
    assert records == without_timing(read_metrics(second.run_dir))
    assert records != without_timing(read_metrics(other.run_dir))
    assert_same_state(load_checkpoint(first.run_dir / "last.pt")["model"],
                      load_checkpoint(second.run_dir / "last.pt")["model"])


@pytest.mark.parametrize("crash_after", [9, 15])  # mid-epoch 0 (checkpoint at step 8) / epoch 1 (checkpoint 14)
def test_resume_continues_identically(make_mnist1d, monkeypatch, crash_after):
    # 3601 training signals / 256 = 14 steps an epoch: the run crosses an epoch boundary, with dropout,
    # shifts, scaling and noise all drawing random numbers.
    settings = dict(max_steps=20, batch_size=256, checkpoint_every=4, eval_every=6, log_every=3)
    straight = run(make_mnist1d(run_name="straight", **settings))

    config = make_mnist1d(run_name="crashed", **settings)
    real_step, calls = Trainer._train_step, []

    def crash(self, inputs, targets):
        calls.append(1)
        if len(calls) > crash_after:
            raise RuntimeError("simulated crash")
        return real_step(self, inputs, targets)

    monkeypatch.setattr(Trainer, "_train_step", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(config)
    checkpoint_step = load_checkpoint(straight.run_dir.parent / "crashed" / "last.pt")["step"]
    assert checkpoint_step == crash_after // 4 * 4
    monkeypatch.setattr(Trainer, "_train_step", real_step)

    resumed = run(with_train(config, resume=str(straight.run_dir.parent / "crashed")))
    a, b = (load_checkpoint(r.run_dir / "last.pt") for r in (straight, resumed))
    assert_same_state(a["model"], b["model"])
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for key in a["optimizer"]["state"]:
        assert_same_state(a["optimizer"]["state"][key], b["optimizer"]["state"][key])
    assert a["rng"]["data"].equal(b["rng"]["data"])
    # every record, those logged after the resume point included, and nothing left over from the crash
    assert without_timing(read_metrics(straight.run_dir)) == without_timing(read_metrics(resumed.run_dir))
    assert any(r["step"] > checkpoint_step for r in read_metrics(resumed.run_dir, "train"))
    assert resumed.metrics["test_accuracy"] == straight.metrics["test_accuracy"]


def test_library_resume_refuses_a_changed_recipe(make_digits):
    config = make_digits(max_steps=2)
    result = run(config)
    with pytest.raises(ConfigError, match="train.lr: saved 0.003, now 0.1"):
        fit(DigitsTask(with_train(config, resume=str(result.run_dir), lr=0.1)))


def _failing_save(real_save, fail_on_call):
    calls = []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == fail_on_call:
            f.write(b"half a checkpoint")  # a partial write, then the failure
            raise OSError("disk full (simulated)")
        return real_save(obj, f, *args, **kwargs)

    return save


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"step": torch.tensor(1)}, path)
    monkeypatch.setattr(torch, "save", _failing_save(torch.save, fail_on_call=1))
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"step": torch.tensor(2)}, path)
    assert torch.load(path, weights_only=True)["step"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_failed_checkpoint_during_training_keeps_the_last_good_one(make_digits, monkeypatch):
    config = make_digits(max_steps=6, checkpoint_every=2, eval_every=100)
    monkeypatch.setattr(torch, "save", _failing_save(torch.save, fail_on_call=2))  # the checkpoint of step 4
    with pytest.raises(OSError, match="disk full"):
        run(config)
    run_dir = Path(config.train.out_dir) / "digits" / "run"
    assert load_checkpoint(run_dir / "last.pt")["step"] == 2
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


class NaNAfter(nn.Module):
    """Wraps a model; its training-mode forward returns NaN logits from call ``after + 1`` on."""

    def __init__(self, model, after):
        super().__init__()
        self.model, self.after, self.calls = model, after, 0

    def forward(self, x):
        logits = self.model(x)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                return logits * float("nan")
        return logits


def test_nan_loss_stops_with_the_last_good_checkpoint_intact(make_digits, monkeypatch):
    config = make_digits(max_steps=10, checkpoint_every=3, eval_every=100)
    build = DigitsTask.build_model
    monkeypatch.setattr(DigitsTask, "build_model", lambda self: NaNAfter(build(self), after=4))
    with pytest.raises(NonFiniteLossError, match="at step 5 of 10") as error:
        run(config)
    assert error.value.step == 5
    assert error.value.checkpoint.name == "last.pt" and str(error.value.checkpoint) in str(error.value)
    checkpoint = load_checkpoint(error.value.checkpoint)
    assert checkpoint["step"] == 3
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())
    results = json.loads((error.value.checkpoint.parent / "results.json").read_text())
    assert results["status"] == "diverged" and "non-finite loss" in results["error"]


def test_huge_learning_rate_diverges_with_exit_status_1(tmp_path, capsys):
    from supervised.train import main

    args = ["digits", "--model.channels", "8", "16", "--model.strides", "1", "2", "--model.norm", "none",
            "--train.optimizer", "sgd", "--train.lr", "1e6", "--train.grad-clip", "None",
            "--train.warmup-fraction", "0", "--train.max-steps", "30",
            "--train.out-dir", str(tmp_path), "--train.run-name", "run", "--train.quiet", "--train.device", "cpu"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "non-finite" in err and "no checkpoint had been written yet" in err


def test_schedule_warms_up_then_follows_a_cosine_to_the_floor():
    schedule = WarmupCosine(total_steps=100, warmup_steps=10, min_ratio=0.1)
    assert [schedule(s) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert schedule(10) == 1.0
    assert schedule(55) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule(100) == pytest.approx(0.1)
    values = [schedule(s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_schedule_keeps_per_group_learning_rate_ratios():
    from lab.optim import make_optimizer

    groups = [{"params": [nn.Parameter(torch.zeros(2, 2))], "lr": 1e-4},
              {"params": [nn.Parameter(torch.zeros(2, 2))], "lr": 1e-2}]
    optimizer = make_optimizer("adamw", groups)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(20, 5, 0.0))
    for _ in range(12):
        optimizer.step()
        scheduler.step()
        low, high = (g["lr"] for g in optimizer.param_groups)
        assert high / low == pytest.approx(100)


def test_epoch_order_is_a_fixed_permutation_per_seed_and_epoch():
    assert torch.equal(epoch_order(50, seed=0, epoch=3), epoch_order(50, seed=0, epoch=3))
    assert sorted(epoch_order(50, 0, 0).tolist()) == list(range(50))
    assert not torch.equal(epoch_order(50, 0, 0), epoch_order(50, 0, 1))
    assert not torch.equal(epoch_order(50, 0, 0), epoch_order(50, 1, 0))


class DictInputTask(Mnist1dTask):
    """Inputs as a dict of tensors and a custom final evaluation, like behaviour cloning (rollouts, no test)."""

    final_metric_tags = {"success_rate": "eval/success_rate"}

    def load_data(self):
        data = super().load_data()

        def as_dict(split):
            return InMemoryDataset({"signal": split.inputs, "sign": (split.inputs[:, 0] > 0).long()}, split.targets)

        return TaskData(as_dict(data.train), as_dict(data.val), None)

    def build_model(self):
        inner = super().build_model()

        class DictModel(nn.Module):
            def __init__(self):
                super().__init__()
                self.inner, self.sign = inner, nn.Embedding(2, 10)

            def forward(self, inputs):
                return self.inner(inputs["signal"]) + self.sign(inputs["sign"])

        return DictModel()

    def augment(self, inputs, generator):
        return {**inputs, "signal": super().augment(inputs["signal"], generator)}

    def describe_model(self, model):
        return Task.describe_model(self, model)  # parameters only: no single example tensor for FLOPs

    def final_metrics(self, model, data, evaluate):
        assert data.test is None
        return {"success_rate": evaluate(model, data.val)["accuracy"]}


def test_tasks_with_dict_inputs_and_their_own_final_evaluation(make_mnist1d):
    result = fit(DictInputTask(make_mnist1d(max_steps=4)))
    assert 0 <= result.metrics["success_rate"] <= 1 and "test_accuracy" not in result.metrics
    assert read_metrics(result.run_dir, "final")[-1]["success_rate"] == result.metrics["success_rate"]
    assert math.isfinite(read_metrics(result.run_dir, "train")[-1]["train_loss"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_trains_under_bf16_autocast_and_resumes(make_mnist1d, monkeypatch):
    dtypes = []
    forward = nn.Linear.forward
    monkeypatch.setattr(nn.Linear, "forward", lambda self, x: dtypes.append(forward(self, x).dtype) or forward(self, x))
    result = run(make_mnist1d(device="cuda", max_steps=4, checkpoint_every=2))
    assert torch.bfloat16 in dtypes
    assert result.metrics["device"].startswith("cuda") and math.isfinite(result.metrics["test_loss"])
    resumed = run(with_train(make_mnist1d(device="cuda", max_steps=4, checkpoint_every=2), resume=str(result.run_dir)))
    assert resumed.metrics["steps"] == 4
