"""Llama, Qwen2 and GLM-4 in Hugging Face transformers <-> the llama family: config fields and tensor names.

The three checkpoints share one layout, `model.layers.{i}.{self_attn,mlp,input_layernorm,post_attention_layernorm}`,
and differ in details this module maps onto LlamaConfig fields:

    LlamaForCausalLM   q/k/v/o biases all or none (attention_bias), optional mlp_bias, rope over whole heads
    Qwen2ForCausalLM   biases on q/k/v only, always; rope over whole heads
    GlmForCausalLM     biases on q/k/v (attention_bias), gate and up fused in one `gate_up_proj` (gate first),
                       rope on a fraction of each head (partial_rotary_factor) in neighbour pairs

Ours fuses q, k, v into one `qkv` matrix (rows: q, then k, then v), so reading concatenates and writing splits;
GLM's fused gate/up is split into our `gate` and `fc1` (up). A round trip is bit-identical.
"""
from __future__ import annotations

import torch

from lmforge.models.llama.config import LlamaConfig

MODEL_TYPES = ("llama", "qwen2", "glm")  # config.json "model_type" values this adapter reads
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "glm": "GlmForCausalLM"}

# each model type's defaults in transformers (LlamaConfig, Qwen2Config, GlmConfig), for keys a file omits
_DEFAULTS = {
    "llama": dict(max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=10000.0, attention_bias=False,
                  tie_word_embeddings=False),
    "qwen2": dict(max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False),
    "glm": dict(max_position_embeddings=131072, rms_norm_eps=1.5625e-7, rope_theta=10000.0, attention_bias=True,
                tie_word_embeddings=False, head_dim=128, partial_rotary_factor=0.5),
}


def _rope(hf: dict, layout: str) -> tuple[float, float, dict | None]:
    """(theta, rotated fraction, scaling) from transformers 5's `rope_parameters` or the older top-level
    `rope_theta` / `rope_scaling` / `partial_rotary_factor` keys."""
    d = _DEFAULTS[layout]
    params = dict(hf.get("rope_parameters") or {})
    scaling = dict(hf.get("rope_scaling") or {})
    theta = params.pop("rope_theta", hf.get("rope_theta", d["rope_theta"]))
    fraction = params.pop("partial_rotary_factor", hf.get("partial_rotary_factor", d.get("partial_rotary_factor", 1.0)))
    merged = {**scaling, **params}
    kind = merged.get("rope_type", merged.get("type", "default"))
    return float(theta), float(fraction), (None if kind == "default" else {**merged, "rope_type": kind})


def config_from_hf(hf: dict) -> LlamaConfig:
    layout = hf["model_type"]
    d = _DEFAULTS[layout]
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"{ARCHITECTURES[layout]} checkpoint uses hidden_act={act!r}; the llama family implements "
                         "SwiGLU with silu only")
    if layout == "qwen2" and hf.get("use_sliding_window"):
        raise ValueError("Qwen2 checkpoint uses sliding-window attention (use_sliding_window=true), which lmforge "
                         "does not implement; set it to false if the model was trained without it")
    theta, fraction, scaling = _rope(hf, layout)
    attention_bias = hf.get("attention_bias", d.get("attention_bias", False))
    n_heads = hf["num_attention_heads"]
    return LlamaConfig(
        vocab_size=hf["vocab_size"], max_len=hf.get("max_position_embeddings", d["max_position_embeddings"]),
        d_model=hf["hidden_size"], n_heads=n_heads, n_kv_heads=hf.get("num_key_value_heads") or n_heads,
        head_dim=hf.get("head_dim") or d.get("head_dim") or hf["hidden_size"] // n_heads,
        n_layers=hf["num_hidden_layers"], d_ff=hf["intermediate_size"], rope_theta=theta, rope_fraction=fraction,
        rope_interleaved=layout == "glm", rope_scaling=scaling,
        qkv_bias=True if layout == "qwen2" else bool(attention_bias),
        out_bias=layout == "llama" and bool(attention_bias), mlp_bias=bool(hf.get("mlp_bias", False)),
        norm_eps=hf.get("rms_norm_eps", d["rms_norm_eps"]),
        tie_embeddings=hf.get("tie_word_embeddings", d["tie_word_embeddings"]), dropout=0.0, layout=layout)


