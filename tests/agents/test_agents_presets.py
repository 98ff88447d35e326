"""Presets: every recipe builds as written and learns; --preset on the command line, explicit flags winning."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import envs  # noqa: F401  (registers lab/*)
from agents.callbacks import SUCCESS_RATE_GREEDY
from agents.factory import make_agent
from agents.presets import PRESETS, get_preset, presets_for
from agents.train import Args, main
from lab import tags

FAST = ["--no-progress-bar", "--device", "cpu", "--checkpoint-freq", "0", "--log-every", "32"]
# One short rollout per preset: its own settings except a rollout of about 256 steps.
SHORT_ROLLOUT = {"ppo": lambda n_envs: dict(n_steps=max(256 // n_envs, 8), batch_size=64, n_epochs=2),
                 "a2c": lambda n_envs: dict(n_steps=max(256 // n_envs, 8))}


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_as_written_and_learns_512_steps(name, track):
    preset = get_preset(name)
    as_written = make_agent(**preset.agent_kwargs(seed=0, device="cpu"))  # its exact settings are valid together
    assert type(as_written.policy.features_extractor).__name__.lower().startswith(preset.encoder)
    as_written.get_env().close()
    model = make_agent(**preset.agent_kwargs(seed=0, device="cpu",
                                             algo_kwargs=SHORT_ROLLOUT[preset.algo](preset.n_envs)))
    tracker = track(model.policy.features_extractor)
    model.learn(512)  # two rollouts: a "lin_" schedule reaches 0 at the end of the run, i.e. at the last update
    assert model.num_timesteps >= 512
    changed = tracker.changed()
    assert sum(changed.values()) > len(changed) // 2, "the preset's extractor should train"
    model.get_env().close()


def test_preset_values_fill_only_what_was_not_given_and_dicts_merge_key_by_key():
    args = Args("lab/CartPoleNoVelHistory-v1", preset="cartpole-novel-deltas", n_envs=4,
                algo_kwargs='{"n_epochs": 5}')
    preset = get_preset("cartpole-novel-deltas")
    assert (args.algo, args.encoder, args.timesteps, args.lr) == ("ppo", "transformer", 100_000, "lin_1e-3")
    assert args.n_envs == 4 and args.normalize_obs is True and args.ortho_init == "heads"
    assert json.loads(args.algo_kwargs) == {**preset.algo_kwargs, "n_epochs": 5}
    assert json.loads(args.encoder_kwargs)["deltas"] is True
    assert dataclasses.replace(args, seed=3).algo_kwargs == args.algo_kwargs  # re-applying changes nothing
    plain = Args("CartPole-v1")  # no preset: the built-in defaults
    assert (plain.algo, plain.encoder, plain.timesteps, plain.n_envs, plain.eval_freq) == ("ppo", "mlp", 100_000, 1, 10_000)
    assert plain.algo_kwargs == "{}"
    with pytest.raises(ValueError, match="choose one of cartpole-novel"):
        Args("CartPole-v1", preset="cartpole")
    assert {p.name for p in presets_for("lab/CartPoleNoVelHistory-v1")} == {"cartpole-novel", "cartpole-novel-deltas"}


def test_deltas_are_labelled_as_feature_engineering_and_off_without_the_deltas_preset():
    assert "deltas" not in get_preset("cartpole-novel").encoder_kwargs
    assert get_preset("cartpole-novel-deltas").encoder_kwargs["deltas"] is True
    assert "FEATURE ENGINEERING" in get_preset("cartpole-novel-deltas").description


def test_preset_on_the_command_line_with_an_override_normalises_and_saves_the_statistics(tmp_path):
    results = main(["lab/CartPoleNoVelHistory-v1", "--preset", "cartpole-novel-deltas", "--timesteps", "256",
                    "--algo-kwargs", '{"n_epochs": 1}', "--eval-freq", "256", "--eval-episodes", "2",
                    "--eval-envs", "2", "--runs-dir", str(tmp_path), *FAST])
    hparams = results["hyperparameters"]
    assert results["preset"] == "cartpole-novel-deltas" and hparams["timesteps"] == 256
    assert json.loads(hparams["algo_kwargs"]) == {**get_preset("cartpole-novel-deltas").algo_kwargs, "n_epochs": 1}
    assert hparams["features_dim"] == 8 * 32 and hparams["resolved_learning_rate"] == pytest.approx(1e-3)
    run_dir = Path(results["run_dir"])
    assert run_dir.name.split("__")[1] == "cartpole-novel-deltas"
    assert {"model.zip", "model.vecnormalize.pkl"} <= {p.name for p in run_dir.iterdir()}
    assert [e["step"] for e in results["eval_history"]] == [256]
    assert results["eval_history"][0]["episodes"] > 0 and results["final_eval"]["episodes"] == 2


def test_babyai_preset_reports_sampled_and_greedy_success_and_the_episodes_seen(tmp_path):
    results = main(["lab/BabyAI-GoToRedBallGrey-v0", "--preset", "babyai-gotoredballgrey", "--n-envs", "2",
                    "--timesteps", "64", "--algo-kwargs", '{"n_steps": 16, "batch_size": 32}', "--eval-freq", "32",
                    "--eval-episodes", "2", "--eval-envs", "2", "--runs-dir", str(tmp_path), *FAST])
    assert results["eval_actions"] == "both"
    history = results["eval_history"]
    assert [e["step"] for e in history] == [32, 64]
    for record in history:
        assert {"success_rate", "success_rate_greedy", "mean_return", "mean_return_greedy", "episodes"} <= set(record)
    assert history[-1]["episodes"] >= history[0]["episodes"]
    assert {"success_rate", "success_rate_greedy"} <= set(results["final_eval"])
    scalars = set(EventAccumulator(results["run_dir"]).Reload().Tags()["scalars"])
    assert {tags.SUCCESS_RATE, SUCCESS_RATE_GREEDY, tags.EPISODES_SEEN, tags.MEAN_RETURN} <= scalars


def test_help_lists_the_presets(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in PRESETS:
        assert name in out


def test_a_bad_json_override_of_a_preset_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["lab/CartPoleNoVelHistory-v1", "--preset", "cartpole-novel", "--algo-kwargs", "{n_epochs: 1}",
              "--runs-dir", str(tmp_path), *FAST])
    assert exit_info.value.code == 2
    assert "--algo-kwargs must be a JSON object" in capsys.readouterr().err
