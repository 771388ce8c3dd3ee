"""Translation-style decoding of a batch of sources: greedy and beam search as Vaswani et al. 2017 sec. 6.1
set them up, on the one Engine and the one beam search (every model of lmforge.models.protocol).

The sources come as a right-padded (B, S) tensor (pad = config.pad_id); each row's output is its target
ids without <s> and </s>, ending at config.eos_id. Beam size 4, length penalty alpha = 0.6 (Wu et al.
2016, eq. 14: lp(Y) = ((5 + |Y|) / 6) ** alpha; a hypothesis scores log P(Y|X) / lp(Y)), maximum output
length = input length + 50, stopping as soon as a sentence has `beam` finished hypotheses (fairseq).
"""
from __future__ import annotations

import torch
from torch import Tensor

from lmforge.generate.beam import beam_search_batch, length_penalty
from lmforge.generate.decode import Engine
from lmforge.generate.sampling import SamplingParams

__all__ = ["greedy", "beam_search", "length_penalty", "MAX_EXTRA"]

MAX_EXTRA = 50  # sec. 6.1: "maximum output length during inference to input length + 50"


def _sources(model, src: Tensor) -> list[list[int]]:
    if getattr(model, "decoder_start", None) is None:
        raise ValueError(f"{type(model).__name__} is not an encoder-decoder model (it has no decoder_start): "
                         "translation needs one, e.g. the transformer or lstm family")
    if src.dim() != 2 or src.size(1) == 0:
        raise ValueError(f"src must be a (batch, length) tensor of token ids with length >= 1, got shape {tuple(src.shape)}")
    real = src != model.config.pad_id  # (B, S)
    ends = torch.where(real.any(1), src.size(1) - real.flip(1).int().argmax(1), 0).tolist()  # after the last real token
    return [row[:n] for row, n in zip(src.tolist(), ends)]


def _limit(model, src: Tensor, max_new_tokens: int | None) -> int:
    """One limit for the whole batch, as before the Engine: the longest source + 50 unless given."""
    n = int((src != model.config.pad_id).sum(1).max()) + MAX_EXTRA if max_new_tokens is None else max_new_tokens
    return min(n, getattr(model.config, "max_len", n))


def greedy(model, src: Tensor, max_new_tokens: int | None = None) -> list[list[int]]:
    """src (B, S) right-padded -> for each row, the argmax target ids (without <s> and </s>)."""
    sources = _sources(model, src)
    n, eos = _limit(model, src, max_new_tokens), model.config.eos_id
    engine = Engine(model, alternatives=0, capacity=1 + n)
    rows = [engine.add(s, SamplingParams(temperature=0), max_new_tokens=n, eos_token_id=eos) for s in sources]
    while engine.active:
        engine.step()
    return [r.tokens[:-1] if r.tokens and r.tokens[-1] == eos else r.tokens for r in rows]


def beam_search(model, src: Tensor, beam: int = 4, alpha: float = 0.6,
                max_new_tokens: int | None = None) -> list[list[int]]:
    """src (B, S) -> for each row, the best hypothesis (ids without <s>/</s>) by log P / lp(length).

    Each step extends every live hypothesis, takes the 2 * beam best candidates per sentence; a
    candidate ending in </s> among the first `beam` is finished, the best `beam` others live on. A
    sentence is done when it has `beam` finished hypotheses (fairseq's early stop) or hits the length
    limit. With beam = 1 this is exactly greedy decoding (tested).
    """
    sources = _sources(model, src)
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    eos = model.config.eos_id
    hyps = beam_search_batch(model, sources, num_beams=beam, max_new_tokens=_limit(model, src, max_new_tokens),
                             length_penalty_alpha=alpha, eos_token_id=eos, early_stopping=True)
    best = [h[0].tokens if h else [] for h in hyps]
    return [t[:-1] if t and t[-1] == eos else t for t in best]
