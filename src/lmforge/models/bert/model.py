"""BERT: a bidirectional Transformer encoder pretrained with masked-LM and next-sentence prediction.

Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding":
token + segment + learned position embeddings, summed and layer-normalised (sec. 3, fig. 2); post-norm
blocks, the 2017 paper's Add & Norm; GELU feed-forward; a pooler, tanh(W h_[CLS] + b), whose output the
next-sentence head reads (sec. 3.1, "Task #2"); the masked-LM head predicts the token at every position
from the tied token embedding (sec. 3.1, "Task #1").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.models.bert.config import BERTConfig
from lmforge.models.outputs import ModelOutput
from lmforge.nn import Block, Embeddings, FeedForward, LayerNorm, MLMHead, MultiHeadAttention, init_weights
from lmforge.nn.masks import check_mask, padding_mask


class BERT(nn.Module):
    def __init__(self, config: BERTConfig):
        super().__init__()
        self.config = c = config
        self.emb = Embeddings(c.vocab_size, c.max_len, c.d_model, c.n_segments, eps=c.norm_eps, dropout=c.dropout)
        self.blocks = nn.ModuleList(
            Block(MultiHeadAttention(c.d_model, c.n_heads, dropout=c.dropout),
                  FeedForward(c.d_model, c.d_ff, c.activation),
                  lambda: LayerNorm(c.d_model, c.norm_eps), norm_first=False, dropout=c.dropout)
            for _ in range(c.n_layers))
        self.pool = nn.Linear(c.d_model, c.d_model) if c.pooler else None
        self.mlm = MLMHead(self.emb.tok, c.activation, c.norm_eps) if c.head != "none" else None
        self.nsp = nn.Linear(c.d_model, 2) if c.head == "pretraining" else None  # IsNext / NotNext
        # N(0, 0.02) everywhere, no residual scaling (google-research/bert: initializer_range 0.02,
        # a truncated normal there)
        init_weights(self, std=0.02)

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None, *,
                targets: Tensor | None = None, predict: Tensor | None = None,
                need_weights: bool = False) -> ModelOutput:
        """ids (B, T) -> ModelOutput(hidden_states (B, T, d_model), pooled (B, d_model), logits (B, T, vocab)
        with a masked-LM head, sequence_logits (B, 2) with the next-sentence head).

        attention_mask (B, T): 1 for real tokens, 0 for padding (no token attends to padding);
        token_type_ids (B, T): segment of each token, 0 for sentence A, 1 for B (default all 0);
        targets (B, T): the masked-LM labels, -100 where no prediction is scored.
        predict (B, T) bool: compute the masked-LM logits at these positions only, logits (N, vocab) in row-major
        order (pretraining scores ~15% of the positions; the head's vocabulary-wide product is the largest
        in a small BERT, so Google's run_pretraining.py also gathers the masked positions first).
        """
        x = self.emb(ids, token_type_ids)  # (B, T, d_model); checks the length and the segments
        mask = padding_mask(check_mask(attention_mask, ids)) if attention_mask is not None else None  # (B, 1, 1, T)
        attentions = [] if need_weights else None
        for block in self.blocks:
            x, (probs, _) = block(x, mask=mask, need_weights=need_weights)
            if need_weights:
                attentions.append(probs)
        pooled = torch.tanh(self.pool(x[:, 0])) if self.pool is not None else None  # (B, d_model), from [CLS]
        if self.mlm is None:
            logits = None
        else:
            logits = self.mlm(x[predict]) if predict is not None else self.mlm(x)
        loss = None
        if targets is not None:
            if logits is None:
                raise ValueError("targets (masked-LM labels) need a model with head='mlm' or 'pretraining'; "
                                 "this BERT has no masked-LM head")
            scored = targets[predict] if predict is not None else targets.reshape(-1)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), scored, ignore_index=-100)
        return ModelOutput(logits=logits, loss=loss, attentions=attentions, hidden_states=x, pooled=pooled,
                           sequence_logits=self.nsp(pooled) if self.nsp is not None else None)

