"""Bad input fails before any work, naming what would be valid; nothing written before is ever overwritten."""
from __future__ import annotations

import pytest

from experiments.cli import COMMANDS, main, option_names
from lab.optim import optimizer_names


def run(capsys, *argv: str) -> tuple[int, str]:
    """Exit status and stdout + stderr of the command line."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_unknown_experiment_lists_the_valid_ones(capsys, tmp_path):
    code, err = run(capsys, "digitz", "--out", str(tmp_path))
    assert code == 2
    assert all(name in err for name in COMMANDS)
    assert not any(tmp_path.iterdir())


def test_unknown_option_lists_the_valid_options(capsys, tmp_path):
    code, err = run(capsys, "digits", "--fulll", "--out", str(tmp_path))
    assert code == 2
    assert "--fulll" in err and "--full" in err and "--budget.samples" in err and "--seeds" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv, expected", [
    (["digits", "--seeds", "0"], "--seeds must be a positive number"),
    (["digits", "--seeds", "-2"], "--seeds must be a positive number"),
    (["optimizers", "--budget.optimizers", "adam", "adamz"], ", ".join(optimizer_names())),
    (["imitation", "--budget.level", "BabyAI-Nope-v0"], "BabyAI-GoToRedBallGrey-v0, BabyAI-GoToRedBall-v0"),
    (["finetune", "--budget.strategies", "melt"], "scratch, full, frozen, top, discriminative"),
    (["digits", "--budget.algos", "dqn"], "ppo, a2c"),
    (["ladder", "--budget.paradigms", "dagger"], "bc, ppo"),
])
def test_bad_values_fail_with_the_valid_choices_before_any_work(capsys, tmp_path, argv, expected):
    code, err = run(capsys, *argv, "--out", str(tmp_path / "out"))
    assert code == 2 and expected in err
    assert not (tmp_path / "out").exists()


def test_an_output_directory_holding_a_run_is_refused_and_left_untouched(capsys, tmp_path):
    old = tmp_path / "runs" / "digits" / "supervised" / "seed1"
    old.mkdir(parents=True)
    (old / "results.json").write_text("{}")
    code, err = run(capsys, "flagship", "--out", str(tmp_path / "runs"))
    assert code == 2 and "nothing is overwritten" in err and f"{tmp_path / 'runs'}-2" in err
    assert (old / "results.json").read_text() == "{}"
    assert not (tmp_path / "runs" / "imitation").exists()  # refused before any work, for both experiments


def test_help_lists_the_experiments(capsys):
    code, out = run(capsys, "--help")
    assert code == 0 and all(name in out for name in COMMANDS)


def test_every_budget_field_is_an_option():
    names = option_names(COMMANDS["flagship"])
    assert {"--full", "--seeds", "--out", "--workers", "--digits.samples", "--imitation.rl-steps"} <= set(names)
