"""Static word vectors: skip-gram with negative sampling (word2vec; Mikolov et al. 2013, "Distributed
Representations of Words and Phrases and their Compositionality"), in plain PyTorch.

Each word w gets an input vector v_w (the word vector) and an output vector u_w. For every (center, context)
pair within a window, and k "negative" words drawn from the unigram distribution raised to 3/4, the loss is

    -log sigmoid(u_context . v_center) - sum_k log sigmoid(-u_negative_k . v_center)        (paper, eq. 4)

Words that occur in the same contexts end up with nearby vectors, one vector per word whatever its sense
("bank" of a river and of money share one). The defaults and the details that the paper leaves out follow
the reference implementation word2vec.c (and gensim, which copies it): frequent words are subsampled with
keep probability (sqrt(f / (s T)) + 1) (s T) / f, the window is shrunk to a random b in 1..window for each
center word, the learning rate falls linearly from 0.025 to 0.025e-4, v starts uniform in +-0.5/d and u at 0.

    >>> wv = train_word2vec([["the", "cat", "sat"]] * 50, dim=8, min_count=1, epochs=1)
    >>> wv.vectors.shape
    torch.Size([3, 8])

Around it, the story of docs/word-vectors.md: `one_hot` (what came before: identity, no similarity),
`sense_separation` (does a word get different vectors in different senses? word2vec's one vector cannot;
BERT's contextual vectors, lmforge.embedding.contextual_word_vectors, do) and `pca` (2-D pictures).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_TABLE_SIZE = 10_000_000  # word2vec.c uses 1e8 slots; 1e7 resolves a probability of 1e-7, enough for small corpora
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[list[str]]:
    """Lower-cased words, one list per line (a line is a sentence: windows never cross it).

    Example: "In the beginning God created\\nAnd God said, Let" -> [["in", "the", "beginning", "god", "created"],
    ["and", "god", "said", "let"]]
    """
    out = []
    for line in text.lower().splitlines():
        words = _WORD.findall(line)
        if words:
            out.append(words)
    return out


@dataclass
class WordVectors:
    """Words and their vectors (row i is words[i]); nearest neighbours by cosine similarity."""
    words: list[str]
    vectors: torch.Tensor  # (V, d)

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.words)}

    def most_similar(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The k words with the highest cosine similarity to `word` (itself left out)."""
        if word not in self.index:
            raise ValueError(f"{word!r} is not in the vocabulary ({len(self.words)} words seen at least min_count times)")
        unit = F.normalize(self.vectors.float(), dim=1)
        sims = unit @ unit[self.index[word]]
        sims[self.index[word]] = -2.0
        top = sims.topk(min(k, len(self.words) - 1))
        return [(self.words[i], s) for s, i in zip(top.values.tolist(), top.indices.tolist())]


def build_vocab(sentences: list[list[str]], min_count: int) -> tuple[list[str], torch.Tensor]:
    """Words seen at least min_count times, most frequent first (ties alphabetical) -> (words, counts)."""
    counts = Counter(w for s in sentences for w in s)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return words, torch.tensor([counts[w] for w in words], dtype=torch.float64)


def keep_probability(counts: torch.Tensor, sample: float) -> torch.Tensor:
    """word2vec.c's subsampling: keep a word of count c out of T with probability (sqrt(c/(sT)) + 1) sT/c, capped
    at 1. (The paper's eq. 5 discards with 1 - sqrt(t/f); this is the variant the released code uses.)

    Example: sample 1e-3, T = 10,000, c = 1,000 -> (sqrt(100) + 1) * 10 / 1000 = 0.11
    """
    if sample <= 0:
        return torch.ones_like(counts)
    threshold = sample * counts.sum()
    return ((counts / threshold).sqrt() + 1) * threshold / counts


