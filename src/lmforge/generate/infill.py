"""Blank infilling that shows its work: `infill(model, ids)` fills every blank of a text, one after another,
and returns each fill with the `Step` records of its tokens (the same records `generate` yields).

For a model that fills blanks through the decoding protocol (the glm family; lmforge.models.glm.model): it
has `blank_ids` (the tokens that stand for a blank in the prompt: [MASK], [sMASK], [gMASK]) and
`end_of_blank` (<eop>). `prefill` reads the text once, both ways, and opens the first blank; each chosen
token is fed back; <eop> closes a blank and the model opens the next, so a later blank is written seeing
what was written into the earlier ones (Du et al. 2022, sec. 2.1: part B is generated left to right, each
span seeing part A and the spans before it). Works on token ids only.

    for fill in infill(model, ids, temperature=0):
        fill.blank, fill.tokens, [(s.token, s.prob) for s in fill.steps]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from lmforge.generate.decode import Sequence as Row, check_prompt
from lmforge.generate.sampling import SamplingParams
from lmforge.generate.steps import Step, choose


@dataclass
class Fill:
    """What was written into one blank."""

    blank: int  # which blank of the text, 0 = the first
    position: int  # the index of its blank token in the prompt
    tokens: list[int] = field(default_factory=list)  # the fill, <eop> not included
    steps: list[Step] = field(default_factory=list)  # one per token chosen for it, its <eop> included
    finish_reason: str | None = None  # "eop": the model closed it; "length": max_tokens or the context ran out


def blanks_of(model, ids: Sequence[int]) -> list[int]:
    """Where the blanks of a prompt are, with the errors of a prompt that cannot be filled."""
    if not hasattr(model, "blank_ids"):
        raise ValueError(f"{type(model).__name__} does not fill blanks (no blank_ids): infill needs a blank-infilling "
                         "model, the glm family")
    where = [i for i, t in enumerate(ids) if t in model.blank_ids]
    if not where:
        raise ValueError(f"the prompt has no blank: none of its tokens is a blank token (ids {sorted(model.blank_ids)}"
                         "); put [MASK] where text is missing")
    if len(where) == len(ids):
        raise ValueError("a blank needs text around it: the prompt is only blank tokens, so there is nothing to "
                         "fill them from; write the text around the [MASK]")
    need = len(ids) + 2 * len(where)  # part A, and at least <sop> and one token for each blank in part B
    if need > model.config.max_len:
        raise ValueError(f"{len(where)} blanks in a prompt of {len(ids)} tokens need at least {need} positions "
                         f"(each blank: <sop> and one token) but the model holds max_len = {model.config.max_len}; "
                         "use fewer blanks or a shorter text")
    return where


def infill(model, ids: Sequence[int], *, max_tokens: int = 32, temperature: float = 0.0, top_k: int = 0,
           top_p: float = 1.0, min_p: float = 0.0, seed: int | None = None, alternatives: int = 5,
           use_cache: bool = True, need_weights: bool = False) -> list[Fill]:
    """Fill every blank of the prompt `ids`, in order -> one Fill per blank.

    A blank is written until the model chooses <eop>, or for at most max_tokens tokens (then it is closed
    and the next one opened). temperature 0 (default) is greedy; seed makes sampling repeatable.
    use_cache=False recomputes the whole row at every step (for checking: the same fills)."""
    ids = [int(t) for t in ids]
    check_prompt(model, ids)
    where = blanks_of(model, ids)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    if alternatives < 0:
        raise ValueError(f"alternatives must be >= 0, got {alternatives}")
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                            vocab_size=model.config.vocab_size)
    device = next(model.parameters()).device
    row = Row(0, ids, params, max_tokens * len(where), frozenset(), (), seed, device)
    end, k, capacity = model.end_of_blank, min(alternatives, model.config.vocab_size), model.config.max_len
    fills = [Fill(i, p) for i, p in enumerate(where)]
    with torch.inference_mode():
        state, out = model.prefill([ids], capacity=capacity, use_cache=use_cache, need_weights=need_weights)
        used = len(ids) + 1  # part A and the first blank's <sop>
        for n, fill in enumerate(fills):
            while fill.finish_reason is None:
                if len(fill.tokens) >= max_tokens or used >= capacity:  # closed without asking the model
                    fill.finish_reason, token = "length", end
                else:
                    step = choose([row], out.logits.float(), None, k)[0]
                    if need_weights:
                        step.attention = out.attention[0] if out.attention else None
                    row.tokens.append(step.token)
                    fill.steps.append(step)
                    token = step.token
                    if token == end:
                        fill.finish_reason = "eop"
                    else:
                        fill.tokens.append(token)
                last = n == len(fills) - 1 and fill.finish_reason is not None
                if last or used >= capacity:
                    break
                out = model.decode_step(state, torch.tensor([[token]], device=device), need_weights=need_weights)
                used += 1
            if used >= capacity and fill.finish_reason is None:
                fill.finish_reason = "length"
        for fill in fills:
            fill.finish_reason = fill.finish_reason or "length"  # blanks the context had no room left for
    if fills[-1].steps:
        fills[-1].steps[-1].finish_reason = "eos" if fills[-1].finish_reason == "eop" else "length"
    return fills


def filled(ids: Sequence[int], fills: Sequence[Fill]) -> list[int]:
    """The prompt with each blank token replaced by its fill. Example: [7, M, 9], fill [5, 6] -> [7, 5, 6, 9]."""
    out, at = [], {f.position: f.tokens for f in fills}
    for i, t in enumerate(ids):
        out += at[i] if i in at else [t]
    return out