def config_to_hf(c: LlamaConfig) -> dict:
    wrong = []  # what this layout cannot express
    if c.layout == "llama":
        if c.qkv_bias != c.out_bias:
            wrong.append("q/k/v biases without an output bias (Llama's attention_bias sets all four; use layout qwen2 or glm)")
        if c.rope_fraction != 1.0 or c.rope_interleaved:
            wrong.append("partial or interleaved rotary (use layout glm)")
    elif c.layout == "qwen2":
        if not c.qkv_bias or c.out_bias or c.mlp_bias:
            wrong.append("Qwen2 always has q/k/v biases and no other biases")
        if c.rope_fraction != 1.0 or c.rope_interleaved:
            wrong.append("partial or interleaved rotary (use layout glm)")
    else:
        if c.out_bias or c.mlp_bias:
            wrong.append("GLM has biases on q/k/v only")
        if not c.rope_interleaved:
            wrong.append("GLM rotates neighbour pairs (rope_interleaved=true)")
    if wrong:
        raise ValueError(f"this model cannot be written as {ARCHITECTURES[c.layout]}: {'; '.join(wrong)}")
    rope = {"rope_type": "default", **(c.rope_scaling or {}), "rope_theta": c.rope_theta}
    if c.layout == "glm":
        rope["partial_rotary_factor"] = c.rope_fraction
    out = {"architectures": [ARCHITECTURES[c.layout]], "model_type": c.layout, "vocab_size": c.vocab_size,
           "max_position_embeddings": c.max_len, "hidden_size": c.d_model, "num_attention_heads": c.n_heads,
           "num_key_value_heads": c.n_kv_heads, "head_dim": c.head_dim, "num_hidden_layers": c.n_layers,
           "intermediate_size": c.d_ff, "hidden_act": "silu", "rms_norm_eps": c.norm_eps,
           "tie_word_embeddings": c.tie_embeddings, "initializer_range": 0.02, "attention_dropout": 0.0,
           "rope_parameters": rope,
           # the keys transformers 4.x reads (5.x reads rope_parameters)
           "rope_theta": c.rope_theta, "rope_scaling": c.rope_scaling,
           # the token ids live in the tokenizer; None keeps transformers' per-model defaults (GLM's pad id
           # 151329) from pointing outside a smaller vocabulary
           "pad_token_id": None, "bos_token_id": None, "eos_token_id": None}
    if c.layout == "llama":
        out.update(attention_bias=c.qkv_bias, mlp_bias=c.mlp_bias)
    elif c.layout == "glm":
        out.update(attention_bias=c.qkv_bias, partial_rotary_factor=c.rope_fraction)
    else:
        out.update(use_sliding_window=False)
    return out


def _hf_name(hf_state: dict, name: str, layout: str) -> str:
    if name in hf_state:
        return name
    if name.startswith("model.") and name[len("model."):] in hf_state:  # a bare LlamaModel checkpoint
        return name[len("model."):]
    raise ValueError(f"{ARCHITECTURES[layout]} checkpoint is missing tensor {name!r}")


def state_from_hf(hf_state: dict, c: LlamaConfig) -> dict:
    """HF tensors -> ours. Unknown tensors are an error that names them (a layout lmforge cannot map)."""
    used, out = set(), {}

    def take(name):
        name = _hf_name(hf_state, name, c.layout)
        used.add(name)
        return hf_state[name]

    out["tok_emb.weight"] = take("model.embed_tokens.weight")
    for i in range(c.n_layers):
        h, b = f"model.layers.{i}.", f"blocks.{i}."
        out[b + "norm1.weight"] = take(h + "input_layernorm.weight")
        out[b + "norm3.weight"] = take(h + "post_attention_layernorm.weight")
        a = h + "self_attn."
        out[b + "attn.qkv.weight"] = torch.cat([take(a + f"{p}_proj.weight") for p in "qkv"])
        if c.qkv_bias:
            out[b + "attn.qkv.bias"] = torch.cat([take(a + f"{p}_proj.bias") for p in "qkv"])
        out[b + "attn.out.weight"] = take(a + "o_proj.weight")
        if c.out_bias:
            out[b + "attn.out.bias"] = take(a + "o_proj.bias")
        m = h + "mlp."
        if c.layout == "glm":
            out[b + "ffn.gate.weight"], out[b + "ffn.fc1.weight"] = take(m + "gate_up_proj.weight").chunk(2)
        else:
            out[b + "ffn.gate.weight"] = take(m + "gate_proj.weight")
            out[b + "ffn.fc1.weight"] = take(m + "up_proj.weight")
        out[b + "ffn.fc2.weight"] = take(m + "down_proj.weight")
        if c.mlp_bias:
            for hf_name, ours in (("gate_proj", "gate"), ("up_proj", "fc1"), ("down_proj", "fc2")):
                out[b + f"ffn.{ours}.bias"] = take(m + f"{hf_name}.bias")
    out["norm.weight"] = take("model.norm.weight")
    if not c.tie_embeddings:
        out["lm_head.proj.weight"] = take("lm_head.weight")
    # rotary inverse frequencies some older checkpoints store are recomputed from the config
    unknown = [k for k in hf_state if k not in used and not k.endswith("rotary_emb.inv_freq")
               and not (c.tie_embeddings and k == "lm_head.weight")]
    if unknown:
        raise ValueError(f"{ARCHITECTURES[c.layout]} checkpoint has tensors lmforge cannot map: {unknown[:5]} "
                         f"({len(unknown)} in all); it is not the {c.layout} layout lmforge reads")
    return {k: v.contiguous() for k, v in out.items()}