def noise_distribution(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """P(w) proportional to count^(3/4) (paper, section 2.2: better than unigram or uniform)."""
    p = counts.double() ** power
    return p / p.sum()


def skipgram_pairs(ids: torch.Tensor, sentence: torch.Tensor, window: int, generator=None):
    """(center, context) index pairs: for each position a window b drawn from 1..window, every other position
    within b in the same sentence. ids, sentence: (N,) word ids and sentence numbers -> two (P,) tensors.

    Example: ids [7, 8, 9], one sentence, b = 1 everywhere -> centers [7, 8, 8, 9], contexts [8, 7, 9, 8] (some order)
    """
    n = ids.numel()
    b = torch.randint(1, window + 1, (n,), generator=generator)
    centers, contexts = [], []
    for d in range(1, window + 1):
        if d >= n:
            break
        for c, o in ((slice(0, n - d), slice(d, n)), (slice(d, n), slice(0, n - d))):  # right, then left neighbour
            ok = (b[c] >= d) & (sentence[c] == sentence[o])
            centers.append(ids[c][ok])
            contexts.append(ids[o][ok])
    if not centers:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    return torch.cat(centers), torch.cat(contexts)


def sgns_loss(v_center: torch.Tensor, u_context: torch.Tensor, u_negative: torch.Tensor) -> torch.Tensor:
    """Skip-gram negative-sampling loss summed over a batch (paper, eq. 4).

    v_center, u_context: (B, d); u_negative: (B, k, d).
    Example: all vectors zero -> each pair costs -log(1/2) * (1 + k).
    """
    pos = F.logsigmoid((v_center * u_context).sum(-1))                              # (B,)
    neg = F.logsigmoid(-torch.einsum("bkd,bd->bk", u_negative, v_center)).sum(-1)   # (B,)
    return -(pos + neg).sum()


def sgns_gradients(v_center: torch.Tensor, u_context: torch.Tensor, u_negative: torch.Tensor):
    """The gradients of sgns_loss with respect to its three inputs, written out (as word2vec.c does; the
    test checks them against autograd). With s = u.v, d/ds -log sigmoid(s) = sigmoid(s) - 1 and
    d/ds -log sigmoid(-s) = sigmoid(s), so each vector's gradient is that factor times the other vector.
    """
    g_pos = torch.sigmoid((v_center * u_context).sum(-1)) - 1                          # (B,)
    g_neg = torch.sigmoid(torch.bmm(u_negative, v_center.unsqueeze(2)).squeeze(2))     # (B, k)
    grad_v = torch.bmm(g_neg.unsqueeze(1), u_negative).squeeze(1) + g_pos[:, None] * u_context   # (B, d)
    return grad_v, g_pos[:, None] * v_center, g_neg.unsqueeze(2) * v_center.unsqueeze(1)


def train_word2vec(sentences: list[list[str]], dim: int = 100, window: int = 5, negative: int = 5,
                   min_count: int = 5, sample: float = 1e-3, epochs: int = 5, lr: float = 0.025,
                   batch_size: int = 4096, seed: int = 0) -> WordVectors:
    """Skip-gram with negative sampling over tokenized sentences -> WordVectors of the input vectors v.

    Minibatches of pairs (shuffled within an epoch) replace word2vec.c's one-pair-at-a-time lock-free updates;
    the gradient is of the summed loss, not the mean, so a step moves each vector as far as word2vec.c's
    per-pair steps would, and only the rows a batch touched are updated (cost proportional to the batch).
    """
    for name, value in (("dim", dim), ("window", window), ("negative", negative), ("min_count", min_count),
                        ("epochs", epochs), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    words, counts = build_vocab(sentences, min_count)
    if len(words) < 2:
        raise ValueError(f"only {len(words)} distinct words occur at least min_count={min_count} times: "
                         "give more text or lower min_count")
    index = {w: i for i, w in enumerate(words)}
    flat = [(index[w], s) for s, sent in enumerate(sentences) for w in sent if w in index]
    ids = torch.tensor([i for i, _ in flat], dtype=torch.long)
    sent = torch.tensor([s for _, s in flat], dtype=torch.long)
    keep = keep_probability(counts, sample)
    noise = noise_distribution(counts)

    g = torch.Generator().manual_seed(seed)
    V = len(words)
    v = (torch.rand(V, dim, generator=g) - 0.5) / dim   # input (word) vectors; word2vec.c: uniform in +-0.5/d
    u = torch.zeros(V, dim)                              # output (context) vectors; word2vec.c: zero
    # Negatives are drawn by indexing a table in which word w fills a share noise[w] of the slots
    # (word2vec.c's unigram table; one randint per draw instead of a multinomial over V).
    table = torch.repeat_interleave(torch.arange(V), (noise * _TABLE_SIZE).round().long())

    # Expected number of pairs, for the linear learning-rate schedule: kept words x mean window (window+1)
    # on each side (an estimate; word2vec.c counts words, we count steps).
    expected = float((keep.clamp(max=1) * counts).sum()) * (window + 1) * epochs
    total_steps, step = max(1, math.ceil(expected / batch_size)), 0
    for _ in range(epochs):
        kept = torch.rand(ids.numel(), generator=g) < keep[ids]
        centers, contexts = skipgram_pairs(ids[kept], sent[kept], window, g)
        order = torch.randperm(centers.numel(), generator=g)
        centers, contexts = centers[order], contexts[order]
        for start in range(0, centers.numel(), batch_size):
            c, o = centers[start:start + batch_size], contexts[start:start + batch_size]
            negs = table[torch.randint(table.numel(), (c.numel() * negative,), generator=g)]   # (B*k,)
            u_neg = u.index_select(0, negs).view(c.numel(), negative, dim)                      # (B, k, d)
            grad_v, grad_u, grad_n = sgns_gradients(v.index_select(0, c), u.index_select(0, o), u_neg)
            step_lr = lr * max(1e-4, 1 - step / total_steps)
            v.index_add_(0, c, grad_v, alpha=-step_lr)   # plain SGD on the rows the batch touched
            u.index_add_(0, o, grad_u, alpha=-step_lr)
            u.index_add_(0, negs, grad_n.flatten(0, 1), alpha=-step_lr)
            step += 1
    return WordVectors(words, v)


def synonym_hit_rate(wv: WordVectors, synonyms: dict[str, set[str]], k: int = 10) -> dict:
    """How often a word has one of its synonyms among its k nearest neighbours, over the vocabulary words that
    have at least one synonym in the vocabulary -> {rate, hits, n}.

    Example: vectors where "big" and "large" are each other's nearest neighbour -> both count as hits.
    """
    unit = F.normalize(wv.vectors.float(), dim=1)
    asked = [(wv.index[w], [wv.index[s] for s in synonyms[w] if s in wv.index])
             for w in wv.words if w in synonyms]
    asked = [(i, syn) for i, syn in asked if syn]
    if not asked:
        raise ValueError("no vocabulary word has a synonym in the vocabulary: nothing to score")
    hits = 0
    for start in range(0, len(asked), 1024):
        chunk = asked[start:start + 1024]
        rows = torch.tensor([i for i, _ in chunk])
        sims = unit[rows] @ unit.T                                  # (n, V)
        sims[torch.arange(len(chunk)), rows] = -2.0                 # a word is not its own neighbour
        top = sims.topk(min(k, unit.shape[0] - 1), dim=1).indices   # (n, k)
        for (_, syn), row in zip(chunk, top.tolist()):
            hits += bool(set(syn) & set(row))
    return {"rate": hits / len(asked), "hits": hits, "n": len(asked)}


# ------------------------------------------------------------------ before word2vec, and after it

def one_hot(words: list[str]) -> WordVectors:
    """The oldest word vectors: word i is the i-th unit vector of length V (a 1 at its index, 0 elsewhere).

    Every two distinct words are orthogonal, so the cosine similarity of any pair is 0: "king" is as far
    from "queen" as from "sword", and nearest neighbours are an arbitrary tie. Nothing about meaning is in
    the vector, only identity; word2vec's dense vectors are learnt so that similarity means something.

    Example: one_hot(["king", "queen", "sword"]).vectors -> [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    """
    if len(set(words)) != len(words) or not words:
        raise ValueError("one_hot needs a non-empty list of distinct words")
    return WordVectors(list(words), torch.eye(len(words)))


def cosine_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """(N, d) -> (N, N) cosine similarities of every pair of rows."""
    unit = F.normalize(vectors.float(), dim=1)
    return unit @ unit.T


def sense_separation(vectors: torch.Tensor, senses: list[str]) -> dict:
    """How well the vectors of one word's uses separate its senses.

    vectors: (N, d), one per use of the word; senses: the sense label of each use (at least two senses,
    each with at least two uses). Returns
      within:  mean cosine between two different uses of the same sense
      across:  mean cosine between a use of one sense and a use of another
      nearest: leave-one-out, how often a use is closer (mean cosine) to the other uses of its own sense
               than to the uses of any other sense; a tie among t senses that include its own counts 1/t,
               so vectors that ignore the context (word2vec, one vector per word) score 1/(number of senses)
      n:       uses per sense
    Example: senses ["river", "river", "money", "money"] with vectors [1, 0], [1, 0.1], [0, 1], [0.1, 1] ->
    within 0.995, across 0.10, nearest 1.0; the same with all four vectors equal -> within 1, across 1, nearest 0.5.
    """
    labels = sorted(set(senses))
    if vectors.dim() != 2 or vectors.shape[0] != len(senses):
        raise ValueError(f"give one vector per use: vectors {tuple(vectors.shape)} for {len(senses)} sense labels")
    n = {s: senses.count(s) for s in labels}
    if len(labels) < 2 or min(n.values()) < 2:
        raise ValueError(f"need at least two senses with at least two uses each; got {n}")
    sims = cosine_matrix(vectors)                                      # (N, N)
    label = torch.tensor([labels.index(s) for s in senses])            # (N,)
    same = label[:, None] == label[None, :]                            # (N, N)
    other = ~torch.eye(len(senses), dtype=torch.bool)                  # a use is not compared with itself
    within = sims[same & other].mean().item()
    across = sims[~same].mean().item()
    credit = 0.0
    for i in range(len(senses)):
        # mean cosine of use i to the other uses of each sense
        means = torch.stack([sims[i][(label == s) & other[i]].mean() for s in range(len(labels))])
        best = (means >= means.max() - 1e-6).nonzero().flatten().tolist()   # ties within float rounding
        credit += (label[i].item() in best) / len(best)
    return {"within": within, "across": across, "nearest": credit / len(senses), "n": n}


def pca(x: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Principal component analysis by the singular value decomposition of the centred data -> (points (N, k),
    components (k, d), explained variance ratio (k,)).

    With X - mean = U S V^T, the directions of largest variance are the rows of V^T and the data projected
    on them is U S (Pearson 1901; any textbook, e.g. Bishop, PRML sec. 12.1). The sign of each component
    is arbitrary; it is fixed so that its largest-magnitude entry is positive (as recent scikit-learn versions
    fix it), so pictures do not flip between runs. Ratio: each component's share of the total variance.

    Example: points on the line y = 2x, [[0, 0], [1, 2], [2, 4]] -> one component [0.447, 0.894] holding all
    the variance (ratio 1.0), coordinates [-2.236, 0, 2.236].
    """
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"pca needs a (N, d) matrix with at least 2 rows; got shape {tuple(x.shape)}")
    if not 1 <= k <= min(x.shape):
        raise ValueError(f"k must be between 1 and min(N, d) = {min(x.shape)}; got {k}")
    xc = x.double() - x.double().mean(0)                                 # (N, d)
    U, S, Vh = torch.linalg.svd(xc, full_matrices=False)               # (N, r), (r,), (r, d)
    sign = Vh[:k].gather(1, Vh[:k].abs().argmax(1, keepdim=True)).sign()   # (k, 1)
    sign[sign == 0] = 1
    components = Vh[:k] * sign                                         # (k, d)
    points = U[:, :k] * S[:k] * sign.T                                 # (N, k)
    total = (S ** 2).sum()
    ratio = (S[:k] ** 2) / total if total > 0 else torch.zeros(k, dtype=S.dtype)
    return points.float(), components.float(), ratio.float()
