"""Error paths of ``supervised.train``: damaged checkpoints and metrics, divergence the save guard catches,
and tyro's internal names kept out of every message."""
import json
import re
import shutil

import pytest
import torch
from torch import nn

from supervised.checkpoint import CheckpointError, load_checkpoint
from supervised.digits import DigitsTask
from supervised.logger import read_metrics
from supervised.train import main, parse_args, run
from supervised.trainer import NonFiniteLossError

TINY_DIGITS = ["--model.channels", "8", "16", "--model.strides", "1", "2", "--train.log-every", "2",
               "--train.quiet", "--train.device", "cpu", "--train.num-threads", "1"]
TIMING = ("sps", "wall_time_s")


def digits_args(out_dir, *extra, run_name="run", max_steps=8, batch_size=32):
    return ["digits", *TINY_DIGITS, "--train.max-steps", str(max_steps), "--train.batch-size", str(batch_size),
            "--train.eval-every", "4", "--train.checkpoint-every", "2", "--train.out-dir", str(out_dir),
            "--train.run-name", run_name, "--train.device", "cpu", *extra]  # CPU: bit-exact resumes


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A completed 8-step run: last.pt at step 8; best.pt at step 4 (the val accuracy of step 8 is not higher)."""
    out = tmp_path_factory.mktemp("finished")
    assert main(digits_args(out)) == 0
    run_dir = out / "digits" / "run"
    assert load_checkpoint(run_dir / "best.pt")["step"] == 4 and load_checkpoint(run_dir / "last.pt")["step"] == 8
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    return shutil.copytree(finished_run, tmp_path / "digits" / "run")


DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "garbage": lambda data: b"this is not a checkpoint\n" * 10,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("given", ["run_dir", "file"])
def test_damaged_checkpoint_names_the_file_and_the_intact_one(run_copy, capsys, damage, given):
    last = run_copy / "last.pt"
    last.write_bytes(DAMAGE[damage](last.read_bytes()))
    before = {p.name: p.read_bytes() for p in run_copy.iterdir()}
    assert main(["digits", "--train.resume", str(run_copy if given == "run_dir" else last)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1  # one paragraph
    assert f"checkpoint {last} is damaged" in err
    assert "best.pt (step 4)" in err and f"--train.resume {run_copy / 'best.pt'}" in err
    # nothing restarted or rewritten: the run directory is exactly as it was, and no other run appeared
    assert {p.name: p.read_bytes() for p in run_copy.iterdir()} == before
    assert [p.name for p in run_copy.parent.iterdir()] == ["run"]


def test_no_intact_checkpoint_says_to_start_a_new_run(run_copy, capsys):
    for name in ("last.pt", "best.pt"):
        (run_copy / name).write_bytes(b"")
    assert main(["digits", "--train.resume", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert "it is empty (0 bytes)" in err and "No other checkpoint" in err and "start a new run" in err


def test_a_checkpoint_missing_entries_is_damaged(run_copy):
    checkpoint = load_checkpoint(run_copy / "last.pt")
    del checkpoint["optimizer"], checkpoint["rng"]
    torch.save(checkpoint, run_copy / "last.pt")
    with pytest.raises(CheckpointError, match="it lacks optimizer, rng.*best.pt \\(step 4\\)"):
        load_checkpoint(run_copy / "last.pt")


def test_resume_from_the_intact_checkpoint_continues_identically(finished_run, run_copy):
    (run_copy / "last.pt").write_bytes(b"")
    assert main(["digits", "--train.resume", str(run_copy / "best.pt"), "--train.device", "cpu"]) == 0
    a, b = load_checkpoint(finished_run / "last.pt"), load_checkpoint(run_copy / "last.pt")
    assert b["step"] == 8
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert without_timing(read_metrics(finished_run)) == without_timing(read_metrics(run_copy))


def test_half_written_last_metrics_line_is_dropped_on_resume(finished_run, run_copy, capsys):
    # a run that crashed after step 4's checkpoint (best.pt and last.pt of step 4 are the same state) while
    # writing a metrics line
    shutil.copyfile(run_copy / "best.pt", run_copy / "last.pt")
    with open(run_copy / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"kind": "train", "step": 10, "samples": 320, "train_lo')
    assert read_metrics(run_copy) == read_metrics(finished_run)  # a reader leaves the partial line out too

    assert main(["digits", "--train.resume", str(run_copy), "--train.device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "cut off mid-write" in err and str(run_copy / "metrics.jsonl") in err
    assert without_timing(read_metrics(run_copy)) == without_timing(read_metrics(finished_run))
    assert load_checkpoint(run_copy / "last.pt")["step"] == 8


def test_damaged_metrics_line_before_the_last_is_a_clear_error(run_copy, capsys):
    lines = (run_copy / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[1] = "{not json\n"
    (run_copy / "metrics.jsonl").write_text("".join(lines))
    assert main(["digits", "--train.resume", str(run_copy / "best.pt")]) == 2
    err = capsys.readouterr().err
    assert f"{run_copy / 'metrics.jsonl'} line 2 is not a JSON record" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------ divergence
DIVERGENCE = re.compile(r"training stopped: (?P<what>.+) at step (?P<step>\d+) of (?P<total>\d+) \(epoch \d+\); .*"
                        r"no checkpoint was written from this state; (?P<where>last good checkpoint: \S+|no checkpoint "
                        r"had been written yet)\. Try a lower --train\.lr or --train\.grad-clip\.")


class OverflowingStatistic(nn.Module):
    """Wraps a model; from its training forward number ``after + 1`` on, a buffer that does not touch the loss
    (like BatchNorm running statistics overflowing while the outputs stay finite) holds inf."""

    def __init__(self, model, after):
        super().__init__()
        self.model, self.after, self.calls = model, after, 0
        self.register_buffer("running_stat", torch.zeros(3))

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                self.running_stat.fill_(float("inf"))
        return self.model(x)


def test_save_guard_reports_like_the_loss_check(tmp_path, monkeypatch):
    build = DigitsTask.build_model
    monkeypatch.setattr(DigitsTask, "build_model", lambda self: OverflowingStatistic(build(self), after=5))
    with pytest.raises(NonFiniteLossError) as error:  # checkpoints due at steps 2, 4, 6, 8
        run(parse_args(digits_args(tmp_path, "--train.eval-every", "100")))
    last = tmp_path / "digits" / "run" / "last.pt"
    match = DIVERGENCE.fullmatch(str(error.value))
    assert match, str(error.value)
    assert match["step"] == "6" and match["total"] == "8" and error.value.step == 6
    assert "running_stat" in match["what"] and "the loss was still finite" in match["what"]
    assert match["where"] == f"last good checkpoint: {last}" and error.value.checkpoint == last
    assert load_checkpoint(last)["step"] == 4
    results = json.loads((last.parent / "results.json").read_text())
    assert results["status"] == "diverged" and results["error"] == str(error.value)


def test_batchnorm_overflow_with_a_huge_learning_rate_exits_1_naming_the_last_good_checkpoint(tmp_path, capsys):
    # the reproduction, smaller: lr 1e4 overflows BatchNorm running variances while the loss is finite
    args = digits_args(tmp_path, "--train.lr", "1e4", "--train.checkpoint-every", "5", "--train.eval-every", "100",
                       max_steps=40, batch_size=64)
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err
    match = DIVERGENCE.fullmatch(err.removeprefix("error: "))
    assert match, err
    assert "running_var" in match["what"]
    last = tmp_path / "digits" / "run" / "last.pt"
    assert match["where"] == f"last good checkpoint: {last}"
    checkpoint = load_checkpoint(last)
    assert checkpoint["step"] < int(match["step"])
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())


def test_loss_check_message_has_the_same_form(tmp_path, capsys):
    args = digits_args(tmp_path, "--model.norm", "none", "--train.optimizer", "sgd", "--train.lr", "1e6",
                       "--train.grad-clip", "None", "--train.warmup-fraction", "0", max_steps=30)
    assert main(args) == 1
    match = DIVERGENCE.fullmatch(capsys.readouterr().err.strip().removeprefix("error: "))
    assert match and match["what"].startswith("non-finite loss")


# ------------------------------------------------------------------------------------------------------ tyro
@pytest.mark.parametrize("args", [
    [],
    ["--help"],
    ["digit"],
    ["--train.batch-size", "0", "digits"],
    ["digits", "--train.batch-size", "0"],
    ["digits", "--train.fooo", "1"],
    ["digits", "--model.channels"],
    ["digits", "--model.block", "dense"],
    ["digits", "--help"],
    ["mnist1d", "--model.window", "41"],
    ["mnist1d", "--data.shift", "-1"],
    ["babyai_bc", "--data.demos", "0"],
    ["babyai_bc", "--eval.seed", "3", "--data.demo-seed", "3"],
    ["babyai_bc", "--help"],
])
def test_tyro_internal_names_never_reach_the_user(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == (0 if "--help" in args else 2)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert text.strip() and "dummy" not in text.lower() and "__tyro" not in text


def test_a_config_error_names_the_option_group_and_the_task_help(capsys):
    with pytest.raises(SystemExit):
        main(["digits", "--train.batch-size", "0"])
    err = " ".join(capsys.readouterr().err.split())
    assert "train: batch_size must be >= 1, got 0" in err and "python -m supervised.train digits --help" in err
