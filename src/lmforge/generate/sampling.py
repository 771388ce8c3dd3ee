"""Logit processors: pure functions that reshape the model's next-token scores before a token is chosen.

Each takes logits (..., V) and returns new logits of the same shape; a removed token gets -inf.
The examples use the distribution p = [0.5, 0.3, 0.15, 0.05] (logits = log p).

`SamplingParams.process` applies them in this order (the order is part of the contract):

    1. logit_bias          add a fixed amount to chosen tokens (OpenAI `logit_bias`)
    2. banned_tokens       remove tokens outright
    3. repetition_penalty  CTRL's penalty on tokens already seen (Keskar et al. 2019)
    4. presence/frequency  OpenAI's additive penalties from counts
    5. no_repeat_ngram     remove tokens that would repeat an n-gram (Paulus et al. 2017)
    6. temperature         divide by T (T = 0 means greedy: argmax of the scores after 1-5)
    7. top_k               keep the k most likely
    8. top_p               nucleus: the smallest set with mass >= p (Holtzman et al. 2019)
    9. typical_p           locally typical set (Meister et al. 2022)
   10. min_p               drop tokens below min_p * p(most likely) (Nguyen et al. 2024)

Penalties (1-5) change what "most likely" means, so they come before temperature; filters (7-10)
look at the tempered distribution, as in Hugging Face transformers' default order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

NEG_INF = float("-inf")


def temperature(logits: Tensor, t: float) -> Tensor:
    """Divide by t: t < 1 sharpens, t > 1 flattens (t = 0, greedy, is handled by the caller).

    >>> temperature(torch.tensor([2.0, 1.0, 0.0]), 0.5).softmax(-1)   # from [0.665, 0.245, 0.090]
    tensor([0.8668, 0.1173, 0.0159])
    """
    return logits if t == 1.0 else logits / t


def top_k(logits: Tensor, k: int) -> Tensor:
    """Keep the k highest-scoring tokens (ties at the k-th score are kept); k = 0 keeps all.

    >>> top_k(torch.tensor([0.5, 0.3, 0.15, 0.05]).log(), 2).softmax(-1)
    tensor([0.6250, 0.3750, 0.0000, 0.0000])
    """
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, NEG_INF)


def _keep_smallest_set(logits: Tensor, score: Tensor, mass: float) -> Tensor:
    """Walk tokens by decreasing `score` and keep them until their probability reaches `mass`.

    Sorting the whole vocabulary costs milliseconds on a CPU (~8 ms for 50k entries), so look at the
    best 64 first and widen (x4) while the cut-off lies beyond them; past 1024, sort everything. Same
    result; a confident model needs one small topk, a flat (e.g. untrained) one pays for the sort.
    """
    probs = logits.softmax(-1)
    V, m = logits.size(-1), min(64, logits.size(-1))
    while True:
        order = score.topk(m, dim=-1).indices  # (..., m) best first
        p = probs.gather(-1, order)
        before = p.cumsum(-1) - p  # mass of the tokens ranked ahead of each one
        if m == V or bool((before[..., -1] >= mass).all()):
            break
        m = 4 * m if 4 * m <= 1024 else V
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, before < mass)
    return logits.masked_fill(~keep, NEG_INF)


def top_p(logits: Tensor, p: float) -> Tensor:
    """Nucleus sampling (Holtzman et al. 2019): keep the smallest set of most likely tokens whose
    total probability is >= p. p = 1 keeps all.

    >>> top_p(torch.tensor([0.5, 0.3, 0.15, 0.05]).log(), 0.75).softmax(-1)   # 0.5 + 0.3 >= 0.75
    tensor([0.6250, 0.3750, 0.0000, 0.0000])
    """
    if p >= 1.0:
        return logits
    return _keep_smallest_set(logits, logits, p)


def typical(logits: Tensor, mass: float) -> Tensor:
    """Locally typical sampling (Meister et al. 2022): rank tokens by how close their surprisal
    -log p is to the entropy H, keep the closest ones until their mass reaches `mass`.

    For p = [0.5, 0.3, 0.15, 0.05]: H = 1.142 nats, surprisals [0.693, 1.204, 1.897, 2.996], so
    the most *typical* token is the second one, and mass 0.25 keeps it alone, dropping the argmax:

    >>> typical(torch.tensor([0.5, 0.3, 0.15, 0.05]).log(), 0.25).softmax(-1)
    tensor([0., 1., 0., 0.])
    """
    if mass >= 1.0:
        return logits
    logp = logits.log_softmax(-1)
    entropy = -(logp.exp() * logp).nansum(-1, keepdim=True)
    return _keep_smallest_set(logits, -(-logp - entropy).abs(), mass)


def min_p(logits: Tensor, p: float) -> Tensor:
    """min-p sampling (Nguyen et al. 2024, "Turning Up the Heat"): drop tokens whose probability is
    below p times the top token's. Scales with the model's confidence.

    >>> min_p(torch.tensor([0.5, 0.3, 0.15, 0.05]).log(), 0.2).softmax(-1)   # threshold 0.2 * 0.5 = 0.1
    tensor([0.5263, 0.3158, 0.1579, 0.0000])
    """
    if p <= 0.0:
        return logits
    probs = logits.softmax(-1)
    return logits.masked_fill(probs < p * probs.amax(-1, keepdim=True), NEG_INF)


def repetition_penalty(logits: Tensor, counts: Tensor, penalty: float) -> Tensor:
    """CTRL (Keskar et al. 2019): for every token already in the sequence, divide a positive logit by
    `penalty` and multiply a negative one by it (so both move down). counts (..., V): occurrences.

    >>> repetition_penalty(torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1, 1, 0]), 2.0)
    tensor([ 1.0000, -2.0000,  0.5000])
    """
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(counts > 0, penalised, logits)


def presence_frequency_penalty(logits: Tensor, counts: Tensor, presence: float, frequency: float) -> Tensor:
    """OpenAI's penalties: logit - frequency * count - presence * (count > 0).

    >>> presence_frequency_penalty(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0, 1, 3]), 0.5, 0.1)
    tensor([1.0000, 0.4000, 0.2000])
    """
    if presence == 0.0 and frequency == 0.0:
        return logits
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)


def banned_ngram_tokens(history: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already present in `history` (no-repeat-n-gram,
    Paulus et al. 2017). Example: history [1, 2, 3, 1, 2], n = 3 -> the prefix (1, 2) was
    followed by 3 before, so [3]."""
    if n <= 0 or len(history) < n:
        return []
    prefix = tuple(history[len(history) - n + 1:]) if n > 1 else ()
    return sorted({history[i + n - 1] for i in range(len(history) - n + 1)
                   if tuple(history[i:i + n - 1]) == prefix})


