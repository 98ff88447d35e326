"""Decoder-only and encoder-decoder models: causality, generation consistent with forward, learning."""
import pytest
import torch
import torch.nn.functional as F

from lab.decoder_only import DecoderOnlyConfig, DecoderOnlyTransformer
from lab.layers import TransformerConfig
from lab.seq2seq import Seq2SeqConfig, Seq2SeqTransformer

SMALL = TransformerConfig(d_model=32, num_heads=4, num_layers=2, dropout=0.0)


def lm(**kwargs) -> DecoderOnlyTransformer:
    return DecoderOnlyTransformer(DecoderOnlyConfig(vocab_size=12, max_len=32, transformer=SMALL, **kwargs))


def test_decoder_only_is_causal():
    model = lm().eval()
    ids = torch.randint(0, 12, (2, 10))
    changed = ids.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 12
    torch.testing.assert_close(model(ids)[:, :7], model(changed)[:, :7], atol=1e-5, rtol=0)
    assert not torch.allclose(model(ids)[:, 7:], model(changed)[:, 7:])


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
def test_generation_is_consistent_with_forward(positional):
    model = lm(positional=positional)
    prompt = torch.randint(0, 12, (3, 4))
    out = model.generate(prompt, max_new_tokens=8)
    assert out.shape == (3, 12) and torch.equal(out[:, :4], prompt)
    # One teacher-forced pass over the generated text predicts every generated token.
    logits = model.eval()(out)
    assert torch.equal(logits[:, 3:-1].argmax(-1), out[:, 4:])


def test_generation_stops_at_eos_and_restores_mode():
    model = lm()
    model.train()
    prompt = torch.randint(3, 12, (4, 2))
    first = model.generate(prompt, max_new_tokens=1)[:, -1]
    eos = int(first[0])
    out = model.generate(prompt, max_new_tokens=6, eos_id=eos)
    assert model.training
    assert (out[0, 2:] == eos).all()  # row 0 hits eos at once and stays there
    for row in out:  # after the first generated eos, only eos follows
        generated = row[2:]
        hits = (generated == eos).nonzero()
        if len(hits):
            assert (generated[hits[0, 0]:] == eos).all()


def test_decoder_only_learns_a_pattern():
    torch.manual_seed(0)
    model = lm()
    seq = torch.arange(12).repeat(3)[None, :25].repeat(4, 1)  # 0 1 2 ... 11 0 1 ...
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(model(seq[:, :-1]).flatten(0, 1), seq[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    assert torch.equal(model.generate(seq[:1, :3], 9)[0], seq[0, :12])


def test_tied_weights_share_storage():
    model = lm()
    assert model.lm_head.weight is model.embed.weight
    assert lm(tie_weights=False).lm_head.weight is not lm(tie_weights=False).embed.weight


def seq2seq(**kwargs) -> Seq2SeqTransformer:
    cfg = dict(tgt_vocab_size=14, src_vocab_size=14, max_src_len=16, max_tgt_len=16, transformer=SMALL)
    cfg.update(kwargs)
    return Seq2SeqTransformer(Seq2SeqConfig(**cfg))


def test_greedy_decode_is_consistent_with_forward():
    model = seq2seq()
    src = torch.randint(3, 14, (3, 7))
    ys = model.greedy_decode(src, max_len=10)
    assert (ys[:, 0] == model.config.bos_id).all()
    logits = model.eval()(src, ys[:, :-1])
    predicted = logits.argmax(-1)
    eos = model.config.eos_id
    for row, pred in zip(ys, predicted):  # up to and including the first eos, the decode is the argmax
        hits = (row[1:] == eos).nonzero()
        end = hits[0, 0].item() + 1 if len(hits) else len(row) - 1
        assert torch.equal(row[1:1 + end], pred[:end])


def test_source_padding_is_inert():
    model = seq2seq().eval()
    src = torch.randint(3, 14, (2, 6))
    padded = torch.cat([src, torch.zeros(2, 3, dtype=torch.long)], dim=1)  # pad_id = 0
    tgt = torch.randint(3, 14, (2, 5))
    torch.testing.assert_close(model(src, tgt), model(padded, tgt), atol=1e-5, rtol=0)


def test_seq2seq_learns_to_reverse():
    torch.manual_seed(0)
    model = seq2seq()
    src = torch.randint(3, 14, (64, 5))
    tgt = torch.cat([torch.ones(64, 1, dtype=torch.long), src.flip(1), torch.full((64, 1), 2)], dim=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for step in range(150):
        loss = F.cross_entropy(model(src, tgt[:, :-1]).flatten(0, 1), tgt[:, 1:].flatten())
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    accuracy = (model.greedy_decode(src[:16], 7) == tgt[:16]).float().mean()
    assert accuracy > 0.8


def test_feature_source_and_config_errors():
    model = seq2seq(src_vocab_size=None, src_feature_dim=6)
    frames = torch.randn(2, 9, 6)  # e.g. speech feature frames
    assert model(frames, torch.ones(2, 3, dtype=torch.long)).shape == (2, 3, 14)
    assert model.greedy_decode(frames, 4).shape[1] <= 4
    with pytest.raises(ValueError, match="exactly one"):
        Seq2SeqConfig(tgt_vocab_size=5, src_vocab_size=5, src_feature_dim=3)
    with pytest.raises(ValueError, match="eos_id"):
        Seq2SeqConfig(tgt_vocab_size=2, src_vocab_size=5)
    with pytest.raises(ValueError, match=r"\(batch, length, 6\)"):
        model(torch.randn(2, 9, 5), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):
        model.greedy_decode(frames, 100)


@pytest.mark.parametrize("tie", [True, False])
def test_layer_groups_cover_parameters_for_discriminative_rates(tie):
    from lab.finetune import discriminative_param_groups

    for model in (lm(tie_weights=tie), seq2seq(tie_weights=tie)):
        groups = discriminative_param_groups(model, lr_max=1e-3, lr_min=1e-5)
        params = [p for g in groups for p in g["params"]]
        assert len(params) == len({id(p) for p in params}) == len(list(model.parameters()))
        assert groups[0]["lr"] == pytest.approx(1e-5) and groups[-1]["lr"] == pytest.approx(1e-3)
