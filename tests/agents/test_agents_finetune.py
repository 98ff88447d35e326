"""Fine-tuning inside SB3: pretrained weights load, frozen parameters stay put, per-group rates survive SB3."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN, PPO

import envs  # noqa: F401  (registers lab/*)
from agents.callbacks import save_model_atomic
from agents.config import AgentConfig
from agents.extractors import TransformerExtractor
from agents.factory import make_agent
from agents.finetune import FinetuneActorCriticPolicy, FinetuneConfig, load_pretrained
from lab.optim import effective_lrs

ENCODER = dict(d_model=16, num_heads=2, dim_feedforward=32, num_layers=2)
PPO_KWARGS = dict(n_steps=32, batch_size=16, n_epochs=2)
DQN_KWARGS = dict(learning_starts=16, buffer_size=256, batch_size=16, train_freq=4)


def _pretrained_state(seed: int = 123) -> dict[str, torch.Tensor]:
    """A TransformerClassifier (features only) state dict with the agent's options: stands in for a BC encoder."""
    torch.manual_seed(seed)
    return TransformerExtractor(gym.make("CartPole-v1").observation_space, **ENCODER).classifier.state_dict()


def _agent(strategy, algo="ppo", pretrained_head=None, **options):
    pretrained = None if strategy == "scratch" else _pretrained_state()
    algo_kwargs = PPO_KWARGS if algo == "ppo" else DQN_KWARGS
    config = AgentConfig("CartPole-v1", algo, "transformer", encoder_kwargs=ENCODER, algo_kwargs=algo_kwargs,
                         finetune=strategy, **options)
    return make_agent(config, seed=0, device="cpu", pretrained=pretrained, pretrained_head=pretrained_head)


def test_pretrained_encoder_weights_are_loaded_into_the_extractor():
    state = _pretrained_state()
    model = _agent("full")
    loaded = model.policy.features_extractor.backbone.state_dict()
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


def test_dqn_loads_the_pretrained_encoder_into_the_online_and_target_networks():
    state = _pretrained_state()
    model = _agent("full", algo="dqn")
    for network in (model.policy.q_net, model.policy.q_net_target):
        torch.testing.assert_close(network.features_extractor.backbone.state_dict()["encoder.norm.weight"],
                                   state["encoder.norm.weight"], rtol=0, atol=0)


def test_frozen_encoder_does_not_move_even_under_adamw_weight_decay_while_the_heads_train(track):
    model = _agent("frozen", optimizer="adamw", weight_decay=0.5)
    extractor = model.policy.features_extractor
    # SB3 keeps the frozen parameters in its optimizer; they only ever lack a gradient.
    in_optimizer = {id(p) for g in model.policy.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in in_optimizer for p in extractor.parameters())
    encoder, heads = track(extractor), track(model.policy.action_net)
    model.learn(64)
    assert not any(encoder.changed().values())
    assert all(heads.changed().values())


def test_top_strategy_trains_only_the_top_layer_groups_and_the_heads(track):
    model = _agent(FinetuneConfig("top", top_k=1))
    groups = model.policy.features_extractor.layer_groups()  # stem, layer 0, layer 1 + final norm
    assert len(groups) == 3
    trackers = [track(g) for g in groups]
    value_head = track(model.policy.value_net)
    model.learn(64)
    assert not any(trackers[0].changed().values()) and not any(trackers[1].changed().values())
    assert all(trackers[2].changed().values()) and all(value_head.changed().values())


