"""GPT-2 in Hugging Face transformers (GPT2LMHeadModel) <-> the gpt family: config fields and tensor names.

HF's GPT-2 linears are `Conv1D` modules whose weight is stored (in, out), the transpose of nn.Linear's
(out, in); q, k, v are fused in `c_attn` exactly as in our `qkv`, so every tensor maps one to one and a
round trip is bit-identical. HF names appear only in the families' hf.py files.
"""
from __future__ import annotations

from lmforge.models.gpt.config import GPTConfig

MODEL_TYPES = ("gpt2",)  # config.json "model_type" values this adapter reads


# HF GPT-2 activation names -> ours ("gelu_new" is the tanh approximation GPT-2 was trained with)
_GPT2_ACT = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def config_from_hf(hf: dict) -> GPTConfig:
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if hf.get(flag):
            raise ValueError(f"GPT-2 checkpoint uses {flag}=true, which lmforge does not implement")
    if hf.get("scale_attn_weights", True) is False:
        raise ValueError("GPT-2 checkpoint uses scale_attn_weights=false, which lmforge does not implement")
    act = hf.get("activation_function", "gelu_new")
    if act not in _GPT2_ACT:
        raise ValueError(f"GPT-2 checkpoint activation {act!r} is not supported. Supported: {', '.join(_GPT2_ACT)}")
    return GPTConfig(vocab_size=hf["vocab_size"], max_len=hf["n_positions"], d_model=hf["n_embd"],
                     n_heads=hf["n_head"], n_layers=hf["n_layer"], d_ff=hf.get("n_inner") or 0,
                     dropout=0.0, bias=True, norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                     activation=_GPT2_ACT[act], tie_embeddings=hf.get("tie_word_embeddings", True))


def config_to_hf(c: GPTConfig) -> dict:
    if not c.bias:
        raise ValueError("GPT-2 in transformers always has biases; a bias=false model cannot be converted")
    act = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}.get(c.activation)
    if act is None:
        raise ValueError(f"activation {c.activation!r} has no GPT-2 equivalent in transformers")
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": c.vocab_size,
            "n_positions": c.max_len, "n_ctx": c.max_len, "n_embd": c.d_model, "n_head": c.n_heads,
            "n_layer": c.n_layers, "n_inner": c.d_ff, "activation_function": act,
            "layer_norm_epsilon": c.norm_eps, "resid_pdrop": c.dropout, "embd_pdrop": c.dropout,
            "attn_pdrop": c.dropout, "tie_word_embeddings": c.tie_embeddings, "initializer_range": 0.02,
            "bos_token_id": c.vocab_size - 1, "eos_token_id": c.vocab_size - 1}


def _key_pairs(c: GPTConfig):
    """(hf name, our name, transpose?) for every tensor."""
    yield "transformer.wte.weight", "tok_emb.weight", False
    yield "transformer.wpe.weight", "pos_emb.weight", False
    for i in range(c.n_layers):
        h, b = f"transformer.h.{i}.", f"blocks.{i}."
        for hf_name, ours in (("ln_1", "norm1"), ("ln_2", "norm3")):
            yield h + hf_name + ".weight", b + ours + ".weight", False
            yield h + hf_name + ".bias", b + ours + ".bias", False
        for hf_name, ours in (("attn.c_attn", "attn.qkv"), ("attn.c_proj", "attn.out"),
                              ("mlp.c_fc", "ffn.fc1"), ("mlp.c_proj", "ffn.fc2")):
            yield h + hf_name + ".weight", b + ours + ".weight", True  # Conv1D stores (in, out)
            yield h + hf_name + ".bias", b + ours + ".bias", False
    yield "transformer.ln_f.weight", "norm.weight", False
    yield "transformer.ln_f.bias", "norm.bias", False
    if not c.tie_embeddings:
        yield "lm_head.weight", "lm_head.proj.weight", False


def state_from_hf(hf_state: dict, c: GPTConfig) -> dict:
    out = {}
    for hf_name, ours, t in _key_pairs(c):
        if hf_name not in hf_state:
            alt = hf_name.removeprefix("transformer.")  # GPT2Model checkpoints have no "transformer." prefix
            if alt not in hf_state:
                raise ValueError(f"GPT-2 checkpoint is missing tensor {hf_name!r}")
            hf_name = alt
        w = hf_state[hf_name]
        out[ours] = w.t().contiguous() if t else w
    return out


def state_to_hf(state: dict, c: GPTConfig) -> dict:
    return {hf_name: (state[ours].t().contiguous() if t else state[ours].contiguous())
            for hf_name, ours, t in _key_pairs(c)}


# PEFT's LoRA on GPT-2: its linears are Conv1D, weights (in, out), so adapters merge transposed
# (peft LoraConfig.fan_in_fan_out); the adapter tensors themselves are nn.Linear-shaped either way.
FAN_IN_FAN_OUT = True


def linear_rows(c: GPTConfig):
    """(our linear module, HF module, first row, end row, part name) for every adaptable linear: where each of
    our layers' output rows lives in transformers' GPT2LMHeadModel. One to one: our fused `qkv` is HF's fused
    `c_attn`, so an adapter on all of qkv is PEFT's target_modules=["c_attn"] (part "all")."""
    d = c.d_model
    for i in range(c.n_layers):
        h, b = f"transformer.h.{i}.", f"blocks.{i}."
        for ours, hf_name, rows in (("attn.qkv", "attn.c_attn", 3 * d), ("attn.out", "attn.c_proj", d),
                                    ("ffn.fc1", "mlp.c_fc", c.d_ff), ("ffn.fc2", "mlp.c_proj", d)):
            yield b + ours, h + hf_name, 0, rows, "all"
