"""LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"): a frozen linear layer plus a
trained low-rank update,

    h = W0 x + (alpha / r) * B A x        W0 (out, in) frozen, A (r, in), B (out, r), r << min(in, out)

(paper eq. 3 and sec. 4.1: "We then scale ΔWx by α/r"). Only A and B are trained; `merge` folds B A into W0
for inference at no extra cost, `unmerge` takes it out again.

One layer may carry several adapters on disjoint row ranges of its output, `parts`: a fused projection
(MultiHeadAttention's `qkv`, rows q then k then v) can be adapted as a whole (one A shared by q, k and v, as
PEFT adapts GPT-2's fused `c_attn`) or per slice (own A and B for q and for v, as PEFT adapts Llama's
separate `q_proj` and `v_proj`, and as the paper adapts W_q and W_v, sec. 7.1). A part is
(name, start row, stop row, rank, scale).

Initialisation (PEFT's default, `init_lora_weights=True`): A Kaiming-uniform with a = sqrt(5), nn.Linear's
own default init; B zeros, so training starts exactly at the base model (the paper, sec. 4.1, draws A from a
Gaussian; the zero B is what matters: ΔW = BA = 0 at the start).

    >>> base = nn.Linear(4, 6)
    >>> layer = LoRALinear(base, [("all", 0, 6, 2, 8.0)], dropout=0.0)
    >>> torch.equal(layer(torch.ones(1, 4)), base(torch.ones(1, 4)))   # B = 0: the base model, exactly
    True
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Part(NamedTuple):
    """One adapter of a LoRALinear: output rows [start, stop), rank r, scale (alpha / r)."""

    name: str
    start: int
    stop: int
    r: int
    scale: float


class LoRALinear(nn.Linear):
    """An nn.Linear (the same weight and bias Parameters, the same state-dict keys) with LoRA adapters.

    State-dict keys added: `lora_A.<part>` (r, in) and `lora_B.<part>` (stop - start, r). It subclasses
    nn.Linear so code that reads `.weight` keeps working, and lmforge.kernels.accelerate, which swaps only
    exact nn.Linear layers, leaves it alone."""

    def __init__(self, base: nn.Linear, parts: list[tuple], dropout: float = 0.0):
        nn.Module.__init__(self)  # not nn.Linear.__init__: the base's Parameters are shared, not re-allocated
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        if hasattr(base, "residual"):
            self.residual = base.residual  # lmforge.nn.init's scaled-init marker
        self.parts = [Part(*p) for p in parts]
        used = [False] * self.out_features
        for p in self.parts:
            if not (0 <= p.start < p.stop <= self.out_features) or p.r <= 0:
                raise ValueError(f"LoRA part {p.name!r}: rows [{p.start}, {p.stop}) and rank {p.r} do not fit a "
                                 f"layer with {self.out_features} outputs (rank must be positive)")
            if any(used[p.start:p.stop]):
                raise ValueError(f"LoRA part {p.name!r} overlaps another part of the same layer")
            used[p.start:p.stop] = [True] * (p.stop - p.start)
        if len({p.name for p in self.parts}) != len(self.parts):
            raise ValueError(f"LoRA part names repeat: {[p.name for p in self.parts]}")
        kw = dict(device=self.weight.device, dtype=self.weight.dtype)
        self.lora_A = nn.ParameterDict({p.name: nn.Parameter(torch.empty(p.r, self.in_features, **kw))
                                        for p in self.parts})
        self.lora_B = nn.ParameterDict({p.name: nn.Parameter(torch.empty(p.stop - p.start, p.r, **kw))
                                        for p in self.parts})
        self.dropout = nn.Dropout(dropout)
        self.merged = False
        self.reset_lora()

    def reset_lora(self) -> None:
        """A: Kaiming-uniform (a = sqrt(5), nn.Linear's default; PEFT's); B: zeros (Hu et al. sec. 4.1)."""
        for p in self.parts:
            nn.init.kaiming_uniform_(self.lora_A[p.name], a=math.sqrt(5))
            nn.init.zeros_(self.lora_B[p.name])

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x, self.weight, self.bias)  # (..., out)
        if self.merged:
            return y
        for p in self.parts:
            d = F.linear(F.linear(self.dropout(x), self.lora_A[p.name]), self.lora_B[p.name]) * p.scale
            if p.stop - p.start < self.out_features:
                d = F.pad(d, (p.start, self.out_features - p.stop))  # (..., out): zeros outside the part's rows
            y = y + d
        return y

    def delta(self, part: Part) -> Tensor:
        """scale * B A for one part, (stop - start, in), computed in float32 and returned in the weight's dtype."""
        a, b = self.lora_A[part.name].float(), self.lora_B[part.name].float()
        return (b @ a * part.scale).to(self.weight.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """W0 <- W0 + scale B A: one product per token instead of three; a no-op when already merged."""
        if not self.merged:
            for p in self.parts:
                self.weight[p.start:p.stop] += self.delta(p)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W0 <- W0 - scale B A: the base weights back, up to one float rounding of the merged sum."""
        if self.merged:
            for p in self.parts:
                self.weight[p.start:p.stop] -= self.delta(p)
            self.merged = False

    def plain(self) -> nn.Linear:
        """The base layer without adapters (the same Parameters), merged or not as it is now."""
        lin = nn.Linear.__new__(nn.Linear)
        nn.Module.__init__(lin)
        lin.in_features, lin.out_features, lin.weight, lin.bias = self.in_features, self.out_features, self.weight, self.bias
        if hasattr(self, "residual"):
            lin.residual = self.residual
        return lin

    def extra_repr(self) -> str:
        parts = ", ".join(f"{p.name}[{p.start}:{p.stop}] r={p.r} scale={p.scale:g}" for p in self.parts)
        return f"{super().extra_repr()}, lora: {parts}, dropout={self.dropout.p}, merged={self.merged}"
