"""DistilBERTConfig: DistilBERT's fields and presets. No torch import."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from lmforge.config import Activation, Config, check


@dataclasses.dataclass
class DistilBERTConfig(Config):
    """DistilBERT (Sanh et al. 2019): BERT's encoder at half the depth, without the segment (token type)
    embeddings and the pooler (sec. 3: "the token-type embeddings and the pooler are removed"); optionally
    the masked-LM head (`head="mlm"`)."""

    vocab_size: int = 30522  # BERT's uncased WordPiece vocabulary, shared with its teacher
    max_len: int = 512
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 6  # half of BERT-base's 12 (Sanh et al. 2019, sec. 3)
    d_ff: int = 0  # 0 means 4 * d_model
    dropout: float = 0.1
    norm_eps: float = 1e-12  # as BERT (HF DistilBERT fixes it to 1e-12)
    activation: Activation = "gelu"
    head: Literal["none", "mlm"] = "none"

    family: ClassVar[str] = "distilbert"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "distilbert-tiny": dict(d_model=128, n_heads=2, n_layers=1),  # bert-tiny's width, half its depth
        "distilbert-base": dict(),  # 66M (Sanh et al. 2019, table 3)
    }

    def __post_init__(self):
        n = type(self).__name__
        for k in ("vocab_size", "max_len", "d_model", "n_heads", "n_layers"):
            check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        check(self.d_model % self.n_heads == 0, n, f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        check(0.0 <= self.dropout < 1.0, n, f"dropout must be in [0, 1), got {self.dropout}")
        check(self.d_ff >= 0, n, f"d_ff must be >= 0 (0 means 4*d_model), got {self.d_ff}")
        check(self.activation in ("gelu", "gelu_tanh", "relu"), n,
              f"activation must be gelu, gelu_tanh or relu for DistilBERT, got {self.activation!r}")
        if self.d_ff == 0:
            self.d_ff = 4 * self.d_model
