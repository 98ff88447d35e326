"""The training command line: run directory, TensorBoard tags, results.json, every bad input exiting 2 before a run
directory exists, any Gymnasium id."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gymnasium as gym
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import lab.runtime
from agents.train import Args, main
from lab import tags

FAST = ["--no-progress-bar", "--device", "cpu", "--checkpoint-minutes", "0", "--log-every", "32"]
PPO_TINY = '{"n_steps": 32, "batch_size": 32, "n_epochs": 1}'


def _run(tmp_path: Path, *argv: str) -> dict:
    return main([*argv, "--runs-dir", str(tmp_path), *FAST])


def test_bandit_run_writes_tensorboard_tags_model_and_results(tmp_path):
    results = _run(tmp_path, "lab/DigitsBandit-v0", "--encoder", "conv", "--algo", "a2c", "--timesteps", "128",
                   "--eval-freq", "64", "--algo-kwargs", '{"n_steps": 8}',
                   "--encoder-kwargs", '{"channels": [8, 16], "strides": [1, 2]}')
    run_dir = Path(results["run_dir"])
    assert run_dir.parent == tmp_path / "lab_DigitsBandit-v0"
    assert json.loads((run_dir / "results.json").read_text()) == json.loads(json.dumps(results, default=str))
    assert results["steps"] == 128 and results["episodes"] == 128  # one-step episodes
    final = results["final"]
    assert final["eval_episodes"] == len(gym.make("lab/DigitsBandit-v0", split="test").unwrapped)  # the test split
    assert 0.0 <= final["accuracy"] <= 1.0 and results["metric"] == "accuracy"
    assert final["accuracy"] == pytest.approx(final["mean_return"]) == results["final_metric"]
    assert results["params"] == results["trainable_params"] > 0 and results["steps_per_s"] > 0
    assert results["updates"] == 128 // 8 and results["resumes"] == []  # one A2C update per 8-step rollout
    assert {p.name for p in run_dir.iterdir() if not p.name.startswith("events")} == {
        "model.zip", "results.json", "progress.csv", "config.json"}  # the resume checkpoint is gone once the run has finished

    events = EventAccumulator(str(run_dir)).Reload()
    scalars = set(events.Tags()["scalars"])
    lab_tags = {tags.EPISODIC_RETURN, tags.EPISODES_SEEN, tags.REWARDS_SEEN, tags.SPS, tags.LEARNING_RATE,
                tags.ACCURACY, tags.MEAN_RETURN}
    assert lab_tags <= scalars, lab_tags - scalars
    episodes = events.Scalars(tags.EPISODES_SEEN)
    assert [e.step for e in episodes] == sorted(e.step for e in episodes) and episodes[-1].value == 128
    accuracy = events.Scalars(tags.ACCURACY)
    assert [e.step for e in accuracy] == [0, 64, 128]  # the untrained policy, one evaluation mid-run, the final one
    assert accuracy[-1].value == pytest.approx(final["accuracy"])
    assert [e["steps"] for e in results["curve"]] == [0, 64, 128] and results["curve"][-1] == final
    assert "hyperparameters" in "".join(events.Tags()["tensors"])


def test_an_existing_run_directory_is_never_overwritten(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(lab.runtime.time, "time", lambda: 1_700_000_000.0)  # the run name's timestamp
    (tmp_path / "CartPole-v1" / "CartPole-v1__ppo_mlp__7__1700000000").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["CartPole-v1", "--runs-dir", str(tmp_path), "--seed", "7", *FAST])
    assert exit_info.value.code == 2
    assert "never overwritten" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,match",
    [
        (["CartPole-v1", "--encoder", "conv"], "needs an image"),
        (["CartPole-v1", "--algo-kwargs", "{n_steps: 8}"], "--algo-kwargs must be a JSON object"),
        (["CartPole-v1", "--policy-kwargs", "[1, 2]"], "--policy-kwargs must be a JSON object"),
        (["Pendulum-v1", "--algo", "dqn"], "DQN needs a Discrete action space"),
        (["CartPole-v1", "--encoder", "transformer", "--finetune", "frozen"], "pass pretrained="),
        (["CartPole-v1", "--timesteps", "0"], "timesteps must be a positive int"),
        (["CartPole-v1", "--timesteps", "-5"], "timesteps must be a positive int"),
        (["CartPole-v1", "--n-envs", "0"], "n_envs must be a positive int"),
        (["CartPole-v1", "--eval-episodes", "0"], "eval_episodes must be a positive int"),
        (["CartPole-v1", "--eval-envs", "0"], "eval_envs must be a positive int"),
        (["CartPole-v1", "--eval-freq", "-1"], "eval_freq must be an int >= 0"),
        (["lab/CartPole-v1"], "Did you mean"),
        (["BabyAI-NoSuchLevel-v0", "--encoder", "fusion"], "BabyAI-NoSuchLevel"),
        (["no_such_lab_module:CartPole-v1"], "cannot import module"),
        ([], "give an ENV_ID"),
        (["CartPole-v1", "--preset", "no-such-preset"], ""),  # tyro lists the choices
    ],
)
def test_bad_arguments_exit_2_with_a_message_and_create_no_run_directory(argv, match, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--runs-dir", str(tmp_path), *FAST])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
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


@pytest.mark.parametrize("env_id", ["BabyAI-GoToLocal-v0", "MiniGrid-Empty-5x5-v0"])
def test_any_minigrid_or_babyai_level_trains_with_the_fusion_encoder(env_id, tmp_path):
    results = _run(tmp_path, env_id, "--encoder", "fusion", "--timesteps", "256", "--n-envs", "2",
                   "--eval-freq", "0", "--eval-episodes", "2", "--algo-kwargs", PPO_TINY,
                   "--encoder-kwargs", '{"d_model": 16, "num_heads": 2, "dim_feedforward": 32}')
    assert results["steps"] == 256 and results["metric"] == "success_rate"
    assert Path(results["run_dir"]).parent == tmp_path / env_id
    assert [e["steps"] for e in results["curve"]] == [0, 256]
    assert 0.0 <= results["final"]["success_rate"] <= 1.0 and "success_rate_greedy" in results["final"]


def test_a_module_colon_id_trains_and_names_the_run_after_the_level(tmp_path):
    results = _run(tmp_path, "gymnasium.envs.classic_control:CartPole-v1", "--timesteps", "64", "--eval-freq", "0",
                   "--eval-episodes", "1", "--algo-kwargs", PPO_TINY)
    run_dir = Path(results["run_dir"])
    assert run_dir.parent == tmp_path / "CartPole-v1" and run_dir.name.startswith("CartPole-v1__ppo_mlp__1__")
    assert results["steps"] == 64 and results["env_id"] == "gymnasium.envs.classic_control:CartPole-v1"
    scalars = set(EventAccumulator(str(run_dir)).Reload().Tags()["scalars"])
    assert {"train/value_loss", tags.MEAN_RETURN} <= scalars  # SB3's own keys land in the lab's event file


def test_a_preset_on_another_env_warns_and_the_run_is_named_after_the_env_trained(tmp_path):
    with pytest.warns(UserWarning, match="tuned on CartPole-v1, not lab/CartPoleNoVelHistory-v1"):
        results = _run(tmp_path, "lab/CartPoleNoVelHistory-v1", "--preset", "cartpole-throughput", "--timesteps", "64",
                       "--eval-freq", "0", "--eval-episodes", "1", "--algo-kwargs", PPO_TINY)
    run_dir = Path(results["run_dir"])
    assert run_dir.parent == tmp_path / "lab_CartPoleNoVelHistory-v1"
    assert run_dir.name.startswith("lab_CartPoleNoVelHistory-v1__cartpole-throughput__1__")
    assert results["env_id"] == "lab/CartPoleNoVelHistory-v1" and results["config"]["name"] == "cartpole-throughput"


def test_discriminative_fine_tuning_from_a_checkpoint_logs_each_groups_rate(tmp_path):
    import torch

    from agents.extractors import TransformerExtractor

    encoder = TransformerExtractor(gym.make("CartPole-v1").observation_space).classifier
    torch.save({"model": {"classifier." + k: v for k, v in encoder.state_dict().items()}}, tmp_path / "bc.pt")
    results = _run(tmp_path, "CartPole-v1", "--encoder", "transformer", "--timesteps", "64", "--eval-freq", "0",
                   "--eval-episodes", "1", "--finetune", "discriminative", "--lr-ratio", "10",
                   "--pretrained", str(tmp_path / "bc.pt"), "--pretrained-prefix", "classifier.",
                   "--algo-kwargs", PPO_TINY)
    assert results["hyperparameters"]["policy_class"] == "FinetuneActorCriticPolicy"
    assert results["config"]["finetune"] == {"strategy": "discriminative", "top_k": 1, "lr_ratio": 10.0}
    events = EventAccumulator(results["run_dir"]).Reload()
    rates = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]
             if tag.startswith(tags.LEARNING_RATE + "/group_")}
    assert sorted(rates) == [f"{tags.LEARNING_RATE}/group_{i}" for i in range(3)]  # stem, layer + norm, heads
    assert rates[f"{tags.LEARNING_RATE}/group_2"] == pytest.approx(3e-4)
    assert rates[f"{tags.LEARNING_RATE}/group_0"] == pytest.approx(3e-5)
