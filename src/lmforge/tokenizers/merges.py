"""The BPE merge learner, shared by byte-level BPE (bpe.py) and WordPiece (wordpiece.py).

Sennrich et al. 2016: start from single characters and repeatedly add the most frequent adjacent
pair, counted over all words weighted by word frequency, as a new token. BPE keeps the merges (it
encodes by replaying them); WordPiece keeps only the vocabulary (it encodes by greedy longest
match), which is how HF's `WordPieceTrainer` builds it, on top of its `BpeTrainer`.
"""
from __future__ import annotations

import heapq
import itertools


def learn_merges(words: dict[str, int], vocab_size: int, specials: list[str], alphabet: list[str],
                 min_frequency: int = 0, prefix: str | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn merges over `words` ({word: count}) until the vocabulary has `vocab_size` tokens or
    no pair occurs `min_frequency` times. Returns (vocab, merges in rank order).

    Ids are given in order of creation: `specials`, then `alphabet` (in the order given), then one
    per merge. Among pairs with the same count the smallest (left id, right id) wins. Example, the
    textbook "aaabdaaabac" (Wikipedia "Byte pair encoding"): aa occurs 4 times (overlapping) and is
    merged first; then (aa, a) and (a, b) both occur twice and (a, b) has the smaller ids:

        >>> vocab, merges = learn_merges({"aaabdaaabac": 1}, 7, [], ["a", "b", "c", "d"])
        >>> merges
        [('a', 'a'), ('a', 'b'), ('aa', 'ab')]
        >>> vocab
        {'a': 0, 'b': 1, 'c': 2, 'd': 3, 'aa': 4, 'ab': 5, 'aaab': 6}

    `prefix` ("##" for WordPiece) marks characters that continue a word: "hug" starts as
    h ##u ##g, and merging (h, ##u) gives "hu" (the prefix of the right part is dropped). The
    "##c" tokens get their ids as the words are visited, after the alphabet:

        >>> vocab, merges = learn_merges({"hug": 3, "hugs": 1}, 9, [], ["g", "h", "s", "u"], prefix="##")
        >>> merges, [t for t in vocab if vocab[t] >= 4]
        ([('h', '##u'), ('hu', '##g')], ['##u', '##g', '##s', 'hu', 'hug'])

    A port of HF `BpeTrainer::do_train` (tokenizers/src/models/bpe/trainer.rs), kept step for step
    so the merges are the same, quirks included:
      * a max-heap of (count, smallest pair) entries, each carrying the set of words where the
        pair was seen; an entry whose count is stale is pushed back with the current count;
      * a merged token whose string already exists reuses that id (two merges can make "Ġthe");
      * a pair merged twice keeps the rank of its last merge.
    Characters outside `alphabet` are left out of the words, as HF does.
    """
    id2w: list[str] = []
    vocab: dict[str, int] = {}
    for t in [*specials, *alphabet]:
        if t not in vocab:
            vocab[t] = len(id2w); id2w.append(t)
    seqs = []
    for w in words:
        seq = []
        for j, c in enumerate(w):
            if c not in vocab:
                continue
            if prefix and j > 0:
                c = prefix + c
                if c not in vocab:
                    vocab[c] = len(id2w); id2w.append(c)
            seq.append(vocab[c])
        seqs.append(seq)
    counts = list(words.values())
    pair_counts: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}
    for i, w in enumerate(seqs):
        c = counts[i]
        for p in zip(w, w[1:]):
            pair_counts[p] = pair_counts.get(p, 0) + c
            where.setdefault(p, set()).add(i)
    tie = itertools.count()  # heap entries with equal (count, pair) pop in insertion order
    heap = [(-pair_counts[p], p, next(tie), pos) for p, pos in where.items() if pair_counts[p] > 0]
    heapq.heapify(heap)
    merges: list[tuple[tuple[int, int], int]] = []
    while len(vocab) < vocab_size and heap:
        neg, pair, _, pos = heapq.heappop(heap)
        count = pair_counts[pair]
        if -neg != count:
            heapq.heappush(heap, (-count, pair, next(tie), pos))
            continue
        if count < 1 or min_frequency > count:
            break
        a, b = pair
        right = id2w[b]
        new = id2w[a] + (right[len(prefix):] if prefix and right.startswith(prefix) else right)
        new_id = vocab.get(new)
        if new_id is None:
            new_id = vocab[new] = len(id2w); id2w.append(new)
        merges.append((pair, new_id))
        where = {}
        for i in pos:
            c = counts[i]
            for p, change in _merge_word(seqs[i], a, b, new_id):
                pair_counts[p] = pair_counts.get(p, 0) + change * c
                if change > 0:
                    where.setdefault(p, set()).add(i)
        for p, ps in where.items():
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p, next(tie), ps))
    last_rank = {pair: r for r, (pair, _) in enumerate(merges)}
    ordered = sorted(last_rank.items(), key=lambda kv: kv[1])
    return vocab, [(id2w[a], id2w[b]) for (a, b), _ in ordered]


def _merge_word(w: list[int], a: int, b: int, new: int) -> list[tuple[tuple[int, int], int]]:
    """Merge every (a, b) in w in place, left to right; return the pair-count changes.

    Example: w = [h, e, l, l, o], merge (l, l) -> [h, e, ll, o] and changes
    [((e, l), -1), ((e, ll), +1), ((l, o), -1), ((ll, o), +1)] (HF word.rs test_merge).
    The merged pair's own count is left alone: it is never looked at again.
    """
    changes = []
    i = 0
    while i < len(w):
        if w[i] == a and i + 1 < len(w) and w[i + 1] == b:
            if i > 0:
                changes.append(((w[i - 1], a), -1))
                changes.append(((w[i - 1], new), 1))
            w[i:i + 2] = [new]
            if i < len(w) - 1:
                changes.append(((b, w[i + 1]), -1))
                changes.append(((new, w[i + 1]), 1))
        i += 1
    return changes
