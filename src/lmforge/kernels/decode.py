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
    parts = _parts(block)
    if not (_enabled and parts is not None and bias is None and rope is None and x.dtype == torch.float32
            and x.device.type == "cpu" and not torch.is_grad_enabled()):
        return None
    attn, act, norm1, norm2, (qkv, out, fc1, fc2) = parts
    K, V, position = cache.slot()
    B, _, C = x.shape
    H, D, S = attn.n_heads, attn.head_dim, position + 1
    keep = fast_attention._keep(mask, B, S)
    if (keep is False or K.dtype != torch.float32 or not (K.is_contiguous() and V.is_contiguous())
            or not fast_attention.decode_kernel(B, H, S, D, keep is not None)):
        return None
    ext = native.extension()
    x = x.reshape(B, C).contiguous()  # the residual the products add: a view of x (contiguous in our models)
    h = torch.layer_norm(x, *norm1)  # F.layer_norm's own call, without its Python wrapper (~4 us)
    a = ext.cached_attention(_product(qkv, h).contiguous(), K, V, position, keep,
                             1.0 / math.sqrt(D) if attn.scale is None else attn.scale)
    x = _product(out, a, add=x)
    h = torch.layer_norm(x, *norm2)
    h = _product(fc1, h, act=act)
    return _product(fc2, h, add=x).view(B, 1, C)


def _parts(block):
    """(attention module, activation, each norm's layer_norm arguments after x, the four products as (layer, weight,
    bias)) of a layer of this kind, or None. Read from the modules' own dicts: nn.Module.__getattr__ costs ~1 us a
    lookup, and a step made ~25 a layer through it (~0.3 ms of a GPT-2 token on the Zen 3 of the module docstring)."""
    m = block._modules
    attn, ffn, norm1, norm2 = m.get("attn"), m.get("ffn"), m.get("norm1"), m.get("norm3")
    if not (block.norm_first and m.get("cross_attn") is None and isinstance(norm1, _NORMS)
            and isinstance(norm2, _NORMS) and type(attn) is MultiHeadAttention and not attn.cross
            and attn.n_kv_heads == attn.n_heads and type(ffn) is FeedForward and not ffn.gated):
        return None
    layers = (attn._modules["qkv"], attn._modules["out"], ffn._modules["fc1"], ffn._modules["fc2"])
    if not all(type(layer) in _PRODUCTS for layer in layers):
        return None
    products = tuple((layer, None, None) if type(layer) is Int8Linear  # it computes with its own tensors
                     else (layer, layer._parameters["weight"], layer._parameters["bias"]) for layer in layers)
    return attn, ffn.act, _norm_args(norm1), _norm_args(norm2), products


def _norm_args(norm: nn.LayerNorm) -> tuple:
    p = norm._parameters
    return norm.normalized_shape, p.get("weight"), p.get("bias"), norm.eps


def _product(product: tuple, x: Tensor, *, add: Tensor | None = None, act=None) -> Tensor:
    """add + act(layer(x)) (each where given) for x (B, in), product = (layer, weight, bias): in one call of the
    AVX2 loop where that is the product chosen for this kind, the GELU too where `act` is the tanh GELU and its
    AVX2 form was chosen; an int8 layer by its own timed product."""
    layer, w, b = product
    if w is None:
        y = layer(x)
    elif native_rows(x, w, b):
        ext = native.extension()
        if act is None or (act is fast_gelu.gelu_tanh and fast_gelu.inference_kernel((x.size(0), w.size(0)))):
            return ext.linear_rows(x, w, b, add, act is not None)
        y = ext.linear_rows(x, w, b)
    else:
        y = linear(x, w, b)
    if act is not None:
        y = act(y)
    return y if add is None else add + y
