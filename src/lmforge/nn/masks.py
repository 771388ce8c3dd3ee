"""Attention masks as boolean matrices, True = "query may attend to key".

    >>> causal_mask(3)
    tensor([[ True, False, False],
            [ True,  True, False],
            [ True,  True,  True]])
    >>> prefix_mask(4, 2)   # first 2 positions see each other (GLM part A); the rest is causal (part B)
    tensor([[ True,  True, False, False],
            [ True,  True, False, False],
            [ True,  True,  True, False],
            [ True,  True,  True,  True]])
"""
from __future__ import annotations

import torch
from torch import Tensor


def causal_mask(T: int, S: int | None = None, *, device=None) -> Tensor:
    """(T, S) lower-triangular mask aligned to the end: query i is position S - T + i (KV cache offset)."""
    S = T if S is None else S
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(S - T)


def prefix_mask(T: int, prefix_len: int, *, device=None) -> Tensor:
    """(T, T): bidirectional over the first `prefix_len` positions, causal after (GLM, prefix LM)."""
    m = causal_mask(T, device=device)
    m[:, :prefix_len] = True
    return m


def padding_mask(keep: Tensor) -> Tensor:
    """keep (B, S), 1 for real tokens, 0 for padding -> (B, 1, 1, S) key mask broadcastable over heads and queries."""
    return keep.bool()[:, None, None, :]


def combine(*masks: Tensor | None) -> Tensor | None:
    """AND of the given masks (None = no constraint)."""
    out = None
    for m in masks:
        if m is not None:
            out = m if out is None else out & m
    return out


def ensure_self(mask: Tensor, offset: int = 0) -> Tensor:
    """Let every query attend at least to its own position (key offset + i).

    A query whose keys are all masked (a padding query) would give softmax over nothing = NaN,
    and 0 * NaN poisons later layers; attending to itself keeps it finite and changes no real token.
    """
    T, S = mask.shape[-2:]
    eye = torch.zeros(T, S, dtype=torch.bool, device=mask.device)
    eye[torch.arange(T), torch.arange(T) + offset] = True
    return mask | eye
