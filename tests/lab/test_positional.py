import math

import pytest
import torch

from lab.positional import LearnedPositionalEncoding, SinusoidalPositionalEncoding, make_positional_encoding


@pytest.mark.parametrize("d_model", [16, 15])
def test_sinusoidal_values(d_model):
    pe = SinusoidalPositionalEncoding(d_model, max_len=50)
    table = pe(torch.zeros(1, 50, d_model))[0]
    for pos in (0, 1, 7, 49):
        for i in range(0, d_model, 2):
            freq = 1.0 / 10000 ** (i / d_model)
            assert table[pos, i].item() == pytest.approx(math.sin(pos * freq), abs=1e-5)
            if i + 1 < d_model:
                assert table[pos, i + 1].item() == pytest.approx(math.cos(pos * freq), abs=1e-5)


def test_offset_continues_positions():
    pe = SinusoidalPositionalEncoding(8, max_len=20)
    x = torch.randn(2, 10, 8)
    torch.testing.assert_close(pe(x[:, 4:], offset=4), pe(x)[:, 4:])


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_error_past_max_length(kind):
    pe = make_positional_encoding(kind, 8, max_len=10)
    pe(torch.zeros(1, 10, 8))
    with pytest.raises(ValueError, match="maximum length 10"):
        pe(torch.zeros(1, 11, 8))
    with pytest.raises(ValueError, match="maximum length 10"):
        pe(torch.zeros(1, 5, 8), offset=6)


def test_learned_is_trainable_and_unknown_kind_fails():
    pe = LearnedPositionalEncoding(8, 10)
    pe(torch.zeros(1, 4, 8)).sum().backward()
    assert pe.embedding.grad[:4].abs().sum() > 0 and pe.embedding.grad[4:].abs().sum() == 0
    with pytest.raises(ValueError, match="sinusoidal, learned, none"):
        make_positional_encoding("rotary", 8, 10)
    with pytest.raises(ValueError, match=r"\(batch, length, 8\)"):
        pe(torch.zeros(4, 8))
