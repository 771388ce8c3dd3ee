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
import re
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
    model, tokenizer, pipeline = _encoder(model_or_dir, tokenizer, pipeline, "embed")
    out = []
    for hidden, mask, _ in _hidden_states(model, tokenizer, pipeline, _texts(texts), batch_size):
        vectors = pool(hidden, mask, pipeline.modes)
        out.append(F.normalize(vectors, p=2, dim=1) if pipeline.normalize else vectors)
    return torch.cat(out).float()


# What a whole word must not touch: a letter or digit, except Chinese/Japanese characters (written without
# spaces, so "银行" in "他去银行" is a whole word).
_WORD_CHARS = r"[^\W_\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"


def find_word(text: str, word: str) -> tuple[int, int]:
    """The character span of the first whole-word, case-insensitive occurrence of `word` in `text`.

    Example: find_word("Bankers sat on the Bank.", "bank") -> (19, 23)  ("Bankers" is another word);
    find_word("他去银行", "银行") -> (2, 4)
    """
    if not word.strip():
        raise ValueError("the word to find is empty")
    m = re.search(rf"(?<!{_WORD_CHARS}){re.escape(word)}(?!{_WORD_CHARS})", text, flags=re.IGNORECASE)
    if m is None:
        raise ValueError(f"{word!r} does not occur as a whole word in {text!r}")
    return m.span()


def contextual_word_vectors(model_or_dir, texts: str | Sequence[str], word: str | Sequence[tuple[int, int]], *,
                            tokenizer=None, pipeline: Pipeline | None = None, batch_size: int = 32) -> Tensor:
    """The vector an encoder gives one word in each text -> (N, d): the last layer's hidden states of the
    word's tokens, averaged over its word pieces ("embankment" -> "em", "##ban", "##km", "##ent" -> one mean).

    word: a string (its first whole-word occurrence in each text, case-insensitive; see find_word) or one
    (start, end) character span per text. Unlike a word2vec vector, the result depends on the rest of the
    text: "bank" by a river and "bank" holding money get different vectors (Devlin et al. 2019 use such
    token vectors as contextual features, sec. 5.3; averaging the pieces is one common choice).
    Texts are tokenized as for `embed` (the same cut); a word whose tokens were cut off is an error.
    """
    texts = _texts(texts)
    if isinstance(word, str):
        spans = [find_word(t, word) for t in texts]
    else:
        spans = [tuple(s) for s in word]
        if len(spans) != len(texts) or not all(len(s) == 2 and 0 <= s[0] < s[1] <= len(t)
                                               for s, t in zip(spans, texts)):
            raise ValueError(f"give one (start, end) span per text with 0 <= start < end <= len(text); got "
                             f"{len(spans)} spans for {len(texts)} texts")
    model, tokenizer, pipeline = _encoder(model_or_dir, tokenizer, pipeline, "contextual_word_vectors")
    out, i = [], 0
    for hidden, _, encodings in _hidden_states(model, tokenizer, pipeline, texts, batch_size):
        for row, enc in enumerate(encodings):
            start, end = spans[i]
            # the word's pieces: tokens whose character offsets overlap the span (special tokens and padding
            # have offsets (0, 0) and never do)
            pieces = [j for j, (a, b) in enumerate(enc.offsets) if a < end and b > start]
            if not pieces:
                raise ValueError(f"the word at characters {start}-{end} of text {i} ({texts[i][start:end]!r}) has "
                                 "no token left after the text was cut to the model's length; shorten the text")
            out.append(hidden[row, pieces].mean(0))
            i += 1
    return torch.stack(out).float()


def _texts(texts) -> list[str]:
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("give a non-empty list of strings")
    return texts


def _encoder(model_or_dir, tokenizer, pipeline, caller: str):
    """(model, tokenizer, pipeline) from a directory or a loaded encoder and its tokenizer."""
    from lmforge.loading import load
    from lmforge.tokenizers import load_tokenizer

    if isinstance(model_or_dir, (str, Path)):
        directory = Path(model_or_dir)
        model = load(directory)
        tokenizer = tokenizer or load_tokenizer(directory)
        pipeline = pipeline or read_pipeline(directory)
    else:
        model = model_or_dir
        if tokenizer is None:
            raise ValueError(f"{caller}(model, texts) needs tokenizer=...: the model alone cannot read text "
                             "(or pass the model's directory instead)")
        pipeline = pipeline or Pipeline()
    if getattr(model.config, "family", None) not in ("bert", "distilbert"):
        raise ValueError(f"{caller} needs an encoder (bert, distilbert); got a "
                         f"{getattr(model.config, 'family', '?')} model")
    return model, tokenizer, pipeline


def _hidden_states(model, tokenizer, pipeline: Pipeline, texts: list[str], batch_size: int):
    """Batches of (last hidden states (B, T, d), attention mask (B, T), the batch's Encodings), in eval mode
    without gradients; the model's train/eval mode is given back afterwards."""
    from lmforge.tokenizers import Padding, Truncation

    tok = _for_batches(tokenizer, pipeline, model.config.max_len, Padding, Truncation)
    segments = model.emb.seg is not None
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                enc = tok.encode_batch_full(texts[i:i + batch_size])
                ids = torch.tensor([e.ids for e in enc], device=device)
                mask = torch.tensor([e.attention_mask for e in enc], device=device)
                types = torch.tensor([e.type_ids for e in enc], device=device) if segments else None
                yield model(ids, mask, types).hidden_states, mask, enc
    finally:
        model.train(was_training)


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
