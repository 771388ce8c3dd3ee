"""GPTConfig: the GPT-1 / GPT-2 decoder's fields and presets. No torch import."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from lmforge.config import Activation, Config, check_stack


@dataclasses.dataclass
class GPTConfig(Config):
    """GPT-1/GPT-2-style decoder: learned positions, pre-norm blocks + final LayerNorm, GELU MLP, tied head."""

    vocab_size: int = 50257  # GPT-2 BPE: 50,000 merges + 256 bytes + <|endoftext|>
    max_len: int = 1024  # context length (GPT-2: 1024)
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    d_ff: int = 0  # 0 means 4 * d_model (GPT-2)
    dropout: float = 0.0  # GPT-2 used 0.1 for pretraining; 0 is better for small/short runs (nanoGPT)
    bias: bool = True  # GPT-2 has biases in linears and LayerNorms
    norm_eps: float = 1e-5  # GPT-2 layer_norm_epsilon
    activation: Activation = "gelu_tanh"  # GPT-2 uses the tanh approximation of GELU
    tie_embeddings: bool = True  # output projection shares the token embedding (GPT-2)

    family: ClassVar[str] = "gpt"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "gpt-tiny": dict(vocab_size=256, max_len=128, d_model=64, n_heads=4, n_layers=2),
        # nanoGPT's CPU recipe for shakespeare-char: 4 layers, 4 heads, width 128, block 64
        "gpt-mini": dict(vocab_size=256, max_len=64, d_model=128, n_heads=4, n_layers=4),
        "gpt-small-char": dict(vocab_size=256, max_len=256, d_model=384, n_heads=6, n_layers=6),
        "gpt1": dict(vocab_size=40478, max_len=512, d_model=768, n_heads=12, n_layers=12, activation="gelu"),
        "gpt2": dict(),  # 124M
        "gpt2-medium": dict(d_model=1024, n_heads=16, n_layers=24),
        "gpt2-large": dict(d_model=1280, n_heads=20, n_layers=36),
        "gpt2-xl": dict(d_model=1600, n_heads=25, n_layers=48),
    }

    def __post_init__(self):
        n = type(self).__name__
        check_stack(self, n)
        if self.d_ff == 0:
            self.d_ff = 4 * self.d_model

