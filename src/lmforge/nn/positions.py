"""Position information: sinusoidal, learned, T5 relative bias, GLM 2-D, rotary."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal(max_len: int, d_model: int) -> Tensor:
    """(max_len, d_model) table: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...).

    Vaswani et al. 2017, section 3.5. Example: PE(1, 0) = sin(1) = 0.8415, PE(1, 1) = cos(1) = 0.5403.
    """
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
    inv = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d/2,)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * inv)
    pe[:, 1::2] = torch.cos(pos * inv[: d_model // 2])
    return pe.float()


class LearnedPositions(nn.Embedding):
    """One learned vector per absolute position (GPT, BERT)."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__(max_len, d_model)


class Positions2D(nn.Module):
    """GLM's 2-D positions (Du et al. 2022, sec. 2.2): position id + block position id, two learned tables summed.

    Part A tokens: (their position, 0); part B span tokens: (position of the span's [MASK] in A, 1..len).
    """

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.pos = nn.Embedding(max_len, d_model)
        self.block = nn.Embedding(max_len, d_model)

    def forward(self, position_ids: Tensor, block_position_ids: Tensor) -> Tensor:
        return self.pos(position_ids) + self.block(block_position_ids)


class RelativePositionBias(nn.Module):
    """T5's bucketed relative position bias, added to attention logits (Raffel et al. 2020, sec. 2.1).

    One learned scalar per (bucket, head). Half the buckets are exact small distances; the rest
    grow logarithmically up to max_distance. Bidirectional (encoder) buckets use the sign too.
    T5 computes the bias once per stack, in its first layer, and adds the same (1, nh, T, S) tensor to
    the logits of every layer of that stack (mesh-tensorflow; HF's `has_relative_attention_bias` on
    block 0 only): a family builds one module per stack and hands its output to each block.
    """

    def __init__(self, n_heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        check_buckets(num_buckets, max_distance)
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional
        self.bias = nn.Embedding(num_buckets, n_heads)

    @staticmethod
    def bucket(relative: Tensor, bidirectional: bool, num_buckets: int, max_distance: int) -> Tensor:
        """relative = key_pos - query_pos -> bucket index. Example (bidirectional, 32, 128): -1 -> 1, 1 -> 17, 0 -> 0."""
        out = torch.zeros_like(relative)
        if bidirectional:
            num_buckets //= 2
            out += (relative > 0).long() * num_buckets
            n = relative.abs()
        else:
            n = (-relative).clamp(min=0)
        max_exact = num_buckets // 2
        is_small = n < max_exact
        large = max_exact + (torch.log(n.float() / max_exact + 1e-9) / math.log(max_distance / max_exact)
                             * (num_buckets - max_exact)).long()
        large = large.clamp(max=num_buckets - 1)
        return out + torch.where(is_small, n, large)

    def forward(self, T: int, S: int, *, offset: int = 0) -> Tensor:
        """Bias (1, nh, T, S) for queries at positions offset..offset+T-1 and keys 0..S-1."""
        q = torch.arange(offset, offset + T, device=self.bias.weight.device)[:, None]
        k = torch.arange(S, device=self.bias.weight.device)[None, :]
        b = self.bucket(k - q, self.bidirectional, self.num_buckets, self.max_distance)  # (T, S)
        return self.bias(b).permute(2, 0, 1)[None]  # (1, nh, T, S)


def check_buckets(num_buckets: int, max_distance: int) -> None:
    """ValueError unless the buckets are well formed in both directions: an even num_buckets >= 4 (the
    bidirectional form halves it, then keeps half of that for exact distances: at least one each), and
    max_distance beyond the exact range of the one-directional form (num_buckets // 2), or the logarithmic
    buckets divide by log(max_distance / max_exact) <= 0. T5 uses 32 and 128."""
    if not (isinstance(num_buckets, int) and num_buckets >= 4 and num_buckets % 2 == 0):
        raise ValueError(f"num_buckets must be an even integer >= 4 (T5: 32), got {num_buckets!r}: half the buckets "
                         "are for keys on each side, and half of those for exact small distances")
    if not (isinstance(max_distance, int) and max_distance > num_buckets // 2):
        raise ValueError(f"max_distance must be an integer > num_buckets // 2 = {num_buckets // 2} (T5: 128 for 32 "
                         f"buckets), got {max_distance!r}: distances from there up to max_distance share the "
                         "logarithmic buckets")


def rope_cache(head_dim: int, positions: Tensor, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos, sin of shape (T, head_dim) for rotary embeddings (Su et al. 2021, RoFormer, eq. 34).

    theta_i = base^(-2i/d) for i < d/2; the angle of pair i at position m is m * theta_i.
    We rotate the pairs (x_i, x_{i+d/2}) ("half split", as in GPT-NeoX/Llama checkpoints); the paper pairs
    neighbours (x_{2i}, x_{2i+1}). The two differ only by a fixed permutation of the head dimensions.
    """
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    angles = positions.float()[..., None] * inv  # (..., T, d/2)
    angles = torch.cat([angles, angles], dim=-1)  # (..., T, d)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor, interleaved: bool = False) -> Tensor:
    """Rotate x (B, nh, T, hs): x * cos + rotate(x) * sin.

    Half split (default, GPT-NeoX / Llama / Qwen2 checkpoints): rotate(a, b) = (-b, a) for the two halves.
    Interleaved (the paper's neighbour pairs; GLM-4): rotate(x0, x1, x2, x3, ...) = (-x1, x0, -x3, x2, ...).
    Partial rotary: when cos covers fewer dimensions than hs (GLM-4 rotates half of each head), only the
    first cos.size(-1) dimensions turn and the rest pass through unchanged.
    """
    rot = cos.size(-1)
    if rot < x.size(-1):
        return torch.cat([apply_rope(x[..., :rot], cos, sin, interleaved), x[..., rot:]], dim=-1)
    if interleaved:
        pairs = x.unflatten(-1, (-1, 2))  # (..., hs/2, 2)
        turned = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    else:
        a, b = x.chunk(2, dim=-1)
        turned = torch.cat([-b, a], dim=-1)
    return (x * cos + turned * sin).to(x.dtype)


ROPE_SCALINGS = ("default", "linear", "llama3")


def rope_frequencies(dim: int, base: float = 10000.0, scaling: dict | None = None) -> Tensor:
    """theta_i = base^(-2i/dim), i < dim/2 (RoFormer eq. 34), float32 in the order HF computes it, then scaled:

    linear: theta_i / factor -- position interpolation (Chen et al. 2023): positions squeezed by `factor`.
    llama3: Llama 3.1's rule (Meta, 2024): wavelengths shorter than original_max / high_freq_factor keep their
      frequency, longer than original_max / low_freq_factor are divided by `factor`, and in between the two
      are blended linearly in original_max / wavelength.
    """
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    kind = (scaling or {}).get("rope_type", "default")
    if kind not in ROPE_SCALINGS:
        raise ValueError(f"unknown rope scaling {kind!r}; supported: {', '.join(ROPE_SCALINGS)}")
    if kind == "linear":
        return inv / scaling["factor"]
    if kind == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > old / low, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        between = (wavelen >= old / high) & (wavelen <= old / low)
        return torch.where(between, blended, scaled)
    return inv


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021) for positions (B, T): the (cos, sin, interleaved) that
    MultiHeadAttention applies to queries and keys. `dim` = the rotated dimensions of each head (all of
    them, or a fraction for partial rotary)."""

    def __init__(self, dim: int, base: float = 10000.0, *, interleaved: bool = False, scaling: dict | None = None):
        super().__init__()
        self.interleaved = interleaved
        self.register_buffer("inv_freq", rope_frequencies(dim, base, scaling), persistent=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor, bool]:
        angles = positions.float()[..., None] * self.inv_freq  # (B, T, dim/2)
        if self.interleaved:  # each frequency twice in a row: (t0, t0, t1, t1, ...)
            angles = angles.repeat_interleave(2, dim=-1)
        else:  # the halves (t0, t1, ..., t0, t1, ...)
            angles = torch.cat([angles, angles], dim=-1)
        return angles.cos()[:, None], angles.sin()[:, None], self.interleaved  # (B, 1, T, dim): broadcast over heads
