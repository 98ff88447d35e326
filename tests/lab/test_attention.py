import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lab.attention import GatedSelfAttention, MultiHeadAttention, copy_weights_from_torch

E, H, B = 32, 4, 3


def pair(dropout: float = 0.0):
    ref = nn.MultiheadAttention(E, H, dropout=dropout, batch_first=True)
    return ref, copy_weights_from_torch(MultiHeadAttention(E, H, dropout=dropout), ref)


def inputs(q_len=5, k_len=7):
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, q_len, E, generator=g), torch.randn(B, k_len, E, generator=g)


def padding(k_len=7):
    kpm = torch.zeros(B, k_len, dtype=torch.bool)
    kpm[0, -2:] = True
    kpm[2, -4:] = True
    return kpm


def float_version(mask):
    return torch.zeros(mask.shape).masked_fill(mask, float("-inf"))


MASK_CASES = {
    "none": lambda q, k: {},
    "bool_2d": lambda q, k: {"attn_mask": torch.rand(q, k, generator=torch.Generator().manual_seed(2)) > 0.7},
    "float_2d": lambda q, k: {"attn_mask": torch.randn(q, k, generator=torch.Generator().manual_seed(3))},
    "float_3d_per_head": lambda q, k: {"attn_mask": torch.randn(B * H, q, k, generator=torch.Generator().manual_seed(4))},
    "bool_padding": lambda q, k: {"key_padding_mask": padding(k)},
    "float_padding": lambda q, k: {"key_padding_mask": float_version(padding(k))},
    "float_mask_and_float_padding": lambda q, k: {
        "attn_mask": torch.randn(q, k, generator=torch.Generator().manual_seed(5)),
        "key_padding_mask": float_version(padding(k)),
    },
}


@pytest.mark.parametrize("case", MASK_CASES)
@pytest.mark.parametrize("kind", ["self", "cross"])
@pytest.mark.parametrize("need_weights", [False, True])
def test_matches_torch_multihead_attention(case, kind, need_weights):
    ref, mha = pair()
    x, mem = inputs()
    kv = x if kind == "self" else mem
    masks = MASK_CASES[case](x.shape[1], kv.shape[1])
    x_ref, x_lab = x.clone().requires_grad_(), x.clone().requires_grad_()
    kv_ref = x_ref if kind == "self" else kv
    kv_lab = x_lab if kind == "self" else kv
    out_ref, w_ref = ref(x_ref, kv_ref, kv_ref, need_weights=need_weights, average_attn_weights=False, **masks)
    out, w = mha(x_lab, kv_lab, kv_lab, need_weights=need_weights, **masks)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=0)
    if need_weights:
        torch.testing.assert_close(w, w_ref, atol=1e-5, rtol=0)
    else:
        assert w is None
    # Gradients w.r.t. the input and every weight agree as well.
    out_ref.square().sum().backward()
    out.square().sum().backward()
    torch.testing.assert_close(x_lab.grad, x_ref.grad, atol=1e-4, rtol=0)
    torch.testing.assert_close(mha.in_proj_weight.grad, ref.in_proj_weight.grad, atol=1e-4, rtol=0)


def test_4d_mask_and_causal_match_torch():
    ref, mha = pair()
    x, _ = inputs(6, 6)
    causal = nn.Transformer.generate_square_subsequent_mask(6)  # float, -inf above the diagonal
    expected, _ = ref(x, x, x, attn_mask=causal, need_weights=False)
    torch.testing.assert_close(mha(x, is_causal=True)[0], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(mha(x, is_causal=True, need_weights=True)[0], expected, atol=1e-5, rtol=0)
    # causal + padding: merged into one mask
    kpm = padding(6)
    expected, _ = ref(x, x, x, attn_mask=causal, key_padding_mask=float_version(kpm), need_weights=False)
    torch.testing.assert_close(mha(x, is_causal=True, key_padding_mask=kpm)[0], expected, atol=1e-5, rtol=0)
    # a per-batch-per-head 4-D mask equals torch's (B*H, L, S) layout
    mask3 = torch.randn(B * H, 6, 6)
    expected, _ = ref(x, x, x, attn_mask=mask3, need_weights=False)
    torch.testing.assert_close(mha(x, attn_mask=mask3.view(B, H, 6, 6))[0], expected, atol=1e-5, rtol=0)


def test_sdpa_and_explicit_paths_agree():
    _, mha = pair()
    x, mem = inputs()
    for kwargs in ({}, {"key_padding_mask": padding()}, {"attn_mask": torch.randn(5, 7)}):
        fast, _ = mha(x, mem, **kwargs)
        slow, weights = mha(x, mem, need_weights=True, **kwargs)
        torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)
        torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, 5))


