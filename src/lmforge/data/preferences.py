"""Preference pairs: a prompt, a chosen and a rejected completion, as the reward model and DPO read them.

A preference file is JSON Lines, one pair per line (what `lmforge pairs` writes):

    {"prompt": "写一首五言绝句，题为《春晓》", "chosen": "春眠不觉晓，处处闻啼鸟。\\n...", "rejected": "春眠...",
     "chosen_score": 1.0, "rejected_score": 0.5, "form": "五言绝句"}

`prompt` is the user's message (the system prompt is the task's, lmforge.data.poems.SYSTEM_PROMPT); `chosen`
and `rejected` are the assistant's answers. The scores are optional (a file of human choices has none); when
given, chosen's must be the higher. Any other key is kept in `Pair.extra`. `read_pairs` checks every line and
names the first bad one; nothing is trained, and no file written, before the whole file has been read.

Pairs from samples (Stiennon et al. 2020 sec. 3.1: comparisons between samples of the policy): `rank` keeps,
of a prompt's samples, the best and the worst by a score, and drops the prompt when they tie (no preference);
`rank_all` keeps every pair of samples whose scores differ (Ouyang et al. 2022 sec. 3.5: K answers ranked give
K-choose-2 comparisons per prompt).
`encode_pair` puts a pair in the chat template: (ids, completion_mask) of each side, the mask 1 on the answer
and its end-of-turn marker -- the tokens the reward model reads last and DPO sums log-probs over.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from . import chat
from .poems import SYSTEM_PROMPT

KEYS = ("prompt", "chosen", "rejected")
SCORES = ("chosen_score", "rejected_score")


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str
    chosen_score: float | None = None
    rejected_score: float | None = None
    extra: dict = field(default_factory=dict, compare=False)  # other keys of the line ("form", ...), kept as read

    def to_dict(self) -> dict:
        d = {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}
        if self.chosen_score is not None:
            d.update(chosen_score=self.chosen_score, rejected_score=self.rejected_score)
        return {**d, **self.extra}


def rank(prompt: str, completions: list[str], scores: list[float], **extra) -> Pair | None:
    """The pair (best, worst) of one prompt's scored samples; None when the best and worst scores tie.

    Example: rank("p", ["a", "b", "c"], [0.5, 1.0, 0.25]) -> Pair("p", chosen="b", rejected="c", 1.0, 0.25);
    rank("p", ["a", "b"], [0.75, 0.75]) -> None. Among equal best (or worst) scores the first sample is kept.
    """
    if len(completions) != len(scores) or len(completions) < 2:
        raise ValueError(f"rank needs at least two completions, one score each; got {len(completions)} completions "
                         f"and {len(scores)} scores")
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    worst = min(range(len(scores)), key=lambda i: (scores[i], i))
    if scores[best] == scores[worst]:
        return None
    return Pair(prompt, completions[best], completions[worst], float(scores[best]), float(scores[worst]), dict(extra))


def extremes(pairs: list[Pair]) -> list[Pair]:
    """For each prompt of `pairs` (with its extra title and form), the pair of its best and worst text: `rank`'s
    pair from a file of `rank_all`'s, in the order prompts first appear (on equal scores the first text seen).
    DPO in the post-training pipeline trains on these, the reward model on all of them (docs/post-training.md).

    Example: extremes(rank_all("p", ["a", "b", "c"], [0.5, 1.0, 0.0])) -> [Pair("p", "b", "c", 1.0, 0.0)]."""
    groups: dict[tuple, dict[str, float]] = {}
    first: dict[tuple, Pair] = {}
    for p in pairs:
        if p.chosen_score is None:
            raise ValueError("extremes needs scored pairs (chosen_score, rejected_score): which text is best is "
                             "read from the scores")
        key = (p.prompt, p.extra.get("title"), p.extra.get("form"))
        texts = groups.setdefault(key, {})
        first.setdefault(key, p)
        texts.setdefault(p.chosen, p.chosen_score)
        texts.setdefault(p.rejected, p.rejected_score)
    ranked = (rank(key[0], list(texts), list(texts.values()), **first[key].extra) for key, texts in groups.items())
    return [pair for pair in ranked if pair is not None]  # None: all of a prompt's texts tie (not from rank_all)


AFTER_TRAINING_READ = 4096  # train pairs a recipe reads again after training (evaluate, normalise)


def spaced(items: list, limit: int = AFTER_TRAINING_READ) -> list:
    """At most about `limit` of `items`, evenly spaced (every k-th), all of them when there are fewer: what the
    reward and DPO recipes read again after training -- a file of all pairs of 8 answers (~26,000 pairs) took
    longer to read than to train on. Example: spaced(list(range(10)), 4) -> [0, 3, 6, 9]."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return items[::max(1, -(-len(items) // limit))]


