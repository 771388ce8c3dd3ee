"""KV cache: keys and values of past positions, so each new token costs one position, not the whole prefix.

Buffers are allocated once per generation, (B, nh, max_len, hs) per layer, and filled in place;
`update` returns views of the filled part. Invariant (tested): decoding with the cache gives the
same logits as recomputing the whole sequence.
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


class LayerCache:
    """One layer's view of a KVCache."""

    __slots__ = ("parent", "i")

    def __init__(self, parent: KVCache, i: int):
        self.parent, self.i = parent, i

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (B, nh, T, hs) at the current length; return all keys/values so far (B, nh, length+T, hs)."""
        p = self.parent
        start, end = p.length, p.length + k.size(2)
        if end > p.max_len:
            raise ValueError(f"KV cache is full: {end} positions needed, the cache holds {p.max_len}")
        K, V = p.k[self.i], p.v[self.i]
        K.narrow(2, start, end - start).copy_(k)  # narrow + copy_: the same write as K[:, :, start:end] = k
        V.narrow(2, start, end - start).copy_(v)  # with fewer calls (this runs for every layer and token)
        return K.narrow(2, 0, end), V.narrow(2, 0, end)

    @property
    def cross(self) -> tuple[Tensor, Tensor] | None:
        return self.parent.cross[self.i]

    @cross.setter
    def cross(self, kv: tuple[Tensor, Tensor]) -> None:
        self.parent.cross[self.i] = kv
