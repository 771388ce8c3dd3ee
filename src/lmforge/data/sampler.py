"""Random training windows whose order is a pure function of (seed, batch index).

Batch i is drawn from `numpy.random.default_rng([seed, i])`, so the data position saved in a
checkpoint is one integer, resuming at i gives exactly the batches an uninterrupted run would
have seen, and nothing depends on global RNG state.

Across processes (DDP) batch i is one global batch of batch_size * world_size windows; rank r
takes rows [r * batch_size, (r + 1) * batch_size). So 2 processes with batch_size B see the same
windows as 1 process with batch_size 2B.
"""
from __future__ import annotations

import numpy as np
import torch


class RandomWindows:
    """nanoGPT's get_batch: windows of block_size + 1 tokens at random offsets; y is x shifted by one."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if len(tokens) < block_size + 1:
            raise ValueError(f"the data has {len(tokens)} tokens, fewer than block_size + 1 = {block_size + 1}: "
                             f"use a smaller data.block_size or more text")
        assert 0 <= rank < world_size
        self.tokens, self.block_size, self.batch_size = tokens, block_size, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size

    def starts(self, index: int) -> np.ndarray:
        """Window offsets of this rank's part of global batch `index`."""
        rng = np.random.default_rng([self.seed, index])
        n = len(self.tokens) - self.block_size  # last valid start leaves room for the shifted target
        starts = rng.integers(0, n, size=self.batch_size * self.world_size)
        return starts[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def get(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y), both int64 of shape (batch_size, block_size)."""
        T = self.block_size
        rows = np.stack([np.asarray(self.tokens[s:s + T + 1], dtype=np.int64) for s in self.starts(index)])  # (B, T+1)
        rows = torch.from_numpy(rows)
        return rows[:, :-1], rows[:, 1:]