def test_discriminative_rates_survive_sb3s_learning_rate_updates():
    schedule = lambda progress: 1e-3 * (0.5 + 0.5 * progress)  # noqa: E731  (SB3 rewrites every group's lr from this)
    model = _agent(FinetuneConfig("discriminative", lr_ratio=100.0), lr=schedule, optimizer="adamw", weight_decay=0.01)
    optimizer = model.policy.optimizer
    scales_before = [g["lr_scale"] for g in optimizer.param_groups]
    model.learn(96)  # three updates, each preceded by SB3's _update_learning_rate
    lr_now = schedule(model._current_progress_remaining)
    assert lr_now < 1e-3
    assert model.policy.optimizer is optimizer
    assert all(math.isclose(g["lr"], lr_now) for g in optimizer.param_groups)  # SB3 wrote one lr everywhere ...
    assert [g["lr_scale"] for g in optimizer.param_groups] == scales_before  # ... and the spread survived
    by_layer = {g["layer_group"]: g["lr_scale"] for g in optimizer.param_groups}
    assert list(by_layer) == [0, 1, 2, 3]  # stem, layer 0, layer 1 + norm, heads
    assert math.isclose(by_layer[3], 1.0) and math.isclose(by_layer[0], 0.01)
    assert all(a < b for a, b in zip(list(by_layer.values()), list(by_layer.values())[1:]))
    rates = effective_lrs(optimizer)
    assert math.isclose(max(rates) / min(rates), 100.0)
    covered = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert covered == {id(p) for p in model.policy.parameters()}  # every parameter, exactly in one group
    decay = {g["layer_group"] for g in optimizer.param_groups if g["weight_decay"] > 0}
    assert decay  # make_optimizer split decay / no-decay within the layer groups


def test_discriminative_steps_scale_each_groups_update(track):
    """One SGD step: each parameter moves by lr * lr_scale * grad."""
    model = _agent(FinetuneConfig("discriminative", lr_ratio=10.0), optimizer="sgd", lr=0.1)
    policy, optimizer = model.policy, model.policy.optimizer
    obs = torch.randn(8, 4)
    values, log_prob, _ = policy.evaluate_actions(obs, torch.randint(0, 2, (8,)))
    (values.sum() + log_prob.sum()).backward()
    before = {id(p): (p.detach().clone(), p.grad.clone()) for g in optimizer.param_groups for p in g["params"]}
    optimizer.step()
    for group in optimizer.param_groups:
        for p in group["params"]:
            start, grad = before[id(p)]
            torch.testing.assert_close(p.detach(), start - 0.1 * group["lr_scale"] * grad)


@pytest.mark.parametrize("strategy", ["frozen", "discriminative"])
def test_fine_tuned_agents_save_and_load_with_their_groups_and_frozen_parameters(strategy, tmp_path):
    model = _agent(strategy)
    model.learn(32)
    loaded = PPO.load(save_model_atomic(model, tmp_path / "model.zip"), env=model.get_env(), device="cpu")
    assert isinstance(loaded.policy, FinetuneActorCriticPolicy)
    assert loaded.policy.finetune_config == FinetuneConfig(strategy)
    frozen = lambda m: [n for n, p in m.policy.named_parameters() if not p.requires_grad]  # noqa: E731
    assert frozen(loaded) == frozen(model) and (strategy != "frozen" or frozen(model))
    scales = lambda m: [(g["lr_scale"], len(g["params"])) for g in m.policy.optimizer.param_groups]  # noqa: E731
    assert scales(loaded) == scales(model)
    obs = np.stack([gym.make("CartPole-v1").reset(seed=s)[0] for s in range(5)])
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.learn(32)  # the loaded optimizer state matches its groups


