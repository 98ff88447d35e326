"""RL runs for the experiments: :class:`agents.run.AgentRun` into the job's run directory.

What the comparisons add to the lab's one RL run routine, through its hooks: the display's progress, the
experiment's fields in the record (paradigm, variant, FLOPs of one forward pass) and a pretrained encoder (and
head) from a dependency's artifacts (behaviour cloning). Runs evaluate between rollouts, so each point scores the
policy after every update that used the samples counted so far; a run interrupted with a checkpoint continues
from it when the job runs again (``--resume``).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agents.config import AgentConfig
from agents.finetune import read_state_dict
from agents.run import RESULTS_FILE, AgentRun, RunOptions
from envs.make import first_observation
from experiments.engine.jobs import Report
from lab.conv import count_flops


class ExperimentRun(AgentRun):
    """An AgentRun that reports progress to the experiment's display and adds the experiment's fields."""

    report: Report | None = None
    variant: str = ""

    def on_progress(self, steps: int, total: int) -> None:
        if self.report is not None:
            self.report(steps, total)

    def extra_record(self, model: Any) -> dict[str, Any]:
        return {"paradigm": "rl", "variant": self.variant,
                "flops": policy_flops(model, first_observation(self.config.env_id, **self.config.env_kwargs))}


def train_agent(run_dir: Path, report: Report | None, deps: dict[str, dict[str, Any]], *, variant: str, seed: int,
                config: AgentConfig, pretrained_from: str | None = None, load_head: bool = False,
                log_every: int = 1000) -> dict[str, Any]:
    """Train ``config`` with ``seed`` into ``run_dir``; the record the experiment analyses (also ``results.json``).

    A job run again (``--resume``, a retried worker) continues from the run's checkpoint, returns its results if
    it had finished, and otherwise starts afresh (a run cut before its first checkpoint has nothing to keep).

    ``pretrained_from`` names a dependency job whose record has ``encoder_file`` (behaviour cloning) in its
    ``run_dir``; it loads into the policy's encoder, and with ``load_head`` its ``head_file`` into PPO/A2C's
    action head.
    """
    torch.set_num_threads(1)
    run_dir = Path(run_dir)
    results = run_dir / RESULTS_FILE
    if results.exists():  # finished just before an interrupt, before the engine recorded it
        try:
            return json.loads(results.read_text())
        except ValueError as error:  # damaged (e.g. truncated by a crash of an older version): not finished
            results.replace(results.with_name(results.name + ".damaged"))
            print(f"ignored {results} ({error}); the run continues from its checkpoint or starts again",
                  file=sys.stderr)
    if AgentRun.can_resume(run_dir):
        run = ExperimentRun.resume(run_dir)
    else:
        if run_dir.exists():  # interrupted before its first checkpoint: nothing to continue from
            shutil.rmtree(run_dir)
        pretrained = head = None
        if pretrained_from is not None:
            dep = deps[pretrained_from]
            pretrained = read_state_dict(Path(dep["run_dir"]) / dep["encoder_file"])
            head = read_state_dict(Path(dep["run_dir"]) / dep["head_file"]) if load_head else None
        options = RunOptions(seed=seed, device="cpu", eval_between_rollouts=True, log_every=log_every,
                             hparams={"variant": variant, "pretrained_from": pretrained_from, "load_head": load_head})
        run = ExperimentRun(config, run_dir, options, pretrained=pretrained, pretrained_head=head)
    run.report, run.variant = report, variant
    return run.run()


def policy_flops(model: Any, observation: Any) -> int:
    """FLOPs of one policy forward pass on one observation: features, actor and critic heads; for MemoryPPO
    also its episode memory, counted at a step whose memory is full (``memory_length`` past steps)."""
    policy = model.policy
    obs, _ = policy.obs_to_tensor(observation)
    memory = getattr(policy, "memory", None)  # MemoryActorCriticPolicy's EpisodeTransformer
    full_state = None
    if memory is not None:
        was_training = policy.training
        policy.eval()
        with torch.no_grad():  # fill the memory with M copies of this step (eval mode: no random draws)
            full_state = policy.initial_state(1)
            features = policy.extract_features(obs)
            go_on = torch.zeros(1, dtype=torch.bool, device=policy.device)
            for _ in range(memory.config.memory_length):
                memory.step(features, full_state, go_on)
        policy.train(was_training)

    class Forward(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.policy = policy  # a submodule, so count_flops' eval() / train() reach it

        def forward(self, x):
            features = self.policy.extract_features(x)
            if full_state is not None:
                state = type(full_state)(*(t.clone() for t in full_state))
                features, _ = self.policy.memory.step(features, state, torch.zeros_like(state.time, dtype=torch.bool))
            latent_pi, latent_vf = self.policy.mlp_extractor(features)
            return self.policy.action_net(latent_pi), self.policy.value_net(latent_vf)

    return count_flops(Forward().train(policy.training), obs)
