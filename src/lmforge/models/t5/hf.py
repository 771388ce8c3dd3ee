"""T5 in Hugging Face transformers (T5ForConditionalGeneration, T5Model) <-> the t5 family.

HF's layout: `shared` (the embedding), `{encoder,decoder}.block.{i}.layer.{j}` with j = 0 self-attention
(`SelfAttention.q/k/v/o`, `layer_norm`), in the decoder j = 1 cross-attention (`EncDecAttention`), then the
feed-forward (`DenseReluDense.wi`, or `wi_0` (gated, through the activation) and `wi_1` (linear) when gated,
then `wo`); the relative position bias lives in block 0's self-attention (`relative_attention_bias`) and is
shared by the stack; `final_layer_norm`; `lm_head` when untied.

Ours fuses self-attention q, k, v into one `qkv` and cross-attention k, v into one `kv` (rows in that order),
so reading concatenates and writing splits: a round trip is bit-identical. The feed-forward kind is
config.json's `feed_forward_proj` ("relu", "gated-gelu", ...), with `dense_act_fn` and `is_gated_act`
winning when written (as in transformers). Whether the head is tied: transformers 5 always writes
`tie_word_embeddings: true` and then unties a checkpoint whose `lm_head.weight` differs from `shared.weight`;
`fit_weights` applies that rule. The d_model^-0.5 rescale is `scale_decoder_outputs` (older files: implied
by `tie_word_embeddings`, T5 v1.0 true, v1.1 false).
"""
from __future__ import annotations

import torch

from lmforge.models.t5.config import T5Config

MODEL_TYPES = ("t5",)  # config.json "model_type" values this adapter reads
ARCHITECTURES = ("T5ForConditionalGeneration", "T5Model")

# (gated, HF activation) -> our feed-forward activation (lmforge.nn.feedforward); gelu_new is GELU's tanh form
_FFN = {(False, "relu"): "relu", (False, "gelu"): "gelu", (False, "gelu_new"): "gelu_tanh",
        (False, "gelu_pytorch_tanh"): "gelu_tanh", (True, "gelu"): "geglu", (True, "gelu_new"): "geglu_tanh",
        (True, "gelu_pytorch_tanh"): "geglu_tanh", (True, "silu"): "swiglu", (True, "swish"): "swiglu"}
# ours -> (feed_forward_proj, dense_act_fn) as transformers writes them
_TO_HF = {"relu": ("relu", "relu"), "gelu": ("gelu", "gelu"), "gelu_tanh": ("gelu_new", "gelu_new"),
          "geglu": ("gated-gelu", "gelu"), "geglu_tanh": ("gated-gelu", "gelu_new"), "swiglu": ("gated-silu", "silu")}
SUPPORTED = ", ".join(("gated-" if g else "") + a for g, a in _FFN)


def _ffn_kind(hf: dict) -> str:
    proj = hf.get("feed_forward_proj", "relu")
    parts = proj.split("-") if isinstance(proj, str) else []
    if not parts or len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise ValueError(f"T5 checkpoint has feed_forward_proj={proj!r}; it must be 'ACT' or 'gated-ACT'. "
                         f"Supported: {SUPPORTED}")
    gated = hf.get("is_gated_act", parts[0] == "gated")
    act = hf.get("dense_act_fn", "gelu_new" if proj == "gated-gelu" else parts[-1])  # transformers' legacy rule
    if (gated, act) not in _FFN:
        raise ValueError(f"T5 checkpoint has a feed-forward lmforge does not implement: feed_forward_proj={proj!r}, "
                         f"dense_act_fn={act!r}. Supported (feed_forward_proj with its activation): {SUPPORTED}")
    return _FFN[gated, act]


def config_from_hf(hf: dict) -> T5Config:
    arch = (hf.get("architectures") or ["T5ForConditionalGeneration"])[0]
    if arch not in ARCHITECTURES:
        raise ValueError(f"T5 checkpoint architecture {arch!r} is not supported. Supported: {', '.join(ARCHITECTURES)}")
    pad = hf.get("pad_token_id", 0)
    start = hf.get("decoder_start_token_id")
    start = pad if start is None else start  # T5: the pad token
    eos = hf.get("eos_token_id", 1)
    eos = eos[0] if isinstance(eos, list) else eos
    tie = hf.get("tie_word_embeddings", True) is not False
    rescale = hf.get("scale_decoder_outputs", tie)  # transformers: tie_word_embeddings false -> no rescale
    n_layers = hf.get("num_layers", 6)
    return T5Config(vocab_size=hf["vocab_size"], max_len=hf.get("n_positions", 512), d_model=hf["d_model"],
                    n_heads=hf["num_heads"], head_dim=hf.get("d_kv", 64), n_layers=n_layers,
                    n_dec_layers=hf.get("num_decoder_layers") or n_layers, d_ff=hf["d_ff"], activation=_ffn_kind(hf),
                    num_buckets=hf.get("relative_attention_num_buckets", 32),
                    max_distance=hf.get("relative_attention_max_distance", 128),
                    dropout=hf.get("dropout_rate", 0.1), norm_eps=hf.get("layer_norm_epsilon", 1e-6),
                    tie_embeddings=tie, rescale_head=bool(rescale), pad_id=pad, eos_id=eos, decoder_start_id=start)