def ban(logits: Tensor, tokens: list[int] | Tensor) -> Tensor:
    """Remove the given token ids (last dimension).

    >>> ban(torch.tensor([0.5, 0.3, 0.15, 0.05]).log(), [0]).softmax(-1)
    tensor([0.0000, 0.6000, 0.3000, 0.1000])
    """
    if len(tokens) == 0:
        return logits
    out = logits.clone()
    out[..., tokens] = NEG_INF
    return out


def logit_bias(logits: Tensor, bias: dict[int, float]) -> Tensor:
    """Add bias[token] to that token's logit (OpenAI `logit_bias`; -100 effectively bans, +100 forces).

    >>> logit_bias(torch.tensor([0.0, 0.0]), {1: math.log(3)}).softmax(-1)
    tensor([0.2500, 0.7500])
    """
    if not bias:
        return logits
    out = logits.clone()
    idx = torch.tensor(list(bias), device=logits.device)
    out[..., idx] += torch.tensor(list(bias.values()), dtype=logits.dtype, device=logits.device)
    return out


# The processors that can remove tokens, in application order; Step.removed reports these names.
FILTERS = ("banned", "no_repeat_ngram", "top_k", "top_p", "typical_p", "min_p")


@dataclass(frozen=True)
class SamplingParams:
    """How to turn logits into a choice. Defaults: plain sampling from the model's distribution."""

    temperature: float = 1.0  # 0 = greedy (argmax)
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    min_p: float = 0.0  # 0 = off
    typical_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = off; > 1 discourages repeats (CTRL used 1.2)
    presence_penalty: float = 0.0  # OpenAI range [-2, 2]
    frequency_penalty: float = 0.0  # OpenAI range [-2, 2]
    no_repeat_ngram_size: int = 0  # 0 = off
    logit_bias: tuple[tuple[int, float], ...] = ()  # ((token, bias), ...); a dict is accepted
    banned_tokens: tuple[int, ...] = ()
    vocab_size: int | None = field(default=None, compare=False)  # when given, token ids are checked

    def __post_init__(self):
        if isinstance(self.logit_bias, dict):
            object.__setattr__(self, "logit_bias", tuple((int(k), float(v)) for k, v in self.logit_bias.items()))
        object.__setattr__(self, "banned_tokens", tuple(int(t) for t in self.banned_tokens))
        checks = [
            ("temperature", self.temperature >= 0 and math.isfinite(self.temperature), ">= 0 (0 = greedy)"),
            ("top_k", isinstance(self.top_k, int) and self.top_k >= 0, "an integer >= 0 (0 = off)"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1] (1 = off)"),
            ("min_p", 0 <= self.min_p <= 1, "in [0, 1] (0 = off)"),
            ("typical_p", 0 < self.typical_p <= 1, "in (0, 1] (1 = off)"),
            ("repetition_penalty", 0 < self.repetition_penalty and math.isfinite(self.repetition_penalty),
             "> 0 (1 = off)"),
            ("presence_penalty", -2 <= self.presence_penalty <= 2, "in [-2, 2] (0 = off)"),
            ("frequency_penalty", -2 <= self.frequency_penalty <= 2, "in [-2, 2] (0 = off)"),
            ("no_repeat_ngram_size", isinstance(self.no_repeat_ngram_size, int) and self.no_repeat_ngram_size >= 0,
             "an integer >= 0 (0 = off)"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name} must be {allowed}, got {getattr(self, name)!r}")
        if self.vocab_size is not None:
            for name, ids in (("logit_bias", [t for t, _ in self.logit_bias]), ("banned_tokens", self.banned_tokens)):
                bad = [t for t in ids if not 0 <= t < self.vocab_size]
                if bad:
                    raise ValueError(f"{name} has token id {bad[0]}; token ids must be in [0, {self.vocab_size - 1}]")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def needs_counts(self) -> bool:
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0 or self.frequency_penalty != 0

    def process(self, logits: Tensor, counts: Tensor | None = None, histories: list[list[int]] | None = None,
                track: bool = False) -> tuple[Tensor, list[Tensor] | None]:
        """logits (B, V) -> (final logits (B, V), removed). Greedy returns the scores after steps 1-5.

        counts (B, V): token occurrences, needed for penalties; histories: token lists, needed for
        no-repeat-n-gram. With `track`, `removed` has one entry per name in FILTERS: a bool mask (B, V)
        of the tokens that processor removed (a token removed earlier is not counted again), or None
        when the processor is off.
        """
        removed: list[Tensor] | None = [] if track else None
        x = logits

        def filtered(new: Tensor) -> Tensor:
            if track:  # None: the processor is off and removed nothing
                removed.append(None if new is x else new.isneginf() & ~x.isneginf())
            return new

        if self.logit_bias:
            x = logit_bias(x, dict(self.logit_bias))
        x = filtered(ban(x, list(self.banned_tokens)))
        if self.needs_counts:
            x = repetition_penalty(x, counts, self.repetition_penalty)
            x = presence_frequency_penalty(x, counts, self.presence_penalty, self.frequency_penalty)
        if self.no_repeat_ngram_size:
            out = x.clone()
            for b, h in enumerate(histories):
                out[b, banned_ngram_tokens(h, self.no_repeat_ngram_size)] = NEG_INF
            x = filtered(out)
        else:
            x = filtered(x)
        if self.greedy:
            if track:
                removed += [None] * 4
            return x, removed
        x = temperature(x, self.temperature)
        x = filtered(top_k(x, self.top_k))
        x = filtered(top_p(x, self.top_p))
        x = filtered(typical(x, self.typical_p))
        x = filtered(min_p(x, self.min_p))
        return x, removed
