"""Beam search on token ids, for every model of the decoding protocol (lmforge.models.protocol): a
decoder-only model continues a prompt, an encoder-decoder writes the target of a source.

Keeps the `num_beams` best partial continuations by total log-probability; a continuation that
emits EOS is finished and scored log P(Y) / lp(Y) with the length penalty of Wu et al. 2016
(eq. 14, `length_penalty`), alpha = 0.6 as in Vaswani et al. 2017 sec. 6.1. When a prompt's search
stops (`early_stopping`): True, as soon as it has `num_beams` finished hypotheses (fairseq; what
lmforge's translation uses); False, once it has them and no live one, even at its current length,
can beat the worst of them (Hugging Face's heuristic for early_stopping=False). Or at max_new_tokens.
On CPU it applies lmforge.kernels.accelerate(model), as the Engine does (see lmforge.generate.decode.Engine).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from lmforge.generate.decode import check_prompt, room
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


def beam_search(model, prompt: Sequence[int], *, num_beams: int = 4, max_new_tokens: int = 32,
                length_penalty_alpha: float = 0.6, eos_token_id: int | None = None, use_cache: bool = True,
                early_stopping: bool = False) -> list[Hypothesis]:
    """Returns up to num_beams hypotheses, best first. num_beams = 1 is greedy decoding (tested)."""
    return beam_search_batch(model, [prompt], num_beams=num_beams, max_new_tokens=max_new_tokens,
                             length_penalty_alpha=length_penalty_alpha, eos_token_id=eos_token_id,
                             use_cache=use_cache, early_stopping=early_stopping)[0]


@torch.inference_mode()
def beam_search_batch(model, prompts: Sequence[Sequence[int]], *, num_beams: int = 4, max_new_tokens: int = 32,
                      length_penalty_alpha: float = 0.6, eos_token_id: int | None = None, use_cache: bool = True,
                      early_stopping: bool = False) -> list[list[Hypothesis]]:
    """Beam search for several prompts (sources) at once -> for each, up to num_beams hypotheses, best
    first. Rows b * num_beams .. (b + 1) * num_beams - 1 of the model's state are prompt b's beams; a
    prompt whose search has stopped leaves the batch."""
    prompts = [[int(t) for t in p] for p in prompts]
    if not prompts:
        raise ValueError("no prompts: give at least one list of token ids")
    for p in prompts:
        check_prompt(model, p)
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    k, dev = num_beams, next(model.parameters()).device
    limits = [min(max_new_tokens, room(model, len(p))) for p in prompts]
    if dev.type == "cpu":
        accelerate(model)  # k-row steps: the CPU fast paths (lmforge.kernels), as the Engine applies them
    lp = lambda length: length_penalty(length, length_penalty_alpha)  # noqa: E731

    context = max(len(p) for p in prompts) if model.decoder_start is None else 1
    # every beam is prefilled (not one row per prompt, repeated): the model reads each row as it will decode it
    state, out = model.prefill([p for p in prompts for _ in range(k)], capacity=context + max(limits),
                               use_cache=use_cache)
    logits = out.logits  # (B * k, V)
    B = len(prompts)
    scores = torch.full((B, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # beams start identical: keep one, or the same continuation fills the beam k times
    tokens = [[[] for _ in range(k)] for _ in range(B)]  # each prompt's beams
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    active = list(range(B))  # prompts still searching, in the order of the state's rows
    for t in range(1, max(limits) + 1):
        A, V = len(active), logits.size(-1)
        cand = (scores[active][:, :, None] + logits.float().log_softmax(-1).view(A, k, V)).view(A, k * V)
        top, idx = cand.topk(min(2 * k, k * V), dim=-1)  # (A, 2k)
        top, idx = top.tolist(), idx.tolist()  # one transfer per step
        still, rows, next_ids, new_scores = [], [], [], []
        for a, b in enumerate(active):
            ended, live = next_beams(top[a], idx[a], V, k, eos_token_id)
            done = finished[b]
            done += [Hypothesis(tokens[b][o] + [eos_token_id], s, s / lp(t)) for s, o in ended]
            done.sort(key=lambda h: -h.score)  # stable: equal scores keep the order they were found in
            if not live:
                stop = True
            elif early_stopping:
                stop = len(done) >= k
            else:
                stop = len(done) >= k and live[0][0] / lp(t) <= done[k - 1].score
            if t == limits[b]:  # out of length: the live hypotheses count as they are
                done += [Hypothesis(tokens[b][o] + [tok], s, s / lp(t)) for s, o, tok in live if s > float("-inf")]
                done.sort(key=lambda h: -h.score)
            if stop or t == limits[b]:
                continue
            still.append(b)
            rows += [a * k + o for _, o, _ in live]
            next_ids += [tok for _, _, tok in live]
            new_scores.append([s for s, _, _ in live])
            tokens[b] = [tokens[b][o] + [tok] for _, o, tok in live]
        if not still:
            break
        scores[still] = torch.tensor(new_scores, device=dev)
        state.reorder(torch.tensor(rows, dtype=torch.long, device=dev))
        logits = model.decode_step(state, torch.tensor(next_ids, dtype=torch.long, device=dev)[:, None]).logits
        active = still
    return [done[:k] for done in finished]
