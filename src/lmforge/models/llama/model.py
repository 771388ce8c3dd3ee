"""Llama-style decoder (Touvron et al. 2023; also Qwen2 and GLM-4 by config): what changed since GPT-2.

Token embedding (no position table: positions enter as rotations of queries and keys), pre-norm blocks with
RMSNorm, grouped-query causal self-attention with rotary positions, SwiGLU feed-forward, a final RMSNorm and
an output head (tied or not). The blocks are lmforge.nn's Block, MultiHeadAttention and FeedForward; only
the parts differ from GPT's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.models.llama.config import LlamaConfig
from lmforge.models.outputs import ModelOutput
from lmforge.models.protocol import DecoderOnlyDecoding
from lmforge.nn import Block, FeedForward, KVCache, LMHead, MultiHeadAttention, RMSNorm, init_weights
from lmforge.nn.masks import causal_padding_mask
from lmforge.nn.positions import Rotary


class Llama(DecoderOnlyDecoding, nn.Module):  # prefill / decode_step: lmforge.models.protocol

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

    def new_cache(self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """Only the n_kv_heads key/value heads are stored: n_heads / n_kv_heads times fewer bytes than MHA."""
        c, p = self.config, self.tok_emb.weight
        return KVCache(c.n_layers, batch_size, c.n_kv_heads, c.head_dim, max_len or c.max_len,
                       device=p.device, dtype=dtype or p.dtype)

    def forward(self, ids: Tensor, targets: Tensor | None = None, *, cache: KVCache | None = None,
                positions: Tensor | None = None, attention_mask: Tensor | None = None,
                need_weights: bool = False, keep_logits: int = 0) -> ModelOutput:
        """ids (B, T) -> ModelOutput; the arguments mean what they mean for lmforge.models.gpt.GPT."""
        B, T = ids.shape
        past = cache.length if cache is not None else 0
        if past + T > self.config.max_len:
            raise ValueError(f"Cannot attend to {past + T} positions, max_len is only {self.config.max_len}. "
                             "The input is longer than the model's context: shorten the prompt or use a model "
                             "with a larger max_len.")
        if positions is None:
            positions = torch.arange(past, past + T, device=ids.device)[None]  # (1, T)
        rope = self.rotary(positions)  # cos, sin (B or 1, 1, T, rope_dim): one rotation per position
        x = self.drop(self.tok_emb(ids))  # (B, T, d_model)

        mask, is_causal = None, T > 1
        if attention_mask is not None:
            mask = causal_padding_mask(attention_mask, T)
            is_causal = False

        attentions = [] if need_weights else None
        for i, block in enumerate(self.blocks):
            x, (probs, _) = block(x, mask=mask, is_causal=is_causal, cache=cache.layer(i) if cache else None,
                                  rope=rope, need_weights=need_weights)
            if need_weights:
                attentions.append(probs)
        if cache is not None:
            cache.advance(T)
        x = self.norm(x)
        logits = self.lm_head(x[:, -keep_logits:] if keep_logits else x)  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return ModelOutput(logits=logits, loss=loss, attentions=attentions, hidden_states=x)
