"""benchmarks.babyai_throughput and its torch-ac peer: the parts that decide what is compared (the peer's model
and inputs, in-process envs, one evaluation for both, each side's own random states), without timing anything.
torch-ac itself is an optional extra (".[bench]"): the one test that needs it skips without it."""
from __future__ import annotations

import importlib.util
import json
import multiprocessing
import random

import numpy as np
import pytest
import torch

from agents.factory import make_agent
from agents.presets import get_preset
from benchmarks import babyai_throughput as bench
from benchmarks.torch_ac_peer import (
    InProcessEnvs, ObservationBatch, Preprocessor, StarterACModel, make_peer_env, peer_logits,
)
from envs.evaluation import evaluate, logits_actor

LEVEL = "BabyAI-GoToRedBallGrey-v0"


def test_the_starter_model_has_rl_starter_files_size_and_reads_its_preprocessed_observations():
    model = StarterACModel()
    assert sum(p.numel() for p in model.parameters()) == 101_176  # rl-starter-files' ACModel, --text, no memory
    envs = [make_peer_env(LEVEL, seed) for seed in (0, 1)]
    preprocess = Preprocessor()
    batch = preprocess([env.reset(seed=s)[0] for env, s in zip(envs, (0, 1))])
    assert batch.image.shape == (2, 7, 7, 3) and batch.image.dtype == torch.float32
    assert batch.text.tolist() == [[1, 2, 3, 4, 5]] * 2  # "go to the red ball": ids in order of first sight
    dist, value, memory = model(batch, torch.zeros(2, model.memory_size))
    assert dist.probs.shape == (2, 7) and value.shape == (2,) and memory.shape == (2, 128)
    torch.testing.assert_close(dist.probs.sum(1), torch.ones(2))
    assert isinstance(batch[np.array([1])], ObservationBatch) and len(batch[np.array([1])]) == 1


def test_in_process_envs_step_every_env_here_and_reset_an_ended_one_at_once():
    envs = InProcessEnvs([make_peer_env(LEVEL, seed) for seed in (0, 1)])
    first = envs.reset()
    assert len(first) == 2 and multiprocessing.active_children() == []
    ended = False
    for _ in range(70):  # GoToRedBallGrey truncates after 64 steps at the latest
        obs, reward, terminated, truncated, info = envs.step([6, 6])  # "done": ends nothing, so the episodes time out
        if any(truncated) or any(terminated):
            ended = True
            assert "is_success" in info[0] and obs[0]["image"].shape == (7, 7, 3)  # the next episode's first view
            break
    assert ended


def test_the_peer_is_scored_by_the_lab_evaluation_on_the_same_episodes():
    model = StarterACModel()
    algo = type("Algo", (), {"preprocess_obss": Preprocessor(), "acmodel": model})()
    act = logits_actor(peer_logits(algo), greedy=False, seed=3, device=None)
    result = evaluate(lambda: make_peer_env(LEVEL), act, episodes=4, num_envs=2)
    assert len(result.episodes) == 4 and result.success_rate is not None
    lab_side = evaluate(lambda: make_peer_env(LEVEL), act, episodes=4, num_envs=2)
    assert [e.seed for e in result.episodes] == [e.seed for e in lab_side.episodes]  # the EVAL_SEED rule


class NoisyPeer:
    """Stands in for torch-ac: each update draws from every global random state."""

    num_frames = 64

    def __init__(self) -> None:
        self.updates = 0

    def collect_experiences(self):
        return (torch.rand(3), np.random.rand(3), random.random()), {}

    def update_parameters(self, exps) -> None:
        self.updates += 1


def _tiny_lab(seed: int = 1):
    config = get_preset("babyai-gotoredballgrey").merged(n_envs=2, timesteps=128,
                                                          algo_kwargs=dict(n_steps=32, batch_size=32, n_epochs=1))
    return make_agent(config, seed=seed, device="cpu")


def test_interleaving_with_a_peer_leaves_the_lab_run_as_it_is_alone():
    alone = _tiny_lab()
    alone.learn(128)
    shared, peer = _tiny_lab(), NoisyPeer()
    lab_rng = bench.RandomStates()
    torch.manual_seed(99)  # the peer's construction seeds the globals again
    peer_rng = bench.RandomStates()
    lab_rng.enter()
    lab_clock, peer_clock = bench.Clock(), bench.Clock()
    interleave = bench.Interleave(peer, lab_clock, peer_clock, lab_rng, peer_rng)
    shared.learn(128, callback=interleave)
    interleave.catch_up(128)
    assert peer.updates == 2 and interleave.peer_frames == 128  # the peer kept up, chunk by chunk
    assert len(lab_clock.rounds) == 2 and len(peer_clock.rounds) == 2 and lab_clock.cpu > 0 and peer_clock.cpu > 0
    for key, value in alone.policy.state_dict().items():
        assert torch.equal(value, shared.policy.state_dict()[key]), key


def test_the_lab_side_runs_without_torch_ac_and_reports_frames_speed_and_success(tmp_path, capsys):
    out = tmp_path / "report.json"
    report = bench.main(["--frames", "1000", "--eval-episodes", "4", "--eval-envs", "4", "--no-peer",
                         "--out", str(out)])
    preset = get_preset("babyai-gotoredballgrey")
    assert report["frames"] == preset.n_envs * preset.algo_kwargs["n_steps"]  # rounded up to whole updates
    assert "peer" not in report and json.loads(out.read_text())["lab"]["frames"] == report["frames"]
    lab = report["lab"]
    assert lab["frames_per_cpu_s"] > 0 and 0 <= lab["success_rate"] <= 1 and 0 <= lab["success_rate_greedy"] <= 1
    assert lab["eval_episodes"] == 4 and lab["params"] > 0
    assert "lab preset babyai-gotoredballgrey" in capsys.readouterr().out
    assert bench.matched_frames(150_000, 1024, 2048) == 151_552
    with pytest.raises(SystemExit):
        bench.main(["--preset", "nope", "--no-peer"])


@pytest.mark.skipif(importlib.util.find_spec("torch_ac") is None, reason="torch-ac is the optional extra .[bench]")
def test_the_peer_runs_torch_ac_with_its_envs_in_process():
    # importing torch_ac directly (importorskip) would fail once another test has set a multiprocessing start
    # method: make_peer imports it without letting it set one
    multiprocessing.set_start_method(multiprocessing.get_start_method(), force=True)  # as after such a test
    from benchmarks.torch_ac_peer import make_peer

    algo = make_peer(LEVEL, seed=1, procs=2, frames_per_proc=16, batch_size=16)
    assert isinstance(algo.env, InProcessEnvs) and multiprocessing.active_children() == []
    before = [p.detach().clone() for p in algo.acmodel.parameters()]
    exps, logs = algo.collect_experiences()
    algo.update_parameters(exps)
    assert logs["num_frames"] == 32 and any(not torch.equal(a, b) for a, b in zip(before, algo.acmodel.parameters()))
