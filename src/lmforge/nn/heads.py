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


def classification_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of logits (..., n) against class indices targets (...), -100 not scored: one label per
    sequence (B, n) / (B,), per token (B, T, n) / (B, T), or a masked-LM's tokens (B, T, vocab) / (B, T)."""
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"targets have shape {tuple(targets.shape)} but the head's logits {tuple(logits.shape)} "
                         f"need one class index per row: shape {tuple(logits.shape[:-1])}")
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)


def span_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Extractive QA (Devlin et al. 2019, sec. 4.2): logits (B, T, 2) hold a start and an end score per token,
    targets (B, 2) the answer's first and last token (-100: not scored). Each of start and end is a softmax over
    the T positions; the loss is the mean of the two cross-entropies (Hugging Face's BertForQuestionAnswering).

    Example: T = 3, start scores [0, 9, 0], end scores [0, 0, 9], targets [[1, 2]] -> a loss near 0.
    """
    B, T, _ = logits.shape
    if tuple(targets.shape) != (B, 2):
        raise ValueError(f"targets have shape {tuple(targets.shape)}; a span head needs (batch, 2) = ({B}, 2): "
                         f"the first and last token of each answer")
    per_choice = logits.transpose(1, 2).reshape(B * 2, T)  # (2B, T): row 2b scores starts, 2b+1 ends
    return F.cross_entropy(per_choice, targets.reshape(B * 2), ignore_index=-100)
