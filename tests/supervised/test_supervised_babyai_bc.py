"""Behaviour cloning on BabyAI: the CLI end to end, training and evaluation inputs agreeing, the rollout
evaluator against the bot itself, unseen evaluation seeds, and bad configs failing before any demo is collected."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from minigrid.utils.baby_ai_bot import BabyAIBot
from torch import nn

import supervised.babyai_bc as bc
from envs.babyai import NUM_ACTIONS, make_babyai_env
from envs.babyai_fusion import babyai_fusion_inputs, babyai_modalities
from envs.demos import collect_demos, episode_seed, load_demos
from envs.evaluation import evaluation_seeds
from lab import tags
from lab.fusion import FusionConfig, FusionTransformer
from supervised.babyai_bc import (
    BabyAIBCConfig,
    BabyAIBCTask,
    BCDataConfig,
    BCModelConfig,
    BCPolicy,
    demo_dataset,
    evaluate_checkpoint,
    evaluate_policy,
    load_bc_policy,
)
from supervised.logger import read_metrics
from supervised.train import main

LEVEL = "BabyAI-GoToRedBallGrey-v0"
DEMO_SEED = 3
TINY_MODEL = BCModelConfig(d_model=16, num_heads=2, num_layers=1, dim_feedforward=32)
TINY_CLI = ["--model.d-model", "16", "--model.num-heads", "2", "--model.num-layers", "1",
            "--model.dim-feedforward", "32"]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """20 bot demos of GoToRedBallGrey (base seed 3), collected once for the module."""
    out = tmp_path_factory.mktemp("demos")
    collect_demos(LEVEL, 20, out, seed=DEMO_SEED, progress=False)
    return out


def test_cli_trains_evaluates_and_exports(tmp_path, demo_dir, capsys):
    args = ["babyai_bc", *TINY_CLI, "--data.demo-dir", str(demo_dir), "--data.demo-seed", str(DEMO_SEED),
            "--data.demos", "20", "--data.action-history", "3", "--data.val-fraction", "0.1",
            "--eval.episodes", "10", "--eval.num-envs", "4", "--train.max-steps", "4", "--train.batch-size", "32",
            "--train.log-every", "2", "--train.out-dir", str(tmp_path), "--train.run-name", "run",
            "--train.quiet", "--train.device", "cpu"]
    assert main(args) == 0
    run_dir = tmp_path / "babyai_bc" / "run"
    assert "success_rate" in capsys.readouterr().out
    for name in ("config.json", "metrics.jsonl", "last.pt", "best.pt", "results.json", "encoder.pt", "head.pt",
                 "rollouts.json"):
        assert (run_dir / name).is_file(), name

    results = json.loads((run_dir / "results.json").read_text())
    demos = load_demos(demo_dir)
    assert results["status"] == "completed" and results["steps"] == 4 and results["samples_seen"] == 128
    assert results["eval_episodes"] == 10 and 0 <= results["success_rate"] <= 1
    assert (results["demo_episodes"], results["train_episodes"], results["val_episodes"]) == (20, 18, 2)
    assert results["demo_transitions"] == demos.num_steps == results["train_transitions"] + results["val_transitions"]
    assert results["train_transitions"] == int(demos.length[:18].sum())
    assert results["paper_reference"]["demos_low"] == 8_430 and results["paper_reference"]["demos_high"] == 12_400
    assert results["params"] == results["encoder_params"] + results["head_params"]

    rollouts = json.loads((run_dir / "rollouts.json").read_text())
    assert list(rollouts) == ["final"]  # evaluate_best is off by default: rollouts are never doubled
    episodes = rollouts["final"]["episodes"]
    assert len(episodes) == 10 and np.mean([e["success"] for e in episodes]) == results["success_rate"]
    assert not {e["seed"] for e in episodes} & set(demos.seed.tolist())  # unseen episodes only

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    for tag in (tags.SUCCESS_RATE, tags.MEAN_RETURN, tags.TRAIN_LOSS, tags.VAL_ACCURACY, tags.SPS):
        assert tag in events.Tags()["scalars"], tag
    assert [r["kind"] for r in read_metrics(run_dir, "final")] == ["final"]

    # encoder.pt is a plain FusionTransformer state dict (what an RL policy's fusion encoder loads), head.pt the head
    encoder = FusionTransformer(FusionConfig(babyai_modalities(action_history=3), TINY_MODEL.transformer_config()))
    encoder.load_state_dict(torch.load(run_dir / "encoder.pt", weights_only=True))
    nn.Linear(16, NUM_ACTIONS).load_state_dict(torch.load(run_dir / "head.pt", weights_only=True))

    # the saved policy re-evaluates to the same episodes (greedy rollouts are deterministic)
    policy, config = load_bc_policy(run_dir)
    assert config.data.action_history == 3 and policy.encoder.state_dict().keys() == encoder.state_dict().keys()
    again = evaluate_checkpoint(run_dir, episodes=4)
    assert [(e.seed, e.success, e.length) for e in again.episodes] == \
        [(e["seed"], e["success"], e["length"]) for e in episodes[:4]]

    # a finished run resumes as a no-op (data reloaded, evaluated again)
    assert main(["babyai_bc", "--train.resume", str(run_dir), "--train.quiet"]) == 0


def test_training_rows_are_what_the_env_shows(demo_dir):
    """Each training sample equals the observation the env gives when the demo is replayed, so the policy sees
    the same inputs in training and in rollouts (the mission is cut to its length: same logits)."""
    demos = load_demos(demo_dir, max_episodes=3)
    data = demo_dataset(demos, slice(0, 3), action_history=2)
    env = make_babyai_env(LEVEL, action_history=2)
    rows = []
    for i in range(3):
        obs, _ = env.reset(seed=int(demos.seed[i]))
        for action in demos.action[demos.episode_slice(i)]:
            rows.append(obs)
            obs, *_ = env.step(int(action))
    stacked = {key: torch.as_tensor(np.stack([o[key] for o in rows])) for key in rows[0]}
    inputs, targets = data.take(slice(None))
    assert set(inputs) == set(stacked) and torch.equal(targets, torch.as_tensor(demos.action.astype(np.int64)))
    for key in ("image", "direction", "prev_actions"):
        assert torch.equal(inputs[key].long(), stacked[key].long()), key
    policy = BCPolicy(TINY_MODEL, action_history=2).eval()
    torch.testing.assert_close(policy(inputs), policy(stacked), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cheap_tokens", [False, True], ids=["cells", "patches+one-history-token"])
def test_loss_decreases_on_a_small_fixed_batch(demo_dir, cheap_tokens):
    data = demo_dataset(load_demos(demo_dir), slice(0, 20), action_history=4)
    inputs, targets = data.take(slice(0, 64))
    model = dataclasses.replace(TINY_MODEL, view_stem=(3, 2), history_as_one_token=True) if cheap_tokens else TINY_MODEL
    policy = BCPolicy(model, action_history=4)
    if cheap_tokens:  # the RL preset's encoder: CLS, 9 patch tokens, direction, the words, one history token
        fused_inputs, masks = babyai_fusion_inputs(inputs["image"], inputs["direction"], inputs["mission"],
                                                   inputs["prev_actions"], history_as_one_token=True)
        words = fused_inputs["mission"].shape[1]
        assert policy.encoder(fused_inputs, masks).tokens.shape[1] == 1 + 9 + 1 + words + 1
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = nn.functional.cross_entropy(policy(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


class ShadowBot(nn.Module):
    """The bot as a policy: it plays its own copies of the evaluation episodes (same seeds, same groups of
    ``num_envs`` as the evaluator), checks that each row of the batch is exactly its copy's observation
    (``prev_actions`` included) and answers with the bot's action as one-hot logits."""

    def __init__(self, seeds, num_envs, action_history):
        super().__init__()
        self.groups = [seeds[i:i + num_envs] for i in range(0, len(seeds), num_envs)]
        self.action_history, self.live, self.lengths = action_history, [], {}

    def forward(self, observations):
        if not self.live:  # the evaluator starts the next group of episodes
            for seed in self.groups.pop(0):
                env = make_babyai_env(LEVEL, action_history=self.action_history)
                obs, _ = env.reset(seed=seed)
                self.live.append((seed, env, BabyAIBot(env.unwrapped), obs))
        assert len(observations["image"]) == len(self.live)
        logits, running = torch.zeros(len(self.live), NUM_ACTIONS), []
        for row, (seed, env, bot, obs) in enumerate(self.live):
            assert set(observations) == set(obs)
            for key, value in obs.items():
                np.testing.assert_array_equal(observations[key][row].numpy(), value, err_msg=key)
            action = int(bot.replan())
            logits[row, action] = 1.0
            obs, _, terminated, truncated, _ = env.step(action)
            self.lengths[seed] = self.lengths.get(seed, 0) + 1
            if not (terminated or truncated):
                running.append((seed, env, bot, obs))
        self.live = running
        return logits


