"""GPT: a decoder-only Transformer trained to predict the next token.

GPT-1 (Radford et al. 2018) and GPT-2 (Radford et al. 2019): token + learned position embeddings,
pre-norm blocks (GPT-2 moved LayerNorm to the input of each sub-block and added a final one),
causal self-attention, GELU feed-forward, output layer tied to the token embedding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.models.gpt.config import GPTConfig
from lmforge.models.outputs import ModelOutput
from lmforge.models.protocol import DecoderOnlyDecoding
from lmforge.nn import (Block, FeedForward, KVCache, LayerNorm, LearnedPositions, LMHead, MultiHeadAttention,
                        init_weights)
from lmforge.nn.masks import causal_padding_mask


class GPT(DecoderOnlyDecoding, nn.Module):  # prefill / decode_step: lmforge.models.protocol

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

    def new_cache(self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        c, p = self.config, self.tok_emb.weight
        return KVCache(c.n_layers, batch_size, c.n_heads, c.d_model // c.n_heads, max_len or c.max_len,
                       device=p.device, dtype=dtype or p.dtype)

    def forward(self, ids: Tensor, targets: Tensor | None = None, *, cache: KVCache | None = None,
                positions: Tensor | None = None, attention_mask: Tensor | None = None,
                need_weights: bool = False, keep_logits: int = 0) -> ModelOutput:
        """ids (B, T) -> ModelOutput.

        cache: a KVCache from `new_cache`; ids are appended after its `length` positions.
        positions (B, T): position ids (default past..past+T-1); left-padded batches pass their own.
        attention_mask (B, past+T): 1 for real tokens, 0 for padding (keys only).
        keep_logits: compute logits for the last n positions only (generation needs 1); 0 = all.
        """
        B, T = ids.shape
        past = cache.length if cache is not None else 0
        if past + T > self.config.max_len:
            raise ValueError(f"Cannot attend to {past + T} positions, max_len is only {self.config.max_len}. "
                             "The input is longer than the model's context: shorten the prompt or use a model "
                             "with a larger max_len.")
        if positions is None:
            positions = torch.arange(past, past + T, device=ids.device)[None]  # (1, T)
        x = self.drop(self.tok_emb(ids) + self.pos_emb(positions))  # (B, T, d_model)

        # No padding: causal (end-aligned after a KV cache); one new token simply sees everything cached.
        mask, is_causal = None, T > 1
        if attention_mask is not None:
            mask = causal_padding_mask(attention_mask, T)
            is_causal = False

        attentions = [] if need_weights else None
        for i, block in enumerate(self.blocks):
            x, (probs, _) = block(x, mask=mask, is_causal=is_causal, cache=cache.layer(i) if cache else None,
                                  need_weights=need_weights)
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
