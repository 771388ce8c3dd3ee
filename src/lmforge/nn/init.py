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
Anything else with parameters raises, so a new module cannot be forgotten silently.
"""
from __future__ import annotations

import math

from torch import nn

from lmforge.nn.norms import LayerNorm, RMSNorm


def init_weights(model: nn.Module, std: float = 0.02, n_layers: int | None = None) -> None:
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
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
        elif isinstance(m, (nn.LSTM, nn.GRU)):
            continue  # the RNN baseline keeps torch's default uniform(-1/sqrt(h), 1/sqrt(h))
        elif any(True for _ in m.parameters(recurse=False)):
            raise TypeError(f"init_weights: no rule for {name} ({type(m).__name__}); add one to lmforge.nn.init")