@pytest.mark.parametrize("action_history", [0, 3])
def test_evaluator_replays_the_bot_successfully(action_history):
    exclude = {episode_seed(bc.EVAL_SEED, 1)}  # skipped seeds must not shift the groups either
    seeds, skipped = evaluation_seeds(10, bc.EVAL_SEED, exclude)
    bot = ShadowBot(seeds, num_envs=4, action_history=action_history)
    result = evaluate_policy(bot, LEVEL, 10, action_history=action_history, exclude_seeds=exclude, num_envs=4)
    assert skipped == result.skipped_seeds == 1
    assert [e.seed for e in result.episodes] == seeds and not bot.live and not bot.groups
    assert result.success_rate == 1.0 and all(e.reward > 0 for e in result.episodes)
    assert [e.length for e in result.episodes] == [bot.lengths[s] for s in seeds] == \
        [len(e.actions) for e in result.episodes]


def test_evaluation_seeds_follow_the_demo_rule_and_skip_demo_seeds(demo_dir):
    demos = load_demos(demo_dir)
    # evaluating with the demos' own base seed: the 20 demo attempts are skipped, the next attempts are used
    seeds, skipped = evaluation_seeds(5, DEMO_SEED, exclude=demos.seed.tolist())
    assert demos.manifest["attempts"] == 20 and skipped == 20
    assert seeds == [episode_seed(DEMO_SEED, 20 + i) for i in range(5)]
    # the task's own protocol: another base seed, and no evaluation seed is a demo seed
    task = BabyAIBCTask(BabyAIBCConfig(data=BCDataConfig(demos=20, demo_seed=DEMO_SEED, demo_dir=str(demo_dir))))
    assert task.demo_seeds() == set(demos.seed.tolist())
    seeds, _ = evaluation_seeds(500, task.config.eval.seed, task.demo_seeds())
    assert len(set(seeds)) == 500 and not set(seeds) & task.demo_seeds()


