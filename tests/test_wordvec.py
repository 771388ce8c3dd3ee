"""word2vec (skip-gram, negative sampling): the formulas on worked numbers, the hand-written gradients against
autograd, windows that respect sentences, and training that puts words with the same contexts together; one-hot
vectors (no similarity at all), the sense-separation score on worked numbers, and PCA against scikit-learn."""
import math
import random

import pytest
import torch

from lmforge.wordvec import (WordVectors, build_vocab, cosine_matrix, keep_probability, noise_distribution, one_hot,
                             pca, sense_separation, sgns_gradients, sgns_loss, skipgram_pairs, synonym_hit_rate,
                             tokenize, train_word2vec)


def test_tokenize_and_vocab():
    assert tokenize("In the beginning God created\n\nAnd God said, Let") == [
        ["in", "the", "beginning", "god", "created"], ["and", "god", "said", "let"]]
    words, counts = build_vocab([["b", "a", "b"], ["c", "a", "b"]], min_count=2)
    assert words == ["b", "a"] and counts.tolist() == [3.0, 2.0]


def test_subsampling_and_noise_by_hand():
    # sample 1e-3, T = 10,000 -> threshold 10: c = 1000 keeps (sqrt(100) + 1) * 10 / 1000 = 0.11
    keep = keep_probability(torch.tensor([1000.0, 9000.0]), 1e-3)
    assert keep[0].item() == pytest.approx(0.11)
    assert keep[1].item() == pytest.approx((math.sqrt(900) + 1) * 10 / 9000)
    assert keep_probability(torch.tensor([5.0, 5.0]), 0).tolist() == [1.0, 1.0]
    # counts 1 and 16: 1^0.75 = 1, 16^0.75 = 8 -> 1/9, 8/9
    assert noise_distribution(torch.tensor([1.0, 16.0])).tolist() == pytest.approx([1 / 9, 8 / 9])


def test_pairs_stay_in_window_and_sentence():
    ids, sent = torch.tensor([7, 8, 9]), torch.zeros(3, dtype=torch.long)
    c, o = skipgram_pairs(ids, sent, window=1)
    assert sorted(zip(c.tolist(), o.tolist())) == [(7, 8), (8, 7), (8, 9), (9, 8)]
    ids, sent = torch.arange(10), torch.tensor([0] * 5 + [1] * 5)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(50):
        c, o = skipgram_pairs(ids, sent, window=3, generator=g)
        seen |= set(zip(c.tolist(), o.tolist()))
    assert all(1 <= abs(a - b) <= 3 and sent[a] == sent[b] for a, b in seen)
    # the dynamic window reaches the full width sometimes, and every in-sentence pair within it is drawn
    assert seen == {(a, b) for a in range(10) for b in range(10) if 1 <= abs(a - b) <= 3 and sent[a] == sent[b]}


def test_loss_and_gradients():
    B, k, d = 3, 4, 5
    zero = sgns_loss(torch.zeros(B, d), torch.zeros(B, d), torch.zeros(B, k, d))
    assert zero.item() == pytest.approx(B * (1 + k) * math.log(2))
    torch.manual_seed(0)
    v, u, n = (torch.randn(B, d, requires_grad=True), torch.randn(B, d, requires_grad=True),
               torch.randn(B, k, d, requires_grad=True))
    sgns_loss(v, u, n).backward()
    gv, gu, gn = sgns_gradients(v.detach(), u.detach(), n.detach())
    torch.testing.assert_close(gv, v.grad)
    torch.testing.assert_close(gu, u.grad)
    torch.testing.assert_close(gn, n.grad)


def test_words_sharing_contexts_end_up_neighbours():
    rng = random.Random(0)
    groups = {("cat", "dog"): ["purrs", "barks", "fur", "pet", "tail"],
              ("car", "truck"): ["road", "engine", "wheels", "fuel", "drive"],
              ("apple", "pear"): ["ripe", "juice", "orchard", "sweet", "tree"]}
    sents = [[rng.choice(ws)] + rng.sample(ctx, 3) for _ in range(600) for ws, ctx in groups.items()]
    wv = train_word2vec(sents, dim=16, window=3, min_count=1, sample=0, epochs=5, batch_size=256, seed=0)
    for a, b in groups:
        assert wv.most_similar(a, 1)[0][0] == b and wv.most_similar(b, 1)[0][0] == a
    syn = {"cat": {"dog"}, "dog": {"cat"}, "car": {"truck", "automobile"}, "truck": {"car"}}
    assert synonym_hit_rate(wv, syn, k=1) == {"rate": 1.0, "hits": 4, "n": 4}


def test_synonym_hit_rate_by_hand():
    wv = WordVectors(["big", "large", "small", "tiny"],
                     torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.6]]))
    # big's nearest is large (hit); small's nearest is tiny (hit); tiny's are large 0.86, big 0.8, small 0.6:
    # a miss in the top 1 and 2, a hit in the top 3;
    # "large" has synonym "huge", not in the vocabulary: not asked.
    syn = {"big": {"large"}, "small": {"tiny"}, "tiny": {"small"}, "large": {"huge"}}
    assert synonym_hit_rate(wv, syn, k=1) == {"rate": 2 / 3, "hits": 2, "n": 3}
    assert synonym_hit_rate(wv, syn, k=2)["hits"] == 2 and synonym_hit_rate(wv, syn, k=3)["hits"] == 3
    with pytest.raises(ValueError, match="nothing to score"):
        synonym_hit_rate(wv, {"huge": {"enormous"}})


