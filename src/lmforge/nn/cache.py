"""KV cache: keys and values of past positions, so each new token costs one position, not the whole prefix.

Buffers are allocated once per generation, (B, nh, max_len, hs) per layer, and filled in place;
`update` returns views of the filled part. Invariant (tested): decoding with the cache gives the
same logits as recomputing the whole sequence.

A batch of rows of different lengths is kept right-aligned: the shorter rows are left-padded, so every
row's newest token is in the last column. `Context` records which columns are real tokens and gives the
positions and mask the model needs; `reorder`, `join` and `trim` keep rows, stack two batches and drop
the padding all rows share (beam search, continuous batching).
"""
from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    def __init__(self, n_layers: int, batch_size: int, n_heads: int, head_dim: int, max_len: int,
                 *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (batch_size, n_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.cross: list[tuple[Tensor, Tensor] | None] = [None] * n_layers
        self.max_len = max_len
        self.length = 0  # positions filled; advanced by the model after all layers have written

    def layer(self, i: int) -> "LayerCache":
        return LayerCache(self, i)

    def advance(self, n: int) -> None:
        self.length += n

    @property
    def batch_size(self) -> int:
        return self.k[0].size(0)

    def reorder(self, index: Tensor) -> None:
        """Keep/reorder batch rows (beam search, finished sequences leaving a batch): row i <- row index[i]."""
        self.k = [t.index_select(0, index) for t in self.k]
        self.v = [t.index_select(0, index) for t in self.v]
        self.cross = [None if c is None else (c[0].index_select(0, index), c[1].index_select(0, index)) for c in self.cross]

    def join(self, other: "KVCache") -> "KVCache":
        """A new cache with self's rows, then other's, right-aligned at the longer length (the shorter
        rows' first positions are padding for the caller to mask). Cross-attention keys/values
        (B, nh, S, hs) are padded on the right to the longer source."""
        k, L = self.k[0], max(self.length, other.length)
        B1 = self.batch_size
        out = KVCache(len(self.k), B1 + other.batch_size, k.size(1), k.size(3), max(self.max_len, other.max_len),
                      device=k.device, dtype=k.dtype)
        for dst, a, b in zip(out.k + out.v, self.k + self.v, other.k + other.v):
            dst[:B1, :, L - self.length:L] = a[:, :, :self.length]
            dst[B1:, :, L - other.length:L] = b[:, :, :other.length]
        out.length = L
        if any((a is None) != (b is None) for a, b in zip(self.cross, other.cross)):
            raise ValueError("cannot join a cache whose cross-attention keys are computed with one whose are not")
        out.cross = [None if a is None else (cat_padded(a[0], b[0], 2), cat_padded(a[1], b[1], 2))
                     for a, b in zip(self.cross, other.cross)]
        return out

    def trim(self, n: int) -> None:
        """Drop the first n positions of every row (left padding that all rows share)."""
        if n:
            L = self.length
            for t in self.k + self.v:
                t[:, :, :L - n] = t[:, :, n:L].clone()
            self.length -= n


class LayerCache:
    """One layer's view of a KVCache."""

    __slots__ = ("parent", "i")

    def __init__(self, parent: KVCache, i: int):
        self.parent, self.i = parent, i

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (B, nh, T, hs) at the current length; return all keys/values so far (B, nh, length+T, hs)."""
        K, V, start = self.slot(k.size(2))
        end = start + k.size(2)
        K.narrow(2, start, end - start).copy_(k)  # narrow + copy_: the same write as K[:, :, start:end] = k
        V.narrow(2, start, end - start).copy_(v)  # with fewer calls (this runs for every layer and token)
        return K.narrow(2, 0, end), V.narrow(2, 0, end)

    def slot(self, n: int = 1) -> tuple[Tensor, Tensor, int]:
        """(this layer's whole key and value buffers (B, nh, max_len, hs), the position the next n go at), once
        checked that they fit: `update` writes there; so does a kernel that writes them itself
        (lmforge.kernels.decode)."""
        p = self.parent
        if p.length + n > p.max_len:
            raise ValueError(f"KV cache is full: {p.length + n} positions needed, the cache holds {p.max_len}")
        return p.k[self.i], p.v[self.i], p.length

    @property
    def cross(self) -> tuple[Tensor, Tensor] | None:
        return self.parent.cross[self.i]

    @cross.setter
    def cross(self, kv: tuple[Tensor, Tensor]) -> None:
        self.parent.cross[self.i] = kv


class Context:
    """What a decoder has read so far, one right-aligned row per sequence: the keys and values in a
    KVCache or, without one, the token ids to read again at every step; `keep` (B, L) is True where
    a row has a real token and False on its left padding.

        ctx = Context(2, cache)
        ctx.feed(ids, keep)   # ids [[0, 5, 6], [7, 8, 9]], keep [[F, T, T], [T, T, T]]
        -> (ids, positions [[0, 0, 1], [0, 1, 2]], mask = keep): each row counts from its own first token
    """

    def __init__(self, batch_size: int, cache: KVCache | None = None, *, ids: bool = False, device=None):
        self.cache = cache
        self.keep = torch.zeros(batch_size, 0, dtype=torch.bool, device=device)  # (B, L)
        self.ids = torch.zeros(batch_size, 0, dtype=torch.long, device=device) if ids else None  # (B, L), no cache
        self.count = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,) real tokens read per row
        self.padded = False  # some row has padding: positions and masks are needed (else the plain causal path)

    def feed(self, ids: Tensor, keep: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Record new tokens ids (B, T), keep (B, T) (False = left padding; default all real). Returns what
        to run the model on: (ids: the new ones with a cache, all of them without; positions (B, T) of
        those ids; attention mask (B, L + T) of real keys), the last two None when no row is padded."""
        before = self.count  # (B,) real tokens each row had read
        if keep is None:
            keep = torch.ones(ids.shape, dtype=torch.bool, device=ids.device)
        else:
            self.padded = self.padded or not bool(keep.all())
        self.count = before + keep.sum(-1)
        self.keep = torch.cat([self.keep, keep], dim=1)
        if self.ids is not None:
            self.ids = ids = torch.cat([self.ids, ids], dim=1)
        if not self.padded:
            return ids, None, None
        if self.ids is not None:  # no cache: the whole context is read again, with the positions of all of it
            return ids, (self.keep.long().cumsum(-1) - 1).clamp(min=0), self.keep
        # a row's new positions go on from its own count: O(B T) per step, not a cumsum over the whole context
        positions = (before[:, None] + keep.long().cumsum(-1) - 1).clamp(min=0)
        return ids, positions, self.keep

    def reorder(self, index: Tensor) -> None:
        """Row i <- row index[i]: keep, drop or repeat rows."""
        if self.cache is not None:
            self.cache.reorder(index)
        self.keep, self.count = self.keep[index], self.count[index]
        self.ids = None if self.ids is None else self.ids[index]

    def join(self, other: "Context") -> "Context":
        """self's rows, then other's, right-aligned at the longer length."""
        out = Context(0)
        out.cache = None if self.cache is None else self.cache.join(other.cache)
        out.keep = cat_padded(self.keep, other.keep, 1, False, left=True)
        out.count = torch.cat([self.count, other.count])
        out.ids = None if self.ids is None else cat_padded(self.ids, other.ids, 1, 0, left=True)
        out.padded = not bool(out.keep.all())
        return out

    def trim(self) -> None:
        """Drop the columns of left padding that every row has (after rows left the batch)."""
        if not self.keep.numel():
            return
        n = self.keep.size(1) - int(self.keep.sum(-1).max())
        if n:
            if self.cache is not None:
                self.cache.trim(n)
            self.keep = self.keep[:, n:]
            self.ids = None if self.ids is None else self.ids[:, n:]
        self.padded = not bool(self.keep.all())


def cat_padded(a: Tensor, b: Tensor, dim: int, fill=0, *, left: bool = False) -> Tensor:
    """a's rows, then b's (along dim 0), the shorter padded with `fill` along `dim` to the longer: on
    the right, or on the left (`left`, for right-aligned rows). Example (dim 1): [[1, 2]], [[3]] ->
    [[1, 2], [3, 0]]; left: [[1, 2], [0, 3]]."""
    L = max(a.size(dim), b.size(dim))
    shape = list(a.shape)
    shape[0], shape[dim] = a.size(0) + b.size(0), L
    out = torch.full(shape, fill, dtype=a.dtype, device=a.device)
    for rows, t in ((slice(0, a.size(0)), a), (slice(a.size(0), None), b)):
        n = t.size(dim)
        out[rows].narrow(dim, L - n if left else 0, n).copy_(t)
    return out
