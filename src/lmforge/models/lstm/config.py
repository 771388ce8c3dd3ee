"""LSTMConfig: the RNN baseline's fields and presets. No torch import."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from lmforge.config import Config, check


@dataclasses.dataclass
class LSTMConfig(Config):
    """The RNN baseline: bidirectional-LSTM encoder, LSTM decoder, Luong et al. 2015 global attention.

    Luong, Pham & Manning 2015, "Effective Approaches to Attention-based NMT": "general" score
    h_t^T W_a h_s (sec. 3.1) and the attentional hidden state h~_t = tanh(W_c [c_t; h_t]) (eq. 5).
    The encoder is bidirectional as in Bahdanau et al. 2015, each direction d_model / 2 wide, so
    their final states concatenated start the decoder (OpenNMT's "brnn" encoder, Klein et al. 2017).
    """

    vocab_size: int = 37000  # same shared vocabulary as the Transformer it is compared with
    max_len: int = 256  # longest source/target accepted (an LSTM has no position table; kept for the same checks)
    d_model: int = 1000  # Luong et al. 2015 sec. 4.1: 1000-dimensional embeddings and cells
    n_layers: int = 4  # Luong et al. 2015 sec. 4.1: stacking LSTMs with 4 layers (encoder and decoder)
    dropout: float = 0.2  # Luong et al. 2015 sec. 4.1: dropout 0.2 for their dropout models (Zaremba et al. 2014)
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    family: ClassVar[str] = "lstm"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "lstm-luong": dict(vocab_size=50000),  # Luong et al. 2015: 50k vocabulary per language, 4 x 1000
        # sized like transformer-small: same width and vocabulary, two layers per side
        "lstm-small": dict(vocab_size=8000, d_model=256, n_layers=2, dropout=0.1),
        "lstm-tiny": dict(vocab_size=512, max_len=128, d_model=64, n_layers=1, dropout=0.1),
    }

    def __post_init__(self):
        n = type(self).__name__
        for k in ("vocab_size", "max_len", "d_model", "n_layers"):
            check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        check(self.d_model % 2 == 0, n, f"d_model must be even (each encoder direction is d_model / 2), got {self.d_model}")
        check(0.0 <= self.dropout < 1.0, n, f"dropout must be in [0, 1), got {self.dropout}")
        check(len({self.pad_id, self.bos_id, self.eos_id}) == 3, n, "pad_id, bos_id and eos_id must differ")

