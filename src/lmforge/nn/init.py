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
"""
from __future__ import annotations

import math

from torch import nn

from lmforge.nn.heads import MLMHead
from lmforge.nn.norms import LayerNorm, RMSNorm


def init_weights(model: nn.Module, std: float = 0.02, n_layers: int | None = None, scheme: str = "normal") -> None:
    if scheme not in ("normal", "xavier"):
        raise ValueError(f"unknown init scheme {scheme!r}. Available: normal, xavier")
    for name, m in model.named_modules():
        if scheme == "xavier" and isinstance(m, nn.Linear):
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
