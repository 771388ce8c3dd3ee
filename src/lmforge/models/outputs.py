from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ModelOutput:
    """What every model's forward returns.

    logits (B, T, vocab); loss: mean cross-entropy over targets != -100 (when targets are given);
    attentions: per layer, (B, nh, T, S) self-attention probabilities (when asked for);
    cross_attentions: per decoder layer, encoder-decoder families only; hidden_states: final hidden states.
    """

    logits: Tensor
    loss: Tensor | None = None
    attentions: list[Tensor] | None = None
    cross_attentions: list[Tensor] | None = None
    hidden_states: Tensor | None = None
