"""Decoding that shows its work: `generate(model, ids)` yields one `Step` per new token.

The loop, as the seeds describe it: the model gives a probability distribution over the vocabulary,
one token is chosen, appended, and the loop repeats. Each `Step` keeps what was chosen and what it
was chosen from: its probability under the model (`raw_prob`) and after the logit processors
(`prob`), its rank, the entropy of the model's distribution, the top alternatives with both
probabilities, and which processor removed which candidates.

Works on token ids only (no tokenizer) against the model protocol: `model(ids, cache=, positions=,
attention_mask=, need_weights=, keep_logits=)` -> ModelOutput, `model.new_cache(B, max_len)`,
`model.config.max_len / vocab_size`.

`Engine` is the machinery: a batch of sequences decoded together, one token per row per `step()`.
Rows may join between steps (their prompt is prefilled, then they ride along) and leave when done
(continuous batching, as in Orca, Yu et al. 2022). Rows are right-aligned in the KV cache: a shorter
row is left-padded, its padding masked out and its positions counted from its own first token, so a
row's tokens do not depend on who else is in the batch. `generate` is one Engine with all prompts
added at the start.
"""
from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence as Seq

import torch
from torch import Tensor

from lmforge.generate.sampling import FILTERS, SamplingParams
from lmforge.kernels import PackedWeights, accelerate, huge_page_weights


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
    attention: Tensor | None = None  # (n_layers, n_heads, S): this token's query over the row's S tokens


class Sequence:
    """A row of an Engine: the prompt, what was generated so far, how to choose and when to stop."""

    def __init__(self, id: int, prompt: list[int], params: SamplingParams, budget: int,
                 eos: frozenset[int], stop: tuple[tuple[int, ...], ...], seed: int | None, device):
        self.id, self.prompt, self.params, self.budget = id, prompt, params, budget
        self.eos, self.stop = eos, stop
        self.tokens: list[int] = []
        self.generator = None if seed is None else torch.Generator(device).manual_seed(seed)
        self.finish_reason: str | None = None
        self.cancelled = False
        self.slide = False  # when the context fills: keep its last half and go on (Engine.add(slide=True))
        self.start = 0  # where the model's context begins in prompt + tokens (moves when it slides)

    @property
    def context(self) -> list[int]:
        """The tokens the model conditions on: prompt + tokens, from `start`."""
        return (self.prompt + self.tokens)[self.start:]

    @property
    def done(self) -> bool:
        return self.finish_reason is not None or self.cancelled

    def cancel(self) -> None:
        """Leave the batch before the next step (safe from another thread)."""
        self.cancelled = True


def _as_stop(stop) -> tuple[tuple[int, ...], ...]:
    if stop is None:
        return ()
    if isinstance(stop, (str, bytes)) or not isinstance(stop, (list, tuple)):
        raise ValueError(f"stop must be a list of token-id sequences, e.g. [[13, 13], 50256]; got {type(stop).__name__}"
                         " (text stop strings are handled where there is a tokenizer: the CLI and the server)")
    out = []
    for s in stop:
        s = [s] if isinstance(s, int) else s
        if not isinstance(s, (list, tuple)) or not s or not all(isinstance(t, int) for t in s):
            raise ValueError(f"stop must be a list of token-id sequences (non-empty lists of ints); got item {s!r}")
        out.append(tuple(s))
    return tuple(out)


