"""lmforge.quantize(model, "int8" | "bf16" | "fp32"): fewer bytes per weight, for decoding.

A decoding step reads every weight once, so on a CPU its time is mostly the bytes read: int8 weights are a
quarter of fp32's, bf16 half. `quantize` replaces, in place, every plain torch.nn.Linear and the LM head
with lmforge.nn.quant's Int8Linear (int8 weight, one fp32 scale per output channel: the scheme is in
lmforge/nn/quant.py) or BF16Linear, and returns the model; generate, chat and serve use it as they use any
model (lmforge.kernels.accelerate gives Int8Linear its fast product).

What is and is not converted:
- every module whose type is exactly torch.nn.Linear (attention, feed-forward, an untied head's projection);
- a tied LM head (GPT-2's: the token-embedding matrix used as the output projection) gets a quantized copy
  of that matrix of its own; the embedding table itself stays fp32, because a token's lookup reads one row
  (768 floats for GPT-2) while the head reads all of them at every step. The file then holds the fp32
  table and the int8 head: 1.25x the table's fp32 bytes.
- norms, biases, position tables and the KV cache stay fp32; so does every activation (bf16: the input of
  each product is converted to bf16 and its output back, so the residual stream keeps fp32).

A quantized model is saved by lmforge.models.save_model as usual: its int8 tensors and fp32 scales in
model.safetensors (metadata "weights": "int8"), config.json with "weights": "int8"; lmforge.load reads them
back without quantizing again.

    import lmforge
    model = lmforge.quantize(lmforge.load("runs/kjv-char"), "int8")
"""
from __future__ import annotations

from torch import nn

from lmforge.nn.heads import LMHead
from lmforge.nn.quant import BF16Linear, Int8Linear

WEIGHTS = ("fp32", "bf16", "int8")
_LAYERS = {"int8": Int8Linear, "bf16": BF16Linear}
SCHEME = {"int8": "int8 weight-only, symmetric per-output-channel absmax scales (fp32), LLM.int8 vector-wise",
          "bf16": "bf16 weights, fp32 activations"}


def check_weights(weights: str) -> str:
    if weights not in WEIGHTS:
        raise ValueError(f"unknown weights {weights!r}: choose one of {', '.join(WEIGHTS)} "
                         f"(int8: a quarter of fp32's bytes; bf16: half)")
    return weights


def weights_of(model: nn.Module) -> str:
    """"int8", "bf16" or "fp32": what `quantize` made of `model` (fp32 when it never ran)."""
    kinds = {kind for kind, layer in _LAYERS.items() for m in model.modules() if isinstance(m, layer)}
    if len(kinds) > 1:
        raise ValueError(f"the model mixes {' and '.join(sorted(kinds))} layers; lmforge saves one kind per model")
    return kinds.pop() if kinds else "fp32"


def quantize(model: nn.Module, weights: str, *, empty: bool = False) -> nn.Module:
    """Store `model`'s linear layers and LM head in `weights` ("int8", "bf16"; "fp32" leaves the model as it
    is), in place; returns the model. A model already quantized to `weights` is returned unchanged.

    empty: make the layers with the right shapes but do not quantize (the loader fills them from a file)."""
    check_weights(weights)
    current = weights_of(model)
    if current == weights:
        return model
    if current != "fp32":
        raise ValueError(f"the model's weights are already {current}; its fp32 weights are gone, so it cannot "
                         f"become {weights}: load the fp32 model and quantize that")
    from lmforge.kernels import restore  # here, so saving and loading a model does not import the fast paths
    layer = _LAYERS[weights]
    restore(model)  # an accelerated model (lmforge.kernels) has its plain classes back: they are what is matched
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                new = _make(layer, child.weight, child.bias, empty)
            elif type(child) is LMHead and child.proj is None:  # tied: a copy of the embedding matrix
                new = _make(layer, child.embedding[0].weight, None, empty)
            elif isinstance(child, nn.Linear):
                raise ValueError(f"{name!r} is a {type(child).__name__}, not a plain nn.Linear, and would lose what "
                                 f"it adds (an adapter?): fold it into the weights first (lmforge.lora.merge, then lmforge.lora.unload)")
            else:
                continue
            setattr(parent, name, new)
    return model


def _make(layer, weight, bias, empty: bool) -> nn.Module:
    out_f, in_f = weight.shape
    if not empty:
        return layer.from_weight(weight, bias).to(weight.device)
    return layer(in_f, out_f, bias=bias is not None).to(weight.device)
