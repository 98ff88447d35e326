"""EpisodeTransformer / MemoryPPO: the cached step-by-step memory equals one causal forward, never crosses an
episode start, and PPO's update recomputes exactly what the rollout computed."""
from __future__ import annotations

import pytest
import torch

from stable_baselines3.common.env_util import make_vec_env

import envs  # noqa: F401  (registers lab/*)
from agents.memory.ppo import MemoryPPO
from agents.memory.transformer import EpisodeTransformer, MemoryConfig

ATOL = 1e-5


def _model(memory_length: int, num_layers: int = 2, norm_first: bool = True, positional: str = "sinusoidal",
           relative_bias: bool = True, features_dim: int = 5) -> EpisodeTransformer:
    torch.manual_seed(0)
    config = MemoryConfig(memory_length=memory_length, d_model=16, num_heads=2, num_layers=num_layers,
                          dim_feedforward=32, norm_first=norm_first, positional=positional, max_position=64,
                          relative_bias=relative_bias)
    model = EpisodeTransformer(features_dim, config).eval()
    if model.relative_bias is not None:  # random, not ALiBi's monotone init: a wrong distance must show
        with torch.no_grad():
            model.relative_bias.normal_()
    return model


def _run_steps(model: EpisodeTransformer, features: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """features (N, T, F), starts (N, T) -> step-by-step outputs (N, T, D) and layer inputs (N, T, L, D)."""
    state = model.initial_state(features.shape[0])
    outs, inputs = [], []
    with torch.no_grad():
        for t in range(features.shape[1]):
            out, h = model.step(features[:, t], state, starts[:, t])
            outs.append(out)
            inputs.append(h)
    return torch.stack(outs, 1), torch.stack(inputs, 1)


def _no_memory(model: EpisodeTransformer, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    p, c = model.config.memory_length - 1, model.config
    return torch.zeros(batch, c.num_layers, p, c.d_model), torch.zeros(batch, p, dtype=torch.bool)


@pytest.mark.parametrize("memory_length", [4, 40])  # a window shorter than the episode, and the whole episode
@pytest.mark.parametrize("norm_first,positional,relative_bias",
                         [(True, "sinusoidal", True), (True, "none", True), (False, "learned", False),
                          (True, "sinusoidal", False)])
def test_cached_steps_equal_one_causal_forward_over_the_episode(memory_length, norm_first, positional, relative_bias):
    model = _model(memory_length, norm_first=norm_first, positional=positional, relative_bias=relative_bias)
    torch.manual_seed(1)
    n, t = 3, 30
    features = torch.randn(n, t, 5)
    starts = torch.zeros(n, t, dtype=torch.bool)
    starts[:, 0] = True
    starts[1, 11] = starts[2, 5] = starts[2, 23] = True  # episodes end inside the sequence too
    stepped, _ = _run_steps(model, features, starts)
    time = torch.zeros(n, t, dtype=torch.long)
    for i in range(n):  # step index within the episode
        for j in range(1, t):
            time[i, j] = 0 if starts[i, j] else time[i, j - 1] + 1
    with torch.no_grad():
        whole = model.forward_segment(features, time, starts, *_no_memory(model, n))
    torch.testing.assert_close(stepped, whole, atol=ATOL, rtol=0)
    # And the explicit definition, for one layer (with L layers information reaches L * (M - 1) steps back, as
    # in Transformer-XL): step t = the last output of a fresh causal pass over its window of its episode.
    model = _model(memory_length, num_layers=1, norm_first=norm_first, positional=positional,
                   relative_bias=relative_bias)
    stepped, _ = _run_steps(model, features, starts)
    with torch.no_grad():
        for i, j in [(0, 29), (1, 10), (1, 29), (2, 22)]:
            begin = max(int(torch.nonzero(starts[i, : j + 1]).max()), j - memory_length + 1)
            window = model.forward_segment(features[i:i + 1, begin:j + 1], time[i:i + 1, begin:j + 1],
                                           torch.zeros(1, j + 1 - begin, dtype=torch.bool), *_no_memory(model, 1))
            torch.testing.assert_close(window[0, -1], stepped[i, j], atol=ATOL, rtol=0)


def test_segments_with_stored_memory_equal_the_steps():
    """Cut a sequence into segments; each gets the stored layer inputs of the M - 1 steps before it."""
    m, seg = 12, 8
    model = _model(m)
    torch.manual_seed(2)
    n, t = 2, 32
    features = torch.randn(n, t, 5)
    starts = torch.zeros(n, t, dtype=torch.bool)
    starts[:, 0] = True
    starts[0, 19] = True
    stepped, inputs = _run_steps(model, features, starts)
    time = torch.zeros(n, t, dtype=torch.long)
    episode = starts.long().cumsum(1)
    for j in range(1, t):
        time[:, j] = torch.where(starts[:, j], 0, time[:, j - 1] + 1)
    p = m - 1
    for t0 in range(0, t, seg):
        memory = torch.zeros(n, model.config.num_layers, p, 16)
        valid = torch.zeros(n, p, dtype=torch.bool)
        for s in range(p):
            j = t0 - p + s
            if j >= 0:
                memory[:, :, s] = inputs[:, j]
                valid[:, s] = episode[:, j] == episode[:, t0 - 1]
        with torch.no_grad():
            out = model.forward_segment(features[:, t0:t0 + seg], time[:, t0:t0 + seg], starts[:, t0:t0 + seg],
                                        memory, valid)
        torch.testing.assert_close(out, stepped[:, t0:t0 + seg], atol=ATOL, rtol=0)


def test_no_information_crosses_an_episode_start():
    model = _model(64)
    torch.manual_seed(3)
    features = torch.randn(1, 20, 5)
    starts = torch.zeros(1, 20, dtype=torch.bool)
    starts[0, 0] = starts[0, 9] = True
    perturbed = features.clone()
    perturbed[0, :9] = torch.randn(9, 5) * 100  # the previous episode, changed beyond recognition
    a, _ = _run_steps(model, features, starts)
    b, _ = _run_steps(model, perturbed, starts)
    assert not torch.allclose(a[0, :9], b[0, :9])  # the perturbation is real
    torch.testing.assert_close(a[0, 9:], b[0, 9:], atol=0, rtol=0)  # and invisible after the reset: exactly
    fresh, _ = _run_steps(model, features[:, 9:], starts[:, 9:])  # and the same as starting from nothing
    torch.testing.assert_close(a[0, 9:], fresh[0], atol=ATOL, rtol=0)
    # The segment path too: memory of the previous episode (valid or not) and its steps are masked.
    time = torch.cat([torch.arange(9), torch.arange(11)])[None]
    mem = torch.randn(1, model.config.num_layers, 63, 16)
    with torch.no_grad():
        x = model.forward_segment(features, time, starts, mem, torch.ones(1, 63, dtype=torch.bool))
        y = model.forward_segment(perturbed, time, starts, mem * 7, torch.ones(1, 63, dtype=torch.bool))
    torch.testing.assert_close(x[0, 9:], y[0, 9:], atol=0, rtol=0)


@pytest.mark.parametrize("share", [True, False], ids=["one-memory", "critic-own-memory"])
def test_ppo_update_recomputes_what_the_rollout_computed(share):
    """First epoch: evaluate_actions on the buffer's segments gives the rollout's log-probs and values, with the
    memory reaching across segments and across rollouts (episodes longer than both); for a critic with its own
    memory too (its layer inputs stored after the actor's)."""
    env = make_vec_env("lab/CartPoleNoVel-v1", n_envs=4, seed=0)
    model = MemoryPPO("MlpPolicy", env, n_steps=32, batch_size=64, segment_len=8, seed=0, device="cpu",
                      policy_kwargs=dict(share_features_extractor=share,
                                         memory_kwargs=dict(memory_length=20, d_model=16, num_heads=2, num_layers=2)))
    model.learn(2 * 32 * 4)  # two rollouts and updates: the weights changed since the prefix memory was stored
    model.train = lambda: None  # one more rollout, no update after it: the buffer is what the update would see
    model.learn(32 * 4, reset_num_timesteps=False)
    buffer = model.rollout_buffer
    assert buffer.prefix_valid.any()  # some env starts this rollout mid-episode, with memory from the last one
    model.policy.set_training_mode(False)
    checked = 0
    with torch.no_grad():
        for batch in buffer.get(64):
            v, lp, _ = model.policy.evaluate_actions(batch.observations, batch.actions.long().flatten())
            torch.testing.assert_close(lp, batch.old_log_prob, atol=ATOL, rtol=0)
            torch.testing.assert_close(v.flatten(), batch.old_values, atol=ATOL, rtol=0)
            checked += lp.numel()
    assert checked == 32 * 4
