"""Putting the fast products into a model and taking them out again; one switch for every path.

`accelerate(model)` gives each module whose `act` is the tanh GELU (FeedForward, the masked-LM head)
lmforge.kernels.gelu's, each MultiHeadAttention lmforge.kernels.attention's (instance attributes, each timed
against torch's) and each Block lmforge.kernels.decode's decoding step (`fast_decode`), and changes, in place,
the class of each module whose type is exactly torch.nn.Linear, lmforge.nn.LMHead or lmforge.nn.quant.Int8Linear
to its subclass here (lmforge.kernels.linear.Linear / LMHead, lmforge.kernels.int8.Int8Linear), which computes
with lmforge.kernels.linear (or int8_linear). Nothing else
changes: the same module and Parameter objects, the same state-dict keys, `isinstance(m, nn.Linear)` still
true; a call costs what the old lmforge.nn.Linear cost (one forward that calls `linear`). Subclasses of
nn.Linear (an adapter's layer, a quantised one) are left alone, as they may compute something else.
`restore(model)` changes the classes back and removes the attributes. Both are idempotent and cheap (one
walk over the modules), and leave the weights' memory where it is (huge pages are a separate step:
lmforge.kernels.hugepages).

`set_enabled(False)`, or LMFORGE_FAST_PATHS=0 in the environment, turns every fast path off.
"""
from __future__ import annotations

from torch import nn

import lmforge.kernels.attention as fast_attention
import lmforge.kernels.decode as decode
import lmforge.kernels.gelu as gelu
from lmforge.kernels.hugepages import set_huge_pages
from lmforge.kernels.int8 import Int8Linear, set_int8
from lmforge.kernels.linear import Linear, LMHead, set_few_rows
from lmforge.kernels.onednn import set_large_onednn
from lmforge.kernels.packed import set_packing
from lmforge.kernels.tune import env_switch
from lmforge.nn import feedforward
from lmforge.nn.attention import MultiHeadAttention
from lmforge.nn.block import Block
from lmforge.nn.heads import LMHead as PlainLMHead
from lmforge.nn.quant import Int8Linear as PlainInt8Linear

_FAST = {nn.Linear: Linear, PlainLMHead: LMHead, PlainInt8Linear: Int8Linear}
_PLAIN = {fast: plain for plain, fast in _FAST.items()}


def accelerate(model: nn.Module) -> nn.Module:
    """Let `model`'s linear layers and LM head compute with lmforge.kernels.linear, its attention and GELU with
    lmforge.kernels.attention / gelu; returns the model.

    Example: accelerate(gpt); type(gpt.blocks[0].attn.qkv) is lmforge.kernels.Linear; restore(gpt) undoes it."""
    for m in model.modules():
        fast = _FAST.get(type(m))
        if fast is not None:
            m.__class__ = fast
        elif getattr(m, "act", None) is feedforward.gelu_tanh:  # a FeedForward's, a masked-LM head's
            m.act = gelu.gelu_tanh  # an instance attribute: no parameter, no state-dict key
        elif isinstance(m, MultiHeadAttention):
            m.attend = fast_attention.attention  # likewise
        elif isinstance(m, Block):
            m.fast_decode = decode.block_step  # likewise: a decoding step in seven calls where it applies
    return model


def restore(model: nn.Module) -> nn.Module:
    """Undo `accelerate`: `model`'s layers compute with plain PyTorch again (F.linear); returns the model."""
    for m in model.modules():
        plain = _PLAIN.get(type(m))
        if plain is not None:
            m.__class__ = plain
        elif getattr(m, "act", None) is gelu.gelu_tanh:
            m.act = feedforward.gelu_tanh
        elif isinstance(m, MultiHeadAttention):
            m.__dict__.pop("attend", None)  # the class's again: lmforge.nn.attention.attention
        elif isinstance(m, Block):
            m.__dict__.pop("fast_decode", None)  # the class's again: None, the modules
    return model


def set_enabled(enabled: bool) -> None:
    """Every fast path on or off at once: the few-row products, the packed copies (off frees them), oneDNN
    for large products, huge-page weights, the int8 product, the GELU and the attention forms, the decoding step.
    Off, an accelerated model computes as plain PyTorch would (e.g. to compare numbers); on turns each path back
    on. LMFORGE_FAST_PATHS=0 in the environment starts a process with them off."""
    set_few_rows(enabled)
    set_packing(enabled)
    set_large_onednn(enabled)
    set_huge_pages(enabled)
    set_int8(enabled)
    gelu.set_gelu(enabled)
    fast_attention.set_attention(enabled)
    decode.set_decode_step(enabled)


if not env_switch("LMFORGE_FAST_PATHS"):
    set_enabled(False)
