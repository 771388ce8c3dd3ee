"""Beam search for decoder-only language models (a prompt, then the continuation), on token ids.

Keeps the `num_beams` best partial continuations by total log-probability; a continuation that
emits EOS is finished and scored log P(Y) / lp(Y) with the length penalty of Wu et al. 2016
(eq. 14, `length_penalty`), alpha = 0.6 as in Vaswani et al. 2017 sec. 6.1. Search stops when `num_beams`
hypotheses are finished and no live one can still beat the worst of them, or at max_new_tokens.
On CPU it applies lmforge.kernels.accelerate(model), as the Engine does (see lmforge.generate.decode.Engine).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from lmforge.kernels import accelerate


def length_penalty(length: int, alpha: float = 0.6) -> float:
    """Wu et al. 2016 eq. 14. Example: length 7, alpha 0.6 -> (12 / 6) ** 0.6 = 1.5157; alpha 0 -> 1."""
    return ((5.0 + length) / 6.0) ** alpha


def next_beams(top: list[float], idx: list[int], V: int, k: int, eos_id: int | None):
    """One beam step of one sentence, from its best candidates (2k of them, best first; candidate i is
    token i % V appended to beam i // V). Returns (ended, live): `ended` = (logprob, beam) of the
    candidates ending in EOS among the first k (finished hypotheses); `live` = the best k others as
    (logprob, beam, token), padded with dead copies (-inf) when fewer exist (so every step keeps k rows).

    Example (k = 2, V = 3, EOS = 2): top [-0.1, -0.5, -0.9, -1.2], idx [2, 4, 0, 5] ->
    ended [(-0.1, 0)], live [(-0.5, 1, 1), (-0.9, 0, 0)] (candidate 5 = EOS at rank 3 is not counted).
    """
    ended, live = [], []
    for rank, (s, i) in enumerate(zip(top, idx)):
        if s == float("-inf"):
            break
        origin, tok = divmod(i, V)
        if tok == eos_id:
            if rank < k:  # an EOS among the best k candidates ends that hypothesis
                ended.append((s, origin))
            continue
        live.append((s, origin, tok))
        if len(live) == k:
            break
    if live:
        live += [(float("-inf"), live[0][1], live[0][2])] * (k - len(live))
    return ended, live


@dataclass
class Hypothesis:
    tokens: list[int]  # generated tokens (EOS included when it ended with one)
    logprob: float  # sum of token log-probabilities
    score: float  # logprob / length_penalty(len(tokens), alpha)


@torch.inference_mode()
def beam_search(model, prompt: Sequence[int], *, num_beams: int = 4, max_new_tokens: int = 32,
                length_penalty_alpha: float = 0.6, eos_token_id: int | None = None,
                use_cache: bool = True) -> list[Hypothesis]:
    """Returns up to num_beams hypotheses, best first. num_beams = 1 is greedy decoding (tested)."""
    prompt = [int(t) for t in prompt]
    max_len = model.config.max_len
    if not prompt:
        raise ValueError("prompt is empty: give at least one token id")
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if len(prompt) >= max_len:
        raise ValueError(f"prompt is {len(prompt)} tokens but the model's context (max_len) is {max_len}")
    n = min(max_new_tokens, max_len - len(prompt))
    k, dev = num_beams, next(model.parameters()).device
    if dev.type == "cpu":
        accelerate(model)  # k-row steps: the CPU fast paths (lmforge.kernels), as the Engine applies them
    lp = lambda length: length_penalty(length, length_penalty_alpha)  # noqa: E731

    seqs = torch.tensor([prompt], device=dev).repeat(k, 1)  # (k, T) every beam's full sequence
    scores = torch.full((k,), float("-inf"), device=dev)
    scores[0] = 0.0  # beams start identical: keep one, or the same continuation fills the beam k times
    cache = model.new_cache(k, len(prompt) + n) if use_cache else None
    logits = model(seqs, cache=cache, keep_logits=1).logits[:, -1]
    finished: list[Hypothesis] = []
    for t in range(1, n + 1):
        V = logits.size(-1)
        cand = (scores[:, None] + logits.float().log_softmax(-1)).view(-1)  # (k * V,)
        top, idx = cand.topk(min(2 * k, cand.numel()))
        ended, live = next_beams(top.tolist(), idx.tolist(), V, k, eos_token_id)
        finished += [Hypothesis(seqs[o, len(prompt):].tolist() + [eos_token_id], s, s / lp(t)) for s, o in ended]
        finished.sort(key=lambda h: -h.score)
        # Done when the beam is full of finished hypotheses and the best live one, even at its
        # current length, cannot beat the worst of them (HF's heuristic for early_stopping=False).
        if not live or (len(finished) >= k and live[0][0] / lp(t) <= finished[k - 1].score):
            live = []
            break
        origin = torch.tensor([o for _, o, _ in live], device=dev)
        new = torch.tensor([[tok] for _, _, tok in live], device=dev)
        seqs = torch.cat([seqs[origin], new], dim=1)
        scores = torch.tensor([s for s, _, _ in live], device=dev)
        if t == n:
            break
        if cache is not None:
            cache.reorder(origin)
            logits = model(new, cache=cache, keep_logits=1).logits[:, -1]
        else:
            logits = model(seqs, keep_logits=1).logits[:, -1]
    finished += [Hypothesis(seqs[b, len(prompt):].tolist(), s, s / lp(seqs.size(1) - len(prompt)))
                 for b, (s, _, _) in enumerate(live) if s > float("-inf")]
    finished.sort(key=lambda h: -h.score)
    return finished[:k]
