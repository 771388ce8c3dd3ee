"""LlamaConfig: one decoder for the Llama, Qwen2 and GLM-4 layouts. No torch import.

What changed since GPT-2 (each a field here):
- rotary positions instead of a learned table (Su et al. 2021), base `rope_theta` (Llama 2: 1e4, Llama 3:
  5e5, Qwen2: 1e6), on all of each head or a fraction (`rope_fraction`: GLM-4 rotates half), in halves
  (Llama, Qwen2) or neighbour pairs (`rope_interleaved`: GLM-4), optionally rescaled for longer contexts
  (`rope_scaling`: linear or llama3);
- RMSNorm without bias instead of LayerNorm (Zhang & Sennrich 2019), pre-norm, final norm;
- SwiGLU feed-forward (Shazeer 2020): down(silu(gate(x)) * up(x));
- grouped-query attention (Ainslie et al. 2023): `n_kv_heads` key/value heads shared by groups of query heads;
- no biases, or only on q/k/v (`qkv_bias`: Qwen2, GLM-4);
- an untied output head (Llama 2/3 8B, GLM-4) or a tied one (Qwen2 small models, Llama 3.2 1B/3B).

`layout` names the Hugging Face class the model converts to (llama: LlamaForCausalLM, qwen2:
Qwen2ForCausalLM, glm: GlmForCausalLM); each layout fixes some fields (see lmforge.models.llama.hf).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from lmforge.config import Config, check

ROPE_SCALINGS = ("default", "linear", "llama3")  # the kinds lmforge.nn.positions.rope_frequencies computes
_SCALING_KEYS = {"linear": ("factor",),
                 "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}


@dataclasses.dataclass
class LlamaConfig(Config):
    """Pre-norm decoder with RoPE, RMSNorm, SwiGLU and grouped-query attention."""

    vocab_size: int = 32000
    max_len: int = 4096  # context length (Llama 2: 4096)
    d_model: int = 4096
    n_heads: int = 32
    n_kv_heads: int = 0  # 0 means n_heads (plain multi-head attention)
    head_dim: int = 0  # 0 means d_model // n_heads (GLM-4 sets it on its own)
    n_layers: int = 32
    d_ff: int = 11008  # SwiGLU hidden size (Llama 2 7B: 11008, about 8/3 * d_model rounded)
    rope_theta: float = 10000.0
    rope_fraction: float = 1.0  # share of each head's dimensions that rotate (GLM-4: 0.5)
    rope_interleaved: bool = False  # rotate neighbour pairs (GLM-4) instead of the two halves (Llama, Qwen2)
    rope_scaling: dict | None = None  # {"rope_type": "linear" | "llama3", "factor": ..., ...}; None = none
    qkv_bias: bool = False  # biases on the q/k/v projections (Qwen2, GLM-4)
    out_bias: bool = False  # bias on the attention output projection (Llama's attention_bias=true sets both)
    mlp_bias: bool = False
    norm_eps: float = 1e-6  # RMSNorm epsilon (Llama 2: 1e-5, Llama 3 / Qwen2: 1e-6, GLM-4: 1.5625e-7)
    tie_embeddings: bool = False
    dropout: float = 0.0  # none of the three uses dropout in pretraining
    layout: Literal["llama", "qwen2", "glm"] = "llama"

    family: ClassVar[str] = "llama"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "llama-tiny": dict(vocab_size=256, max_len=128, d_model=64, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=176),
        # gpt-mini's parameter budget (4 layers, width 128): per layer, attention with 2 key/value heads (49k)
        # plus SwiGLU's three 128 x 384 matrices (147k) = GPT-2's 4 x 128^2 attention plus 2 x 128 x 512 MLP (197k)
        "llama-mini": dict(vocab_size=256, max_len=64, d_model=128, n_heads=4, n_kv_heads=2, n_layers=4, d_ff=384,
                           tie_embeddings=True),
        "qwen2-tiny": dict(vocab_size=256, max_len=128, d_model=64, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=176,
                           qkv_bias=True, rope_theta=1e6, tie_embeddings=True, layout="qwen2"),
        "glm4-tiny": dict(vocab_size=256, max_len=128, d_model=64, n_heads=4, n_kv_heads=2, head_dim=32, n_layers=2,
                          d_ff=176, qkv_bias=True, rope_fraction=0.5, rope_interleaved=True, norm_eps=1.5625e-7,
                          layout="glm"),
        "llama2-7b": dict(),
        "llama3-8b": dict(vocab_size=128256, max_len=8192, n_kv_heads=8, d_ff=14336, rope_theta=5e5, norm_eps=1e-5),
    }

    def __post_init__(self):
        n = type(self).__name__
        for k in ("vocab_size", "max_len", "d_model", "n_heads", "n_layers", "d_ff"):
            check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        check(self.n_kv_heads >= 0 and self.head_dim >= 0, n, "n_kv_heads and head_dim must be >= 0 (0 = default)")
        if self.n_kv_heads == 0:
            self.n_kv_heads = self.n_heads
        check(self.n_heads % self.n_kv_heads == 0, n,
              f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads}): each key/value head "
              "serves the same number of query heads")
        if self.head_dim == 0:
            check(self.d_model % self.n_heads == 0, n,
                  f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}), or set head_dim")
            self.head_dim = self.d_model // self.n_heads
        rot = int(self.head_dim * self.rope_fraction)
        check(0.0 < self.rope_fraction <= 1.0 and rot % 2 == 0, n,
              f"rope_fraction ({self.rope_fraction}) of head_dim ({self.head_dim}) must give an even number of "
              f"rotated dimensions, got {rot}")
        check(self.rope_theta > 0, n, f"rope_theta must be positive, got {self.rope_theta}")
        check(0.0 <= self.dropout < 1.0, n, f"dropout must be in [0, 1), got {self.dropout}")
        if self.rope_scaling is not None:
            check(isinstance(self.rope_scaling, dict), n, f"rope_scaling must be a mapping, got {self.rope_scaling!r}")
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
            check(kind in ROPE_SCALINGS, n, f"unknown rope scaling kind {kind!r}; lmforge implements "
                  f"{', '.join(ROPE_SCALINGS)} (yarn, dynamic and longrope are not implemented)")
            missing = [k for k in _SCALING_KEYS.get(kind, ()) if k not in self.rope_scaling]
            check(not missing, n, f"rope scaling {kind!r} needs {', '.join(missing)}")
            self.rope_scaling = None if kind == "default" else {**self.rope_scaling, "rope_type": kind}

    @property
    def rope_dim(self) -> int:
        return int(self.head_dim * self.rope_fraction)
