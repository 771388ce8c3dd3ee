"""Llama-style decoder (Touvron et al. 2023; also Qwen2 and GLM-4 by config): what changed since GPT-2.

Token embedding (no position table: positions enter as rotations of queries and keys), pre-norm blocks with
RMSNorm, grouped-query causal self-attention with rotary positions, SwiGLU feed-forward, a final RMSNorm and
an output head (tied or not). The blocks are lmforge.nn's Block, MultiHeadAttention and FeedForward; only
the parts differ from GPT's.
"""
from __future__ import annotations

from torch import Tensor, nn

from lmforge.models.llama.config import LlamaConfig
from lmforge.models.protocol import DecoderOnlyDecoding
from lmforge.nn import Block, FeedForward, LMHead, MultiHeadAttention, RMSNorm, init_weights
from lmforge.nn.positions import Rotary


class Llama(DecoderOnlyDecoding, nn.Module):  # forward, new_cache, prefill, decode_step: lmforge.models.protocol

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.rotary = Rotary(c.rope_dim, c.rope_theta, interleaved=c.rope_interleaved, scaling=c.rope_scaling)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            Block(MultiHeadAttention(c.d_model, c.n_heads, n_kv_heads=c.n_kv_heads, head_dim=c.head_dim,
                                     bias=c.out_bias, qkv_bias=c.qkv_bias, dropout=c.dropout),
                  FeedForward(c.d_model, c.d_ff, "swiglu", bias=c.mlp_bias),
                  lambda: RMSNorm(c.d_model, c.norm_eps), norm_first=True, dropout=c.dropout)
            for _ in range(c.n_layers))
        self.norm = RMSNorm(c.d_model, c.norm_eps)
        self.lm_head = LMHead(self.tok_emb) if c.tie_embeddings else LMHead(None, c.d_model, c.vocab_size)
        init_weights(self, std=0.02, n_layers=c.n_layers)  # Llama / HF: N(0, 0.02); residual projections scaled

    def embed(self, ids: Tensor, positions: Tensor) -> tuple[Tensor, tuple]:
        """Tokens only: positions enter as rotations of queries and keys, cos and sin (B or 1, 1, T,
        rope_dim), one per position, applied in every attention layer (lmforge.models.protocol)."""
        return self.drop(self.tok_emb(ids)), self.rotary(positions)
