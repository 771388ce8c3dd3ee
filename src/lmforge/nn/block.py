"""A Transformer layer: self-attention, optional cross-attention, feed-forward, each a residual sub-layer.

norm_first=False is the 2017 paper's post-norm "Add & Norm": x = norm(x + sublayer(x)) (also BERT);
norm_first=True is pre-norm (GPT-2, T5): x = x + sublayer(norm(x)), with a final norm after the stack.
Parts are built by the family and passed in (the Annotated Transformer's style), so this file has no
per-family flags.
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from lmforge.nn.attention import MultiHeadAttention
from lmforge.nn.cache import LayerCache


class Block(nn.Module):
    # None, or a faster way to compute this layer for one new token per row with a KV cache (decoding): called as
    # fast_decode(block, x, mask=, bias=, rope=, cache=), it returns the output, or None where it does not apply.
    # lmforge.kernels.accelerate gives each layer lmforge.kernels.decode.block_step (an instance attribute).
    fast_decode = None

    def __init__(self, self_attn: MultiHeadAttention, ffn: nn.Module, norm: Callable[[], nn.Module], *,
                 cross_attn: MultiHeadAttention | None = None, norm_first: bool = True, dropout: float = 0.0):
        super().__init__()
        self.norm_first = norm_first
        self.attn, self.norm1 = self_attn, norm()
        self.cross_attn, self.norm2 = cross_attn, (norm() if cross_attn is not None else None)
        self.ffn, self.norm3 = ffn, norm()
        self.drop = nn.Dropout(dropout)

    def _sublayer(self, x: Tensor, norm: nn.Module, fn: Callable[[Tensor], tuple[Tensor, Tensor | None]]):
        y, probs = fn(norm(x) if self.norm_first else x)
        if self.training and self.drop.p > 0:  # skipped, not called, in eval: one call fewer per sub-layer and token
            y = self.drop(y)
        return (x + y if self.norm_first else norm(x + y)), probs

    def forward(self, x: Tensor, *, mask: Tensor | None = None, bias: Tensor | None = None, is_causal: bool = False,
                cache: LayerCache | None = None, rope=None, memory: Tensor | None = None,
                memory_mask: Tensor | None = None, memory_bias: Tensor | None = None,
                need_weights: bool = False) -> tuple[Tensor, tuple[Tensor | None, Tensor | None]]:
        """x (B, T, d_model) -> (x, (self-attention probs, cross-attention probs)); probs only if need_weights."""
        if (self.fast_decode is not None and cache is not None and x.size(1) == 1
                and not (need_weights or self.training)):
            y = self.fast_decode(self, x, mask=mask, bias=bias, rope=rope, cache=cache)
            if y is not None:
                return y, (None, None)
        x, p_self = self._sublayer(x, self.norm1, lambda h: self.attn(
            h, mask=mask, bias=bias, is_causal=is_causal, cache=cache, rope=rope, need_weights=need_weights))
        p_cross = None
        if self.cross_attn is not None:
            x, p_cross = self._sublayer(x, self.norm2, lambda h: self.cross_attn(
                h, memory=memory, mask=memory_mask, bias=memory_bias, cache=cache, need_weights=need_weights))
        x, _ = self._sublayer(x, self.norm3, lambda h: (self.ffn(h), None))
        return x, (p_self, p_cross)


def encode(blocks, x: Tensor, mask: Tensor | None = None, *, need_weights: bool = False):
    """Run an encoder's blocks (no cache, no causal mask) over x (B, T, d_model): (x, per-layer self-attention
    probabilities, or None unless need_weights). mask: True = may attend (BERT's padding mask)."""
    attentions = [] if need_weights else None
    for block in blocks:
        x, (probs, _) = block(x, mask=mask, need_weights=need_weights)
        if need_weights:
            attentions.append(probs)
    return x, attentions
