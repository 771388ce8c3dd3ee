"""The input embedding of the BERT-style encoders: token + learned position (+ segment), then LayerNorm.

BERT (Devlin et al. 2019, sec. 3, fig. 2): the input representation is the sum of the token, segment and
position embeddings; the reference code (google-research/bert, modeling.py `embedding_postprocessor`)
then applies LayerNorm and dropout. DistilBERT (Sanh et al. 2019) drops the segment embedding:
n_segments=0.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from lmforge.nn.norms import LayerNorm
from lmforge.nn.positions import LearnedPositions


class Embeddings(nn.Module):
    def __init__(self, vocab_size: int, max_len: int, d_model: int, n_segments: int = 2, *,
                 eps: float = 1e-12, dropout: float = 0.0):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = LearnedPositions(max_len, d_model)
        self.seg = nn.Embedding(n_segments, d_model) if n_segments else None
        self.norm = LayerNorm(d_model, eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, ids: Tensor, segments: Tensor | None = None) -> Tensor:
        """ids (B, T), segments (B, T) or None (all segment 0) -> (B, T, d_model); positions 0..T-1.
        ValueError for what the tables cannot read: more than max_len tokens, segments of another shape
        or out of range."""
        self.check(ids, segments)
        x = self.tok(ids)  # (B, T, d_model)
        if self.seg is not None:
            x = x + (self.seg(segments) if segments is not None else self.seg.weight[0])
        x = x + self.pos(torch.arange(ids.size(1), device=ids.device))  # (T, d_model), broadcast over B
        return self.drop(self.norm(x))

    def check(self, ids: Tensor, segments: Tensor | None) -> None:
        max_len = self.pos.num_embeddings
        if ids.dim() != 2:
            raise ValueError(f"ids must have shape (batch, length), got {tuple(ids.shape)}; add a batch dimension "
                             "with ids[None]")
        if ids.size(1) > max_len:
            raise ValueError(f"the input is {ids.size(1)} tokens but the model reads at most max_len = {max_len} "
                             f"(its learned position table). Truncate it to {max_len} tokens (a tokenizer.json "
                             "with a `truncation` section does) or split the text")
        if segments is None:
            return
        n = self.seg.num_embeddings if self.seg is not None else 0
        if n == 0:
            raise ValueError("this model has no segment embeddings (DistilBERT); do not pass token_type_ids")
        if tuple(segments.shape) != tuple(ids.shape):
            raise ValueError(f"token_type_ids has shape {tuple(segments.shape)} but ids have shape "
                             f"{tuple(ids.shape)}; give one segment id per token (0 = sentence A, 1 = B)")
        if segments.numel() and not (0 <= int(segments.min()) and int(segments.max()) < n):
            raise ValueError(f"token_type_ids must be in [0, {n - 1}] (the model has {n} segment embeddings), "
                             f"got values from {int(segments.min())} to {int(segments.max())}")
