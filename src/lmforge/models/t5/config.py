"""T5Config: the text-to-text encoder-decoder's fields (Raffel et al. 2020) and presets. No torch import.

What T5 changes from the 2017 Transformer (each a field or a fixed choice in models/t5/model.py):
- RMSNorm without bias or mean subtraction, pre-norm, a final norm after each stack (sec. 2.1);
- no absolute positions: a learned scalar per (relative-distance bucket, head) added to the attention
  logits, computed once per stack and shared by its layers (sec. 2.1); `num_buckets`, `max_distance`;
- attention logits are not divided by sqrt(head_dim) (the scale is folded into the init of the queries);
- no biases anywhere; `head_dim` need not be d_model / n_heads (HF's d_kv);
- feed-forward: ReLU (T5 v1.0) or gated GELU (T5 v1.1: "gated-gelu", the tanh approximation);
- output head tied to the token embedding with the decoder output rescaled by d_model^-0.5 (v1.0), or a
  separate matrix without the rescale (v1.1).

Token ids follow T5's SentencePiece model: 0 <pad>, 1 </s>, 2 <unk>; the decoder starts from <pad>
(HF's decoder_start_token_id = pad_token_id), or from `decoder_start_id` when a run's data says otherwise.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from lmforge.config import Activation, Config, check

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "geglu", "geglu_tanh", "swiglu")  # the feed-forward kinds T5 checkpoints use


@dataclasses.dataclass
class T5Config(Config):
    """T5 encoder-decoder. Defaults are T5-Small (v1.0; Raffel et al. 2020, sec. 3.7 and the released configs)."""

    vocab_size: int = 32128  # 32,000 SentencePiece pieces + 100 sentinels, padded to a multiple of 128 (HF config)
    max_len: int = 512  # pretraining input length (sec. 3.1.2); relative positions set no hard limit, this sizes the cache
    d_model: int = 512
    n_heads: int = 8
    head_dim: int = 64  # HF's d_kv; n_heads * head_dim need not equal d_model
    n_layers: int = 6  # encoder layers
    n_dec_layers: int = 0  # decoder layers; 0 means "same as n_layers"
    d_ff: int = 2048
    activation: Activation = "relu"  # v1.0 ReLU; v1.1 "geglu_tanh" (Shazeer 2020; HF "gated-gelu" = gelu_new)
    num_buckets: int = 32  # relative position buckets (sec. 2.1: "we use 32 embeddings")
    max_distance: int = 128  # "lengths up to 128 beyond which we assign all relative positions to the same embedding"
    dropout: float = 0.1  # sec. 3.1.2: dropout 0.1 when fine-tuning (v1.1 pretrains without)
    norm_eps: float = 1e-6
    tie_embeddings: bool = True  # v1.0 ties the output layer to the embedding; v1.1 does not
    rescale_head: bool = True  # multiply the decoder output by d_model^-0.5 before the head (v1.0, Mesh TF)
    pad_id: int = 0  # padding, masked as an attention key, ignored by the loss
    eos_id: int = 1
    decoder_start_id: int = 0  # the decoder's first input: T5 uses <pad> (HF decoder_start_token_id); a run on
    #                            data that starts targets with <s> (the translation recipe: id 1) sets it to that

    family: ClassVar[str] = "t5"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "t5-small": dict(),  # 60M
        "t5-base": dict(d_model=768, n_heads=12, n_layers=12, d_ff=3072),  # 220M
        # T5 v1.1 small (google/t5-v1_1-small): gated GELU, untied head, no pretraining dropout, 8 layers
        "t5-v1_1-small": dict(d_model=512, n_heads=6, n_layers=8, d_ff=1024, activation="geglu_tanh", dropout=0.0,
                              tie_embeddings=False, rescale_head=False),
        # sized for a 2-core CPU, like transformer-small (width 256, 3 + 3 layers)
        "t5-mini": dict(vocab_size=8000, max_len=256, d_model=256, n_heads=4, head_dim=64, n_layers=3, d_ff=1024),
        "t5-tiny": dict(vocab_size=512, max_len=128, d_model=64, n_heads=2, head_dim=32, n_layers=2, d_ff=128,
                        num_buckets=16, max_distance=32),
        "t5-v1_1-tiny": dict(vocab_size=512, max_len=128, d_model=64, n_heads=2, head_dim=32, n_layers=2, d_ff=96,
                             activation="geglu_tanh", num_buckets=16, max_distance=32, tie_embeddings=False,
                             rescale_head=False),
    }

    def __post_init__(self):
        n = type(self).__name__
        for k in ("vocab_size", "max_len", "d_model", "n_heads", "head_dim", "n_layers", "d_ff"):
            check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        check(self.n_dec_layers >= 0, n, f"n_dec_layers must be >= 0 (0 means n_layers), got {self.n_dec_layers}")
        check(self.activation in ACTIVATIONS, n, f"unknown activation {self.activation!r}; T5 feed-forwards: "
                                                 f"{', '.join(ACTIVATIONS)}")
        check(self.num_buckets >= 4 and self.num_buckets % 2 == 0, n,
              f"num_buckets must be even and >= 4 (T5: 32), got {self.num_buckets}: half the buckets are for keys on "
              "each side, half of those for exact small distances")
        check(self.max_distance > self.num_buckets // 2, n,
              f"max_distance must be > num_buckets // 2 = {self.num_buckets // 2} (T5: 128 for 32 buckets), got "
              f"{self.max_distance}")
        check(0.0 <= self.dropout < 1.0, n, f"dropout must be in [0, 1), got {self.dropout}")
        check(self.pad_id != self.eos_id, n, "pad_id and eos_id must differ")
        check(self.decoder_start_id != self.eos_id, n, "decoder_start_id and eos_id must differ")
        for k in ("pad_id", "eos_id", "decoder_start_id"):
            check(0 <= getattr(self, k) < self.vocab_size, n, f"{k} must be a token id below vocab_size")
        if self.n_dec_layers == 0:
            self.n_dec_layers = self.n_layers
