"""Step records: what was chosen at each decoding step, and what it was chosen from.

`choose` turns a batch of next-token logits into one `Step` per row: the token (argmax, or a draw
from the row's own generator after the row's logit processors), its probability under the model
(`raw_prob`) and after the processors (`prob`), its rank, the entropy of the model's distribution,
the top alternatives with both probabilities, and which processor removed which candidates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lmforge.generate.sampling import FILTERS, SamplingParams


@dataclass(slots=True)
class Alternative:
    """A candidate at one step: its probability under the model and after the processors."""
    token: int
    raw_prob: float
    prob: float
    removed_by: str | None  # the processor that removed it (FILTERS name), None if it stayed a candidate


@dataclass(slots=True)
class Step:
    """One generated token and the distribution behind it."""
    row: int  # which sequence (index of the prompt in `generate`, the sequence id in an Engine)
    index: int  # 0 for the first generated token of that row
    token: int
    prob: float  # probability in the distribution it was drawn from (after processors; 1.0 when greedy)
    logprob: float
    raw_prob: float  # the model's own probability for it (before any processor)
    raw_logprob: float
    rank: int  # 1 = the model's most likely token
    entropy: float  # of the model's distribution, in nats
    alternatives: list[Alternative]  # top candidates by raw probability
    removed: dict[str, int]  # processor -> number of tokens it removed at this step
    finish_reason: str | None = None  # "eos", "stop", "length" on a row's last step
    # With need_weights: where this token's query looked, (n_layers, n_heads, S) over the row's real tokens.
    # attention: the decoder's self-attention over its own context (the prompt and the tokens generated
    # so far for a decoder-only model; <s> and the target so far for an encoder-decoder; None for the
    # LSTM, which has none). cross_attention: encoder-decoders only, over the source tokens.
    attention: Tensor | None = None
    cross_attention: Tensor | None = None


def choose(rows, logits: Tensor, counts: Tensor | None, k: int) -> list[Step]:
    """logits (B, V) -> one Step per row. rows: the Engine's Sequences (params, generator, id, tokens,
    history); counts (B, V): tokens seen per row, when a penalty needs them; k: alternatives per Step.
    Rows with the same SamplingParams are processed together."""
    groups: dict[SamplingParams, list[int]] = {}
    for b, s in enumerate(rows):
        groups.setdefault(s.params, []).append(b)
    steps: list[Step | None] = [None] * len(rows)
    for params, idx in groups.items():
        sub = logits if len(idx) == len(rows) else logits[idx]
        group_counts = counts[idx] if params.needs_counts else None
        for b, st in zip(idx, _choose_group(params, [rows[b] for b in idx], sub, group_counts, k)):
            steps[b] = st
    return steps


def _choose_group(params: SamplingParams, rows, logits: Tensor, counts: Tensor | None, k: int) -> list[Step]:
    hist = [s.history for s in rows] if params.no_repeat_ngram_size else None
    z, removed = params.process(logits, counts, hist, track=True)
    raw = logits.log_softmax(-1)  # (n, V) the model's own distribution
    p_raw = raw.exp()
    if params.greedy:
        tok = z.argmax(-1)  # (n,)
        final = None
    else:
        final = raw if z is logits else z.log_softmax(-1)  # no processor changed anything: the same
        # Inverse-CDF sampling: one uniform per row from the row's own generator (so a row's sample
        # does not depend on its batch), then a binary search in the cumulative distribution.
        # torch.multinomial does the same job ~10x slower on a 50k vocabulary on CPU.
        cdf = (p_raw if final is raw else final.exp()).cumsum(-1)  # (n, V)
        u = torch.cat([torch.rand(1, generator=s.generator, device=cdf.device) for s in rows])
        tok = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).squeeze(-1).clamp(max=cdf.size(-1) - 1)
    t = tok[:, None]
    raw_lp = raw.gather(-1, t)  # (n, 1)
    rank = (raw > raw_lp).sum(-1, keepdim=True) + 1
    entropy = -(p_raw * raw).sum(-1, keepdim=True)
    alt_lp, alt = raw.topk(k, dim=-1)  # (n, k)
    alt_p = alt_lp.exp()
    if final is None:
        lp = torch.zeros_like(raw_lp)
        alt_final = (alt == t).to(raw.dtype)
    elif final is raw:  # nothing processed: the final distribution is the model's
        lp, alt_final = raw_lp, alt_p
    else:
        lp = final.gather(-1, t)
        alt_final = final.gather(-1, alt).exp()
    F, n = len(FILTERS), len(rows)
    on = [i for i, m in enumerate(removed) if m is not None]
    by = torch.full((n, k), -1, dtype=torch.long, device=logits.device)
    counts_f = torch.zeros(n, F, dtype=torch.long, device=logits.device)
    if on:
        gone = torch.stack([removed[i] for i in on])  # (F_on, n, V)
        gone_alt = gone.gather(-1, alt[None].expand(len(on), -1, -1))  # (F_on, n, k)
        first = torch.tensor(on, device=logits.device)[gone_alt.to(torch.int8).argmax(0)]
        by = torch.where(gone_alt.any(0), first, by)  # the first processor that removed it
        counts_f[:, on] = gone.sum(-1).T
    info = torch.cat([t, lp, raw_lp, rank, entropy, alt, alt_p, alt_final, by, counts_f],
                     dim=1).double().tolist()
    out = []
    for s, r in zip(rows, info):
        alts = [Alternative(int(r[5 + j]), r[5 + k + j], r[5 + 2 * k + j],
                            None if r[5 + 3 * k + j] < 0 else FILTERS[int(r[5 + 3 * k + j])]) for j in range(k)]
        removed_n = {name: int(c) for name, c in zip(FILTERS, r[5 + 4 * k:]) if c}
        out.append(Step(s.id, len(s.tokens), int(r[0]), math.exp(r[1]), r[1], math.exp(r[2]), r[2], int(r[3]), r[4],
                        alts, removed_n))
    return out
