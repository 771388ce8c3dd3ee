"""DistilBERT: BERT distilled to half its depth (Sanh et al. 2019, "DistilBERT, a distilled version of BERT").

The same post-norm encoder blocks as BERT; token + learned position embeddings with a LayerNorm, no
segment embeddings, no pooler; the masked-LM head is BERT's (dense, GELU, LayerNorm, tied decoder + bias).
Fine-tuning heads as BERT's, but with no pooler a text is classified from [CLS]'s last hidden state through
its own dense layer and a ReLU (Hugging Face's DistilBertForSequenceClassification: pre_classifier).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.models.distilbert.config import DistilBERTConfig
from lmforge.models.outputs import ModelOutput
from lmforge.nn import Block, Embeddings, FeedForward, LayerNorm, MLMHead, MultiHeadAttention, init_weights
from lmforge.nn.block import encode
from lmforge.nn.heads import classification_loss, span_loss
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
        n_out = {"classify": len(c.labels), "tag": len(c.labels), "qa": 2}.get(c.head)
        default_drop = {"classify": 0.2, "qa": 0.1}.get(c.head, c.dropout)  # HF seq_classif_dropout, qa_dropout
        self.head_drop = nn.Dropout(default_drop if c.head_dropout is None else c.head_dropout)
        self.pre_classifier = nn.Linear(c.d_model, c.d_model) if c.head == "classify" else None
        self.classifier = nn.Linear(c.d_model, n_out) if n_out else None
        init_weights(self, std=0.02)  # BERT's N(0, 0.02); a distilled student is then copied from its teacher

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None, *,
                targets: Tensor | None = None, need_weights: bool = False) -> ModelOutput:
        """ids (B, T) -> ModelOutput(hidden_states (B, T, d_model), and by head: mlm logits (B, T, vocab);
        classify sequence_logits (B, n_labels); tag logits (B, T, n_labels); qa logits (B, T, 2), start and end).
        attention_mask (B, T): 1 for real tokens, 0 for padding. token_type_ids: DistilBERT has no segments,
        so only None is accepted (the argument is there so callers of BERT and DistilBERT look alike).
        targets as BERT's: mlm (B, T), classify (B,), tag (B, T), qa (B, 2); -100 is not scored."""
        x = self.emb(ids, token_type_ids)  # (B, T, d_model); refuses token_type_ids and over-long input
        mask = padding_mask(check_mask(attention_mask, ids)) if attention_mask is not None else None  # (B, 1, 1, T)
        x, attentions = encode(self.blocks, x, mask, need_weights=need_weights)
        head = self.config.head
        logits = self.mlm(x) if self.mlm is not None else None
        sequence_logits = None
        if head == "classify":  # [CLS] -> dense -> ReLU -> dropout -> classifier
            sequence_logits = self.classifier(self.head_drop(F.relu(self.pre_classifier(x[:, 0]))))  # (B, n_labels)
        elif head in ("tag", "qa"):
            logits = self.classifier(self.head_drop(x))  # (B, T, n_labels) or (B, T, 2)
        loss = None
        if targets is not None:
            scored = sequence_logits if head == "classify" else logits
            if scored is None:
                raise ValueError("targets need a head to score them; this DistilBERT has head='none'. Load or build "
                                 "it with head='mlm', 'classify', 'tag' or 'qa'")
            loss = span_loss(scored, targets) if head == "qa" else classification_loss(scored, targets)
        return ModelOutput(logits=logits, loss=loss, attentions=attentions, hidden_states=x,
                           sequence_logits=sequence_logits)
