"""DistilBERT: BERT distilled to half its depth (Sanh et al. 2019, "DistilBERT, a distilled version of BERT").

The same post-norm encoder blocks as BERT; token + learned position embeddings with a LayerNorm, no
segment embeddings, no pooler; the masked-LM head is BERT's (dense, GELU, LayerNorm, tied decoder + bias).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.models.distilbert.config import DistilBERTConfig
from lmforge.models.outputs import ModelOutput
from lmforge.nn import Block, Embeddings, FeedForward, LayerNorm, MLMHead, MultiHeadAttention, init_weights
from lmforge.nn.masks import check_mask, padding_mask


class DistilBERT(nn.Module):
    def __init__(self, config: DistilBERTConfig):
        super().__init__()
        self.config = c = config
        self.emb = Embeddings(c.vocab_size, c.max_len, c.d_model, n_segments=0, eps=c.norm_eps, dropout=c.dropout)
        self.blocks = nn.ModuleList(
            Block(MultiHeadAttention(c.d_model, c.n_heads, dropout=c.dropout),
                  FeedForward(c.d_model, c.d_ff, c.activation),
                  lambda: LayerNorm(c.d_model, c.norm_eps), norm_first=False, dropout=c.dropout)
            for _ in range(c.n_layers))
        self.mlm = MLMHead(self.emb.tok, c.activation, c.norm_eps) if c.head == "mlm" else None
        init_weights(self, std=0.02)  # BERT's N(0, 0.02); a distilled student is then copied from its teacher

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None, *,
                targets: Tensor | None = None, need_weights: bool = False) -> ModelOutput:
        """ids (B, T) -> ModelOutput(hidden_states (B, T, d_model), logits (B, T, vocab) with the masked-LM head).
        attention_mask (B, T): 1 for real tokens, 0 for padding. token_type_ids: DistilBERT has no segments,
        so only None is accepted (the argument is there so callers of BERT and DistilBERT look alike)."""
        x = self.emb(ids, token_type_ids)  # (B, T, d_model); refuses token_type_ids and over-long input
        mask = padding_mask(check_mask(attention_mask, ids)) if attention_mask is not None else None  # (B, 1, 1, T)
        attentions = [] if need_weights else None
        for block in self.blocks:
            x, (probs, _) = block(x, mask=mask, need_weights=need_weights)
            if need_weights:
                attentions.append(probs)
        logits = self.mlm(x) if self.mlm is not None else None
        loss = None
        if targets is not None:
            if logits is None:
                raise ValueError("targets (masked-LM labels) need a model with head='mlm'; this DistilBERT has none")
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return ModelOutput(logits=logits, loss=loss, attentions=attentions, hidden_states=x)