def state_to_hf(state: dict, c: LlamaConfig) -> dict:
    out = {"model.embed_tokens.weight": state["tok_emb.weight"]}
    sizes = [c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.n_kv_heads * c.head_dim]
    for i in range(c.n_layers):
        h, b = f"model.layers.{i}.", f"blocks.{i}."
        out[h + "input_layernorm.weight"] = state[b + "norm1.weight"]
        out[h + "post_attention_layernorm.weight"] = state[b + "norm3.weight"]
        a = h + "self_attn."
        for p, w in zip("qkv", state[b + "attn.qkv.weight"].split(sizes)):
            out[a + f"{p}_proj.weight"] = w
        if c.qkv_bias:
            for p, w in zip("qkv", state[b + "attn.qkv.bias"].split(sizes)):
                out[a + f"{p}_proj.bias"] = w
        out[a + "o_proj.weight"] = state[b + "attn.out.weight"]
        if c.out_bias:
            out[a + "o_proj.bias"] = state[b + "attn.out.bias"]
        m = h + "mlp."
        if c.layout == "glm":
            out[m + "gate_up_proj.weight"] = torch.cat([state[b + "ffn.gate.weight"], state[b + "ffn.fc1.weight"]])
        else:
            out[m + "gate_proj.weight"] = state[b + "ffn.gate.weight"]
            out[m + "up_proj.weight"] = state[b + "ffn.fc1.weight"]
        out[m + "down_proj.weight"] = state[b + "ffn.fc2.weight"]
        if c.mlp_bias:
            for hf_name, ours in (("gate_proj", "gate"), ("up_proj", "fc1"), ("down_proj", "fc2")):
                out[m + f"{hf_name}.bias"] = state[b + f"ffn.{ours}.bias"]
    out["model.norm.weight"] = state["norm.weight"]
    if not c.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.proj.weight"]
    return {k: v.contiguous() for k, v in out.items()}


def linear_rows(c: LlamaConfig):
    """(our linear module, HF module, first row, end row, part name) for every adaptable linear: where each of
    our layers' output rows lives in transformers' model. Our fused `qkv` is HF's q_proj, k_proj, v_proj (rows
    q, then k, then v), so a PEFT adapter on q_proj is our part "q" of qkv, and an adapter on all of qkv (one A)
    is written as three PEFT adapters sharing that A. GLM-4 fuses gate and up in one `gate_up_proj` where we
    keep two layers: an adapter there cannot be mapped row for row, so GLM's MLP is left out (attention only)."""
    sizes = [c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.n_kv_heads * c.head_dim]
    for i in range(c.n_layers):
        h, b = f"model.layers.{i}.", f"blocks.{i}."
        start = 0
        for p, n in zip("qkv", sizes):
            yield b + "attn.qkv", h + f"self_attn.{p}_proj", start, start + n, p
            start += n
        yield b + "attn.out", h + "self_attn.o_proj", 0, c.d_model, "all"
        if c.layout != "glm":
            for ours, hf_name, rows in (("ffn.gate", "gate_proj", c.d_ff), ("ffn.fc1", "up_proj", c.d_ff),
                                        ("ffn.fc2", "down_proj", c.d_model)):
                yield b + ours, h + f"mlp.{hf_name}", 0, rows, "all"
