"""The BPE merge learner shared by BPE and WordPiece training (HF BpeTrainer's algorithm)."""
from lmforge.tokenizers import BPETokenizer, WordPieceTokenizer
from lmforge.tokenizers.merges import _merge_word, learn_merges


def test_merge_word_changes():
    w = [0, 1, 2, 2, 3]  # h e l l o, merge (l, l) -> 4 (HF word.rs test_merge)
    assert _merge_word(w, 2, 2, 4) == [((1, 2), -1), ((1, 4), 1), ((2, 3), -1), ((4, 3), 1)]
    assert w == [0, 1, 4, 3]
    w = [5, 5, 5, 5]  # non-overlapping, left to right
    _merge_word(w, 5, 5, 6)
    assert w == [6, 6]


def test_min_frequency_and_characters_outside_the_alphabet():
    words = {"abab": 2, "xab": 1}  # (a, b): 2*2 + 1 = 5, (b, a): 2; x is not in the alphabet
    vocab, merges = learn_merges(words, 10, ["<s>"], ["a", "b"], min_frequency=3)
    assert merges == [("a", "b")]  # then (ab, ab) occurs twice, under min_frequency
    assert vocab == {"<s>": 0, "a": 1, "b": 2, "ab": 3}
    vocab, merges = learn_merges(words, 10, ["<s>"], ["a", "b"])
    assert merges == [("a", "b"), ("ab", "ab")] and "x" not in vocab


def test_bpe_and_wordpiece_training_are_this_learner():
    # BPE: byte-level words, merges kept. WordPiece: "##" on every character after the first, the
    # vocabulary kept: "hug" x3, "hugs" x1 learns (h, ##u), then (hu, ##g); the tie between (h, ##u)
    # and (##u, ##g) goes to the smaller ids
    bpe = BPETokenizer.train(["aaabdaaabac"], vocab_size=256 + 3)
    assert bpe.merges == learn_merges({"aaabdaaabac": 1}, 4 + 3, [], list("abcd"))[1]
    wp = WordPieceTokenizer.train(["hug hug hug hugs"], vocab_size=10, special_tokens=[])
    assert wp.vocab == learn_merges({"hug": 3, "hugs": 1}, 10, ["[UNK]"], list("ghsu"), prefix="##")[0]
    assert [t for t, i in sorted(wp.vocab.items(), key=lambda kv: kv[1]) if i >= 5] == \
        ["##u", "##g", "##s", "hu", "hug"]  # [UNK] 0, g h s u 1-4, ##c as the words are visited, merges
