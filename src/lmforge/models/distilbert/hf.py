"""DistilBERT in Hugging Face transformers (DistilBertModel, DistilBertForMaskedLM) <-> the distilbert family.

HF's q_lin, k_lin, v_lin are concatenated into our fused `qkv` (and split on the way out). The
DistilBertFor* classes put the encoder under "distilbert."; the masked-LM projector is tied to the word
embeddings (`vocab_projector.weight` is not read; its bias is). A checkpoint made with
sinusoidal_pos_embds=true stores its sinusoidal table as the position weights, so it loads the same way.
"""
from __future__ import annotations

import torch

from lmforge.models.distilbert.config import DistilBERTConfig

MODEL_TYPES = ("distilbert",)
ARCHITECTURES = {"DistilBertModel": "none", "DistilBertForMaskedLM": "mlm"}
_ACT = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


def config_from_hf(hf: dict) -> DistilBERTConfig:
    arch = (hf.get("architectures") or ["DistilBertModel"])[0]
    if arch not in ARCHITECTURES:
        raise ValueError(f"DistilBERT checkpoint architecture {arch!r} is not supported. Supported: "
                         f"{', '.join(ARCHITECTURES)}")
    if hf.get("tie_word_embeddings", True) is False and arch != "DistilBertModel":
        raise ValueError("DistilBERT checkpoint has tie_word_embeddings=false; lmforge's masked-LM head is tied to "
                         "the word embeddings")
    act = hf.get("activation", "gelu")
    if act not in _ACT:
        raise ValueError(f"DistilBERT checkpoint activation {act!r} is not supported. Supported: {', '.join(_ACT)}")
    return DistilBERTConfig(vocab_size=hf["vocab_size"], max_len=hf.get("max_position_embeddings", 512),
                            d_model=hf["dim"], n_heads=hf["n_heads"], n_layers=hf["n_layers"],
                            d_ff=hf.get("hidden_dim", 4 * hf["dim"]), dropout=hf.get("dropout", 0.1),
                            activation=_ACT[act], head=ARCHITECTURES[arch])


def config_to_hf(c: DistilBERTConfig) -> dict:
    if c.norm_eps != 1e-12:
        raise ValueError(f"DistilBERT in transformers fixes the LayerNorm epsilon at 1e-12; this model has "
                         f"norm_eps={c.norm_eps} and cannot be converted")
    arch = {v: k for k, v in ARCHITECTURES.items()}[c.head]
    act = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu"}[c.activation]
    return {"architectures": [arch], "model_type": "distilbert", "vocab_size": c.vocab_size,
            "max_position_embeddings": c.max_len, "dim": c.d_model, "n_heads": c.n_heads, "n_layers": c.n_layers,
            "hidden_dim": c.d_ff, "activation": act, "dropout": c.dropout, "attention_dropout": c.dropout,
            "sinusoidal_pos_embds": False, "pad_token_id": 0, "initializer_range": 0.02, "tie_word_embeddings": True}


def _key_pairs(c: DistilBERTConfig, prefix: str):
    """(hf name, our name) for every tensor but q/k/v; prefix "" (DistilBertModel) or "distilbert."."""
    e = prefix + "embeddings."
    yield e + "word_embeddings.weight", "emb.tok.weight"
    yield e + "position_embeddings.weight", "emb.pos.weight"
    pairs = [(e + "LayerNorm", "emb.norm")]
    for i in range(c.n_layers):
        h, b = f"{prefix}transformer.layer.{i}.", f"blocks.{i}."
        pairs += [(h + "attention.out_lin", b + "attn.out"), (h + "sa_layer_norm", b + "norm1"),
                  (h + "ffn.lin1", b + "ffn.fc1"), (h + "ffn.lin2", b + "ffn.fc2"),
                  (h + "output_layer_norm", b + "norm3")]
    if c.head == "mlm":
        pairs += [("vocab_transform", "mlm.dense"), ("vocab_layer_norm", "mlm.norm")]
        yield "vocab_projector.bias", "mlm.bias"
    for hf_name, ours in pairs:
        yield hf_name + ".weight", ours + ".weight"
        yield hf_name + ".bias", ours + ".bias"


def _qkv(prefix: str, i: int):
    return [f"{prefix}transformer.layer.{i}.attention.{n}" for n in ("q_lin", "k_lin", "v_lin")]


def state_from_hf(hf_state: dict, c: DistilBERTConfig) -> dict:
    prefix = "distilbert." if "distilbert.embeddings.word_embeddings.weight" in hf_state else ""

    def get(name: str):
        if name not in hf_state:
            raise ValueError(f"DistilBERT checkpoint is missing tensor {name!r}, which the architecture in its "
                             "config.json has: do config.json and the weights match?")
        return hf_state[name]

    out = {ours: get(hf_name) for hf_name, ours in _key_pairs(c, prefix)}
    for i in range(c.n_layers):
        for part in ("weight", "bias"):
            out[f"blocks.{i}.attn.qkv.{part}"] = torch.cat([get(f"{n}.{part}") for n in _qkv(prefix, i)], dim=0)
    return out


def state_to_hf(state: dict, c: DistilBERTConfig) -> dict:
    prefix = "" if c.head == "none" else "distilbert."
    out = {hf_name: state[ours].contiguous() for hf_name, ours in _key_pairs(c, prefix)}
    for i in range(c.n_layers):
        for part in ("weight", "bias"):
            for name, t in zip(_qkv(prefix, i), state[f"blocks.{i}.attn.qkv.{part}"].chunk(3, dim=0)):
                out[f"{name}.{part}"] = t.contiguous()
    return out
