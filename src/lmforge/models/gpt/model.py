"""GPT: a decoder-only Transformer trained to predict the next token.

GPT-1 (Radford et al. 2018) and GPT-2 (Radford et al. 2019): token + learned position embeddings,
pre-norm blocks (GPT-2 moved LayerNorm to the input of each sub-block and added a final one),
causal self-attention, GELU feed-forward, output layer tied to the token embedding.
"""
from __future__ import annotations

from torch import Tensor, nn

from lmforge.models.gpt.config import GPTConfig
from lmforge.models.protocol import DecoderOnlyDecoding
from lmforge.nn import (Block, FeedForward, LayerNorm, LearnedPositions, LMHead, MultiHeadAttention,
                        init_weights)


class GPT(DecoderOnlyDecoding, nn.Module):  # forward, new_cache, prefill, decode_step: lmforge.models.protocol

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = LearnedPositions(c.max_len, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            Block(MultiHeadAttention(c.d_model, c.n_heads, bias=c.bias, dropout=c.dropout),
                  FeedForward(c.d_model, c.d_ff, c.activation, bias=c.bias),
                  lambda: LayerNorm(c.d_model, c.norm_eps, bias=c.bias), norm_first=True, dropout=c.dropout)
            for _ in range(c.n_layers))
        self.norm = LayerNorm(c.d_model, c.norm_eps, bias=c.bias)
        self.lm_head = LMHead(self.tok_emb) if c.tie_embeddings else LMHead(None, c.d_model, c.vocab_size)
        init_weights(self, std=0.02, n_layers=c.n_layers)  # GPT-2: N(0, 0.02), residual projections scaled

    def embed(self, ids: Tensor, positions: Tensor) -> tuple[Tensor, None]:
        """Token + learned position embeddings; no rotations (lmforge.models.protocol.DecoderOnlyDecoding)."""
        return self.drop(self.tok_emb(ids) + self.pos_emb(positions)), None
