"""lab.DecisionTransformer: causality over (R, s, a) tokens, padding, the cached-embedding path, learning to act on
the return it is asked for."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lab.decision_transformer import DecisionTransformer, DecisionTransformerConfig
from lab.layers import TransformerConfig

STATE, ACTIONS, K = 5, 3, 6


def make_dt(**kwargs) -> DecisionTransformer:
    transformer = TransformerConfig(d_model=32, num_heads=4, num_layers=2, dim_feedforward=64, dropout=0.0)
    config = DecisionTransformerConfig(state_dim=8, num_actions=ACTIONS, context=K, max_timestep=50,
                                       transformer=transformer, **kwargs)
    return DecisionTransformer(config, nn.Linear(STATE, 8))  # states (B, K, 5) -> (B, K, 8)


def batch(b: int = 2, k: int = K):
    return (torch.randn(b, k, STATE), torch.randint(0, ACTIONS, (b, k)), torch.rand(b, k),
            torch.arange(k).repeat(b, 1) + 3)


@pytest.mark.parametrize("t", [0, 2, K - 1])
def test_row_t_sees_the_past_and_its_own_return_and_state_never_its_own_action_or_later_steps(t):
    model = make_dt().eval()
    states, actions, rtg, steps = batch()
    logits = model(states, actions, rtg, steps)
    later = states.clone(), actions.clone(), rtg.clone()
    later[0][:, t + 1:] += 1
    later[1][:, t:] = (later[1][:, t:] + 1) % ACTIONS  # a_t itself and everything after step t
    later[2][:, t + 1:] += 1
    changed = model(*later, steps)
    torch.testing.assert_close(changed[:, :t + 1], logits[:, :t + 1], atol=1e-5, rtol=0)
    for index in (0, 2):  # its own state and its own return-to-go do count
        own = [states.clone(), actions, rtg.clone()]
        own[index][:, t] += 1
        assert not torch.allclose(model(*own, steps)[:, t], logits[:, t])


def test_right_padding_leaves_the_real_steps_unchanged():
    model = make_dt().eval()
    states, actions, rtg, steps = batch(k=3)
    short = model(states, actions, rtg, steps)
    pad = lambda x, value: torch.cat([x, torch.full((2, 3, *x.shape[2:]), value, dtype=x.dtype)], dim=1)
    padded = model(pad(states, 7.0), pad(actions, 0), pad(rtg, -5.0), pad(steps, 0))
    torch.testing.assert_close(padded[:, :3], short, atol=1e-5, rtol=0)


def test_cached_state_embeddings_give_the_same_logits():
    model = make_dt().eval()
    states, actions, rtg, steps = batch()
    torch.testing.assert_close(model.forward_embedded(model.state_encoder(states), actions, rtg, steps),
                               model(states, actions, rtg, steps))


def test_bad_inputs_fail_with_the_expected_shape():
    model = make_dt()
    states, actions, rtg, steps = batch()
    with pytest.raises(ValueError, match="exceed the context of 6"):
        model(*batch(k=K + 1))
    with pytest.raises(ValueError, match=r"timesteps must lie in \[0, 50\)"):
        model(states, actions, rtg, steps + 50)
    with pytest.raises(ValueError, match="share a shape"):
        model(states, actions, rtg[:, :2], steps)
    with pytest.raises(ValueError, match="context must be >= 1"):
        DecisionTransformerConfig(state_dim=8, num_actions=3, context=0)


def test_learns_to_act_on_the_return_it_is_asked_for():
    """Logged data where action 2 came with high returns and action 0 with low ones: asked for a high return the
    trained model picks 2, asked for a low one it picks 0, in the same states."""
    torch.manual_seed(0)
    model = make_dt()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        states, _, _, steps = batch(b=16)
        good = torch.rand(16, 1) < 0.5
        rtg = torch.where(good, 0.9, 0.1).expand(16, K)
        actions = torch.where(good, 2, 0).expand(16, K)
        loss = F.cross_entropy(model(states, actions, rtg, steps).flatten(0, 1), actions.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    model.eval()
    states, actions, _, steps = batch(b=16)
    for target, expected in ((0.9, 2), (0.1, 0)):
        chosen = model(states, actions, torch.full((16, K), target), steps)[:, 0].argmax(-1)
        assert (chosen == expected).all()
