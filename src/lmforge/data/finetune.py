"""Labelled tasks for fine-tuning an encoder: which head each needs, its examples as token ids and targets, and
batches padded per batch.

Three heads (Devlin et al. 2019, sec. 4 and fig. 4), one WordNet 3.0 task each (lmforge.data.wordnet):

    task                head      input                          target
    wordnet-supersense  classify  [CLS] gloss [SEP]              the lexicographer file (45 classes), from [CLS]
    wordnet-tags        tag       [CLS] gloss [SEP] example [SEP]  B-TERM / I-TERM / O on each example word's first piece
    wordnet-qa          qa        [CLS] gloss [SEP] example [SEP]  first and last token of the defined word

The gloss comes first in the pair and the example second, as BERT's SQuAD input puts the question before the
passage (sec. 4.2); the tagger sees the gloss too, so it can tell which word of the example is defined.
A word split into pieces is labelled on its first piece, the others are not scored (-100; sec. 5.3, "we use
the representation of the first sub-token as the input to the token-level classifier").

    >>> task = lookup_task("wordnet-tags")
    >>> task.head, task.labels
    ('tag', ('O', 'B-TERM', 'I-TERM'))
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from lmforge.data import wordnet
from lmforge.tokenizers.base import Tokenizer, Truncation

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Task:
    name: str
    head: Literal["classify", "tag", "qa"]
    source: str  # the lmforge.data.wordnet task it reads
    labels: tuple[str, ...]  # class names of a classify/tag head, in index order; () for qa

    @property
    def pair(self) -> bool:
        """Is the input a (question, context) pair?"""
        return self.head in ("tag", "qa")


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("wordnet-supersense", "classify", "supersense", wordnet.LEXNAMES),
    Task("wordnet-tags", "tag", "tags", wordnet.TAGS),
    Task("wordnet-qa", "qa", "qa", ()),
)}


def lookup_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown fine-tuning task {name!r}. Known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def load_examples(task: Task, split: str) -> list[dict]:
    """The task's examples of one split (train, val, test), as lmforge.data.wordnet.load_task gives them."""
    examples, _ = wordnet.load_task(task.source, split)
    return examples


# ---------------------------------------------------------------------------------- encoding

@dataclass
class Feature:
    """One example as the model reads it. target: a class index (classify), a label or -100 per token (tag),
    (first, last) token of the answer or (-100, -100) when truncation cut it off (qa).
    For evaluation: `words`, the token of each word's first piece (-1: cut off), and `offsets`, each token's
    character span in the context ((0, 0) outside it)."""

    ids: list[int]
    type_ids: list[int]
    target: int | list[int] | tuple[int, int]
    words: list[int] = field(default_factory=list)
    offsets: list[tuple[int, int]] = field(default_factory=list)


def task_tokenizer(tokenizer: Tokenizer, max_len: int, pair: bool) -> Tokenizer:
    """A copy of `tokenizer` that cuts inputs at max_len tokens (special tokens counted; the longer text of a
    pair first, Hugging Face's LongestFirst) and pads nothing (the batches pad). The original is unchanged."""
    if tokenizer.template is None:
        raise ValueError("fine-tuning an encoder needs a tokenizer with a template that adds [CLS] and [SEP] "
                         "(tokenizer.json's post_processor); this one adds no special tokens")
    if pair:
        types = {item: t for item, t in tokenizer.template.pair}
        if types.get("$A") == types.get("$B"):
            raise ValueError("this task reads a (question, context) pair, and the tokenizer's pair template gives "
                             "both texts the same type id; use a BERT tokenizer ([CLS] A [SEP] B [SEP], types 0 and 1)")
    tok = copy.copy(tokenizer)
    tok.truncation, tok.padding = Truncation(max_length=max_len), None
    return tok


