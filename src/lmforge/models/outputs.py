from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lmforge.nn.heads import classification_loss


def token_loss(logits: Tensor, targets: Tensor | None) -> Tensor | None:
    """Mean cross-entropy of (..., vocab) logits over the targets that are not -100 (None without targets): the
    `loss` of every language-model forward."""
    return None if targets is None else classification_loss(logits, targets)


@dataclass
class ModelOutput:
    """What every model's forward returns.

    logits: per-token scores, (B, T, vocab) from a language-model head, (B, T, n_labels) from an encoder's
    tagging head, (B, T, 2) from a span (QA) head (start, end); None for an encoder without a token head
    (BERT as a text encoder); loss: mean cross-entropy over targets != -100 (when targets are given);
    attentions: per layer, (B, nh, T, S) self-attention probabilities (when asked for); cross_attentions:
    per decoder layer, encoder-decoder families only; hidden_states: final hidden states (B, T, d_model);
    pooled: one vector per sequence (B, d_model), BERT's pooler; sequence_logits: one row of logits per
    sequence (B, n), BERT's next-sentence head or an encoder's classification head; values: one scalar per
    token (B, T), a value head's estimate (PPO's critic, lmforge.train.recipes.ppo.ValueModel).
    """

    logits: Tensor | None = None
    loss: Tensor | None = None
    attentions: list[Tensor] | None = None
    cross_attentions: list[Tensor] | None = None
    hidden_states: Tensor | None = None
    pooled: Tensor | None = None
    sequence_logits: Tensor | None = None
    values: Tensor | None = None


@dataclass
class DecodeOutput:
    """What `prefill` and `decode_step` return (lmforge.models.protocol): the logits of the next token
    and, when asked for, where the last token looked, one tensor per row over that row's real tokens."""

    logits: Tensor  # (B, vocab)
    attention: list[Tensor] | None = None  # per row (n_layers, nh, S_row): self-attention over the decoder's tokens
    cross_attention: list[Tensor] | None = None  # per row (n_dec_layers, nh, S_src_row): over the source tokens

    @classmethod
    def of(cls, logits: Tensor, attentions: list[Tensor] | None = None, keep: Tensor | None = None,
           cross_attentions: list[Tensor] | None = None, src_keep: Tensor | None = None) -> "DecodeOutput":
        """logits (B, vocab); attentions per layer (B, nh, T, S) with keep (B, S) marking the real keys."""
        return cls(logits, _last_query(attentions, keep), _last_query(cross_attentions, src_keep))


def _last_query(probs: list[Tensor] | None, keep: Tensor | None) -> list[Tensor] | None:
    if probs is None or any(p is None for p in probs):
        return None
    last = torch.stack([p[:, :, -1] for p in probs], dim=1)  # (B, n_layers, nh, S): the newest token's query
    return [last[b][..., keep[b]] for b in range(last.size(0))]  # boolean indexing copies: no view keeps `last`
