"""MemoryPPO and RecurrentPPO through the lab's seam: the factory builds them with lab extractors and optimizers,
the evaluator plays them with their state, fine-tuning keeps their memory, and an interrupted run resumes
bit-exactly (their episode memory is saved beside the model)."""
from __future__ import annotations

import pytest
import torch

from agents.config import AgentConfig
from agents.evaluation import Evaluator, sb3_actor
from agents.factory import make_agent
from agents.finetune import FinetuneLstmPolicy, FinetuneMemoryPolicy
from agents.memory.policy import MemoryActorCriticPolicy
from agents.run import AgentRun, RunInterrupted, RunOptions
from envs.evaluation import StatefulAct
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

ALGOS = ("memory-ppo", "recurrent-ppo")
SMALL = dict(n_steps=64, batch_size=64, n_epochs=1)


def config(algo: str, **overrides) -> AgentConfig:
    return AgentConfig("lab/CartPoleNoVel-v1", algo, "transformer", n_envs=2, algo_kwargs=SMALL, timesteps=1024,
                       eval_freq=256, eval_episodes=3, **overrides)


@pytest.mark.parametrize("algo", ALGOS)
def test_factory_builds_them_with_lab_extractors_optimizers_and_fine_tuning(algo):
    model = make_agent(config(algo, optimizer="adamw", weight_decay=0.01, finetune="scratch"), seed=0)
    base = MemoryActorCriticPolicy if algo == "memory-ppo" else RecurrentActorCriticPolicy
    assert isinstance(model.policy, base)
    assert isinstance(model.policy, FinetuneMemoryPolicy if algo == "memory-ppo" else FinetuneLstmPolicy)
    assert type(model.policy.features_extractor).__name__ == "TransformerExtractor"
    assert type(model.policy.optimizer).__name__ == "LabAdamW"
    model.get_env().close()


@pytest.mark.parametrize("algo", ALGOS)
def test_evaluator_plays_them_with_their_state_reproducibly(algo):
    cfg = config(algo, eval_actions="sampled")
    model = make_agent(cfg, seed=0)
    assert isinstance(sb3_actor(model, greedy=False, seed=1), StatefulAct)
    evaluator = Evaluator(cfg)
    before, before_gpus = torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    first, second = evaluator(model), evaluator(model)  # on CUDA where present: SB3 samples on the policy's device
    assert first == second and first["eval_episodes"] == 3  # the same episodes, the same sampled actions
    assert torch.equal(before, torch.get_rng_state())  # and the global random states untouched
    after_gpus = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    assert all(torch.equal(a, b) for a, b in zip(before_gpus, after_gpus, strict=True))
    model.get_env().close()


@pytest.mark.parametrize("algo", ALGOS)
def test_an_interrupted_run_resumes_bit_exactly(algo, tmp_path):
    cfg = config(algo)  # on the CPU, where runs are bit-deterministic (CUDA kernels are not)
    whole = AgentRun(cfg, tmp_path / "whole", RunOptions(seed=3, device="cpu")).run()

    class StopEarly(AgentRun):
        def on_progress(self, steps: int, total: int) -> None:
            if steps >= 300:
                self.request_stop()

    with pytest.raises(RunInterrupted):
        StopEarly(cfg, tmp_path / "cut", RunOptions(seed=3, device="cpu")).run()
    resumed = AgentRun.resume(tmp_path / "cut").run()
    assert resumed["resumes"] == [{"steps": 384, "exact": True}]
    assert resumed["curve"] == [{**p, "wall_time_s": q["wall_time_s"]} for p, q in zip(whole["curve"], resumed["curve"])]
    assert (resumed["final"] | {"wall_time_s": 0}) == (whole["final"] | {"wall_time_s": 0})
    assert resumed["updates"] == whole["updates"] and resumed["episodes"] == whole["episodes"]