def rank_all(prompt: str, completions: list[str], scores: list[float], **extra) -> list[Pair]:
    """Every pair of one prompt's samples with different scores, the higher-scored side chosen; a text that
    appears twice counts once (its first score). Ouyang et al. 2022 (sec. 3.5) train on all K-choose-2
    comparisons of K ranked answers; with K = 2 this is `rank`.

    Example: rank_all("p", ["a", "b", "c"], [0.5, 1.0, 0.5]) -> [Pair("p", "b", "a", 1.0, 0.5),
    Pair("p", "b", "c", 1.0, 0.5)] (a and c tie: no pair)."""
    if len(completions) != len(scores) or len(completions) < 2:
        raise ValueError(f"rank_all needs at least two completions, one score each; got {len(completions)} "
                         f"completions and {len(scores)} scores")
    seen: dict[str, float] = {}
    for text, s in zip(completions, scores):
        seen.setdefault(text, float(s))
    items = list(seen.items())
    pairs = []
    for i, (a, sa) in enumerate(items):
        for b, sb in items[i + 1:]:
            if sa != sb:
                (hi, s_hi), (lo, s_lo) = ((a, sa), (b, sb)) if sa > sb else ((b, sb), (a, sa))
                pairs.append(Pair(prompt, hi, lo, s_hi, s_lo, dict(extra)))
    return pairs


def parse_pair(line: str, where: str) -> Pair:
    """One line of a preference file; ValueError starting with `where` (e.g. "pairs.jsonl line 3")."""
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg}); each line must be one object "
                         f'{{"prompt": ..., "chosen": ..., "rejected": ...}}') from None
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected an object with {', '.join(KEYS)}, got {type(d).__name__}")
    for key in KEYS:
        if key not in d:
            raise ValueError(f"{where}: no {key!r}: a pair needs {', '.join(KEYS)} (a missing side has nothing to "
                             f"compare)")
        if not isinstance(d[key], str) or not d[key].strip():
            raise ValueError(f"{where}: {key!r} is {'empty' if isinstance(d[key], str) else type(d[key]).__name__}; "
                             f"it must be non-empty text")
    if d["chosen"] == d["rejected"]:
        raise ValueError(f"{where}: chosen and rejected are the same text; a pair must differ (drop the line)")
    given = [k for k in SCORES if d.get(k) is not None]
    if given and len(given) != 2:
        raise ValueError(f"{where}: only {given[0]!r} is given; give both chosen_score and rejected_score, or neither")
    for k in given:
        if isinstance(d[k], bool) or not isinstance(d[k], (int, float)) or not math.isfinite(d[k]):
            raise ValueError(f"{where}: {k!r} is {d[k]!r}; a score must be a finite number")
    if given and d["chosen_score"] < d["rejected_score"]:
        raise ValueError(f"{where}: chosen_score {d['chosen_score']} is below rejected_score {d['rejected_score']}: "
                         "the sides are swapped")
    extra = {k: v for k, v in d.items() if k not in KEYS + SCORES}
    return Pair(d["prompt"], d["chosen"], d["rejected"], *(float(d[k]) if given else None for k in SCORES), extra)


