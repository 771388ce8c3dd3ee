"""Decoding that shows its work: `generate(model, ids)` yields one `Step` per new token.

The loop, as the seeds describe it: the model gives a probability distribution over the vocabulary,
one token is chosen, appended, and the loop repeats. Each `Step` (steps.py) keeps what was chosen and
what it was chosen from.

Works on token ids only (no tokenizer), for every model of the decoding protocol
(lmforge.models.protocol): `prefill(prompts)`, `decode_step(state, ids)`, a state whose rows can be
reordered, joined and trimmed, `decoder_start`, `config.max_len / vocab_size`. For a decoder-only
model the prompt is continued; for an encoder-decoder it is the source, and the generated tokens are
its target (translation).

`Engine` is the machinery: a batch of sequences decoded together, one token per row per `step()`.
Rows may join between steps (their prompts are prefilled together, then they ride along) and leave
when done (continuous batching, as in Orca, Yu et al. 2022). The model's state keeps rows
right-aligned: a shorter row is left-padded, its padding masked out and its positions counted from
its own first token, so a row's tokens do not depend on who else is in the batch. `generate` is one
Engine with all prompts added at the start.
"""
from __future__ import annotations

import itertools
import threading
from typing import Iterable, Iterator, Sequence as Seq

import torch
from torch import Tensor

from lmforge.generate.sampling import SamplingParams
from lmforge.generate.steps import Step, choose
from lmforge.kernels import PackedWeights, accelerate, huge_page_weights
from lmforge.models import FAMILIES


class Sequence:
    """A row of an Engine: the prompt, what was generated so far, how to choose and when to stop."""

    def __init__(self, id: int, prompt: list[int], params: SamplingParams, budget: int,
                 eos: frozenset[int], stop: tuple[tuple[int, ...], ...], seed: int | None, device,
                 decoder_start: int | None = None):
        self.id, self.prompt, self.params, self.budget = id, prompt, params, budget
        self.eos, self.stop = eos, stop
        self.decoder_start = decoder_start  # an encoder-decoder's first decoder input; None: decoder-only
        self.tokens: list[int] = []
        self.generator = None if seed is None else torch.Generator(device).manual_seed(seed)
        self.finish_reason: str | None = None
        self.cancelled = False
        self.slide = False  # when the context fills: keep its last half and go on (Engine.add(slide=True))
        self.start = 0  # where the model's context begins in prompt + tokens (moves when it slides)

    @property
    def context(self) -> list[int]:
        """What the model is prefilled with: the prompt + tokens from `start` (decoder-only), the source
        (encoder-decoder)."""
        return self.prompt if self.decoder_start is not None else (self.prompt + self.tokens)[self.start:]

    @property
    def history(self) -> list[int]:
        """The tokens the decoder has read or written, which penalties and no-repeat-n-gram count:
        prompt + tokens (decoder-only), <s> + tokens (encoder-decoder, as Hugging Face's processors see
        the decoder's input ids)."""
        return (self.prompt if self.decoder_start is None else [self.decoder_start]) + self.tokens

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


def room(model, prompt_len: int) -> int:
    """How many new tokens fit after a prompt of this length. Decoder-only: prompt + new tokens <=
    max_len. Encoder-decoder: the source has its own max_len positions in the encoder; the decoder
    reads <s> and all new tokens but the last, max_len positions."""
    return model.config.max_len - (prompt_len if model.decoder_start is None else 0)


