"""Output heads on top of a stack's hidden states."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.nn.feedforward import ACTIVATIONS
from lmforge.nn.norms import LayerNorm


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


class MLMHead(nn.Module):
    """BERT's masked-LM head (google-research/bert, run_pretraining.py `get_masked_lm_output`): hidden
    (B, T, d_model) -> dense -> activation -> LayerNorm -> the token embedding matrix (tied) + a per-token
    output bias -> logits (B, T, vocab). DistilBERT's is the same."""

    def __init__(self, embedding: nn.Embedding, activation: str = "gelu", eps: float = 1e-12):
        super().__init__()
        d_model, vocab_size = embedding.embedding_dim, embedding.num_embeddings
        self.dense = nn.Linear(d_model, d_model)
        self.act = ACTIVATIONS[activation]
        self.norm = LayerNorm(d_model, eps)
        self.decoder = LMHead(embedding)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.norm(self.act(self.dense(x)))) + self.bias