def test_sampled_rollouts_are_reproducible():
    policy = BCPolicy(TINY_MODEL, action_history=2)
    a, b = (evaluate_policy(policy, LEVEL, 3, greedy=False, num_envs=3) for _ in range(2))
    assert a.episodes == b.episodes and policy.training  # the module's mode is restored
    with pytest.raises(ValueError, match="'prev_actions'"):
        evaluate_policy(policy, LEVEL, 1, action_history=0)


@pytest.mark.parametrize("args, message", [
    (["--data.level", "BabyAI-GoToRedBal-v0"], "did you mean BabyAI-GoToRedBall-v0"),
    (["--data.level", "MiniGrid-Empty-5x5-v0"], "unknown BabyAI level"),
    (["--data.demos", "0"], "demos must be >= 1"),
    (["--eval.episodes", "0"], "eval episodes must be >= 1"),
    (["--eval.num-envs", "0"], "num_envs must be >= 1"),
    (["--data.action-history", "-1"], "action_history must be >= 0"),
    (["--data.val-fraction", "1.0"], "val_fraction must lie in [0, 1)"),
    (["--data.demos", "1", "--data.val-fraction", "0.5"], "leaves no training episode"),
    (["--eval.seed", "0"], "equals the demo seed"),
    (["--model.d-model", "30"], "must be a positive multiple of num_heads"),
    (["--model.activation", "tanh"], "choose one of relu, gelu"),
])
def test_bad_config_fails_before_any_demo_is_collected(monkeypatch, capsys, tmp_path, args, message):
    monkeypatch.setattr(bc, "collect_demos", lambda *a, **k: pytest.fail("demos collected for a bad config"))
    with pytest.raises(SystemExit) as exit_info:
        main(["babyai_bc", "--train.out-dir", str(tmp_path / "runs"), "--data.demo-dir", str(tmp_path / "demos"),
              *args])
    assert exit_info.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not any(tmp_path.iterdir())  # neither a run directory nor a demo directory
