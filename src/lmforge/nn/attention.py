"""Scaled dot-product attention and multi-head attention (self and cross, KV cache, masks, bias).

Shapes, used everywhere in lmforge: B batch, T query length, S key length, nh heads, hs head size.
Masks are boolean, True = "may attend" (same convention as torch's scaled_dot_product_attention).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.nn.cache import LayerCache
from lmforge.nn.masks import causal_mask
from lmforge.nn.positions import apply_rope


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, bias: Tensor | None = None,
              *, is_causal: bool = False, dropout_p: float = 0.0, scale: float | None = None,
              need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
    """softmax(q k^T * scale + bias, masked) v  -- "Attention Is All You Need", eq. 1.

    q (B, nh, T, hs), k and v (B, nh, S, hs); mask broadcastable to (B, nh, T, S), True = attend;
    bias: additive float, broadcastable to (B, nh, T, S) (T5 relative positions); scale defaults to
    1/sqrt(hs) (T5 passes 1.0). Returns (out (B, nh, T, hs), probs (B, nh, T, S) or None).

    is_causal: query i sees keys up to S - T + i (aligned to the end, as with a KV cache: T new queries
    after S - T cached keys); combined with `mask` and `bias` when they are given.

    Normally torch's fused scaled_dot_product_attention; the same computation written out when the
    probabilities are asked for (plots, inspection) or where the fused CPU kernel is slow (_fused_is_slow).

    Example (one head, T = S = 2, hs = 1): q = [[1], [1]], k = [[0], [2]], v = [[1], [3]], no mask:
    scores = [[0, 2], [0, 2]], softmax = [0.1192, 0.8808] per row, out = 0.1192*1 + 0.8808*3 = 2.7616.
    """
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    T, S = q.size(-2), k.size(-2)
    if is_causal and (mask is not None or bias is not None or T != S):
        # torch's is_causal aligns to the start and cannot be combined with a mask: make it part of the mask
        causal = causal_mask(T, S, device=q.device)
        mask, is_causal = (causal if mask is None else mask & causal), False
    if bias is not None:
        bias = bias.to(q.dtype)
        mask = bias if mask is None else bias.masked_fill(~mask, torch.finfo(q.dtype).min)
    if not (need_weights or _fused_is_slow(q, k)):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                             is_causal=is_causal, scale=scale)
        return out, None
    scores = (q * scale) @ k.transpose(-2, -1)  # (B, nh, T, S); scaling q touches T*hs values, not T*S
    if is_causal:
        mask = causal_mask(T, S, device=q.device)
    if mask is not None:  # in place: the matmul's backward needs q and k, not its output
        scores = scores.add_(mask) if mask.dtype != torch.bool else scores.masked_fill_(~mask, float("-inf"))
    probs = scores.softmax(dim=-1, dtype=torch.float32).to(v.dtype)  # normalise in fp32, as the fused kernel does
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    return probs @ v, (probs if need_weights else None)


def _fused_is_slow(q: Tensor, k: Tensor) -> bool:
    """bf16/fp16 on CPU with at most 256 keys: the written-out attention beats torch's fused CPU kernel.

    Forward + backward at (B, nh, T, hs) = (12, 4, 64, 32) in bf16 take 6.7 ms with
    scaled_dot_product_attention and 1.4 ms written out (4 x 256 x 12 heads x 64: 45 ms vs 23 ms; from 512
    keys on the fused kernel is as fast or faster, and it never stores the (T, S) probabilities). Measured on
    an AVX512-BF16 CPU, one thread, torch 2.13; see bench/train_throughput.py. In fp32 the two are equal.
    The scores are rounded to bf16 before the fp32 softmax, as in eager implementations (HF GPT-2's eager
    path): output error against fp32 ~1e-2 at T = 64, against ~5e-3 for the fused kernel.
    """
    return q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) and k.size(-2) <= 256


class MultiHeadAttention(nn.Module):
    """Multi-head attention: project, split into heads, attend, merge, project.

    Self-attention uses one fused q/k/v projection (`qkv`, one matmul instead of three);
    cross-attention (`cross=True`) projects queries from x and keys/values from the encoder output.

    Grouped-query attention (Ainslie et al. 2023; Llama 2 70B, Llama 3, Qwen2, GLM-4): `n_kv_heads` < n_heads
    key/value heads, each shared by n_heads / n_kv_heads query heads (query head h reads key/value head
    h // group). The KV cache then holds n_kv_heads heads: group times fewer bytes per token.
    `head_dim` may differ from d_model / n_heads (GLM-4); `qkv_bias` apart from `bias` (Qwen2, GLM-4: biases
    on q/k/v only).
    """

    def __init__(self, d_model: int, n_heads: int, *, bias: bool = True, dropout: float = 0.0,
                 cross: bool = False, scale: float | None = None, n_kv_heads: int | None = None,
                 head_dim: int | None = None, qkv_bias: bool | None = None):
        super().__init__()
        n_kv_heads = n_kv_heads or n_heads
        if head_dim is None and d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads}), or pass head_dim")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads ({n_heads}) must be a multiple of n_kv_heads ({n_kv_heads}): each "
                             "key/value head serves the same number of query heads")
        self.n_heads, self.n_kv_heads, self.cross, self.scale = n_heads, n_kv_heads, cross, scale
        self.head_dim = head_dim or d_model // n_heads
        self.dropout = dropout
        inner, kv = n_heads * self.head_dim, n_kv_heads * self.head_dim
        self.split = (inner, kv, kv)
        in_bias = bias if qkv_bias is None else qkv_bias
        if cross:
            self.q = nn.Linear(d_model, inner, bias=in_bias)
            self.kv = nn.Linear(d_model, 2 * kv, bias=in_bias)
        else:
            self.qkv = nn.Linear(d_model, inner + 2 * kv, bias=in_bias)
        self.out = nn.Linear(inner, d_model, bias=bias)
        self.out.residual = True  # scaled init for projections into the residual stream (see nn.init)

    # the attention function: this file's; lmforge.kernels.accelerate may give a layer (as an instance attribute)
    # lmforge.kernels.attention's, which takes a form timed faster on this CPU for decoding and short training rows
    attend = staticmethod(attention)

    def _heads(self, x: Tensor, n: int) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n, self.head_dim).transpose(1, 2)  # (B, n, T, hs)

    def forward(self, x: Tensor, *, memory: Tensor | None = None, mask: Tensor | None = None,
                bias: Tensor | None = None, is_causal: bool = False, cache: LayerCache | None = None,
                rope: tuple | None = None, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (B, T, d_model); memory (B, S, d_model) for cross-attention; rope: (cos, sin[, interleaved]) from
        lmforge.nn.positions.Rotary. Returns (y (B, T, d_model), probs)."""
        B, T, _ = x.shape
        inner, kv, _ = self.split
        if self.cross:
            q = self._heads(self.q(x), self.n_heads)
            if cache is not None and cache.cross is not None:
                k, v = cache.cross  # encoder keys/values are computed once per generation
            else:
                k, v = (self._heads(t, self.n_kv_heads) for t in self.kv(memory).split(kv, dim=2))
                if cache is not None:
                    cache.cross = (k, v)
        else:
            q, k, v = self.qkv(x).split(self.split, dim=2)
            q, k, v = self._heads(q, self.n_heads), self._heads(k, self.n_kv_heads), self._heads(v, self.n_kv_heads)
            if rope is not None:
                q, k = apply_rope(q, *rope), apply_rope(k, *rope)
            if cache is not None:
                k, v = cache.update(k, v)  # (B, n_kv, past + T, hs)
        dropout_p = self.dropout if self.training else 0.0
        if self.n_kv_heads == self.n_heads:
            y, probs = self.attend(q, k, v, mask, bias, is_causal=is_causal, scale=self.scale,
                                   dropout_p=dropout_p, need_weights=need_weights)
        else:
            y, probs = grouped_attention(q, k, v, mask, bias, is_causal=is_causal, scale=self.scale,
                                         dropout_p=dropout_p, need_weights=need_weights)
        y = y.transpose(1, 2).reshape(B, T, inner)  # (B, T, nh * hs)
        return self.out(y), probs


def grouped_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, bias: Tensor | None = None,
                      **kw) -> tuple[Tensor, Tensor | None]:
    """attention() with fewer key/value heads than query heads: q (B, nh, T, hs), k and v (B, nkv, S, hs).

    One new token (decoding): the group's queries become one head's T = group query rows, so every query
    reads its key/value head where it lies in the cache -- no copy of the cache per step. Otherwise (prefill,
    training) each key/value head is repeated for its group, as the equations say."""
    B, nh, T, hs = q.shape
    nkv = k.size(1)
    group = nh // nkv
    one_row_mask = mask is None or (mask.size(-2) == 1 and (mask.dim() < 4 or mask.size(1) == 1))
    if T == 1 and bias is None and one_row_mask:
        y, probs = attention(q.view(B, nkv, group, hs), k, v, mask, **{**kw, "is_causal": False})
        return y.view(B, nh, 1, hs), (None if probs is None else probs.reshape(B, nh, 1, -1))
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return attention(q, k, v, mask, bias, **kw)
