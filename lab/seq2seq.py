"""Encoder-decoder transformer (translation / speech-style sequence transduction) with greedy decoding."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from lab.embedding import TokenEmbedding
from lab.layers import TransformerConfig, TransformerDecoder, TransformerEncoder
from lab.positional import make_positional_encoding


@dataclass
class Seq2SeqConfig:
    """Exactly one of ``src_vocab_size`` (token source, e.g. translation) and ``src_feature_dim``
    (continuous frames, e.g. speech features) is set; the target is always tokens."""

    tgt_vocab_size: int
    src_vocab_size: int | None = None
    src_feature_dim: int | None = None
    max_src_len: int = 256
    max_tgt_len: int = 256
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    num_decoder_layers: int | None = None  # None -> transformer.num_layers
    positional: str = "sinusoidal"  # as in the original paper
    tie_weights: bool = True  # target embedding shared with the output projection
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self) -> None:
        if (self.src_vocab_size is None) == (self.src_feature_dim is None):
            raise ValueError("set exactly one of src_vocab_size (token source) and src_feature_dim (feature source)")
        for name in ("pad_id", "bos_id", "eos_id"):
            if not 0 <= getattr(self, name) < self.tgt_vocab_size:
                raise ValueError(f"{name}={getattr(self, name)} is outside the target vocabulary [0, {self.tgt_vocab_size})")


class Seq2SeqTransformer(nn.Module):
    """src (B, S) ids or (B, S, F) features, tgt_in (B, T) ids -> logits (B, T, V_tgt).

    ``tgt_in`` is the target shifted right (starting with ``bos_id``); the decoder is causal, so the logits
    at position t predict target token t + 1 from tokens 0..t. Padding masks are (B, S) / (B, T) bool with
    True = padding; for token inputs they default to ``ids == pad_id``.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        d_model, dropout = config.transformer.d_model, config.transformer.dropout
        if config.src_vocab_size is not None:
            self.src_embed: nn.Module = TokenEmbedding(config.src_vocab_size, d_model)
        else:
            self.src_embed = nn.Linear(config.src_feature_dim, d_model)
        self.tgt_embed = TokenEmbedding(config.tgt_vocab_size, d_model)
        self.src_positions = make_positional_encoding(config.positional, d_model, config.max_src_len, dropout)
        self.tgt_positions = make_positional_encoding(config.positional, d_model, config.max_tgt_len, dropout)
        self.encoder = TransformerEncoder(config.transformer)
        decoder_layers = config.transformer.num_layers if config.num_decoder_layers is None else config.num_decoder_layers
        self.decoder = TransformerDecoder(replace(config.transformer, num_layers=decoder_layers))
        self.generator = nn.Linear(d_model, config.tgt_vocab_size, bias=False)
        if config.tie_weights:
            self.generator.weight = self.tgt_embed.weight

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """src -> (memory (B, S, D), the padding mask used)."""
        if self.config.src_vocab_size is not None:
            if src.dim() != 2:
                raise ValueError(f"token source must have shape (batch, length), got {tuple(src.shape)}")
            if src_padding_mask is None:
                src_padding_mask = src == self.config.pad_id
        elif src.dim() != 3 or src.shape[-1] != self.config.src_feature_dim:
            raise ValueError(
                f"feature source must have shape (batch, length, {self.config.src_feature_dim}), got {tuple(src.shape)}"
            )
        memory = self.encoder(self.src_positions(self.src_embed(src)), key_padding_mask=src_padding_mask)
        return memory, src_padding_mask

    def decode(
        self, tgt_in: Tensor, memory: Tensor, memory_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """tgt_in (B, T) ids and memory (B, S, D) -> logits (B, T, V)."""
        if tgt_in.dim() != 2:
            raise ValueError(f"tgt_in must have shape (batch, length), got {tuple(tgt_in.shape)}")
        h = self.tgt_positions(self.tgt_embed(tgt_in))
        h = self.decoder(
            h, memory, key_padding_mask=tgt_padding_mask, is_causal=True, memory_key_padding_mask=memory_padding_mask
        )
        return self.generator(h)

    def forward(
        self, src: Tensor, tgt_in: Tensor, src_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
    ) -> Tensor:
        memory, src_padding_mask = self.encode(src, src_padding_mask)
        return self.decode(tgt_in, memory, src_padding_mask, tgt_padding_mask)

    @torch.no_grad()
    def greedy_decode(self, src: Tensor, max_len: int, src_padding_mask: Tensor | None = None) -> Tensor:
        """Encode once, then append the arg-max token until every row emitted ``eos_id`` or ``max_len`` tokens
        exist. Returns (B, L <= max_len) ids starting with ``bos_id``; rows that finished are padded with eos."""
        if not 1 <= max_len <= self.config.max_tgt_len:
            raise ValueError(f"max_len must be in [1, {self.config.max_tgt_len}], got {max_len}")
        was_training = self.training
        self.eval()
        memory, src_padding_mask = self.encode(src, src_padding_mask)
        ys = torch.full((memory.shape[0], 1), self.config.bos_id, dtype=torch.long, device=memory.device)
        finished = torch.zeros(memory.shape[0], dtype=torch.bool, device=memory.device)
        while ys.shape[1] < max_len and not bool(finished.all()):
            next_id = self.decode(ys, memory, src_padding_mask)[:, -1].argmax(dim=-1)
            next_id = next_id.masked_fill(finished, self.config.eos_id)
            finished |= next_id == self.config.eos_id
            ys = torch.cat([ys, next_id[:, None]], dim=1)
        self.train(was_training)
        return ys

    def layer_groups(self) -> list[nn.Module]:
        """Body -> head for ``lab.finetune``: source side, encoder layers, target side, decoder layers, head."""
        return [
            nn.ModuleList([self.src_embed, self.src_positions]),
            *self.encoder.layers,
            nn.ModuleList([self.encoder.norm, self.tgt_embed, self.tgt_positions]),
            *self.decoder.layers,
            # a tied generator is the target embedding's weight, already in an earlier group
            nn.ModuleList([self.decoder.norm] if self.config.tie_weights else [self.decoder.norm, self.generator]),
        ]
