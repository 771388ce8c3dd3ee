"""BERT's corruption functions against the paper's description (Devlin et al. 2019, sec. 3.1 and appendix A.1)."""
import random

import pytest
import torch

from lmforge.data.corruption import IGNORE, mask_tokens, sentence_pairs

V, MASK, CLS, SEP, PAD = 1000, 3, 1, 2, 0
SPECIAL = (PAD, CLS, SEP, MASK)


def test_textbook_example_my_dog_is_hairy():
    # "[CLS] my dog is hairy [SEP]" with only "hairy" eligible to be chosen (prob 1 on it, the rest special)
    ids = torch.tensor([[CLS, 500, 501, 502, 503, SEP]])
    outcomes = {"mask": 0, "random": 0, "same": 0}
    g = torch.Generator().manual_seed(0)
    for _ in range(4000):
        inputs, labels = mask_tokens(ids, mask_id=MASK, vocab_size=V, special_ids=(*SPECIAL, 500, 501, 502),
                                     prob=1.0, generator=g)
        assert labels.tolist() == [[IGNORE] * 4 + [503, IGNORE]]  # the label is "hairy", there only
        assert inputs[0, :4].tolist() == ids[0, :4].tolist() and inputs[0, 5] == SEP
        x = inputs[0, 4].item()
        outcomes["mask" if x == MASK else "same" if x == 503 else "random"] += 1
        assert x not in (PAD, CLS, SEP, 500, 501, 502) or x == MASK  # a random replacement is never special
    assert outcomes["mask"] / 4000 == pytest.approx(0.8, abs=0.02)
    assert outcomes["random"] / 4000 == pytest.approx(0.1, abs=0.015)
    assert outcomes["same"] / 4000 == pytest.approx(0.1, abs=0.015)


def test_fifteen_percent_of_ordinary_positions_are_chosen_and_specials_never():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, V, (64, 128), generator=g)
    ids[:, 0], ids[:, -1], ids[:, 100:110] = CLS, SEP, PAD
    inputs, labels = mask_tokens(ids, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, generator=g)
    chosen = labels != IGNORE
    ordinary = ~torch.isin(ids, torch.tensor(SPECIAL))
    assert not (chosen & ~ordinary).any()
    assert chosen.sum().item() / ordinary.sum().item() == pytest.approx(0.15, abs=0.01)
    assert torch.equal(inputs[~chosen], ids[~chosen])  # nothing unchosen changes
    assert torch.equal(labels[chosen], ids[chosen])
    assert (inputs[chosen] == MASK).float().mean().item() == pytest.approx(0.8, abs=0.03)


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="mask_frac \\+ random_frac <= 1"):
        mask_tokens(torch.zeros(1, 3, dtype=torch.long), mask_id=MASK, vocab_size=V, mask_frac=0.9, random_frac=0.2)


def test_sentence_pairs_half_next_half_from_other_documents():
    docs = [[[d * 100 + s] * (1 + s % 3) for s in range(20)] for d in range(1, 8)]  # doc d, sentence s
    pairs = sentence_pairs(docs, cls_id=CLS, sep_id=SEP, max_len=64, rng=random.Random(0))
    assert len(pairs) == 7 * 19  # one per adjacent pair of sentences
    assert sum(p.is_next for p in pairs) / len(pairs) == pytest.approx(0.5, abs=0.1)
    for p in pairs:
        first, second = p.ids.index(SEP), len(p.ids) - 1
        a, b = p.ids[1:first], p.ids[first + 1:second]
        assert p.ids[0] == CLS and p.ids[second] == SEP
        assert p.token_type_ids == [0] * (first + 1) + [1] * (second - first)
        da, sa, db, sb = a[0] // 100, a[0] % 100, b[0] // 100, b[0] % 100
        assert (da == db and sb == sa + 1) if p.is_next else da != db
        assert p.label == (0 if p.is_next else 1)


def test_sentence_pairs_are_cut_longest_first_to_fit():
    docs = [[[5] * 30, [6] * 4], [[7] * 3]]
    (pair,) = sentence_pairs(docs, cls_id=CLS, sep_id=SEP, max_len=16, rng=random.Random(3))
    assert len(pair.ids) == 16
    first = pair.ids.index(SEP)
    a, b = pair.ids[1:first], pair.ids[first + 1:-1]
    assert b in ([6] * 4, [7] * 3)  # the shorter sentence is untouched; the long one is cut from its end
    assert a == [5] * (13 - len(b))
    with pytest.raises(ValueError, match="at least two documents"):
        sentence_pairs([[[5], [6]]], cls_id=CLS, sep_id=SEP, max_len=16, rng=random.Random(0))


def test_bundled_corpora_as_documents_of_sentences():
    from lmforge.data.corpora import documents
    kjv = documents("kjv", "val")
    assert len(kjv) == 4 + 12 + 16  # chapters of Ruth, Ecclesiastes, Mark
    assert kjv[0][0].startswith("Now it came to pass in the days when the judges ruled")  # Ruth 1:1, number dropped
    zh = documents("zh-prose", "val")
    assert all(s and "\n" not in s for d in zh for s in d)
    assert sum(len(d) > 1 for d in zh) > 100  # enough documents with adjacent sentences for IsNext pairs
    with pytest.raises(ValueError, match="no document structure"):
        documents("gettext-en-de", "val")