def test_bad_input():
    with pytest.raises(ValueError, match="dim must be at least 1"):
        train_word2vec([["a", "b"]], dim=0)
    with pytest.raises(ValueError, match="lower min_count"):
        train_word2vec([["a", "b"]], min_count=5)
    wv = WordVectors(["a", "b"], torch.eye(2))
    with pytest.raises(ValueError, match="not in the vocabulary"):
        wv.most_similar("zebra")


def test_one_hot_vectors_have_no_similarity():
    words = ["king", "queen", "sword", "bread", "light"]
    wv = one_hot(words)
    assert wv.vectors.tolist() == torch.eye(5).tolist()
    sims = cosine_matrix(wv.vectors)
    # every pair of distinct words: cosine 0; "queen" is no nearer to "king" than "bread" is
    assert torch.equal(sims, torch.eye(5))
    assert {s for _, s in wv.most_similar("king", 4)} == {0.0}
    # so the synonym score can only be luck: with k = 4 of 4 other words every synonym is "found", with k = 1 it
    # depends on the tie order alone, never on meaning
    assert synonym_hit_rate(wv, {"king": {"queen"}}, k=4)["rate"] == 1.0
    with pytest.raises(ValueError, match="distinct words"):
        one_hot(["a", "a"])


def test_sense_separation_by_hand():
    senses = ["river", "river", "money", "money"]
    got = sense_separation(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]), senses)
    # within: cos([1,0],[1,.1]) = 1/sqrt(1.01) = 0.99504 for both senses; across: [1,0].[0,1] = 0,
    # [1,0].[.1,1] = .1/sqrt(1.01), [1,.1].[0,1] = the same, [1,.1].[.1,1] = .2/1.01 -> mean 0.09926
    assert got["within"] == pytest.approx(1 / math.sqrt(1.01), abs=1e-6)
    assert got["across"] == pytest.approx((0 + 2 * 0.1 / math.sqrt(1.01) + 0.2 / 1.01) / 4, abs=1e-6)
    assert got["nearest"] == 1.0 and got["n"] == {"money": 2, "river": 2}
    # one vector for every use (word2vec): no separation, and the nearest sense is a tie -> 1 / senses
    same = torch.tensor([[0.3, -1.2, 2.0]]).expand(6, -1)
    three = sense_separation(same, ["a", "a", "b", "b", "c", "c"])
    assert three["within"] == pytest.approx(1.0) and three["across"] == pytest.approx(1.0)
    assert three["nearest"] == pytest.approx(1 / 3)
    # a use nearer to the other sense counts 0: use 1, [0, 1] labelled river, has mean cosine 0 to the other
    # river uses and (1 + 0.995) / 2 to the money uses; the other four are nearer their own sense -> 4/5
    wrong = sense_separation(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]]),
                             ["river", "river", "river", "money", "money"])
    assert wrong["nearest"] == pytest.approx(4 / 5)


def test_sense_separation_bad_input():
    with pytest.raises(ValueError, match="at least two senses with at least two uses"):
        sense_separation(torch.eye(3), ["a", "a", "b"])
    with pytest.raises(ValueError, match="one vector per use"):
        sense_separation(torch.eye(3), ["a", "a", "b", "b"])


def test_pca_textbook_line():
    points, components, ratio = pca(torch.tensor([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]]), k=1)
    assert components[0].tolist() == pytest.approx([1 / math.sqrt(5), 2 / math.sqrt(5)])
    assert points.flatten().tolist() == pytest.approx([-math.sqrt(5), 0.0, math.sqrt(5)], abs=1e-6)
    assert ratio.tolist() == pytest.approx([1.0])


@pytest.mark.parametrize("shape, k", [((30, 7), 2), ((9, 40), 3), ((200, 384), 2)])
def test_pca_matches_scikit_learn_up_to_sign(shape, k):
    decomposition = pytest.importorskip("sklearn.decomposition")
    g = torch.Generator().manual_seed(shape[0])
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * torch.linspace(3, 0.1, shape[1], dtype=torch.float64)
    ref = decomposition.PCA(n_components=k).fit(x.numpy())
    points, components, ratio = pca(x, k)
    flip = torch.tensor(ref.components_).mul(components.double()).sum(1).sign()      # (k,) +1 or -1
    assert flip.abs().min() == 1
    torch.testing.assert_close(components.double() * flip[:, None], torch.tensor(ref.components_), atol=1e-5, rtol=0)
    torch.testing.assert_close(points.double() * flip, torch.tensor(ref.transform(x.numpy())), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ratio.double(), torch.tensor(ref.explained_variance_ratio_), atol=1e-6, rtol=0)
    # our sign: each component's largest-magnitude entry is positive
    assert (components.gather(1, components.abs().argmax(1, keepdim=True)) > 0).all()


def test_pca_bad_input():
    with pytest.raises(ValueError, match="at least 2 rows"):
        pca(torch.ones(1, 4))
    with pytest.raises(ValueError, match="k must be between 1 and min"):
        pca(torch.randn(5, 3), k=4)
