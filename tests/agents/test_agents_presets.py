"""Presets and AgentConfig: every recipe builds as written and learns; --preset on the command line, explicit flags
winning, dict options merging key by key."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import envs  # noqa: F401  (registers lab/*)
from agents.config import AgentConfig
from agents.factory import make_agent
from agents.finetune import FinetuneConfig
from agents.presets import PRESETS, get_preset, presets_for
from agents.train import agent_config, main, parse_args
from envs.make import make_env
from lab import tags
from lab.layers import TransformerConfig

FAST = ["--no-progress-bar", "--device", "cpu", "--checkpoint-minutes", "0", "--log-every", "32"]
# One short rollout per preset: its own settings except a rollout of about 256 steps.
_PPO_ROLLOUT = lambda n_envs: dict(n_steps=max(256 // n_envs, 8), batch_size=64, n_epochs=2)  # noqa: E731
SHORT_ROLLOUT = {"ppo": _PPO_ROLLOUT, "memory-ppo": _PPO_ROLLOUT, "recurrent-ppo": _PPO_ROLLOUT,
                 "a2c": lambda n_envs: dict(n_steps=max(256 // n_envs, 8))}
SB3_EXTRACTORS = ("flatten", "combined")  # encoder "mlp": SB3's own extractor for Box / Dict observations


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_as_written_and_learns_512_steps(name, track):
    preset = get_preset(name)
    assert isinstance(preset, AgentConfig) and preset.name == name
    as_written = make_agent(preset, seed=0, device="cpu")  # its exact settings are valid together
    extractor = type(as_written.policy.features_extractor).__name__.lower()
    assert extractor.startswith(SB3_EXTRACTORS if preset.encoder == "mlp" else preset.encoder)
    as_written.get_env().close()
    model = make_agent(preset.merged(algo_kwargs=SHORT_ROLLOUT[preset.algo](preset.n_envs)), seed=0, device="cpu")
    extractor = model.policy.features_extractor  # SB3's Flatten has no weights: then the whole policy must train
    tracker = track(extractor if any(True for _ in extractor.parameters()) else model.policy)
    model.learn(512)  # two rollouts: a "lin_" schedule reaches 0 at the end of the run, i.e. at the last update
    assert model.num_timesteps >= 512
    changed = tracker.changed()
    assert sum(changed.values()) > len(changed) // 2, "the preset's extractor should train"
    model.get_env().close()


@pytest.mark.parametrize("name", ["minigrid-memorys9-memory", "minigrid-memorys9-lstm"])
def test_the_minigrid_memory_presets_cut_episodes_at_96_steps_with_the_levels_own_reward_scale(name):
    """As ppo_trxl: a 96-step time limit over the level's max_steps (405 on S9), which sets the success reward
    1 - 0.9 x steps / max_steps; max_steps=96 would make every step cost 4x more."""
    preset = get_preset(name)
    env = make_env(preset.env_id, **preset.env_kwargs)
    env.reset(seed=0)
    assert env.unwrapped.max_steps == 5 * 9 ** 2
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(0)  # turning left forever: never reaches an end
        steps += 1
    assert (steps, truncated) == (96, True)


def test_preset_values_fill_only_what_was_not_given_and_dicts_merge_key_by_key():
    args = parse_args(["lab/CartPoleNoVelHistory-v1", "--preset", "cartpole-novel-deltas", "--n-envs", "4",
                       "--algo-kwargs", '{"n_epochs": 5}'])
    config, preset = agent_config(args), get_preset("cartpole-novel-deltas")
    assert (config.algo, config.encoder, config.timesteps, config.lr) == ("ppo", "transformer", 100_000, "lin_1e-3")
    assert config.n_envs == 4 and config.normalize_obs is True and config.ortho_init == "heads"
    assert config.algo_kwargs == {**preset.algo_kwargs, "n_epochs": 5}
    assert config.encoder_kwargs["deltas"] is True and config.name == "cartpole-novel-deltas"
    assert preset.algo_kwargs["n_epochs"] == 20 and preset.n_envs == 8  # the preset itself is untouched
    assert config.merged() == config  # re-applying nothing changes nothing
    plain = agent_config(parse_args(["CartPole-v1"]))  # no preset: the AgentConfig defaults
    assert plain == AgentConfig("CartPole-v1")
    assert (plain.algo, plain.encoder, plain.timesteps, plain.n_envs, plain.eval_freq) == ("ppo", "mlp", 100_000, 1, 10_000)
    assert plain.algo_kwargs == {}
    with pytest.raises(ValueError, match="choose one of cartpole-novel"):
        get_preset("cartpole")
    assert {p.name for p in presets_for("lab/CartPoleNoVelHistory-v1")} == {"cartpole-novel", "cartpole-novel-deltas"}


def test_merged_merges_dict_options_key_by_key_copies_and_refuses_unknown_names():
    preset = get_preset("babyai-gotoredballgrey")
    tuned = preset.merged(algo_kwargs={"n_epochs": 8}, env_kwargs={"action_history": 2}, n_envs=4)
    assert tuned.algo_kwargs == {**preset.algo_kwargs, "n_epochs": 8} and tuned.env_kwargs == {"action_history": 2}
    assert tuned.n_envs == 4 and tuned.encoder_kwargs == preset.encoder_kwargs
    assert tuned.encoder_kwargs is not preset.encoder_kwargs  # a deep copy: editing it cannot change the preset
    assert preset.algo_kwargs["n_epochs"] == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.n_envs = 2  # type: ignore[misc]
    with pytest.raises(TypeError, match="unknown agent option.*'n_env'.*valid: algo"):
        preset.merged(n_env=4)
    with pytest.raises(ValueError, match="timesteps must be a positive int"):
        preset.merged(timesteps=0)
    with pytest.raises(TypeError, match="algo_kwargs must be a dict"):
        AgentConfig("CartPole-v1", algo_kwargs='{"n_steps": 8}')
    with pytest.raises(ValueError, match="eval_freq must be an int >= 0"):
        AgentConfig("CartPole-v1", eval_freq=-1)
    with pytest.raises(ValueError, match="unknown eval_actions"):
        AgentConfig("CartPole-v1", eval_actions="argmax")


def test_to_dict_is_json_with_encoder_and_finetune_configs_as_dicts():
    encoder = TransformerConfig(d_model=16, num_heads=2)
    config = AgentConfig("lab/BabyAI-GoToRedBallGrey-v0", encoder="fusion", encoder_kwargs=dict(config=encoder),
                         finetune="top")
    assert config.finetune == FinetuneConfig("top")  # a strategy name becomes its config
    plain = json.loads(json.dumps(config.to_dict()))
    assert plain["encoder_kwargs"]["config"] == json.loads(json.dumps(dataclasses.asdict(encoder)))
    assert plain["finetune"] == {"strategy": "top", "top_k": 1, "lr_ratio": 100.0}
    assert plain["env_id"] == "lab/BabyAI-GoToRedBallGrey-v0" and plain["timesteps"] == 100_000


def test_deltas_are_labelled_as_feature_engineering_and_off_without_the_deltas_preset():
    assert "deltas" not in get_preset("cartpole-novel").encoder_kwargs
    assert get_preset("cartpole-novel-deltas").encoder_kwargs["deltas"] is True
    assert "FEATURE ENGINEERING" in get_preset("cartpole-novel-deltas").description


def test_preset_on_the_command_line_with_an_override_normalises_and_saves_the_statistics(tmp_path):
    results = main(["lab/CartPoleNoVelHistory-v1", "--preset", "cartpole-novel-deltas", "--timesteps", "256",
                    "--algo-kwargs", '{"n_epochs": 1}', "--eval-freq", "256", "--eval-episodes", "2",
                    "--eval-envs", "2", "--runs-dir", str(tmp_path), *FAST])
    config, hparams = results["config"], results["hyperparameters"]
    assert config["name"] == "cartpole-novel-deltas" and config["timesteps"] == 256
    assert config["algo_kwargs"] == {**get_preset("cartpole-novel-deltas").algo_kwargs, "n_epochs": 1}
    assert int(hparams["features_dim"]) == 8 * 32 and float(hparams["resolved_learning_rate"]) == pytest.approx(1e-3)
    run_dir = Path(results["run_dir"])
    assert run_dir.name.split("__")[1] == "cartpole-novel-deltas"
    assert {"model.zip", "model.vecnormalize.pkl", "results.json"} <= {p.name for p in run_dir.iterdir()}
    assert [e["steps"] for e in results["curve"]] == [0, 256]  # the untrained policy, then every 256 steps
    assert results["curve"][0]["episodes"] == 0 and results["curve"][-1]["episodes"] > 0
    assert results["final"] == results["curve"][-1] and results["final"]["eval_episodes"] == 2


def test_babyai_preset_reports_sampled_and_greedy_success_and_the_episodes_seen(tmp_path):
    results = main(["lab/BabyAI-GoToRedBallGrey-v0", "--preset", "babyai-gotoredballgrey", "--n-envs", "2",
                    "--timesteps", "64", "--algo-kwargs", '{"n_steps": 16, "batch_size": 32}', "--eval-freq", "32",
                    "--eval-episodes", "2", "--eval-envs", "2", "--runs-dir", str(tmp_path), *FAST])
    assert results["eval_actions"] == "both" and results["metric"] == "success_rate"
    curve = results["curve"]
    assert [e["steps"] for e in curve] == [0, 32, 64]
    for record in curve:
        assert {"success_rate", "success_rate_greedy", "mean_return", "mean_return_greedy", "episodes"} <= set(record)
    assert curve[-1]["episodes"] >= curve[1]["episodes"] >= curve[0]["episodes"] == 0
    assert results["final_metric"] == results["final"]["success_rate"]
    scalars = set(EventAccumulator(results["run_dir"]).Reload().Tags()["scalars"])
    assert {tags.SUCCESS_RATE, tags.SUCCESS_RATE_GREEDY, tags.EPISODES_SEEN, tags.MEAN_RETURN} <= scalars


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
    assert not any(tmp_path.iterdir())
