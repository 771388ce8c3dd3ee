"""Corrupting token ids for the encoder families' pretraining objectives, as pure functions.

BERT (Devlin et al. 2019, sec. 3.1):
- Masked LM: choose 15% of the (non-special) positions to predict; of those, replace 80% by [MASK], 10% by a
  random token and leave 10% unchanged (so the model cannot learn that only [MASK] positions matter, and a
  fine-tuning input, which has no [MASK], still looks like pretraining). The loss reads only the chosen
  positions: their labels are the original ids, every other label is -100 (ignored).
- Next-sentence prediction: pairs (A, B) where B is the sentence that follows A in the same document half the
  time (IsNext, label 0) and a sentence from another document otherwise (NotNext, label 1), fed as
  [CLS] A [SEP] B [SEP] with segment ids 0 for [CLS] A [SEP] and 1 for B [SEP].

Textbook example (tests/data/test_corruption.py): in "[CLS] my dog is hairy [SEP]" with "hairy" chosen, the
input becomes "my dog is [MASK]" 80% of the time, "my dog is apple" 10%, "my dog is hairy" 10%, and the
label is "hairy" at that position only.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

IGNORE = -100  # label of positions the loss skips (torch cross_entropy's ignore_index)


def mask_tokens(ids: Tensor, *, mask_id: int, vocab_size: int, special_ids: Sequence[int] = (),
                prob: float = 0.15, mask_frac: float = 0.8, random_frac: float = 0.1,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT's masking: ids (B, T) -> (inputs (B, T), labels (B, T)).

    Each position that is not a special token (padding, [CLS], [SEP]) is chosen with probability `prob`;
    a chosen position becomes mask_id with probability mask_frac, a random non-special token with
    probability random_frac, else keeps its token. labels = ids at chosen positions, IGNORE elsewhere.
    """
    if not 0.0 < prob <= 1.0 or mask_frac < 0 or random_frac < 0 or mask_frac + random_frac > 1.0:
        raise ValueError(f"need 0 < prob <= 1 and mask_frac + random_frac <= 1, got prob={prob}, "
                         f"mask_frac={mask_frac}, random_frac={random_frac}")
    special = torch.zeros(vocab_size, dtype=torch.bool)
    special[list(special_ids)] = True
    candidates = ~special[ids]  # (B, T)
    draw = torch.rand(ids.shape, generator=generator)
    chosen = candidates & (torch.rand(ids.shape, generator=generator) < prob)
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    inputs = ids.clone()
    to_mask = chosen & (draw < mask_frac)
    to_random = chosen & (draw >= mask_frac) & (draw < mask_frac + random_frac)
    inputs[to_mask] = mask_id
    ordinary = (~special).nonzero().squeeze(1)  # random replacements are ordinary tokens
    pick = torch.randint(len(ordinary), (int(to_random.sum()),), generator=generator)
    inputs[to_random] = ordinary[pick]
    return inputs, labels


@dataclass
class SentencePair:
    """One NSP example: input ids [CLS] A [SEP] B [SEP], segment ids, label 0 = IsNext, 1 = NotNext
    (the order of transformers' BertForPreTraining `next_sentence_label`)."""

    ids: list[int]
    token_type_ids: list[int]
    is_next: bool

    @property
    def label(self) -> int:
        return 0 if self.is_next else 1


def sentence_pairs(documents: Sequence[Sequence[Sequence[int]]], *, cls_id: int, sep_id: int, max_len: int,
                   rng: random.Random) -> list[SentencePair]:
    """NSP pairs from documents (each a list of tokenised sentences), one per adjacent pair of sentences.

    With probability 1/2, B is the sentence after A (IsNext); otherwise a random sentence of a different
    document (NotNext). The pair is cut to max_len - 3 tokens by trimming the longer of the two, from the end
    (BERT's truncate_seq_pair). Documents with fewer than two sentences give no pair but can give NotNext Bs.
    """
    if max_len < 5:
        raise ValueError(f"max_len must leave room for [CLS] A [SEP] B [SEP], got {max_len}")
    nonempty = [j for j, d in enumerate(documents) if d]
    if len(nonempty) < 2:
        raise ValueError("NotNext sentences come from another document: give at least two documents")
    out = []
    for di, doc in enumerate(documents):
        for i in range(len(doc) - 1):
            a = list(doc[i])
            is_next = rng.random() < 0.5
            if is_next:
                b = list(doc[i + 1])
            else:
                dj = di
                while dj == di:  # any document but this one
                    dj = rng.choice(nonempty)
                b = list(rng.choice(documents[dj]))
            while len(a) + len(b) > max_len - 3:
                (a if len(a) >= len(b) else b).pop()
            out.append(SentencePair([cls_id, *a, sep_id, *b, sep_id], [0] * (len(a) + 2) + [1] * (len(b) + 1),
                                    is_next))
    return out
