"""TransformerConfig: the 2017 encoder-decoder's fields (the paper's base model) and presets. No torch import."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from lmforge.config import Config, check


@dataclasses.dataclass
class TransformerConfig(Config):
    """Encoder-decoder Transformer, "Attention Is All You Need" (Vaswani et al. 2017).

    Defaults are the paper's base model (Table 3, row "base"). Token ids 0/1/2 are the recipe's
    <pad>/<s>/</s> (lmforge.data.translation.SPECIALS).
    """

    vocab_size: int = 37000  # sec. 5.1: shared source-target BPE vocabulary of about 37000 tokens (EN-DE)
    max_len: int = 256  # rows of the sinusoid table; the paper fixes none (sinusoids extrapolate, sec. 3.5)
    d_model: int = 512  # sec. 3.1: d_model = 512
    n_heads: int = 8  # sec. 3.2.2: h = 8 parallel heads, d_k = d_v = d_model / h = 64
    n_layers: int = 6  # sec. 3.1: N = 6 identical layers in the encoder
    n_dec_layers: int = 0  # sec. 3.1: N = 6 in the decoder too; 0 means "same as n_layers"
    d_ff: int = 2048  # sec. 3.3: inner layer of the feed-forward network, d_ff = 2048
    dropout: float = 0.1  # sec. 5.4: P_drop = 0.1 on sub-layer outputs and on embeddings + positions
    bias: bool = True  # eq. 2 has biases b1, b2; the projections of sec. 3.2.2 are plain matrices (we keep biases, as tensor2tensor)
    norm_eps: float = 1e-5  # the paper gives none; PyTorch's nn.Transformer default
    pad_id: int = 0  # padding: masked as an attention key, ignored by the loss
    bos_id: int = 1  # first decoder input ("shifted right", sec. 3.1)
    eos_id: int = 2  # end of sequence: appended to every source and target

    family: ClassVar[str] = "transformer"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "transformer-base": dict(),  # Table 3 "base": 65M parameters with the 37k vocabulary
        "transformer-big": dict(d_model=1024, n_heads=16, d_ff=4096, dropout=0.3),  # Table 3 "big" (EN-DE P_drop 0.3)
        # sized for a 2-core CPU: width and depth halved (the table's rows (A)-(C) show the trade-off)
        "transformer-small": dict(vocab_size=8000, d_model=256, n_heads=4, n_layers=3, d_ff=1024),
        "transformer-tiny": dict(vocab_size=512, max_len=128, d_model=64, n_heads=2, n_layers=1, d_ff=128),
    }

    def __post_init__(self):
        n = type(self).__name__
        for k in ("vocab_size", "max_len", "d_model", "n_heads", "n_layers", "d_ff"):
            check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        check(self.n_dec_layers >= 0, n, f"n_dec_layers must be >= 0 (0 means n_layers), got {self.n_dec_layers}")
        check(self.d_model % self.n_heads == 0, n, f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        check(self.d_model % 2 == 0, n, f"d_model must be even for sinusoidal positions, got {self.d_model}")
        check(0.0 <= self.dropout < 1.0, n, f"dropout must be in [0, 1), got {self.dropout}")
        check(len({self.pad_id, self.bos_id, self.eos_id}) == 3, n, "pad_id, bos_id and eos_id must differ")
        for k in ("pad_id", "bos_id", "eos_id"):
            check(0 <= getattr(self, k) < self.vocab_size, n, f"{k} must be a token id below vocab_size")
        if self.n_dec_layers == 0:
            self.n_dec_layers = self.n_layers

