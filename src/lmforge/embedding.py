"""Sentence embeddings from an encoder (BERT, DistilBERT): one vector per text, pooled as a
sentence-transformers directory says.

A sentence-transformers folder (all-MiniLM-L6-v2's, for one) is a Hugging Face model directory plus
modules.json, the pipeline: Transformer -> Pooling (1_Pooling/config.json: which pooling) -> Normalize
(optional). sentence_bert_config.json's max_seq_length is where texts are cut (it replaces the
tokenizer.json's truncation, as sentence-transformers does). Pooling (Reimers & Gurevych 2019,
Sentence-BERT, sec. 3): "mean" averages the final hidden states of the real tokens (padding excluded),
"cls" takes the first token's, "max" the elementwise maximum, "mean_sqrt_len_tokens" the sum divided by
sqrt(length), "lasttoken" the last real token's; several modes are concatenated in the order given.
Normalize scales each vector to unit length, so a dot product is the cosine similarity.

    >>> vectors = embed("path/to/all-MiniLM-L6-v2", ["The sun is shining.", "It is raining."])  # (2, 384)
    >>> vectors @ vectors.T                                                                     # cosines

A directory without modules.json gets sentence-transformers' default for a plain model: mean pooling,
no normalisation.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# sentence-transformers' legacy 1_Pooling/config.json keys, in the order it concatenates them
_LEGACY_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                 "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                 "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "lasttoken")
_STEPS = {"Transformer", "Pooling", "Normalize"}  # the module types (last part of the class path) we run


@dataclasses.dataclass
class Pipeline:
    """What turns hidden states into a sentence vector: pooling modes, normalisation, the length texts are cut at."""
    modes: tuple[str, ...] = ("mean",)
    normalize: bool = False
    max_seq_length: int | None = None  # None: the tokenizer.json's own truncation

    def __post_init__(self):
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"pooling mode {bad[0] if bad else 'none'!r} is not supported; supported: {', '.join(MODES)}")


def read_pipeline(directory: str | Path) -> Pipeline:
    """The sentence-transformers pipeline of a directory (modules.json and the files it names)."""
    directory = Path(directory)
    modules = directory / "modules.json"
    if not modules.is_file():
        return Pipeline()
    steps = json.loads(modules.read_text())
    kinds = [s.get("type", "").rsplit(".", 1)[-1] for s in steps]
    unknown = [k for k in kinds if k not in _STEPS]
    if unknown:
        raise ValueError(f"{modules} has a {unknown[0]} module; lmforge.embed runs {', '.join(sorted(_STEPS))} only")
    modes: tuple[str, ...] = ("mean",)
    for step, kind in zip(steps, kinds):
        if kind == "Pooling":
            cfg = json.loads((directory / step.get("path", "") / "config.json").read_text())
            if "pooling_mode" in cfg:  # sentence-transformers 5+: a name or a list of names
                modes = (cfg["pooling_mode"],) if isinstance(cfg["pooling_mode"], str) else tuple(cfg["pooling_mode"])
            else:
                modes = tuple(mode for key, mode in _LEGACY_MODES.items() if cfg.get(key))
    st = directory / "sentence_bert_config.json"
    max_seq_length = json.loads(st.read_text()).get("max_seq_length") if st.is_file() else None
    return Pipeline(modes, "Normalize" in kinds, max_seq_length)


def pool(hidden: Tensor, mask: Tensor, modes: Sequence[str]) -> Tensor:
    """hidden (B, T, d), mask (B, T) 1 = real token -> (B, d * len(modes)).

    Example (one row, d = 1): hidden [[1], [3], [9]], mask [1, 1, 0] -> mean 2, max 3, cls 1, lasttoken 3,
    mean_sqrt_len_tokens 4 / sqrt(2) = 2.828."""
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    n = m.sum(1).clamp(min=1e-9)  # (B, 1) real tokens per row
    last = mask.long().cumsum(1).argmax(1)  # (B,) index of the last real token (right padding)
    first = mask.long().argmax(1)  # (B,) the first real token ([CLS]; after left padding too)
    rows = torch.arange(hidden.size(0), device=hidden.device)
    out = {"cls": lambda: hidden[rows, first],
           "max": lambda: hidden.masked_fill(m == 0, -1e9).max(1).values,
           "mean": lambda: (hidden * m).sum(1) / n,
           "mean_sqrt_len_tokens": lambda: (hidden * m).sum(1) / n.sqrt(),
           "lasttoken": lambda: hidden[rows, last]}
    return torch.cat([out[mode]() for mode in modes], dim=-1)


def embed(model_or_dir, texts: str | Sequence[str], *, tokenizer=None, pipeline: Pipeline | None = None,
          batch_size: int = 32) -> Tensor:
    """Texts -> (N, d) float tensor of sentence vectors (one text -> (1, d)).

    model_or_dir: a directory (Hugging Face / sentence-transformers or lmforge, with tokenizer.json; its
    pipeline is read from it) or a loaded encoder model (then give `tokenizer`; `pipeline` defaults to
    mean pooling without normalisation). Texts are cut where the pipeline says (or where the tokenizer's
    truncation does); a text longer than the model's max_len without either is an error.
    """
    from lmforge.loading import load
    from lmforge.tokenizers import Padding, Truncation, load_tokenizer

    if isinstance(model_or_dir, (str, Path)):
        directory = Path(model_or_dir)
        model = load(directory)
        tokenizer = tokenizer or load_tokenizer(directory)
        pipeline = pipeline or read_pipeline(directory)
    else:
        model = model_or_dir
        if tokenizer is None:
            raise ValueError("embed(model, texts) needs tokenizer=...: the model alone cannot read text "
                             "(or pass the model's directory instead)")
        pipeline = pipeline or Pipeline()
    if getattr(model.config, "family", None) not in ("bert", "distilbert"):
        raise ValueError(f"embed needs an encoder (bert, distilbert); got a {getattr(model.config, 'family', '?')} "
                         "model")
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("embed takes a non-empty list of strings")
    tok = _for_batches(tokenizer, pipeline, model.config.max_len, Padding, Truncation)
    segments = model.emb.seg is not None
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                enc = tok.encode_batch_full(texts[i:i + batch_size])
                ids = torch.tensor([e.ids for e in enc], device=device)
                mask = torch.tensor([e.attention_mask for e in enc], device=device)
                types = torch.tensor([e.type_ids for e in enc], device=device) if segments else None
                vectors = pool(model(ids, mask, types).hidden_states, mask, pipeline.modes)
                out.append(F.normalize(vectors, p=2, dim=1) if pipeline.normalize else vectors)
    finally:
        model.train(was_training)
    return torch.cat(out).float()


def _for_batches(tokenizer, pipeline: Pipeline, max_len: int, Padding, Truncation):
    """A copy of the tokenizer that cuts where the pipeline says and pads each batch to its longest row
    (sentence-transformers calls the tokenizer with padding=True, truncation, max_length=max_seq_length)."""
    import copy
    tok = copy.copy(tokenizer)
    if pipeline.max_seq_length is not None:
        tok.truncation = Truncation(min(pipeline.max_seq_length, max_len))
    pad = tokenizer.padding
    pad_token = pad.pad_token if pad is not None else "[PAD]"
    pad_id = pad.pad_id if pad is not None else tokenizer.token_to_id(pad_token) or 0
    tok.padding = Padding(None, "Right", None, pad_id, 0, pad_token)
    return tok