def fit_weights(c: T5Config, hf_state: dict) -> T5Config:
    """The config as the tensors have it: a checkpoint whose lm_head.weight differs from shared.weight has an
    untied head whatever tie_word_embeddings says (transformers 5 writes true for every T5 and unties on load)."""
    head, shared = hf_state.get("lm_head.weight"), hf_state.get("shared.weight")
    if c.tie_embeddings and head is not None and shared is not None and not torch.equal(head, shared):
        return c.replace(tie_embeddings=False)
    return c


def config_to_hf(c: T5Config) -> dict:
    proj, act = _TO_HF[c.activation]
    return {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "vocab_size": c.vocab_size,
            "n_positions": c.max_len, "d_model": c.d_model, "d_kv": c.head_dim, "d_ff": c.d_ff,
            "num_layers": c.n_layers, "num_decoder_layers": c.n_dec_layers, "num_heads": c.n_heads,
            "relative_attention_num_buckets": c.num_buckets, "relative_attention_max_distance": c.max_distance,
            "dropout_rate": c.dropout, "layer_norm_epsilon": c.norm_eps, "initializer_factor": 1.0,
            "feed_forward_proj": proj, "dense_act_fn": act, "is_gated_act": proj.startswith("gated-"),
            "tie_word_embeddings": c.tie_embeddings, "scale_decoder_outputs": c.rescale_head,
            "is_encoder_decoder": True, "pad_token_id": c.pad_id, "eos_token_id": c.eos_id,
            "decoder_start_token_id": c.decoder_start_id}


def _pairs(c: T5Config):
    """(HF name, our name) of every tensor that maps one to one (all but the fused attention projections)."""
    gated = c.activation in ("geglu", "geglu_tanh", "swiglu")
    ffn = [("wi_0", "gate"), ("wi_1", "fc1"), ("wo", "fc2")] if gated else [("wi", "fc1"), ("wo", "fc2")]
    yield "shared.weight", "tok_emb.weight"
    for stack, ours, n, last in (("encoder", "encoder", c.n_layers, 1), ("decoder", "decoder", c.n_dec_layers, 2)):
        for i in range(n):
            h, b = f"{stack}.block.{i}.layer.", f"{ours}.{i}."
            yield h + "0.layer_norm.weight", b + "norm1.weight"
            yield h + "0.SelfAttention.o.weight", b + "attn.out.weight"
            if stack == "decoder":
                yield h + "1.layer_norm.weight", b + "norm2.weight"
                yield h + "1.EncDecAttention.q.weight", b + "cross_attn.q.weight"
                yield h + "1.EncDecAttention.o.weight", b + "cross_attn.out.weight"
            yield h + f"{last}.layer_norm.weight", b + "norm3.weight"
            for hf_name, our_name in ffn:
                yield h + f"{last}.DenseReluDense.{hf_name}.weight", b + f"ffn.{our_name}.weight"
        short = stack[:3]
        yield f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", f"{short}_bias.bias.weight"
        yield f"{stack}.final_layer_norm.weight", f"{short}_norm.weight"
    if not c.tie_embeddings:
        yield "lm_head.weight", "lm_head.proj.weight"


def _fused(c: T5Config):
    """(our fused name, [HF names in row order]) for the attention projections."""
    for stack, n in (("encoder", c.n_layers), ("decoder", c.n_dec_layers)):
        for i in range(n):
            a = f"{stack}.block.{i}.layer.0.SelfAttention."
            yield f"{stack}.{i}.attn.qkv.weight", [a + p + ".weight" for p in "qkv"]
            if stack == "decoder":
                x = f"decoder.block.{i}.layer.1.EncDecAttention."
                yield f"decoder.{i}.cross_attn.kv.weight", [x + "k.weight", x + "v.weight"]


# tensors transformers itself ignores or re-ties: copies of the shared embedding, and a cross-attention
# relative bias old checkpoints carry but no layer reads (T5ForConditionalGeneration._keys_to_ignore_on_load_unexpected)
_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
_UNUSED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)


def state_from_hf(hf_state: dict, c: T5Config) -> dict:
    """HF tensors -> ours. A missing tensor, or one this layout cannot map, is an error that names it."""
    used, out = set(), {}

    def take(name):
        if name not in hf_state:
            raise ValueError(f"T5 checkpoint is missing tensor {name!r} (does config.json match the weights?)")
        used.add(name)
        return hf_state[name]

    for hf_name, ours in _pairs(c):
        out[ours] = take(hf_name)
    for ours, names in _fused(c):
        out[ours] = torch.cat([take(n) for n in names])
    copies = list(_COPIES) + (["lm_head.weight"] if c.tie_embeddings else [])
    differ = [k for k in copies if k in hf_state and not torch.equal(hf_state[k], out["tok_emb.weight"])]
    if differ:
        raise ValueError(f"T5 checkpoint has {differ[0]!r} different from shared.weight, but lmforge's t5 shares one "
                         "embedding between encoder, decoder and (tied) head")
    unknown = [k for k in hf_state if k not in used and k not in copies and k not in _UNUSED]
    if unknown:
        raise ValueError(f"T5 checkpoint has tensors lmforge cannot map: {unknown[:5]} ({len(unknown)} in all); it "
                         f"is not the layout of a T5ForConditionalGeneration with this config.json")
    return {k: v.contiguous() for k, v in out.items()}


def state_to_hf(state: dict, c: T5Config) -> dict:
    out = {hf_name: state[ours] for hf_name, ours in _pairs(c)}
    for ours, names in _fused(c):
        for name, w in zip(names, state[ours].chunk(len(names))):
            out[name] = w
    return {k: v.contiguous() for k, v in out.items()}
