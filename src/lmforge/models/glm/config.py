"""GLMConfig: the 2022 blank-infilling GLM's fields and presets. No torch import.

Du et al. 2022, "GLM: General Language Model Pretraining with Autoregressive Blank Infilling", sec. 2.3: one
Transformer stack with the layer norm moved before each sub-layer (as Megatron-LM, plus a final one), GeLU
instead of ReLU, a single linear output layer over the vocabulary (tied to the token embedding, as the
authors' code), and 2-D positions: two learned tables, summed with the token embedding.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from lmforge.config import Activation, Config, check, check_stack


@dataclasses.dataclass
class GLMConfig(Config):
    """GLM: part A (the text with blanks) attends both ways, part B (the spans) to all of A and causally to itself."""

    vocab_size: int = 30592  # GLM-Large's English WordPiece vocabulary (BERT's, with GLM's added tokens)
    max_len: int = 512  # positions a row holds, part A and part B together (GLM-Large: 512)
    d_model: int = 1024  # GLM-Large, sec. 3.1: same size as BERT-Large
    n_heads: int = 16
    n_layers: int = 24
    d_ff: int = 0  # 0 means 4 * d_model
    dropout: float = 0.0  # the authors pretrain with 0.1; 0 is better for small, short runs (nanoGPT)
    norm_eps: float = 1e-5
    activation: Activation = "gelu"  # sec. 2.3: "we replace the ReLU activation functions with GeLUs"
    # token ids the model reads itself (prefill finds the blanks, decoding opens each with <sop>);
    # the defaults are the ids the `blank` recipe's tokenizer gives them (lmforge.data.blank.SPECIAL_TOKENS)
    pad_id: int = 0
    mask_id: int = 1  # [MASK]: a short span (sec. 2.1)
    smask_id: int = 2  # [sMASK]: a whole sentence (sec. 2.2, sentence-level objective)
    gmask_id: int = 3  # [gMASK]: one long span at the end (sec. 2.2, document-level objective); appended to a prompt without a blank
    sop_id: int = 4  # <sop>: opens every span in part B (the paper's [START], sec. 2.1)
    eop_id: int = 5  # <eop>: closes it (the paper's [END])

    family: ClassVar[str] = "glm"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "glm-tiny": dict(vocab_size=256, max_len=128, d_model=64, n_heads=4, n_layers=2),
        # sized for a 2-core CPU and a character vocabulary (Chinese prose and poems: ~8k characters)
        "glm-zh-small": dict(vocab_size=8000, max_len=256, d_model=256, n_heads=4, n_layers=4),
        "glm-large": dict(),  # sec. 3.1: GLM-Large, 335M parameters
    }

    def __post_init__(self):
        n = type(self).__name__
        check_stack(self, n)
        ids = {k: getattr(self, k) for k in ("pad_id", "mask_id", "smask_id", "gmask_id", "sop_id", "eop_id")}
        for k, v in ids.items():
            check(0 <= v < self.vocab_size, n, f"{k} must be a token id below vocab_size ({self.vocab_size}), got {v}")
        check(len(set(ids.values())) == len(ids), n, f"the special token ids must differ, got {ids}")
        if self.d_ff == 0:
            self.d_ff = 4 * self.d_model

    @property
    def blank_ids(self) -> frozenset[int]:
        """The ids of the three blank tokens ([MASK], [sMASK], [gMASK])."""
        return frozenset((self.mask_id, self.smask_id, self.gmask_id))
