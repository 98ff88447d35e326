import pytest
import torch
from torch import nn

from lab.attention import copy_weights_from_torch
from lab.layers import DecoderLayer, EncoderLayer, TransformerConfig, TransformerDecoder, TransformerEncoder

D, H, FF = 32, 4, 64


def data(length=6, mem_length=9):
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, length, D, generator=g), torch.randn(3, mem_length, D, generator=g)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("training", [False, True])
def test_encoder_layer_matches_torch(norm_first, activation, training):
    ref = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first)
    layer = copy_weights_from_torch(EncoderLayer(D, H, FF, 0.0, activation, norm_first), ref)
    ref.train(training), layer.train(training)
    x, _ = data()
    kpm = torch.zeros(3, 6, dtype=torch.bool)
    kpm[1, 4:] = True
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    torch.testing.assert_close(layer(x), ref(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(layer(x, is_causal=True), ref(x, src_mask=causal, is_causal=True), atol=1e-5, rtol=0)
    # torch's eval fast path zeroes padded rows; compare the real positions only
    real = ~kpm
    torch.testing.assert_close(layer(x, key_padding_mask=kpm)[real], ref(x, src_key_padding_mask=kpm)[real], atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first):
    ref = nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first)
    layer = copy_weights_from_torch(DecoderLayer(D, H, FF, 0.0, "relu", norm_first), ref)
    x, mem = data()
    mem_kpm = torch.zeros(3, 9, dtype=torch.bool)
    mem_kpm[0, 7:] = True
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    expected = ref(x, mem, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=mem_kpm)
    torch.testing.assert_close(layer(x, mem, is_causal=True, memory_key_padding_mask=mem_kpm), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_stacks_match_torch(norm_first):
    config = TransformerConfig(D, H, num_layers=3, dim_feedforward=FF, dropout=0.0, activation="relu", norm_first=norm_first)
    final_norm = nn.LayerNorm(D) if norm_first else None
    enc_layer = nn.TransformerEncoderLayer(D, H, FF, 0.0, batch_first=True, norm_first=norm_first)
    dec_layer = nn.TransformerDecoderLayer(D, H, FF, 0.0, batch_first=True, norm_first=norm_first)
    ref_enc = nn.TransformerEncoder(enc_layer, 3, norm=final_norm, enable_nested_tensor=False)
    ref_dec = nn.TransformerDecoder(dec_layer, 3, norm=nn.LayerNorm(D) if norm_first else None)
    for p in list(ref_enc.parameters()) + list(ref_dec.parameters()):  # distinct weights per layer
        nn.init.normal_(p, std=0.2)
    enc = copy_weights_from_torch(TransformerEncoder(config), ref_enc)
    dec = copy_weights_from_torch(TransformerDecoder(config), ref_dec)
    x, mem = data()
    torch.testing.assert_close(enc(x), ref_enc(x), atol=1e-5, rtol=0)
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    torch.testing.assert_close(dec(x, mem, is_causal=True), ref_dec(x, mem, tgt_mask=causal, tgt_is_causal=True), atol=1e-5, rtol=0)


def test_causal_stack_ignores_the_future_and_padding_is_inert():
    enc = TransformerEncoder(TransformerConfig(D, H, num_layers=2, dropout=0.0)).eval()
    x, _ = data(8)
    y = x.clone()
    y[:, 6:] += 1.0
    torch.testing.assert_close(enc(x, is_causal=True)[:, :6], enc(y, is_causal=True)[:, :6], atol=1e-5, rtol=0)
    kpm = torch.zeros(3, 8, dtype=torch.bool)
    kpm[:, 6:] = True
    torch.testing.assert_close(enc(x, key_padding_mask=kpm)[:, :6], enc(y, key_padding_mask=kpm)[:, :6], atol=1e-5, rtol=0)
    # padding an input with extra tokens leaves the real outputs unchanged
    torch.testing.assert_close(enc(x[:, :6]), enc(x, key_padding_mask=kpm)[:, :6], atol=1e-5, rtol=0)


def test_config_errors():
    with pytest.raises(ValueError, match="activation"):
        TransformerConfig(activation="tanh")
    with pytest.raises(ValueError, match="multiple of num_heads"):
        TransformerConfig(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="activation"):
        EncoderLayer(D, H, activation="swish")
