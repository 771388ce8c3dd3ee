"""BERT: a bidirectional Transformer encoder pretrained with masked-LM and next-sentence prediction.

Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding":
token + segment + learned position embeddings, summed and layer-normalised (sec. 3, fig. 2); post-norm
blocks, the 2017 paper's Add & Norm; GELU feed-forward; a pooler, tanh(W h_[CLS] + b), whose output the
next-sentence head reads (sec. 3.1, "Task #2"); the masked-LM head predicts the token at every position
from the tied token embedding (sec. 3.1, "Task #1"). Fine-tuning heads (sec. 4, fig. 4): one linear layer
over the pooled [CLS] (a label per text), over every token (a label per token) or, for extractive QA, a start
and an end score per token (sec. 4.2: "a start vector S and an end vector E").
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from lmforge.models.bert.config import BERTConfig
from lmforge.models.outputs import ModelOutput
from lmforge.nn import Block, Embeddings, FeedForward, LayerNorm, MLMHead, MultiHeadAttention, init_weights
from lmforge.nn.block import encode
from lmforge.nn.heads import classification_loss, span_loss
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
        self.mlm = MLMHead(self.emb.tok, c.activation, c.norm_eps) if c.head in ("mlm", "pretraining") else None
        self.nsp = nn.Linear(c.d_model, 2) if c.head == "pretraining" else None  # IsNext / NotNext
        # a fine-tuning head: classify/tag one output per label, qa two per token (start, end)
        n_out = {"classify": len(c.labels), "tag": len(c.labels), "qa": 2}.get(c.head)
        self.head_drop = nn.Dropout(c.dropout if c.head_dropout is None else c.head_dropout)
        self.classifier = nn.Linear(c.d_model, n_out) if n_out else None
        # N(0, 0.02) everywhere, no residual scaling (google-research/bert: initializer_range 0.02,
        # a truncated normal there)
        init_weights(self, std=0.02)

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None, *,
                targets: Tensor | None = None, predict: Tensor | None = None,
                need_weights: bool = False) -> ModelOutput:
        """ids (B, T) -> ModelOutput(hidden_states (B, T, d_model), pooled (B, d_model), and by head:
        mlm logits (B, T, vocab); pretraining also sequence_logits (B, 2) (next sentence); classify
        sequence_logits (B, n_labels); tag logits (B, T, n_labels); qa logits (B, T, 2), [..., 0] the start and
        [..., 1] the end score of each token).

        attention_mask (B, T): 1 for real tokens, 0 for padding (no token attends to padding);
        token_type_ids (B, T): segment of each token, 0 for sentence A, 1 for B (default all 0);
        targets, -100 where nothing is scored: mlm (B, T) token ids; classify (B,) labels; tag (B, T) labels;
        qa (B, 2) the start and end token of each answer. The loss is the mean cross-entropy (for qa, the mean
        of the start and end losses, as sec. 4.2's "sum of the log-likelihoods", halved like Hugging Face's).
        predict (B, T) bool, masked-LM heads only: compute the masked-LM logits at these positions only, logits
        (N, vocab) in row-major order (pretraining scores ~15% of the positions; the head's vocabulary-wide
        product is the largest in a small BERT, so Google's run_pretraining.py also gathers the masked
        positions first).
        """
        x = self.emb(ids, token_type_ids)  # (B, T, d_model); checks the length and the segments
        mask = padding_mask(check_mask(attention_mask, ids)) if attention_mask is not None else None  # (B, 1, 1, T)
        x, attentions = encode(self.blocks, x, mask, need_weights=need_weights)
        pooled = torch.tanh(self.pool(x[:, 0])) if self.pool is not None else None  # (B, d_model), from [CLS]
        head = self.config.head
        if predict is not None and self.mlm is None:
            raise ValueError(f"predict picks the positions a masked-LM head scores; this BERT has head={head!r}")
        logits = None
        if self.mlm is not None:
            logits = self.mlm(x[predict]) if predict is not None else self.mlm(x)
        sequence_logits = self.nsp(pooled) if self.nsp is not None else None
        if head == "classify":
            sequence_logits = self.classifier(self.head_drop(pooled))  # (B, n_labels)
        elif head == "tag":
            logits = self.classifier(self.head_drop(x))  # (B, T, n_labels)
        elif head == "qa":
            logits = self.classifier(x)  # (B, T, 2); Hugging Face's BertForQuestionAnswering has no dropout here
        loss = None
        if targets is not None:
            scored = sequence_logits if head == "classify" else logits
            if scored is None:
                raise ValueError("targets need a head to score them; this BERT has head='none' (no masked-LM head). "
                                 "Load or build it with head='mlm', 'pretraining', 'classify', 'tag' or 'qa'")
            if predict is not None:
                targets = targets[predict]  # (N,): the labels of the positions scored
            loss = span_loss(scored, targets) if head == "qa" else classification_loss(scored, targets)
        return ModelOutput(logits=logits, loss=loss, attentions=attentions, hidden_states=x, pooled=pooled,
                           sequence_logits=sequence_logits)

