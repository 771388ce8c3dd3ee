"""Greedy decoding and beam search for encoder-decoder models, on token ids only.

A model qualifies if it has `config.bos_id`, `config.eos_id`, `config.pad_id` and two methods:
`state = model.start(src, max_new_tokens)` (encode once) and `logits = model.step(ids, state)`
(feed new target ids (B, T), get next-token logits (B, vocab)); `state.reorder(index)` keeps,
drops or duplicates rows. lmforge.models.transformer and lmforge.models.lstm both do.

Beam search as in Vaswani et al. 2017 sec. 6.1: beam size 4, length penalty alpha = 0.6 (Wu et al.
2016, eq. 14: lp(Y) = ((5 + |Y|) / 6) ** alpha; a hypothesis scores log P(Y|X) / lp(Y)), maximum
output length = input length + 50, stopping early when possible.

On CPU both apply lmforge.kernels.accelerate(model), as the Engine does (see lmforge.generate.decode.Engine).
"""
from __future__ import annotations

import torch
from torch import Tensor

from lmforge.generate.beam import length_penalty, next_beams
from lmforge.kernels import accelerate

MAX_EXTRA = 50  # sec. 6.1: "maximum output length during inference to input length + 50"


def _check(model, src: Tensor) -> None:
    if not (hasattr(model, "start") and hasattr(model, "step")):
        raise ValueError(f"{type(model).__name__} is not an encoder-decoder model (it has no start/step): "
                         "translation needs one, e.g. the transformer or lstm family")
    if src.dim() != 2 or src.size(1) == 0:
        raise ValueError(f"src must be a (batch, length) tensor of token ids with length >= 1, got shape {tuple(src.shape)}")


def _limit(model, src: Tensor, max_new_tokens: int | None) -> int:
    n = int((src != model.config.pad_id).sum(1).max()) + MAX_EXTRA if max_new_tokens is None else max_new_tokens
    return min(n, getattr(model.config, "max_len", n))


@torch.no_grad()
def greedy(model, src: Tensor, max_new_tokens: int | None = None) -> list[list[int]]:
    """src (B, S) right-padded -> for each row, the argmax target ids (without <s> and </s>)."""
    _check(model, src)
    if src.is_cpu:
        accelerate(model)  # each step's products have a few rows per sentence: the CPU fast paths
    c, n = model.config, _limit(model, src, max_new_tokens)
    state = model.start(src, n)
    B = src.size(0)
    ids = torch.full((B, 1), c.bos_id, dtype=torch.long, device=src.device)
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    for _ in range(n):
        nxt = model.step(ids, state).argmax(-1)  # (B,)
        chosen = nxt.tolist()  # one transfer per step, not one per row
        for b in (~done).nonzero().flatten().tolist():
            if chosen[b] != c.eos_id:
                out[b].append(chosen[b])
        done |= nxt == c.eos_id
        if done.all():
            break
        ids = nxt[:, None]
    return out


@torch.no_grad()
def beam_search(model, src: Tensor, beam: int = 4, alpha: float = 0.6,
                max_new_tokens: int | None = None) -> list[list[int]]:
    """src (B, S) -> for each row, the best hypothesis (ids without <s>/</s>) by log P / lp(length).

    Each step extends every live hypothesis, takes the 2 * beam best candidates per sentence; a
    candidate ending in </s> among the first `beam` is finished, the best `beam` others live on. A
    sentence is done when it has `beam` finished hypotheses (fairseq's early stop) or hits the length
    limit. With beam = 1 this is exactly greedy decoding (tested).
    """
    _check(model, src)
    if src.is_cpu:
        accelerate(model)  # each step's products have a few rows per sentence: the CPU fast paths
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    c, n = model.config, _limit(model, src, max_new_tokens)
    B, k, dev = src.size(0), beam, src.device
    state = model.start(src.repeat_interleave(k, 0), n)  # rows b*k .. b*k+k-1 are sentence b's beams
    tokens = [[[] for _ in range(k)] for _ in range(B)]
    scores = torch.full((B, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start identical: keep one, or the same hypothesis fills the beam k times
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    active = list(range(B))  # sentences still searching
    ids = torch.full((B * k, 1), c.bos_id, dtype=torch.long, device=dev)
    for t in range(1, n + 1):
        logp = model.step(ids, state).float().log_softmax(-1)  # (len(active) * k, V)
        V = logp.size(-1)
        cand = (scores[active][:, :, None] + logp.view(len(active), k, V)).view(len(active), k * V)
        top_scores, top_idx = cand.topk(min(2 * k, k * V), dim=-1)  # (A, 2k)
        new_active, rows, next_ids, new_scores, new_tokens = [], [], [], [], []
        top_scores, top_idx = top_scores.tolist(), top_idx.tolist()  # one transfer per step
        for a, b in enumerate(active):
            ended, live = next_beams(top_scores[a], top_idx[a], V, k, c.eos_id)
            finished[b] += [(s / length_penalty(t, alpha), tokens[b][o]) for s, o in ended]
            if len(finished[b]) >= k or t == n or not live:
                if not finished[b] or t == n:  # out of length: the live hypotheses count as they are
                    finished[b] += [(s / length_penalty(t, alpha), tokens[b][o] + [tok]) for s, o, tok in live
                                    if s > float("-inf")]
                continue
            new_active.append(b)
            rows += [a * k + o for _, o, _ in live]
            next_ids += [tok for _, _, tok in live]
            new_scores.append([s for s, _, _ in live])
            new_tokens.append([tokens[b][o] + [tok] for _, o, tok in live])
        for b, tk in zip(new_active, new_tokens):
            tokens[b] = tk
        if not new_active:
            break
        scores[new_active] = torch.tensor(new_scores, device=dev)
        state.reorder(torch.tensor(rows, dtype=torch.long, device=dev))
        ids = torch.tensor(next_ids, dtype=torch.long, device=dev)[:, None]
        active = new_active
    return [max(f, key=lambda x: x[0])[1] if f else [] for f in finished]
