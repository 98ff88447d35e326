"""The Decision Transformer task on BabyAI: windows of steps, the state encoder, the actor against the model's own
forward, training / evaluation at a target return / export / loading."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from envs.babyai import make_babyai_env
from envs.babyai_fusion import babyai_fusion_inputs
from envs.evaluation import evaluate
from envs.minari_io import write_minari
from lab.fusion import FusionTransformer
from supervised.babyai_bc import BCDataConfig, BCModelConfig, BCPolicy
from supervised.babyai_dt import (BabyAIDecisionTransformer, BabyAIDTConfig, BabyAIDTTask, DecisionTransformerActor,
                                  DTEvalConfig, DTModelConfig, dt_windows, load_dt)
from supervised.logger import read_metrics
from supervised.task import IGNORE_INDEX
from supervised.trainer import fit

pytestmark = pytest.mark.usefixtures("minari_root")  # datasets and their caches under tmp_path
LEVEL = "BabyAI-GoToRedBallGrey-v0"
TINY_ENCODER = BCModelConfig(d_model=16, num_heads=2, num_layers=1, dim_feedforward=32)
TINY_DT = DTModelConfig(encoder=TINY_ENCODER, context=4, d_model=16, num_heads=2, num_layers=1, dim_feedforward=32,
                        dropout=0.0, max_timestep=128)


def test_windows_hold_every_step_once_with_its_return_to_go_and_timestep(mixture):
    data = dt_windows(mixture, context=4)
    inputs, targets = data.take(slice(None))
    real = targets != IGNORE_INDEX
    assert int(real.sum()) == mixture.num_steps  # each step is the label of exactly one window position
    np.testing.assert_array_equal(targets[real].numpy(), mixture.action)  # in order
    np.testing.assert_array_equal(inputs["returns_to_go"][real].numpy(), mixture.returns_to_go().astype(np.float32))
    np.testing.assert_array_equal(inputs["timesteps"][real].numpy(), mixture.step_index())
    np.testing.assert_array_equal(inputs["image"][real].numpy(), mixture.image)
    assert (real.sum(1) == inputs["length"]).all() and (real[:, 0]).all()  # right padding only
    window_episode = np.repeat(np.arange(mixture.num_episodes), np.ceil(mixture.length / 4).astype(int))
    assert (inputs["mission"].numpy() == mixture.mission[window_episode, :inputs["mission"].shape[1]]).all()


def test_the_state_encoder_encodes_each_real_step_as_alone_and_ignores_padding(mixture):
    model = BabyAIDecisionTransformer(TINY_DT).eval()
    inputs, _ = dt_windows(mixture, context=4).take(slice(0, 6))
    encoded = model.dt.state_encoder(inputs)
    for w in range(6):
        for t in range(int(inputs["length"][w])):
            single = {"image": inputs["image"][w:w + 1, t:t + 1], "direction": inputs["direction"][w:w + 1, t:t + 1],
                      "mission": inputs["mission"][w:w + 1]}
            torch.testing.assert_close(model.dt.state_encoder(single)[0, 0], encoded[w, t], atol=1e-5, rtol=0)
        assert (encoded[w, int(inputs["length"][w]):] == 0).all()


@pytest.mark.parametrize("action_history", [0, 3])
def test_the_state_encoder_is_bcs_encoder_for_every_encoder_option(mixture, action_history):
    """The conv stem and the one-token history of the experiments' shared encoder reach the DT's state encoder:
    BC's trained encoder loads into it and both encode every step the same."""
    encoder = BCModelConfig(d_model=16, num_heads=2, num_layers=1, dim_feedforward=32, view_stem=(3, 2),
                            history_as_one_token=True)
    torch.manual_seed(0)
    bc = BCPolicy(encoder, action_history=action_history).eval()
    dt = BabyAIDecisionTransformer(DTModelConfig(encoder=encoder, context=4, d_model=16, num_heads=2, num_layers=1,
                                                 dim_feedforward=32), action_history=action_history).eval()
    dt.encoder.load_state_dict(bc.encoder.state_dict())  # strict: same modules, same shapes
    inputs, _ = dt_windows(mixture, context=4, action_history=action_history).take(slice(0, 6))
    real = torch.arange(4) < inputs["length"][:, None]
    observations = {"image": inputs["image"][real], "direction": inputs["direction"][real],
                    "mission": inputs["mission"][real.nonzero()[:, 0]]}
    if action_history:
        observations["prev_actions"] = inputs["prev_actions"][real]
    with torch.no_grad():
        torch.testing.assert_close(dt.dt.state_encoder(inputs)[real],
                                   bc.encoder(*babyai_fusion_inputs(**observations,
                                                                    history_as_one_token=bool(action_history))).fused)
    assert dt.encoder.config.modalities[0].num_tokens == 9  # the stem's patches, not 49 cells


