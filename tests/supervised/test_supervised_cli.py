"""The command line: each task end to end into tmp_path, --help, and bad configs failing before any work."""
import dataclasses
import json

import pytest

from lab import tags
from lab.optim import optimizer_names
from supervised.checkpoint import load_checkpoint
from supervised.digits import DigitsTask
from supervised.logger import read_metrics
from supervised.mnist1d import Mnist1dTask
from supervised.train import TASKS, main
from supervised.configs import TrainConfig

TINY = {
    "mnist1d": ["--model.d-model", "16", "--model.num-heads", "2", "--model.num-layers", "1",
                "--model.dim-feedforward", "32", "--model.stride", "4"],
    "digits": ["--model.channels", "8", "16", "--model.strides", "1", "2"],
}


def cli(tmp_path, task, *extra, run_name="run", max_steps=4):
    return [task, *TINY[task], "--train.max-steps", str(max_steps), "--train.batch-size", "32",
            "--train.log-every", "2", "--train.out-dir", str(tmp_path), "--train.run-name", run_name,
            "--train.quiet", "--train.device", "cpu", *extra]


def event_tags(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return events


@pytest.mark.parametrize("task", list(TINY))  # babyai_bc (rollouts, no test split): test_supervised_babyai_bc.py
def test_each_task_runs_end_to_end(tmp_path, task, capsys):
    assert main(cli(tmp_path, task)) == 0
    run_dir = tmp_path / task / "run"
    assert str(run_dir) in capsys.readouterr().out
    assert list(run_dir.glob("events.out.tfevents.*"))
    for name in ("metrics.jsonl", "results.json", "config.json", "last.pt", "best.pt"):
        assert (run_dir / name).is_file(), name

    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["task"] == task
    assert results["steps"] == 4 and results["samples_seen"] == 4 * 32
    assert 0.0 <= results["test_accuracy"] <= 1.0 and results["params"] > 0 and results["flops"] > 0
    assert results["config"]["train"]["max_steps"] == 4
    assert load_checkpoint(run_dir / "last.pt")["step"] == 4

    kinds = {r["kind"] for r in read_metrics(run_dir)}
    assert kinds == {"train", "val", "final"}
    events = event_tags(run_dir)
    for tag in (tags.TRAIN_LOSS, tags.TRAIN_ACCURACY, tags.VAL_LOSS, tags.VAL_ACCURACY, tags.ACCURACY,
                tags.LEARNING_RATE, tags.SPS, tags.LABELS_SEEN, tags.WALL_TIME, tags.EPOCH, tags.GRAD_NORM):
        assert tag in events.Tags()["scalars"], tag
    assert [e.step for e in events.Scalars(tags.TRAIN_LOSS)] == [64, 128]  # global step = samples seen
    assert "hyperparameters/text_summary" in events.Tags()["tensors"]


def test_digits_reports_both_nets(tmp_path):
    assert main(cli(tmp_path, "digits", "--model.block", "plain")) == 0
    results = json.loads((tmp_path / "digits" / "run" / "results.json").read_text())
    assert results["params"] == results["plain_params"] and results["flops"] == results["plain_flops"]
    assert results["separable_params"] < results["plain_params"]
    assert results["separable_flops"] < results["plain_flops"]
    assert results["params_ratio_separable_to_plain"] == results["separable_params"] / results["plain_params"]


@pytest.mark.parametrize("task", list(TASKS))
def test_help_documents_every_field(task, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([task, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(TrainConfig):
        assert f"--train.{field.name.replace('_', '-')}" in text
    config = TASKS[task].config_class()
    for field in dataclasses.fields(config.model):
        assert f"--model.{field.name.replace('_', '-')}" in text


def test_runs_go_under_runs_supervised_by_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # one --logdir (runs/supervised) shows the supervised runs and nothing else
    args = cli(tmp_path, "digits")
    del args[args.index("--train.out-dir"):args.index("--train.out-dir") + 2]
    assert main(args) == 0
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("runs/*/*/*")] == ["runs/supervised/digits/run"]
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "runs/supervised" in capsys.readouterr().out


def test_train_config_docstring_lists_every_optimizer(capsys):
    with pytest.raises(SystemExit):
        main(["digits", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in optimizer_names():
        assert name in text


def test_unknown_task_lists_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["cifar10"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "mnist1d" in err and "digits" in err


@pytest.mark.parametrize("task, args, message", [
    ("digits", ["--train.optimizer", "adamm"], "choose one of sgd, momentum"),
    ("digits", ["--train.batch-size", "0"], "batch_size must be >= 1"),
    ("digits", ["--train.epochs", "0"], "epochs must be >= 1"),
    ("digits", ["--train.lr", "-0.1"], "lr must be a positive number"),
    ("digits", ["--train.optimizer", "sgd", "--train.betas", "0.9", "0.99"], "takes no betas"),
    ("digits", ["--model.block", "dense"], "choose one of separable, plain"),
    ("mnist1d", ["--model.d-model", "30", "--model.num-heads", "4"], "must be a positive multiple of num_heads"),
    ("mnist1d", ["--model.window", "41"], "signal length 40"),
])
def test_bad_config_fails_before_any_work(monkeypatch, capsys, tmp_path, task, args, message):
    def no_data(self):
        raise AssertionError("data must not be loaded for a bad config")

    monkeypatch.setattr(Mnist1dTask, "load_data", no_data)
    monkeypatch.setattr(DigitsTask, "load_data", no_data)
    with pytest.raises(SystemExit) as exit_info:
        main([task, "--train.out-dir", str(tmp_path), *args])
    assert exit_info.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not any(tmp_path.iterdir())  # not even a run directory


def test_batch_larger_than_the_training_split_is_an_error(tmp_path, capsys):
    assert main(cli(tmp_path, "digits", "--train.batch-size", "5000")) == 2
    assert "batch_size 5000 is larger than the training split (1259 samples)" in capsys.readouterr().err


def test_existing_run_directory_is_never_overwritten(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "digits" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "notes.txt").write_text("an earlier run")
    monkeypatch.setattr(DigitsTask, "load_data", lambda self: pytest.fail("data loaded before the run-dir check"))
    assert main(cli(tmp_path, "digits")) == 2
    err = capsys.readouterr().err
    assert str(run_dir) in err and "already exists" in err and "--train.resume" in err
    assert [p.name for p in run_dir.iterdir()] == ["notes.txt"]


def test_resume_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(cli(tmp_path, "digits", "--train.resume", str(tmp_path / "nowhere"))) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_resume_keeps_the_recipe(tmp_path, capsys):
    assert main(cli(tmp_path, "digits", max_steps=4)) == 0
    run_dir = tmp_path / "digits" / "run"
    # runtime fields may change on resume; the recipe may not
    assert main(["digits", "--train.resume", str(run_dir), "--train.quiet"]) == 0
    assert main(["digits", "--train.resume", str(run_dir), "--train.lr", "0.5"]) == 2
    assert "--train.lr 0.5 (saved: 0.003)" in capsys.readouterr().err
    assert main(["mnist1d", "--train.resume", str(run_dir)]) == 2
    assert "is a 'digits' checkpoint" in capsys.readouterr().err