def test_causal_outputs_ignore_the_future():
    _, mha = pair()
    x, _ = inputs(8, 8)
    changed = x.clone()
    changed[:, 5:] = torch.randn(B, 3, E)
    a, b = mha(x, is_causal=True)[0], mha(changed, is_causal=True)[0]
    torch.testing.assert_close(a[:, :5], b[:, :5], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_padded_keys_do_not_change_outputs():
    _, mha = pair()
    x, mem = inputs()
    kpm = padding()
    changed = mem.clone()
    changed[kpm] = torch.randn(int(kpm.sum()), E)
    torch.testing.assert_close(mha(x, mem, key_padding_mask=kpm)[0], mha(x, changed, key_padding_mask=kpm)[0])


@settings(max_examples=25, deadline=None)
@given(st.permutations(list(range(6))), st.integers(0, 1000))
def test_self_attention_is_permutation_equivariant(perm, seed):
    torch.manual_seed(seed)
    mha = MultiHeadAttention(16, 2)
    x = torch.randn(2, 6, 16)
    perm = torch.tensor(perm)
    torch.testing.assert_close(mha(x[:, perm])[0], mha(x)[0][:, perm], atol=1e-5, rtol=1e-5)


def test_dropout_only_in_training():
    mha = MultiHeadAttention(E, H, dropout=0.5)
    x, _ = inputs()
    mha.eval()
    torch.testing.assert_close(mha(x)[0], mha(x)[0])
    mha.train()
    assert not torch.allclose(mha(x)[0], mha(x)[0])


def test_gated_attention_starts_as_identity_and_learns_gamma():
    block = GatedSelfAttention(E, H)
    x, _ = inputs()
    torch.testing.assert_close(block(x), x)
    block(x).square().sum().backward()
    assert block.gamma.grad is not None and block.gamma.grad.abs() > 0
    with torch.no_grad():
        block.gamma.fill_(0.5)
    torch.testing.assert_close(block(x), x + 0.5 * block.attention(x)[0])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x, y: m(x, y[:2], y[:2]), "batch sizes differ"),
        (lambda m, x, y: m(x, y, y[:, :3]), "key and value lengths differ"),
        (lambda m, x, y: m(x[..., :8]), "must have shape"),
        (lambda m, x, y: m(x, attn_mask=torch.zeros(4, 4, dtype=torch.bool)), "attn_mask must have shape"),
        (lambda m, x, y: m(x, attn_mask=torch.zeros(5, 5, dtype=torch.long)), "must be bool"),
        (lambda m, x, y: m(x, key_padding_mask=torch.zeros(B, 4, dtype=torch.bool)), "key_padding_mask must have shape"),
        (lambda m, x, y: m(x, key_padding_mask=torch.zeros(B, 5, dtype=torch.int32)), "must be bool"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    _, mha = pair()
    x, mem = inputs()
    with pytest.raises((ValueError, TypeError), match=message):
        call(mha, x, mem)


def test_bad_construction_and_copy_errors():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(30, 4)
    with pytest.raises(ValueError, match="shape mismatch"):
        copy_weights_from_torch(MultiHeadAttention(16, 4), nn.MultiheadAttention(32, 4, batch_first=True))
    with pytest.raises(ValueError, match="missing in source"):
        copy_weights_from_torch(MultiHeadAttention(16, 4), nn.MultiheadAttention(16, 4, kdim=8, vdim=8))
