"""Decoder-only (causal, GPT-style) language model with greedy generation."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lab.embedding import TokenEmbedding
from lab.layers import TransformerConfig, TransformerEncoder
from lab.positional import make_positional_encoding


@dataclass
class DecoderOnlyConfig:
    vocab_size: int
    max_len: int = 256  # context window; generation crops the context to it
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    positional: str = "learned"  # GPT-style; "sinusoidal" also works
    tie_weights: bool = True  # share the token embedding with the output projection: fewer params, better LM


class DecoderOnlyTransformer(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, V); position t sees only tokens 0..t.

    A stack of self-attention layers with a causal mask (no cross-attention): the "decoder" of GPT.
    Pad sequences on the right; ``key_padding_mask`` (B, T), True = padding, then keeps padding out of
    the attention of later (padding) positions.
    """

    def __init__(self, config: DecoderOnlyConfig) -> None:
        super().__init__()
        self.config = config
        d_model = config.transformer.d_model
        self.embed = TokenEmbedding(config.vocab_size, d_model)
        self.positions = make_positional_encoding(config.positional, d_model, config.max_len, config.transformer.dropout)
        self.encoder = TransformerEncoder(config.transformer)
        self.lm_head = nn.Linear(d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.embed.weight

    def forward(self, ids: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        if ids.dim() != 2:
            raise ValueError(f"ids must have shape (batch, length), got {tuple(ids.shape)}")
        h = self.positions(self.embed(ids))  # (B, T, D)
        h = self.encoder(h, key_padding_mask=key_padding_mask, is_causal=True)
        return self.lm_head(h)  # (B, T, V)

    @torch.no_grad()
    def generate(self, ids: Tensor, max_new_tokens: int, eos_id: int | None = None) -> Tensor:
        """Greedy decoding: append the arg-max token ``max_new_tokens`` times. (B, T) -> (B, T + n).

        Rows that have produced ``eos_id`` keep emitting it; generation stops early once every row has.
        Contexts longer than ``max_len`` are cropped to the last ``max_len`` tokens.
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError(f"ids must have shape (batch, length >= 1), got {tuple(ids.shape)}")
        was_training = self.training
        self.eval()
        finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        for _ in range(max_new_tokens):
            logits = self(ids[:, -self.config.max_len:])[:, -1]  # (B, V)
            next_id = logits.argmax(dim=-1)
            if eos_id is not None:
                next_id = next_id.masked_fill(finished, eos_id)
                finished |= next_id == eos_id
            ids = torch.cat([ids, next_id[:, None]], dim=1)
            if eos_id is not None and bool(finished.all()):
                break
        self.train(was_training)
        return ids

    def layer_groups(self) -> list[nn.Module]:
        """Body -> head, for ``lab.finetune``. A tied output projection is the embedding's weight, so it
        stays in the first group (groups must be disjoint)."""
        head = [self.encoder.norm] if self.config.tie_weights else [self.encoder.norm, self.lm_head]
        return [nn.ModuleList([self.embed, self.positions]), *self.encoder.layers, nn.ModuleList(head)]
