"""The training command line: run directory, TensorBoard tags, results.json, evaluation kinds, bad arguments."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.train import Args, evaluate, main, make_eval_env, run_directory
from lab import tags

FAST = ["--no-progress-bar", "--device", "cpu", "--checkpoint-freq", "64", "--log-every", "32"]


def _run(tmp_path: Path, *argv: str) -> dict:
    return main([*argv, "--runs-dir", str(tmp_path), *FAST])


def test_bandit_run_writes_tensorboard_tags_checkpoints_model_and_results(tmp_path):
    results = _run(tmp_path, "lab/DigitsBandit-v0", "--encoder", "conv", "--algo", "a2c", "--timesteps", "128",
                   "--eval-freq", "64", "--algo-kwargs", '{"n_steps": 8}',
                   "--encoder-kwargs", '{"channels": [8, 16], "strides": [1, 2]}')
    run_dir = Path(results["run_dir"])
    assert run_dir.parent == tmp_path / "lab_DigitsBandit-v0"
    assert json.loads((run_dir / "results.json").read_text()) == json.loads(json.dumps(results, default=str))
    assert results["steps"] == 128 and results["episodes"] == 128  # one-step episodes
    final = results["final_eval"]
    assert final["episodes"] == len(gym.make("lab/DigitsBandit-v0", split="test").unwrapped)  # the test split, once
    assert 0.0 <= final["accuracy"] <= 1.0
    assert final["accuracy"] == pytest.approx(final["mean_return"])
    assert results["params"] == results["trainable_params"] > 0 and results["steps_per_s"] > 0
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"model_64_steps.zip", "model_128_steps.zip"}
    assert (run_dir / "model.zip").is_file()

    events = EventAccumulator(str(run_dir)).Reload()
    scalars = set(events.Tags()["scalars"])
    lab_tags = {tags.EPISODIC_RETURN, tags.EPISODES_SEEN, tags.REWARDS_SEEN, tags.SPS, tags.LEARNING_RATE,
                tags.ACCURACY, tags.MEAN_RETURN, tags.SUCCESS_RATE}
    assert lab_tags <= scalars, lab_tags - scalars
    assert "train/value_loss" in scalars  # SB3's own keys land in the same event file
    episodes = events.Scalars(tags.EPISODES_SEEN)
    assert [e.step for e in episodes] == sorted(e.step for e in episodes) and episodes[-1].value == 128
    accuracy = events.Scalars(tags.ACCURACY)
    assert [e.step for e in accuracy] == [64, 128, 128]  # two evaluations during training, then the final model's
    assert accuracy[-1].value == pytest.approx(final["accuracy"])
    assert [e["step"] for e in results["eval_history"]] == [64, 128]
    assert "hyperparameters" in "".join(events.Tags()["tensors"])


def test_an_existing_run_directory_is_never_overwritten(tmp_path, capsys):
    args = Args("CartPole-v1", runs_dir=str(tmp_path), seed=7)
    run_directory(args).mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["CartPole-v1", "--runs-dir", str(tmp_path), "--seed", "7", *FAST])
    assert exit_info.value.code == 2
    assert "never overwritten" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,match",
    [
        (["CartPole-v1", "--encoder", "conv"], "needs an image"),
        (["CartPole-v1", "--algo-kwargs", "{n_steps: 8}"], "--algo-kwargs must be a JSON object"),
        (["Pendulum-v1", "--algo", "dqn"], "DQN needs a Discrete action space"),
        (["CartPole-v1", "--encoder", "transformer", "--finetune", "frozen"], "pass pretrained="),
    ],
)
def test_bad_arguments_exit_2_with_a_message_and_create_no_run_directory(argv, match, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--runs-dir", str(tmp_path), *FAST])
    assert exit_info.value.code == 2
    assert match in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for field in dataclasses.fields(Args):
        if field.name != "env_id":
            assert "--" + field.name.replace("_", "-") in out, field.name
    assert "ENV_ID" in out


def test_babyai_evaluation_reports_a_success_rate():
    from agents.factory import make_agent

    model = make_agent("ppo", "lab/BabyAI-GoToRedBallGrey-v0", "fusion", device="cpu",
                       encoder_kwargs={"d_model": 16, "num_heads": 2})
    env, kind, episodes = make_eval_env("lab/BabyAI-GoToRedBallGrey-v0", {}, seed=0, episodes=2)
    result = evaluate(model, env, episodes, kind)
    assert kind == "babyai" and result["episodes"] == 2 and 0.0 <= result["success_rate"] <= 1.0
    assert "accuracy" not in result


def test_bandit_evaluation_is_the_exact_test_split_accuracy():
    from agents.factory import make_agent

    model = make_agent("ppo", "lab/DigitsBandit-v0", "conv", device="cpu", seed=0,
                       encoder_kwargs={"channels": (8, 16), "strides": (1, 2)})
    env, kind, episodes = make_eval_env("lab/DigitsBandit-v0", {}, seed=0, episodes=5)
    result = evaluate(model, env, episodes, kind)
    split = gym.make("lab/DigitsBandit-v0", split="test").unwrapped
    predicted, _ = model.predict(split.x, deterministic=True)
    assert kind == "bandit" and result["episodes"] == len(split)
    assert result["accuracy"] == pytest.approx(float(np.mean(predicted == split.y)))


def test_discriminative_fine_tuning_from_a_checkpoint_logs_each_groups_rate(tmp_path):
    import torch

    from agents.extractors import TransformerExtractor

    encoder = TransformerExtractor(gym.make("CartPole-v1").observation_space).classifier
    torch.save({"model": {"classifier." + k: v for k, v in encoder.state_dict().items()}}, tmp_path / "bc.pt")
    results = _run(tmp_path, "CartPole-v1", "--encoder", "transformer", "--timesteps", "64", "--eval-freq", "0",
                   "--eval-episodes", "1", "--finetune", "discriminative", "--lr-ratio", "10",
                   "--pretrained", str(tmp_path / "bc.pt"), "--pretrained-prefix", "classifier.",
                   "--algo-kwargs", '{"n_steps": 32, "batch_size": 32, "n_epochs": 1}')
    assert results["hyperparameters"]["policy_class"] == "FinetuneActorCriticPolicy"
    events = EventAccumulator(results["run_dir"]).Reload()
    rates = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]
             if tag.startswith(tags.LEARNING_RATE + "/group_")}
    assert sorted(rates) == [f"{tags.LEARNING_RATE}/group_{i}" for i in range(3)]  # stem, layer + norm, heads
    assert rates[f"{tags.LEARNING_RATE}/group_2"] == pytest.approx(3e-4)
    assert rates[f"{tags.LEARNING_RATE}/group_0"] == pytest.approx(3e-5)
