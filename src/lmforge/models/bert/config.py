"""BERTConfig: the BERT encoder's fields and presets. No torch import."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from lmforge.config import Activation, Config, check, check_stack, check_labels


@dataclasses.dataclass
class BERTConfig(Config):
    """BERT (Devlin et al. 2019): token + learned position + segment embeddings with a LayerNorm, post-norm
    blocks (Add & Norm), GELU feed-forward, a pooler (tanh dense on [CLS]) and, optionally, one head:
    the pretraining heads (`head="mlm"` the masked-LM head, `head="pretraining"` the masked-LM and
    next-sentence heads) or a fine-tuning head (sec. 4, fig. 4): `head="classify"` one label per text from
    the pooled [CLS], `"tag"` one label per token, `"qa"` the start and end of an answer span. `labels`
    names the classes of classify/tag, in index order, so a saved model says what its outputs mean.

    Why heads are config fields and not a wrapper (lmforge.models.WRAPPERS): a head is part of what
    Hugging Face calls the architecture (BertForSequenceClassification is one config.json and one
    tensor file), so as a field it loads, saves and converts both ways through the family's hf.py like
    the masked-LM head, with no second record; each family wires its own (DistilBERT's sequence head
    has a pre-classifier and a ReLU where BERT's reads the pooler), which a family-blind wrapper could
    not do without knowing the family. A wrapper is for what wraps any family (adapters, value heads)."""

    vocab_size: int = 30522  # BERT's uncased WordPiece vocabulary
    max_len: int = 512  # learned positions (HF max_position_embeddings)
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    d_ff: int = 0  # 0 means 4 * d_model (BERT: 3072 for 768)
    n_segments: int = 2  # segment (token type) embeddings: sentence A and B (HF type_vocab_size)
    dropout: float = 0.1  # "dropout probability of 0.1 on all layers" (Devlin et al. 2019, sec. A.2)
    norm_eps: float = 1e-12  # google-research/bert modeling.py layer_norm: epsilon 1e-12
    activation: Activation = "gelu"  # the exact (erf) GELU of the reference code
    pooler: bool = True  # tanh(dense(h_[CLS])): the sentence vector the NSP head reads (sec. 3.1)
    head: Literal["none", "mlm", "pretraining", "classify", "tag", "qa"] = "none"  # none: the encoder (HF BertModel)
    labels: tuple[str, ...] = ()  # classify/tag: the class names, index order (HF id2label)
    head_dropout: float | None = None  # dropout before a fine-tuning head; None: `dropout` (HF classifier_dropout)

    family: ClassVar[str] = "bert"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # the smallest of Turc et al. 2019 ("Well-Read Students Learn Better"): L=2, H=128, A=2
        "bert-tiny": dict(d_model=128, n_heads=2, n_layers=2),
        "bert-mini": dict(d_model=256, n_heads=4, n_layers=4),  # Turc et al. 2019: L=4, H=256
        "bert-base": dict(),  # 110M (Devlin et al. 2019, sec. 3)
        "bert-large": dict(d_model=1024, n_heads=16, n_layers=24),  # 340M
        # all-MiniLM-L6-v2's encoder (Wang et al. 2020, MiniLM): 6 layers, width 384, 12 heads of 32
        "minilm-l6": dict(d_model=384, n_heads=12, n_layers=6, d_ff=1536),
    }

    def __post_init__(self):
        n = type(self).__name__
        check_stack(self, n)
        check(self.n_segments >= 1, n, f"n_segments must be >= 1 (BERT has 2: sentence A and B), got {self.n_segments}")
        check(self.activation in ("gelu", "gelu_tanh", "relu"), n,
              f"activation must be gelu, gelu_tanh or relu for BERT, got {self.activation!r}")
        check(self.head != "pretraining" or self.pooler, n,
              "head='pretraining' needs pooler=true: the next-sentence head reads the pooled [CLS] vector")
        check(self.head != "classify" or self.pooler, n,
              "head='classify' needs pooler=true: BERT classifies from the pooled [CLS] vector (sec. 4.1)")
        check(self.head not in ("tag", "qa") or not self.pooler, n,
              f"head={self.head!r} reads every token's vector, not the pooler: set pooler=false (Hugging Face's "
              f"{'BertForTokenClassification' if self.head == 'tag' else 'BertForQuestionAnswering'} has none)")
        check_labels(self.head, self.labels, n)
        check(self.head_dropout is None or 0.0 <= self.head_dropout < 1.0, n,
              f"head_dropout must be in [0, 1) or null (= dropout), got {self.head_dropout}")
        if self.d_ff == 0:
            self.d_ff = 4 * self.d_model
