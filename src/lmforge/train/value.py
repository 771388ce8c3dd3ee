"""ValueModel: a decoder with a value head, PPO's critic on the policy's own trunk (lmforge.train.recipes.ppo).

One scalar per token from the final hidden states. It is a wrapper (lmforge.train.checkpoint.config_record): a run
directory saves it as its base family's config plus "wrapper": {"kind": "value_head"}, and lmforge.load rebuilds
it (lmforge.models.WRAPPERS) or, with base_only=True, gives the policy alone.
"""
from __future__ import annotations

import torch
from torch import nn


class ValueModel(nn.Module):
    """forward returns the base's ModelOutput with `values` (B, T) added. The decoding protocol is the base's,
    so the wrapped policy generates (and chats, and is evaluated) as the plain policy."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base
        d = base.config.d_model
        self.value_head = nn.Linear(d, 1)
        # N-details (Huang et al. 2024): the value head's weight N(0, 1/sqrt(d_model + 1)), bias 0
        nn.init.normal_(self.value_head.weight, std=1 / (d + 1) ** 0.5)
        nn.init.zeros_(self.value_head.bias)

    @classmethod
    def from_record(cls, base: nn.Module, record: dict) -> "ValueModel":
        return cls(base)

    def wrapper_config(self) -> dict:
        return {"kind": "value_head"}

    @property
    def config(self):
        return self.base.config

    @property
    def decoder_start(self):
        return self.base.decoder_start

    def prefill(self, *args, **kwargs):
        return self.base.prefill(*args, **kwargs)

    def decode_step(self, *args, **kwargs):
        return self.base.decode_step(*args, **kwargs)

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None, **kwargs):
        out = self.base(ids, targets, **kwargs)
        out.values = self.value_head(out.hidden_states).squeeze(-1)  # (B, T)
        return out