def check_prompt(model, prompt: list[int]) -> None:
    """ValueError for an empty prompt, one the model cannot read, or ids outside the vocabulary."""
    max_len, V = model.config.max_len, model.config.vocab_size
    what = "prompt" if model.decoder_start is None else "source"
    if not prompt:
        raise ValueError(f"{what} is empty: give at least one token id (e.g. a BOS or newline token)")
    if model.decoder_start is None and len(prompt) >= max_len:
        raise ValueError(f"prompt is {len(prompt)} tokens but the model's context (max_len) is {max_len}: "
                         f"shorten it to at most {max_len - 1} tokens to leave room for new ones")
    if model.decoder_start is not None and len(prompt) > max_len:
        raise ValueError(f"source is {len(prompt)} tokens but the encoder reads at most max_len = {max_len}: "
                         "shorten it")
    bad = [t for t in prompt if not 0 <= t < V]
    if bad:
        raise ValueError(f"{what} has token id {bad[0]}; token ids must be in [0, {V - 1}]")


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
        family = FAMILIES.get(getattr(getattr(model, "config", None), "family", None))
        if family is not None and family.decoding == "encoder":
            raise ValueError(f"{type(model).__name__} ({family.name} family) is an encoder: it reads text into vectors "
                             "and does not generate. Use lmforge.embed (sentence vectors) or `lmforge fill-mask` "
                             "(its masked-LM head) instead")
        if not (hasattr(model, "prefill") and hasattr(model, "decode_step")):
            raise ValueError(f"{type(model).__name__} does not implement the decoding protocol "
                             "(prefill / decode_step, lmforge.models.protocol)")
        self.model = model
        self.max_len, self.vocab_size = model.config.max_len, model.config.vocab_size
        self.capacity = min(capacity or self.max_len, self.max_len)  # decoder positions to allocate
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
        self.state = None  # the model's decoding state, one row per running sequence
        self.last = torch.zeros(0, 1, dtype=torch.long, device=self.device)  # (B, 1) next token to feed
        self.counts = None  # (B, V) token counts (history), only when a penalty needs them

    @property
    def active(self) -> bool:
        return bool(self.rows or self.pending)

    @property
    def mask(self) -> Tensor:
        """(B, L): True where a running row's decoder context holds a real token; (0, 0) when no row runs."""
        if self.state is None:
            return torch.zeros(0, 0, dtype=torch.bool, device=self.device)
        return self.state.keep

    def add(self, prompt: Seq[int], params: SamplingParams | None = None, *, max_new_tokens: int = 64,
            eos_token_id: int | Iterable[int] | None = None, stop=None, seed: int | None = None,
            slide: bool = False) -> Sequence:
        """Queue a prompt (token ids; the source for an encoder-decoder); it joins the batch at the next
        `step()`. Returns its handle.

        slide (decoder-only): generate past the model's context (max_len). When prompt + new tokens fill
        it, the row keeps the last max_len // 2 tokens as its context, re-reads them (one prefill) and
        goes on, so max_new_tokens is the only limit. Tokens after a slide no longer see the text before
        the window (llama.cpp's "context shift" drops half the same way; nanoGPT's sample.py crops to
        the last block_size tokens at every step, which costs a full forward per token).
        Without it a row ends with finish_reason "length" when the context is full."""
        prompt = [int(t) for t in prompt]
        check_prompt(self.model, prompt)
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        start = self.model.decoder_start
        if slide and start is not None:
            raise ValueError("slide applies to decoder-only models: an encoder-decoder's output is bounded by its "
                             "decoder's max_len, and its source is read whole")
        eos = frozenset([eos_token_id] if isinstance(eos_token_id, int) else eos_token_id or ())
        budget = max_new_tokens if slide else min(max_new_tokens, room(self.model, len(prompt)))
        seq = Sequence(next(self._ids), prompt, params or SamplingParams(), budget, eos, _as_stop(stop), seed,
                       self.device, start)
        seq.slide = slide
        with self._lock:
            self.pending.append(seq)
        return seq

    # -- batch bookkeeping ------------------------------------------------------------------
    def _join(self, new: list[Sequence]):
        """Prefill the new rows together; they join the batch after the running rows. Returns the
        prefill's DecodeOutput (their next-token logits)."""
        state, out = self.model.prefill([s.context for s in new], capacity=self.capacity, use_cache=self.use_cache,
                                        need_weights=self.need_weights)
        B, dev = len(self.rows), self.device
        self.state = state if self.state is None else self.state.join(state)
        self.rows += new
        if self.counts is not None or any(s.params.needs_counts for s in new):
            counts = torch.zeros(len(new), self.vocab_size, device=dev)
            for i, s in enumerate(new):  # penalties count everything seen, also before a slide
                seen = s.history
                counts[i].index_add_(0, torch.tensor(seen, device=dev), torch.ones(len(seen), device=dev))
            if self.counts is None:
                self.counts = torch.zeros(B, self.vocab_size, device=dev)
                for i, s in enumerate(self.rows[:B]):
                    seen = torch.tensor(s.history, device=dev)
                    self.counts[i].index_add_(0, seen, torch.ones(len(seen), device=dev))
            self.counts = torch.cat([self.counts, counts])
        return out

    def _drop(self, index: list[int]) -> None:
        """Remove rows (finished or cancelled), then trim the padding every remaining row has."""
        if not index:
            return
        gone = set(index)
        keep = [i for i in range(len(self.rows)) if i not in gone]
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self._clear()
            return
        k = torch.tensor(keep, device=self.device)
        self.state.reorder(k)
        self.state.trim()
        self.last = self.last[k]
        self.counts = None if self.counts is None else self.counts[k]

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
        outs = []
        if self.rows:  # the running rows read the tokens chosen last step
            outs.append(self.model.decode_step(self.state, self.last, need_weights=self.need_weights))
        if new:  # joining rows read their whole prompt
            outs.append(self._join(new))
        if not self.rows:
            return []
        logits = outs[0].logits if len(outs) == 1 else torch.cat([o.logits for o in outs])
        steps = choose(self.rows, logits.float(), self.counts, self.k)
        if self.need_weights:
            for field in ("attention", "cross_attention"):
                per_row = [a for o in outs for a in (getattr(o, field) or [None] * len(o.logits))]
                for st, a in zip(steps, per_row):
                    setattr(st, field, a)
        tokens = torch.tensor([st.token for st in steps], device=self.device)
        self.last = tokens[:, None]
        if self.counts is not None:
            self.counts[torch.arange(len(steps), device=self.device), tokens] += 1
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
    of different lengths); yields a Step per new token per row, rows interleaved step by step. For an
    encoder-decoder model the prompts are sources and the Steps are their targets (with need_weights,
    `Step.cross_attention` says where each target token looked in its source).

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
    # decoder positions to allocate: the prompt and the new tokens, or <s> and the new tokens
    context = max(len(p) for p in prompts) if getattr(model, "decoder_start", None) is None else 1
    engine = Engine(model, use_cache=use_cache, alternatives=alternatives, need_weights=need_weights,
                    capacity=context + max_new_tokens if isinstance(max_new_tokens, int) else None,
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
