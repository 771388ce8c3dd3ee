"""A pre-norm Transformer layer's decoding step (one new token per row, KV cache) in seven calls.

lmforge.nn.Block computes a layer through its modules: for one token that is ~40 calls of Python and small torch
ops around the four products (two norms, the q/k/v split into heads, two cache writes, the attention, the heads
merged back, the GELU, two residual adds, a module call for each part). GPT-2-small has 12 layers: that glue
took ~3 ms of a ~20 ms token on an AMD EPYC Zen 3 (two threads, torch 2.13), as much as the difference between
0.8 of the memory-bandwidth bound and less (issue 17; bench/generate.py --only decode). Here the same step is

    h = layer_norm(x)                 x (B, d)
    qkv = h W_qkv^T + b               lmforge.kernels.linear's product for this kind
    a = attention(qkv, cache)         cpu.cpp cached_attention: k, v written into the cache, q attends
    x = x + a W_out^T + b             the residual added by the product (cpu.cpp linear_rows' `add`)
    h = layer_norm(x)
    h = gelu(h W_1^T + b)             the GELU applied by the product (linear_rows' `gelu`)
    x = x + h W_2^T + b

with the same arithmetic as the modules: where every part is lmforge's kernel the output is the same to the bit.
Each part follows the choice timed for it (lmforge.kernels.tune): a product whose chosen path is not the AVX2
loop runs as `linear` would, its add and activation after it; where the decoding attention chose torch's kernel,
or the layer is not of this kind, `block_step` returns None and the Block runs its modules.

This kind: norm_first, LayerNorm norms, self-attention only (MultiHeadAttention with as many key/value heads as
query heads, no rotary positions, no additive bias), a FeedForward without a gate, every product an accelerated
Linear (lmforge.kernels.linear.Linear) or int8 layer (lmforge.kernels.int8.Int8Linear, which keeps its own timed
product: only the glue around it is saved); x fp32 on CPU without autograd, a KV cache of fp32, at most a padding
mask. GPT-2 and GPT-style models from lmforge.load are; Llama-style layers (RMSNorm, rotary positions, grouped heads,
gated feed-forward) run their modules. `set_decode_step(False)` (and lmforge.kernels.set_enabled(False)) sends
every layer through its modules; lmforge.kernels.accelerate puts `block_step` into a model's Blocks.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import lmforge.kernels.attention as fast_attention
import lmforge.kernels.gelu as fast_gelu
import lmforge.kernels.native as native
from lmforge.kernels.int8 import Int8Linear
from lmforge.kernels.linear import Linear, linear, native_rows
from lmforge.nn.attention import MultiHeadAttention
from lmforge.nn.feedforward import FeedForward

_enabled = True
_NORMS = (nn.LayerNorm,)
_PRODUCTS = (Linear, Int8Linear)  # accelerated layers: fp32 (lmforge.kernels.linear) or int8 weights (.int8)


def set_decode_step(enabled: bool) -> None:
    """The seven-call step on (the default) or off (every layer through its modules)."""
    global _enabled
    _enabled = bool(enabled)


def block_step(block, x: Tensor, *, mask: Tensor | None = None, bias: Tensor | None = None, rope=None,
               cache=None) -> Tensor | None:
    """Block `block`'s output for x (B, 1, d_model) with its LayerCache `cache`, or None where this step does not
    apply (module docstring). mask: None or the (B, 1, 1, S) boolean padding mask of a left-padded batch."""
    attn, ffn, norm1, norm2 = block.attn, block.ffn, block.norm1, block.norm3
    if not (_enabled and _of_this_kind(block) and bias is None and rope is None and x.dtype == torch.float32
            and x.device.type == "cpu" and not torch.is_grad_enabled()):
        return None
    K, V, position = cache.slot()
    B, _, C = x.shape
    H, D, S = attn.n_heads, attn.head_dim, position + 1
    keep = fast_attention._keep(mask, B, S)
    if keep is False or K.dtype != torch.float32 or not fast_attention.decode_kernel(B, H, S, D, keep is not None):
        return None
    ext = native.extension()
    x = x.reshape(B, C)
    h = F.layer_norm(x, (C,), norm1.weight, norm1.bias, norm1.eps)
    qkv = _product(attn.qkv, h).contiguous()
    a = ext.cached_attention(qkv, K, V, position, keep, 1.0 / math.sqrt(D) if attn.scale is None else attn.scale)
    x = _product(attn.out, a, add=x)
    h = F.layer_norm(x, (C,), norm2.weight, norm2.bias, norm2.eps)
    h = _product(ffn.fc1, h, act=ffn.act,
                 gelu=ffn.act is fast_gelu.gelu_tanh and fast_gelu.inference_kernel((B, ffn.fc1.out_features)))
    return _product(ffn.fc2, h, add=x).view(B, 1, C)


def _of_this_kind(block) -> bool:
    attn, ffn = block.attn, block.ffn
    return (block.norm_first and block.cross_attn is None and isinstance(block.norm1, _NORMS)
            and isinstance(block.norm3, _NORMS) and type(attn) is MultiHeadAttention and not attn.cross
            and attn.n_kv_heads == attn.n_heads and type(ffn) is FeedForward and not ffn.gated
            and all(type(m) in _PRODUCTS for m in (attn.qkv, attn.out, ffn.fc1, ffn.fc2)))


def _product(layer: nn.Linear, x: Tensor, *, add: Tensor | None = None, act=None, gelu: bool = False) -> Tensor:
    """add + act(layer(x)) (each where given) for x (B, in): in one call of the AVX2 loop where that is the product
    chosen for this kind (gelu: `act` is the tanh GELU and its AVX2 form was chosen, so the loop applies it); an
    int8 layer by its own timed product."""
    w, b = layer.weight, layer.bias
    if type(layer) is Int8Linear:
        y = layer(x)
    elif native_rows(x, w, b):
        ext = native.extension()
        if act is None or gelu:
            return ext.linear_rows(x, w, b, add, gelu)
        y = ext.linear_rows(x, w, b)
    else:
        y = linear(x, w, b)
    if act is not None:
        y = act(y)
    return y if add is None else add + y
