"""BERT in Hugging Face transformers (BertModel, BertForMaskedLM, BertForPreTraining) <-> the bert family.

HF keeps q, k and v as three linears (`attention.self.query/key/value`); ours is one fused `qkv`, so
they are concatenated on the way in and split on the way out (bit-identical round trip). BertModel's
tensors have no prefix; the BertFor* classes put the encoder under "bert." and the heads under "cls.".
The masked-LM decoder is tied to the word embeddings (`cls.predictions.decoder.weight` is not read; its
bias is `cls.predictions.bias`). HF names appear only in the families' hf.py files.
"""
from __future__ import annotations

import torch

from lmforge.models.bert.config import BERTConfig

MODEL_TYPES = ("bert",)  # config.json "model_type" values this adapter reads

# architectures -> (pooler, head); a config.json without architectures is a BertModel
ARCHITECTURES = {"BertModel": (True, "none"), "BertForMaskedLM": (False, "mlm"),
                 "BertForPreTraining": (True, "pretraining")}
_ACT = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


def config_from_hf(hf: dict) -> BERTConfig:
    arch = (hf.get("architectures") or ["BertModel"])[0]
    if arch not in ARCHITECTURES:
        raise ValueError(f"BERT checkpoint architecture {arch!r} is not supported. Supported: "
                         f"{', '.join(ARCHITECTURES)}")
    for flag in ("is_decoder", "add_cross_attention"):
        if hf.get(flag):
            raise ValueError(f"BERT checkpoint has {flag}=true (a causal / cross-attending BERT); lmforge's bert "
                             "family is the bidirectional encoder")
    pos = hf.get("position_embedding_type", "absolute")
    if pos != "absolute":
        raise ValueError(f"BERT checkpoint uses position_embedding_type={pos!r}; lmforge implements 'absolute' "
                         "(learned positions, Devlin et al. 2019)")
    if hf.get("tie_word_embeddings", True) is False and arch != "BertModel":
        raise ValueError("BERT checkpoint has tie_word_embeddings=false; lmforge's masked-LM head is tied to the "
                         "word embeddings (as in BERT)")
    act = hf.get("hidden_act", "gelu")
    if act not in _ACT:
        raise ValueError(f"BERT checkpoint activation {act!r} is not supported. Supported: {', '.join(_ACT)}")
    pooler, head = ARCHITECTURES[arch]
    return BERTConfig(vocab_size=hf["vocab_size"], max_len=hf.get("max_position_embeddings", 512),
                      d_model=hf["hidden_size"], n_heads=hf["num_attention_heads"],
                      n_layers=hf["num_hidden_layers"], d_ff=hf.get("intermediate_size", 4 * hf["hidden_size"]),
                      n_segments=hf.get("type_vocab_size", 2), dropout=hf.get("hidden_dropout_prob", 0.1),
                      norm_eps=hf.get("layer_norm_eps", 1e-12), activation=_ACT[act], pooler=pooler, head=head)


def config_to_hf(c: BERTConfig) -> dict:
    arch = {"none": "BertModel", "mlm": "BertForMaskedLM", "pretraining": "BertForPreTraining"}[c.head]
    act = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu"}[c.activation]
    return {"architectures": [arch], "model_type": "bert", "vocab_size": c.vocab_size,
            "max_position_embeddings": c.max_len, "hidden_size": c.d_model, "num_attention_heads": c.n_heads,
            "num_hidden_layers": c.n_layers, "intermediate_size": c.d_ff, "type_vocab_size": c.n_segments,
            "hidden_act": act, "hidden_dropout_prob": c.dropout, "attention_probs_dropout_prob": c.dropout,
            "layer_norm_eps": c.norm_eps, "position_embedding_type": "absolute", "pad_token_id": 0,
            "initializer_range": 0.02, "tie_word_embeddings": True}


def _key_pairs(c: BERTConfig, prefix: str):
    """(hf name, our name) for every tensor but q/k/v; `prefix` is "" (BertModel) or "bert." (BertFor*)."""
    e = prefix + "embeddings."
    yield e + "word_embeddings.weight", "emb.tok.weight"
    yield e + "position_embeddings.weight", "emb.pos.weight"
    yield e + "token_type_embeddings.weight", "emb.seg.weight"
    pairs = [(e + "LayerNorm", "emb.norm")]
    for i in range(c.n_layers):
        h, b = f"{prefix}encoder.layer.{i}.", f"blocks.{i}."
        pairs += [(h + "attention.output.dense", b + "attn.out"), (h + "attention.output.LayerNorm", b + "norm1"),
                  (h + "intermediate.dense", b + "ffn.fc1"), (h + "output.dense", b + "ffn.fc2"),
                  (h + "output.LayerNorm", b + "norm3")]
    if c.pooler:
        pairs.append((prefix + "pooler.dense", "pool"))
    if c.head != "none":
        pairs += [("cls.predictions.transform.dense", "mlm.dense"), ("cls.predictions.transform.LayerNorm", "mlm.norm")]
        yield "cls.predictions.bias", "mlm.bias"
    if c.head == "pretraining":
        pairs.append(("cls.seq_relationship", "nsp"))
    for hf_name, ours in pairs:
        yield hf_name + ".weight", ours + ".weight"
        yield hf_name + ".bias", ours + ".bias"


def _qkv(prefix: str, i: int):
    return [f"{prefix}encoder.layer.{i}.attention.self.{n}" for n in ("query", "key", "value")]


def state_from_hf(hf_state: dict, c: BERTConfig) -> dict:
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in hf_state else ""

    def get(name: str):
        if name in hf_state:
            return hf_state[name]
        old = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        if old in hf_state:  # checkpoints converted from TensorFlow name LayerNorm's tensors gamma and beta
            return hf_state[old]
        raise ValueError(f"BERT checkpoint is missing tensor {name!r}, which the architecture in its config.json "
                         "has: do config.json and the weights match?")

    out = {ours: get(hf_name) for hf_name, ours in _key_pairs(c, prefix)}
    for i in range(c.n_layers):
        for part in ("weight", "bias"):
            out[f"blocks.{i}.attn.qkv.{part}"] = torch.cat([get(f"{n}.{part}") for n in _qkv(prefix, i)], dim=0)
    return out


def state_to_hf(state: dict, c: BERTConfig) -> dict:
    prefix = "" if c.head == "none" else "bert."
    out = {hf_name: state[ours].contiguous() for hf_name, ours in _key_pairs(c, prefix)}
    for i in range(c.n_layers):
        for part in ("weight", "bias"):
            for name, t in zip(_qkv(prefix, i), state[f"blocks.{i}.attn.qkv.{part}"].chunk(3, dim=0)):
                out[f"{name}.{part}"] = t.contiguous()
    return out