def test_a_bc_head_loads_into_action_net_when_the_latent_is_the_extractor_output():
    # A TransformerClassifier's head is Sequential(Dropout, Linear): keys "1.weight", "1.bias".
    head = {"1.weight": torch.randn(2, 16), "1.bias": torch.randn(2)}
    model = _agent("full", pretrained_head=head, policy_kwargs=dict(net_arch=dict(pi=[], vf=[])))
    torch.testing.assert_close(model.policy.action_net.weight, head["1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.policy.action_net.bias, head["1.bias"], rtol=0, atol=0)
    default_arch = _agent("full")
    with pytest.raises(ValueError, match="net_arch=dict\\(pi=\\[\\], vf=\\[\\]\\)"):
        load_pretrained(default_arch, head_state={"weight": torch.randn(2, 16), "bias": torch.randn(2)})


def test_bad_fine_tuning_arguments_say_what_would_work():
    with pytest.raises(ValueError, match="pass pretrained="):
        make_agent(AgentConfig("CartPole-v1", "ppo", "transformer", finetune="frozen"), device="cpu")
    with pytest.raises(ValueError, match="drop pretrained"):
        make_agent(AgentConfig("CartPole-v1", "ppo", "transformer", finetune="scratch"), pretrained=_pretrained_state(),
                   device="cpu")
    with pytest.raises(ValueError, match="needs a lab encoder"):
        make_agent(AgentConfig("CartPole-v1", "ppo", "mlp", finetune="full"), pretrained={}, device="cpu")
    with pytest.raises(ValueError, match="choose one of scratch, full, frozen, top, discriminative"):
        FinetuneConfig("partial")
    with pytest.raises(ValueError, match="do not fit TransformerExtractor.backbone"):
        make_agent(AgentConfig("CartPole-v1", "ppo", "transformer", finetune="full",
                               encoder_kwargs=dict(ENCODER, d_model=32)), device="cpu", pretrained=_pretrained_state())
    with pytest.raises(ValueError, match="top_k=4 but TransformerExtractor has 3 layer groups"):
        _agent(FinetuneConfig("top", top_k=4))


def test_scratch_trains_everything_at_one_rate(track):
    model = _agent("scratch")
    assert all(p.requires_grad for p in model.policy.parameters())
    assert len(set(effective_lrs(model.policy.optimizer))) == 1
    tracker = track(model.policy.features_extractor)
    model.learn(32)
    assert any(tracker.changed().values())


def test_dqn_fine_tuning_freezes_the_online_network_encoder(track):
    model = _agent("frozen", algo="dqn")
    assert isinstance(model, DQN)
    encoder = track(model.policy.q_net.features_extractor)
    model.learn(64)
    assert not any(encoder.changed().values())


@pytest.mark.parametrize("algo,policy_kwargs", [("ppo", {"share_features_extractor": False}), ("dqn", {})])
def test_discriminative_groups_cover_separate_extractors_and_dqn_q_networks(algo, policy_kwargs):
    model = _agent("discriminative", algo=algo, policy_kwargs=policy_kwargs)
    optimized = model.policy.q_net if algo == "dqn" else model.policy
    extractors = (
        [model.policy.q_net.features_extractor] if algo == "dqn"
        else [model.policy.pi_features_extractor, model.policy.vf_features_extractor]
    )
    assert len({id(e) for e in extractors}) == len(extractors)
    for extractor in extractors:  # the pretrained encoder went into each
        torch.testing.assert_close(extractor.backbone.state_dict()["encoder.norm.bias"],
                                   _pretrained_state()["encoder.norm.bias"], rtol=0, atol=0)
    groups = model.policy.optimizer.param_groups
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in optimized.parameters()}
    stem = [g for g in groups if g["layer_group"] == 0]
    stem_params = {id(p) for g in stem for p in g["params"]}
    assert all(id(p) in stem_params for e in extractors for p in e.layer_groups()[0].parameters())
    model.learn(64)


def test_a_bc_fusion_encoder_fine_tunes_frozen_on_babyai(track):
    from lab.fusion import FusionTransformer

    options = dict(d_model=16, num_heads=2, dim_feedforward=32)
    config = AgentConfig("lab/BabyAI-GoToRedBallGrey-v0", "ppo", "fusion", encoder_kwargs=options)
    probe = make_agent(config, device="cpu")
    bc_encoder = FusionTransformer(probe.policy.features_extractor.fusion.config)  # what behaviour cloning trains
    frozen = config.merged(algo_kwargs=PPO_KWARGS, finetune="frozen", policy_kwargs=dict(net_arch=dict(pi=[], vf=[])))
    model = make_agent(frozen, device="cpu", pretrained=bc_encoder.state_dict())
    fusion = model.policy.features_extractor.fusion
    for key, value in bc_encoder.state_dict().items():
        torch.testing.assert_close(fusion.state_dict()[key], value, rtol=0, atol=0)
    encoder, head = track(fusion), track(model.policy.action_net)
    model.learn(32)
    assert not any(encoder.changed().values()) and all(head.changed().values())