def encode_examples(task: Task, examples: list[dict], tokenizer: Tokenizer) -> tuple[list[Feature], int]:
    """Features of `examples` with a tokenizer from task_tokenizer -> (features, n_cut): n_cut counts the qa/tag
    examples whose answer lost a token to truncation (their targets are partly or wholly -100)."""
    if not task.pair:
        return [Feature(enc.ids, enc.type_ids, ex["label"])
                for ex in examples for enc in [tokenizer.encode_full(ex["text"])]], 0
    b_type = dict(tokenizer.template.pair)["$B"]
    label_id = {x: i for i, x in enumerate(task.labels)}
    features, n_cut = [], 0
    for ex in examples:
        enc = tokenizer.encode_full(ex["question"], ex["context"])
        # the context's tokens: the second text's type id, and a real span (a template's [SEP] has (0, 0))
        offsets = [(s, e) if t == b_type and e > s else (0, 0) for t, (s, e) in zip(enc.type_ids, enc.offsets)]
        context = [i for i, (s, e) in enumerate(offsets) if e > s]
        if task.head == "qa":
            inside = [i for i in context if offsets[i][1] > ex["start"] and offsets[i][0] < ex["end"]]
            cut = not inside or offsets[inside[-1]][1] < ex["end"]
            target = (inside[0], inside[-1]) if inside else (-100, -100)
            features.append(Feature(enc.ids, enc.type_ids, target, offsets=offsets))
        else:
            words, j = [], 0
            for s, e in ex["offsets"]:  # the first piece starting inside each word (pieces are in text order)
                while j < len(context) and offsets[context[j]][0] < s:
                    j += 1
                words.append(context[j] if j < len(context) and offsets[context[j]][0] < e else -1)
            target = [-100] * len(enc.ids)
            for w, tag in zip(words, ex["tags"]):
                if w >= 0:
                    target[w] = label_id[tag]
            cut = any(w < 0 and tag != "O" for w, tag in zip(words, ex["tags"]))
            features.append(Feature(enc.ids, enc.type_ids, target, words=words, offsets=offsets))
        n_cut += cut
    return features, n_cut


# ---------------------------------------------------------------------------------- batches

def pad_id(tokenizer: Tokenizer) -> int:
    """The id padding uses: the tokenizer file's padding section, else [PAD], else 0 (BERT's [PAD] is 0)."""
    if tokenizer.padding is not None:
        return tokenizer.padding.pad_id
    found = tokenizer.token_to_id("[PAD]")
    return found if found is not None else 0


def collate(features: list[Feature], pad: int) -> tuple[torch.Tensor, ...]:
    """Features -> (ids, attention_mask, token_type_ids, targets), padded on the right to the longest row.
    targets: (B,) class indices, (B, T) token labels (-100 on padding) or (B, 2) answer spans."""
    import torch  # here, not at the top: the finetune recipe's config reads this module (TASKS) without torch

    T = max(len(f.ids) for f in features)
    B = len(features)
    ids = torch.full((B, T), pad, dtype=torch.long)
    types = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for b, f in enumerate(features):
        n = len(f.ids)
        ids[b, :n], types[b, :n], mask[b, :n] = torch.tensor(f.ids), torch.tensor(f.type_ids), 1
    first = features[0].target
    if isinstance(first, list):  # one label per token
        targets = torch.full((B, T), -100, dtype=torch.long)
        for b, f in enumerate(features):
            targets[b, :len(f.target)] = torch.tensor(f.target)
    else:
        targets = torch.tensor([f.target for f in features], dtype=torch.long)
    return ids, mask, types, targets


class PaddedBatches:
    """Batches of features for the Trainer: batch i depends only on (seed, i). Epoch e visits every feature once,
    in the order of numpy.random.default_rng([seed, e]) (shuffle=False: in order, for evaluation); each batch is
    padded to its own longest row, not to max_len. Under DDP, global batch i has batch_size * world_size
    features and rank r takes the r-th slice (as lmforge.data.sampler.RandomWindows)."""

    def __init__(self, features: list[Feature], batch_size: int, pad: int, *, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if not features:
            raise ValueError("no examples to batch: the split is empty (check data.train_examples and the task)")
        self.features, self.batch_size, self.pad, self.shuffle, self.seed = features, batch_size, pad, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.per_batch = batch_size * world_size
        self._order: tuple[int, np.ndarray] | None = None  # (epoch, permutation), the last one drawn

    def __len__(self) -> int:
        """Global batches per epoch (the last one may be short)."""
        return -(-len(self.features) // self.per_batch)

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            n = len(self.features)
            order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            self._order = (epoch, order)
        return self._order[1]

    def get(self, index: int) -> tuple[torch.Tensor, ...]:
        epoch, i = divmod(index, len(self))
        rows = self._permutation(epoch)[i * self.per_batch:(i + 1) * self.per_batch]
        mine = rows[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        if len(mine) == 0:  # a short last batch with nothing left for this rank: take the epoch's first rows
            mine = self._permutation(epoch)[:self.batch_size]
        return collate([self.features[j] for j in mine], self.pad)

    @staticmethod
    def batch_tokens(batch: tuple[torch.Tensor, ...]) -> int:
        """Real tokens of a batch (the Trainer's count): the attention mask's ones, not the padding."""
        return int(batch[1].sum())