def test_the_actor_chooses_what_the_model_predicts_from_the_last_k_steps():
    """Episodes played by the actor (its cache of state encodings, its rolling window) and re-scored with the
    model's own forward over the last K steps give the same actions, beyond K steps too."""
    torch.manual_seed(1)
    model = BabyAIDecisionTransformer(TINY_DT).eval()
    actor = DecisionTransformerActor(model, target_return=0.7)
    result = evaluate(lambda: make_babyai_env(LEVEL), actor, 3, num_envs=3)
    assert max(e.length for e in result.episodes) > 2 * TINY_DT.context
    env, k = make_babyai_env(LEVEL), TINY_DT.context
    for episode in result.episodes:
        obs, _ = env.reset(seed=episode.seed)
        seen = []
        for t, action in enumerate(episode.actions):
            seen.append(obs)
            window = seen[-k:]
            states = {key: torch.as_tensor(np.stack([o[key] for o in window]))[None] for key in ("image", "direction")}
            states["mission"] = torch.as_tensor(obs["mission"])[None]
            taken = list(episode.actions[max(0, t - k + 1):t]) + [0]
            steps = torch.arange(max(0, t - k + 1), t + 1)[None]
            with torch.no_grad():
                logits = model.dt(states, torch.as_tensor(taken)[None], torch.full((1, len(window)), 0.7), steps)
            assert int(logits[0, -1].argmax()) == action, (episode.seed, t)
            obs, *_ = env.step(action)


def test_the_actor_lowers_the_return_it_asks_for_by_each_reward():
    actor = DecisionTransformerActor(BabyAIDecisionTransformer(TINY_DT), target_return=1.0)
    actor.reset(2)
    actor.observe(np.array([0.25, 0.0]))
    np.testing.assert_allclose(actor.to_go.numpy(), [0.75, 1.0])


def test_dt_trains_evaluates_at_the_target_return_exports_and_loads(tmp_path, mixture, offline_train):
    bot = mixture.select(np.arange(12))  # predictable actions: the loss can fall far below a random policy's
    write_minari("lab/grey/bot-v0", bot)
    config = BabyAIDTConfig(train=offline_train(tmp_path, max_steps=30, batch_size=4), model=TINY_DT,
                            data=BCDataConfig(minari_dataset="lab/grey/bot-v0", demos=1000, action_history=0,
                                              val_fraction=0.2),
                            eval=DTEvalConfig(episodes=4, num_envs=4, target_return=0.9))
    result = fit(BabyAIDTTask(config))
    losses = [r["train_loss"] for r in read_metrics(result.run_dir, "train")]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    m = result.metrics
    assert m["target_return"] == 0.9 and m["best_return"] == pytest.approx(bot.reward[:9].max())
    assert m["eval_episodes"] == 4 and 0 <= m["success_rate"] <= 1 and m["final_val_accuracy"] is not None
    rollouts = json.loads((result.run_dir / "rollouts.json").read_text())["final"]
    assert len(rollouts["episodes"]) == 4

    encoder = FusionTransformer(BCPolicy(TINY_ENCODER, action_history=0).encoder.config)
    encoder.load_state_dict(torch.load(result.run_dir / "encoder.pt"))  # loads where BC's encoder does
    model, loaded_config = load_dt(result.run_dir)
    assert loaded_config == config and float(model.best_return) == pytest.approx(m["best_return"])
    inputs, _ = dt_windows(mixture, context=4).take(slice(0, 3))
    trained = BabyAIDecisionTransformer(TINY_DT)
    trained.load_state_dict(torch.load(result.run_dir / "decision_transformer.pt"))
    torch.testing.assert_close(model.eval()(inputs), trained.eval()(inputs))