def read_pairs(path: str | Path) -> list[Pair]:
    """Every pair of a preference file (blank lines skipped); ValueError naming the file and line of the first
    bad one, or an empty file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preference file {path} does not exist (write one with `lmforge pairs RUN --out {path}`)")
    pairs = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                pairs.append(parse_pair(line, f"{path} line {n}"))
    if not pairs:
        raise ValueError(f"{path} holds no pairs")
    return pairs


def write_pairs(path: str | Path, pairs: list[Pair]) -> None:
    """Write a preference file at once (a temporary file renamed over `path`: an interruption leaves the old one)."""
    from lmforge.io import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in pairs))


def run_system_prompt(run: str | Path) -> str:
    """The system prompt an SFT run was trained with: its run.json's data.system, else the task's."""
    saved = Path(run) / "run.json"
    data = json.loads(saved.read_text()).get("data", {}) if saved.is_file() else {}
    return (data.get("system") if isinstance(data, dict) else None) or SYSTEM_PROMPT


def prompt_ids(tok, prompt: str, system: str = SYSTEM_PROMPT) -> list[int]:
    """The chat template up to where the assistant starts: what the SFT model continues."""
    return chat.encode(tok, [{"role": "system", "content": system}, {"role": "user", "content": prompt}])[0]


def encode_completion(tok, prompt: str, completion: str, system: str = SYSTEM_PROMPT) -> tuple[list[int], list[int]]:
    """(ids, completion_mask) of prompt + completion in the chat template: the mask is 1 on the answer and its
    end-of-turn marker (not the newline the template writes after a turn: generation stops at the marker).

    Example (markers, a character tokenizer): "<|system|>S<|end|>\\n<|user|>P<|end|>\\n<|assistant|>AB<|end|>"
    with the mask 1 on A, B and the last <|end|>."""
    if not chat.has_markers(tok):
        raise ValueError("the tokenizer has no chat markers (<|system|>, <|user|>, <|assistant|>, <|end|>): preference "
                         "training reads an SFT run, whose tokenizer has them")
    head = prompt_ids(tok, prompt, system)
    body = tok.encode(completion, add_special_tokens=False) + [tok.special_tokens[chat.END]]
    return head + body, [0] * len(head) + [1] * len(body)


def encode_pair(tok, pair: Pair, system: str = SYSTEM_PROMPT) -> tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]]:
    """((chosen ids, chosen mask), (rejected ids, rejected mask)): encode_completion of each side."""
    return encode_completion(tok, pair.prompt, pair.chosen, system), encode_completion(tok, pair.prompt, pair.rejected, system)


class PairBatches:
    """Batches of encoded pairs for the Trainer: get(i) -> (ids (2B, T), mask (2B, T), completion_mask (2B, T)),
    rows 0..B-1 the chosen sides and rows B..2B-1 the rejected sides of the same B pairs (TRL's layout), each
    right-padded with `pad_id` to the batch's longest row (padding comes after every real token, so a causal
    model needs no attention mask). Batch i is a pure function of (seed, i): epoch i // len(self) is a
    permutation drawn from numpy.random.default_rng([seed, epoch]). shuffle=False reads the pairs in order, the
    last batch short (evaluation).

    encoded: one ((chosen ids, chosen mask), (rejected ids, rejected mask)) per pair (encode_pair)."""

    def __init__(self, encoded: list, batch_size: int, pad_id: int = 0, seed: int = 0, shuffle: bool = True):
        if not encoded:
            raise ValueError("no pairs to batch")
        self.encoded, self.batch_size, self.pad_id, self.seed, self.shuffle = encoded, batch_size, pad_id, seed, shuffle
        self.per_epoch = len(encoded) // batch_size if shuffle else -(-len(encoded) // batch_size)
        if self.per_epoch == 0:
            raise ValueError(f"{len(encoded)} pairs are fewer than one batch of {batch_size}: lower train.batch_size "
                             f"or make more pairs")

    def __len__(self) -> int:
        return self.per_epoch

    def rows(self, index: int) -> list[int]:
        import numpy as np

        epoch, i = divmod(index, self.per_epoch)
        if not self.shuffle:
            return list(range(i * self.batch_size, min((i + 1) * self.batch_size, len(self.encoded))))
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.encoded))
        return order[i * self.batch_size:(i + 1) * self.batch_size].tolist()

    def get(self, index: int):
        import torch

        pairs = [self.encoded[r] for r in self.rows(index)]
        sides = [p[0] for p in pairs] + [p[1] for p in pairs]  # chosen rows, then rejected rows
        T = max(len(ids) for ids, _ in sides)
        ids = torch.full((len(sides), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sides), T), dtype=torch.long)
        completion = torch.zeros((len(sides), T), dtype=torch.long)
        for b, (row, comp) in enumerate(sides):
            ids[b, :len(row)] = torch.tensor(row)
            mask[b, :len(row)] = 1
            completion[b, :len(row)] = torch.tensor(comp)
        return ids, mask, completion

    def batch_tokens(self, batch) -> int:
        return int(batch[1].sum())  # real tokens, not padding


def per_pair(model, batches: "PairBatches", value) -> tuple[list[float], list[float]]:
    """(chosen values, rejected values) of every pair, in order (batches: PairBatches with shuffle=False), with
    the model in eval mode and no gradients; value(model, ids, mask, completion_mask) -> (2B,) for one batch
    (its chosen rows, then its rejected rows). The reward recipe scores rewards this way, DPO log-probs."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chosen, rejected = [], []
    with torch.no_grad():
        for i in range(len(batches)):
            v = value(model, *(t.to(device) for t in batches.get(i))).float().tolist()
            chosen += v[:len(v) // 2]
            rejected += v[len(v) // 2:]
    model.train(was_training)
    return chosen, rejected
