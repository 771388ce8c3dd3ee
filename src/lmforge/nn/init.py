"""All weight initialisation in one place.

init_weights(model, std, n_layers) sets every tensor:
- nn.Linear weight:            normal(0, std)                     (GPT-2 / BERT: std 0.02)
- residual projections (attention `out`, feed-forward `fc2`, marked `.residual = True`):
                               normal(0, std / sqrt(2 * n_layers)) (GPT-2 paper, sec. 2.3: scale by 1/sqrt(N)
                                                                   for N residual layers, two per block)
- nn.Linear bias:              zeros
- nn.Embedding weight:         normal(0, std)
- LayerNorm / RMSNorm weight:  ones; LayerNorm bias: zeros
- RelativePositionBias:        normal(0, std) through its embedding
- MLMHead output bias:         zeros (google-research/bert run_pretraining.py: "output_bias", zeros)
Anything else with parameters raises, so a new module cannot be forgotten silently.

scheme="xavier" (the 2017 encoder-decoder Transformer; its paper names no init, this is what its
reference implementations use -- tensor2tensor, fairseq, the Annotated Transformer):
- nn.Linear weight:            xavier_uniform (Glorot & Bengio 2010), no residual scaling; bias zeros
- nn.Embedding weight:         normal(0, d_model^-0.5), so that embedding * sqrt(d_model) has unit
                               variance (fairseq's transformer; the embedding is also the tied output layer)
- norms as above

scheme="t5" (Mesh TensorFlow's T5, as Hugging Face's T5PreTrainedModel._init_weights writes it out):
- nn.Linear weight:            normal(0, fan_in^-0.5) (variance scaling 1.0, fan-in: wi and k/v d_model^-0.5,
                               wo d_ff^-0.5, o (n_heads * head_dim)^-0.5; an untied LM head d_model^-0.5)
- query rows of attention whose logits are not scaled (`scale == 1.0`): a further head_dim^-0.5, i.e.
                               normal(0, (d_model * head_dim)^-0.5) -- T5 folds 1/sqrt(d_k) into the init of q
- nn.Embedding weight:         normal(0, 1.0) (the shared token embedding; a tied head rescales by d_model^-0.5)
- RelativePositionBias:        normal(0, 1.0) through its embedding (HF uses d_model^-0.5; the paper names none)
- norms as above
"""
from __future__ import annotations

import math

import torch
from torch import nn

from lmforge.nn.attention import MultiHeadAttention
from lmforge.nn.heads import MLMHead
from lmforge.nn.norms import LayerNorm, RMSNorm


def init_weights(model: nn.Module, std: float = 0.02, n_layers: int | None = None, scheme: str = "normal") -> None:
    if scheme not in ("normal", "xavier", "t5"):
        raise ValueError(f"unknown init scheme {scheme!r}. Available: normal, xavier, t5")
    for name, m in model.named_modules():
        if scheme == "t5" and isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=m.in_features ** -0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif scheme == "t5" and isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=1.0)
        elif scheme == "xavier" and isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif scheme == "xavier" and isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=m.embedding_dim ** -0.5)
        elif isinstance(m, nn.Linear):
            s = std / math.sqrt(2 * n_layers) if (getattr(m, "residual", False) and n_layers) else std
            nn.init.normal_(m.weight, mean=0.0, std=s)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=std)
        elif isinstance(m, (LayerNorm, nn.LayerNorm, RMSNorm)):
            nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, MLMHead):
            nn.init.zeros_(m.bias)  # its dense, LayerNorm and tied decoder are children, set by their own rules
        elif isinstance(m, (nn.LSTM, nn.GRU)):
            continue  # the RNN baseline keeps torch's default uniform(-1/sqrt(h), 1/sqrt(h))
        elif any(True for _ in m.parameters(recurse=False)):
            raise TypeError(f"init_weights: no rule for {name} ({type(m).__name__}); add one to lmforge.nn.init")
    if scheme == "t5":
        for m in model.modules():
            if isinstance(m, MultiHeadAttention) and m.scale == 1.0:
                q = m.q.weight if m.cross else m.qkv.weight[:m.split[0]]  # (n_heads * head_dim, d_model)
                with torch.no_grad():
                    q.mul_(m.head_dim ** -0.5)
