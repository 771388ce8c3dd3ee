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


def prefix_padding_mask(prefix: Tensor, keep: Tensor, T: int) -> Tensor:
    """(B, 1, T, S) mask of a batch of prefix-LM rows (GLM: part A bidirectional, part B causal) for the last
    T of S columns as queries. prefix (B, S): True on a row's part-A columns; keep (B, S): False on padding.

    A part-A query sees every part-A key of its row (and nothing of part B); a part-B query sees part A and
    the part-B keys up to itself (Du et al. 2022, fig. 2(d)). Never a padding key; every query at least
    itself (`ensure_self`), so a padding query stays finite. With prefix [[T, T, F, F]], keep all True and
    T = S = 4 it is prefix_mask(4, 2). Rows may have their part A in different columns (left padding)."""
    S = keep.size(1)
    query_in_b = ~prefix[:, S - T:, None]  # (B, T, 1)
    allowed = prefix[:, None, :] | (query_in_b & causal_mask(T, S, device=keep.device))  # (B, T, S)
    return ensure_self((allowed & keep[:, None, :])[:, None], S - T)


def padding_mask(keep: Tensor) -> Tensor:
    """keep (B, S), 1 for real tokens, 0 for padding -> (B, 1, 1, S) key mask broadcastable over heads and queries."""
    return keep.bool()[:, None, None, :]


def check_mask(attention_mask: Tensor, ids: Tensor) -> Tensor:
    """An encoder's attention_mask must have one value per token: (B, T) like ids. Returns it."""
    if tuple(attention_mask.shape) != tuple(ids.shape):
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but ids have shape "
                         f"{tuple(ids.shape)}; give one value per token (1 = real token, 0 = padding)")
    return attention_mask


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


def causal_padding_mask(keep: Tensor, T: int) -> Tensor:
    """(B, 1, T, S) mask for T new queries after S - T earlier positions (S = keep.size(1)): causal,
    never a padding key (keep (B, S), False = padding), and every query at least its own position
    (`ensure_self`), so a padding query stays finite. For left-padded rows decoding together."""
    S = keep.size(1)
    return ensure_self(combine(causal_mask(T, S, device=keep.device), padding_mask(keep)), S - T)

def pad_rows(rows, fill: int = 0, *, left: bool = False, device=None) -> tuple[Tensor, Tensor]:
    """Token-id lists of different lengths -> (ids (B, L), keep (B, L), True on real tokens), padded with
    `fill` on the right, or on the left (`left`: right-aligned rows, every row's last token in the last
    column). Example: [[5, 6], [7]] -> ids [[5, 6], [7, 0]], keep [[T, T], [T, F]]; left: [[5, 6], [0, 7]]."""
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("every row needs at least one token id (got an empty row or no rows)")
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), fill, dtype=torch.long)
    keep = torch.zeros(len(rows), L, dtype=torch.bool)
    for i, r in enumerate(rows):
        cols = slice(L - len(r), L) if left else slice(0, len(r))
        ids[i, cols] = torch.tensor(list(r), dtype=torch.long)
        keep[i, cols] = True
    return ids.to(device), keep.to(device)