class Engine:
    """A batch of sequences decoded together; rows join and leave between steps.

        engine = Engine(model)
        a = engine.add([5, 6, 7], SamplingParams(temperature=0), max_new_tokens=10)
        while engine.active:
            for step in engine.step(): ...

    What it does to `model` on CPU: lmforge.kernels.accelerate(model), so its linear layers and LM head compute
    with the CPU fast paths from then on (the same Parameter objects and state-dict keys; outputs equal to
    plain PyTorch's within float rounding; lmforge.kernels.restore(model) undoes it,
    lmforge.kernels.set_enabled(False) turns the paths off). huge_pages=True also moves the model's CPU
    weights into huge-page memory (lmforge.kernels.huge_page_weights: the same Parameters and values in new
    memory, for good; read 1.04-1.17x faster): opt-in, and not while another thread runs the model.
    """

    def __init__(self, model, *, use_cache: bool = True, alternatives: int = 5, need_weights: bool = False,
                 capacity: int | None = None, huge_pages: bool = False):
        if alternatives < 0:
            raise ValueError(f"alternatives must be >= 0, got {alternatives}")
        self.model = model
        self.max_len, self.vocab_size = model.config.max_len, model.config.vocab_size
        self.capacity = min(capacity or self.max_len, self.max_len)  # cache positions to allocate
        self.use_cache, self.k, self.need_weights = use_cache, min(alternatives, self.vocab_size), need_weights
        self.device = next(model.parameters()).device
        if self.device.type == "cpu":
            accelerate(model)  # a decoding step is few-row products: the column/packed forms (lmforge.kernels)
            if huge_pages:
                huge_page_weights(model)  # every step streams all weights: from huge pages it reads faster
        self.rows: list[Sequence] = []  # running, in batch order
        self.pending: list[Sequence] = []  # added, joining at the next step
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self.packs = PackedWeights()  # packed weight copies for batched steps on CPU (lmforge.kernels.packed)
        self._clear()

    def _clear(self) -> None:
        self.cache = None  # KVCache, rows right-aligned (cache mode)
        self.seq = None  # (B, L) tokens fed so far, right-aligned (no-cache mode)
        self.mask = torch.zeros(0, 0, dtype=torch.bool, device=self.device)  # (B, L) True = real token
        self.last = torch.zeros(0, 1, dtype=torch.long, device=self.device)  # (B, 1) next token to feed
        self.pos = torch.zeros(0, dtype=torch.long, device=self.device)  # (B,) its position id
        self.counts = None  # (B, V) token counts (prompt + generated), only when a penalty needs them
        self.padded = False

    @property
    def active(self) -> bool:
        return bool(self.rows or self.pending)

    def add(self, prompt: Seq[int], params: SamplingParams | None = None, *, max_new_tokens: int = 64,
            eos_token_id: int | Iterable[int] | None = None, stop=None, seed: int | None = None,
            slide: bool = False) -> Sequence:
        """Queue a prompt (token ids); it joins the batch at the next `step()`. Returns its handle.

        slide: generate past the model's context (max_len). When prompt + new tokens fill it, the row
        keeps the last max_len // 2 tokens as its context, re-reads them (one prefill) and goes on, so
        max_new_tokens is the only limit. Tokens after a slide no longer see the text before the
        window (llama.cpp's "context shift" drops half the same way; nanoGPT's sample.py crops to
        the last block_size tokens at every step, which costs a full forward per token).
        Without it a row ends with finish_reason "length" when the context is full."""
        prompt = [int(t) for t in prompt]
        if not prompt:
            raise ValueError("prompt is empty: give at least one token id (e.g. a BOS or newline token)")
        if len(prompt) >= self.max_len:
            raise ValueError(f"prompt is {len(prompt)} tokens but the model's context (max_len) is {self.max_len}: "
                             f"shorten it to at most {self.max_len - 1} tokens to leave room for new ones")
        bad = [t for t in prompt if not 0 <= t < self.vocab_size]
        if bad:
            raise ValueError(f"prompt has token id {bad[0]}; token ids must be in [0, {self.vocab_size - 1}]")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        eos = frozenset([eos_token_id] if isinstance(eos_token_id, int) else eos_token_id or ())
        budget = max_new_tokens if slide else min(max_new_tokens, self.max_len - len(prompt))
        seq = Sequence(next(self._ids), prompt, params or SamplingParams(), budget, eos, _as_stop(stop), seed,
                       self.device)
        seq.slide = slide
        with self._lock:
            self.pending.append(seq)
        return seq

    # -- batch bookkeeping ------------------------------------------------------------------
    def _join(self, new: list[Sequence]) -> None:
        """Prefill the new rows' prompts (all but the last token, which is fed with everyone's next step)."""
        n, dev = len(new), self.device
        contexts = [s.context for s in new]  # the prompt, or a sliding row's window
        Lp = max(len(c) - 1 for c in contexts)
        ids = torch.zeros(n, Lp, dtype=torch.long, device=dev)
        mask = torch.zeros(n, Lp, dtype=torch.bool, device=dev)
        for i, c in enumerate(contexts):  # left padding
            m = len(c) - 1
            if m:
                ids[i, Lp - m:] = torch.tensor(c[:-1], device=dev)
                mask[i, Lp - m:] = True
        new_padded = not bool(mask.all())
        if self.use_cache:
            cache = self.model.new_cache(n, self.capacity)
            if Lp:
                positions = (mask.long().cumsum(-1) - 1).clamp(min=0) if new_padded else None
                self.model(ids, cache=cache, positions=positions, attention_mask=mask if new_padded else None,
                           keep_logits=1)
            self.cache = cache if not self.rows else self._merge_cache(self.cache, cache)
        else:
            self.seq = ids if not self.rows else _merge_right(self.seq, ids, 0)
        B = len(self.rows)
        self.padded = self.padded or new_padded or (B > 0 and self.mask.size(1) != Lp)
        self.mask = mask if not self.rows else _merge_right(self.mask, mask, False)
        self.last = torch.cat([self.last, torch.tensor([[c[-1]] for c in contexts], device=dev)])
        self.pos = torch.cat([self.pos, torch.tensor([len(c) - 1 for c in contexts], device=dev)])
        self.rows += new
        if self.counts is not None or any(s.params.needs_counts for s in new):
            counts = torch.zeros(n, self.vocab_size, device=dev)
            for i, s in enumerate(new):  # penalties count everything seen, also before a slide
                seen = s.prompt + s.tokens
                counts[i].index_add_(0, torch.tensor(seen, device=dev), torch.ones(len(seen), device=dev))
            if self.counts is None:
                self.counts = torch.zeros(B, self.vocab_size, device=dev)
                for i, s in enumerate(self.rows[:B]):
                    seen = torch.tensor(s.prompt + s.tokens, device=dev)
                    self.counts[i].index_add_(0, seen, torch.ones(len(seen), device=dev))
            self.counts = torch.cat([self.counts, counts])

    def _merge_cache(self, old, new):
        """Stack two right-aligned caches (B1 and B2 rows) into one of B1 + B2 rows."""
        La, Lb = old.length, new.length
        L = max(La, Lb)
        out = self.model.new_cache(old.batch_size + new.batch_size, self.capacity)
        B1 = old.batch_size
        for i in range(len(out.k)):
            for dst, a, b in ((out.k[i], old.k[i], new.k[i]), (out.v[i], old.v[i], new.v[i])):
                dst[:B1, :, L - La:L] = a[:, :, :La]
                dst[B1:, :, L - Lb:L] = b[:, :, :Lb]
        out.length = L
        return out

    def _drop(self, index: list[int]) -> None:
        """Remove rows (finished or cancelled), then trim the padding columns every remaining row shares."""
        if not index:
            return
        keep = [i for i in range(len(self.rows)) if i not in set(index)]
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self._clear()
            return
        k = torch.tensor(keep, device=self.device)
        if self.cache is not None:
            self.cache.reorder(k)
        self.mask, self.last, self.pos = self.mask[k], self.last[k], self.pos[k]
        self.seq = None if self.seq is None else self.seq[k]
        self.counts = None if self.counts is None else self.counts[k]
        L = self.mask.size(1)
        shift = L - int(self.mask.sum(-1).max())  # columns of padding common to all rows
        if shift:
            if self.cache is not None:
                for t in self.cache.k + self.cache.v:
                    t[:, :, :L - shift] = t[:, :, shift:L].clone()
                self.cache.length -= shift
            self.mask = self.mask[:, shift:]
            self.seq = None if self.seq is None else self.seq[:, shift:]
        self.padded = not bool(self.mask.all())

    # -- one step ---------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self) -> list[Step]:
        """Admit waiting rows, decode one token for every row, retire finished rows. Returns their Steps."""
        with self.packs:
            return self._step()

    def _step(self) -> list[Step]:
        with self._lock:
            new, self.pending = [s for s in self.pending if not s.cancelled], []
        self._drop([i for i, s in enumerate(self.rows) if s.cancelled])
        if new:
            self._join(new)
        if not self.rows:
            return []
        B = len(self.rows)
        ones = torch.ones(B, 1, dtype=torch.bool, device=self.device)
        mask = torch.cat([self.mask, ones], dim=1)  # (B, L + 1)
        pad = self.padded
        if self.use_cache:
            out = self.model(self.last, cache=self.cache, positions=self.pos[:, None] if pad else None,
                             attention_mask=mask if pad else None, need_weights=self.need_weights, keep_logits=1)
        else:
            self.seq = torch.cat([self.seq, self.last], dim=1)
            positions = (mask.long().cumsum(-1) - 1).clamp(min=0) if pad else None
            out = self.model(self.seq, positions=positions, attention_mask=mask if pad else None,
                             need_weights=self.need_weights, keep_logits=1)
        self.mask = mask
        steps = self._choose(out.logits[:, -1].float())
        if self.need_weights:
            attn = torch.stack([a[:, :, -1] for a in out.attentions], dim=1)  # (B, n_layers, nh, S)
            for b, st in enumerate(steps):
                st.attention = attn[b][..., mask[b]].clone()  # only the row's real tokens
        tokens = torch.tensor([st.token for st in steps], device=self.device)
        self.last, self.pos = tokens[:, None], self.pos + 1
        if self.counts is not None:
            self.counts[torch.arange(B, device=self.device), tokens] += 1
        finished, sliding = [], []
        for b, (s, st) in enumerate(zip(self.rows, steps)):
            s.tokens.append(st.token)
            if st.token in s.eos:
                s.finish_reason = "eos"
            elif any(len(s.tokens) >= len(p) and tuple(s.tokens[-len(p):]) == p for p in s.stop):
                s.finish_reason = "stop"
            elif len(s.tokens) >= s.budget:
                s.finish_reason = "length"
            elif s.slide and len(s.prompt) + len(s.tokens) - s.start >= self.max_len:
                s.start = len(s.prompt) + len(s.tokens) - max(1, self.max_len // 2)
                sliding.append(s)
                finished.append(b)  # leaves the batch; re-joins at the next step with the kept half as context
            st.finish_reason = s.finish_reason
            if s.finish_reason:
                finished.append(b)
        if sliding:
            with self._lock:
                self.pending = sliding + self.pending
        self._drop(finished)
        return steps

    def _choose(self, logits: Tensor) -> list[Step]:
        """logits (B, V) -> one Step per row. Rows with the same SamplingParams are processed together."""
        groups: dict[SamplingParams, list[int]] = {}
        for b, s in enumerate(self.rows):
            groups.setdefault(s.params, []).append(b)
        steps: list[Step | None] = [None] * len(self.rows)
        for params, idx in groups.items():
            sub = logits if len(idx) == len(self.rows) else logits[idx]
            for b, st in zip(idx, self._choose_group(params, idx, sub)):
                steps[b] = st
        return steps

    def _choose_group(self, params: SamplingParams, idx: list[int], logits: Tensor) -> list[Step]:
        rows = [self.rows[b] for b in idx]
        counts = self.counts[idx] if params.needs_counts else None
        hist = [s.prompt + s.tokens for s in rows] if params.no_repeat_ngram_size else None
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
        alt_lp, alt = raw.topk(self.k, dim=-1)  # (n, k)
        alt_p = alt_lp.exp()
        if final is None:
            lp = torch.zeros_like(raw_lp)
            alt_final = (alt == t).to(raw.dtype)
        elif final is raw:  # nothing processed: the final distribution is the model's
            lp, alt_final = raw_lp, alt_p
        else:
            lp = final.gather(-1, t)
            alt_final = final.gather(-1, alt).exp()
        F, n, k = len(FILTERS), len(rows), self.k
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


def _merge_right(a: Tensor, b: Tensor, fill) -> Tensor:
    """Stack (B1, La) and (B2, Lb) right-aligned into (B1 + B2, max(La, Lb)), padding on the left with `fill`."""
    L = max(a.size(1), b.size(1))
    out = torch.full((a.size(0) + b.size(0), L), fill, dtype=a.dtype, device=a.device)
    out[:a.size(0), L - a.size(1):] = a
    out[a.size(0):, L - b.size(1):] = b
    return out


def _prompts(ids) -> list[list[int]]:
    if isinstance(ids, Tensor):
        if ids.dim() not in (1, 2):
            raise ValueError(f"ids must be 1-D (T,) or 2-D (B, T), got shape {tuple(ids.shape)}")
        ids = ids.tolist()
    if not isinstance(ids, (list, tuple)):
        raise ValueError(f"ids must be a list of token ids, a list of such lists, or a tensor; got {type(ids).__name__}")
    if not ids or all(isinstance(t, int) for t in ids):
        return [list(ids)]
    return [list(p) for p in ids]


def generate(model, ids, *, max_new_tokens: int = 64, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             min_p: float = 0.0, typical_p: float = 1.0, repetition_penalty: float = 1.0,
             presence_penalty: float = 0.0, frequency_penalty: float = 0.0, no_repeat_ngram_size: int = 0,
             logit_bias: dict[int, float] | None = None, banned_tokens: Seq[int] = (),
             eos_token_id: int | Seq[int] | None = None, stop=None, seed: int | None = None,
             use_cache: bool = True, alternatives: int = 5, need_weights: bool = False,
             cancel: threading.Event | None = None, slide: bool = False, huge_pages: bool = False) -> Iterator[Step]:
    """Generate from one prompt (list of ids, or a (T,) tensor) or several ((B, T) tensor, list of lists
    of different lengths); yields a Step per new token per row, rows interleaved step by step.

    temperature 0 is greedy. seed: row r samples with its own generator seeded `seed + r`, so a row's
    text does not depend on the others (batched == one by one). stop: token-id sequences that end a
    row (the stop tokens are yielded). cancel: a threading.Event; once set (from any thread) no
    further step is computed. Stopping early is simply leaving the loop. slide: go on past the
    model's context, keeping its last half (see Engine.add).

    On CPU the model's linear layers are switched to lmforge.kernels' fast products (a lasting change of
    their class, not of their weights; see Engine). huge_pages=True also moves its weights into huge-page
    memory (lmforge.kernels.huge_page_weights), as `lmforge generate` does: opt-in, since it replaces the
    memory under the caller's model.

        for step in generate(model, [464, 3290], max_new_tokens=20, temperature=0.8, top_p=0.95, seed=0):
            print(step.token, step.prob, [(a.token, a.raw_prob) for a in step.alternatives])
    """
    prompts = _prompts(ids)
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
                            repetition_penalty=repetition_penalty, presence_penalty=presence_penalty,
                            frequency_penalty=frequency_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                            logit_bias=logit_bias or {}, banned_tokens=tuple(banned_tokens),
                            vocab_size=model.config.vocab_size)
    longest = max(len(p) for p in prompts)
    engine = Engine(model, use_cache=use_cache, alternatives=alternatives, need_weights=need_weights,
                    capacity=longest + max_new_tokens if isinstance(max_new_tokens, int) else None,
                    huge_pages=huge_pages)
    for r, p in enumerate(prompts):
        engine.add(p, params, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id, stop=stop,
                   seed=None if seed is None else seed + r, slide=slide)
    return _run(engine, cancel)


def _run(engine: Engine, cancel) -> Iterator[Step]:
    while engine.active:
        if cancel is not None and cancel.is_set():
            return
        yield from engine.step()


def first_divergence(a: Seq[int], b: Seq[int]) -> int | None:
    """Index of the first token where two generations differ (regenerate: "the new answer diverged
    here"); None if they are identical. Example: [5, 6, 7], [5, 6, 9] -> 2; [5, 6], [5, 6, 7] -> 2."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))
