"""Output heads on top of a stack's hidden states."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class LMHead(nn.Module):
    """hidden (B, T, d_model) -> logits (B, T, vocab). Tied: reuses the token embedding matrix
    (Press & Wolf 2017; GPT-2, BERT, the 2017 Transformer), so it owns no weight of its own."""

    def __init__(self, embedding: nn.Embedding | None = None, d_model: int = 0, vocab_size: int = 0, bias: bool = False):
        super().__init__()
        self.embedding = [embedding]  # a list, so the tied matrix is not registered (and saved) twice
        self.proj = nn.Linear(d_model, vocab_size, bias=bias) if embedding is None else None

    def forward(self, x: Tensor) -> Tensor:
        if self.proj is not None:
            return self.proj(x)
        return F.linear(x, self.embedding[0].weight)
