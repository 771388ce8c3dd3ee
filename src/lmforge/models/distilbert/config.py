"""DistilBERTConfig: DistilBERT's fields and presets. No torch import."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from lmforge.config import Activation, Config, check, check_stack, check_labels


@dataclasses.dataclass
class DistilBERTConfig(Config):
    """DistilBERT (Sanh et al. 2019): BERT's encoder at half the depth, without the segment (token type)
    embeddings and the pooler (sec. 3: "the token-type embeddings and the pooler are removed"); optionally
    one head: the masked-LM head (`head="mlm"`) or a fine-tuning head as BERT's (`"classify"`, `"tag"`,
    `"qa"`; `labels` names the classes). Heads are config fields, not wrappers: see BERTConfig."""

    vocab_size: int = 30522  # BERT's uncased WordPiece vocabulary, shared with its teacher
    max_len: int = 512
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 6  # half of BERT-base's 12 (Sanh et al. 2019, sec. 3)
    d_ff: int = 0  # 0 means 4 * d_model
    dropout: float = 0.1
    norm_eps: float = 1e-12  # as BERT (HF DistilBERT fixes it to 1e-12)
    activation: Activation = "gelu"
    head: Literal["none", "mlm", "classify", "tag", "qa"] = "none"
    labels: tuple[str, ...] = ()  # classify/tag: the class names, index order (HF id2label)
    # dropout before a fine-tuning head; None: Hugging Face's defaults, seq_classif_dropout 0.2 for classify,
    # qa_dropout 0.1 for qa, `dropout` for tag
    head_dropout: float | None = None

    family: ClassVar[str] = "distilbert"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "distilbert-tiny": dict(d_model=128, n_heads=2, n_layers=1),  # bert-tiny's width, half its depth
        "distilbert-base": dict(),  # 66M (Sanh et al. 2019, table 3)
    }

    def __post_init__(self):
        n = type(self).__name__
        check_stack(self, n)
        check(self.activation in ("gelu", "gelu_tanh", "relu"), n,
              f"activation must be gelu, gelu_tanh or relu for DistilBERT, got {self.activation!r}")
        check_labels(self.head, self.labels, n)
        check(self.head_dropout is None or 0.0 <= self.head_dropout < 1.0, n,
              f"head_dropout must be in [0, 1) or null (the default for the head), got {self.head_dropout}")
        if self.d_ff == 0:
            self.d_ff = 4 * self.d_model
