"""Byte-level BPE: textbook merges, training parity with HF BpeTrainer, encode parity, files.

HF `tokenizers` is the reference: the tests that compare with it skip without it, the others run.
"""
import json

import pytest
from tok_corpora import CORPORA, corpus_lines, sample

from lmforge.tokenizers import BPETokenizer, load_tokenizer, save_tokenizer, to_hf_json
from lmforge.tokenizers.bpe import BYTE_TO_CHAR, GPT2_PATTERN, bytes_to_unicode

EOT = "<|endoftext|>"


def hf_train(lines, vocab_size):
    hf = pytest.importorskip("tokenizers")
    tok = hf.Tokenizer(hf.models.BPE())
    tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                     initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer)
    return tok


def hf_merges(tok):
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in json.loads(tok.to_str())["model"]["merges"]]


def training_lines(n=300):
    return [l for c in CORPORA for l in sample(c, n)]


@pytest.fixture(scope="module")
def ours():
    return BPETokenizer.train(training_lines(), 1500, special_tokens=[EOT])


@pytest.fixture(scope="module")
def trained(ours):
    """(ours, HF's) trained on the same lines; skips where HF `tokenizers` is not installed."""
    return ours, hf_train(training_lines(), 1500)


def test_byte_table_is_gpt2s():
    t = bytes_to_unicode()
    assert len(set(t.values())) == 256
    assert (t[ord("A")], t[ord(" ")], t[ord("\n")], t[0], t[255]) == ("A", "Ġ", "Ċ", "Ā", "ÿ")


def test_textbook_aaabdaaabac():
    # pair counts aa:4, ab:2 ... -> merge aa; then (aa,a) and (a,b) tie at 2 -> smaller ids (a,b); then (aa,ab)
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=259)
    assert tok.merges == [("a", "a"), ("a", "b"), ("aa", "ab")]
    assert [tok.id_to_token(i) for i in tok.encode("aaabdaaabac")] == ["aaab", "d", "aaab", "a", "c"]
    assert tok.encode("aaabdaaabac") == [258, tok.vocab["d"], 258, tok.vocab["a"], tok.vocab["c"]]


def test_pretokenizer_matches_hf():
    pre_tokenizers = pytest.importorskip("tokenizers").pre_tokenizers
    text = "Hello world's  end!\n\n\tI'll 123 ünïcödé 汉字 🙂\u00a0x\u2028y  "
    ours = [m.group() for m in __import__("regex").finditer(GPT2_PATTERN, text)]
    ref = [w for w, _ in pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True).pre_tokenize_str(text)]
    from lmforge.tokenizers.bpe import to_byte_level
    assert [to_byte_level(w) for w in ours] == ref


def test_training_gives_hf_merges(trained):
    ours, ref = trained
    assert ours.merges == hf_merges(ref)
    assert ours.vocab == ref.get_vocab()


@pytest.mark.parametrize("corpus", CORPORA)
def test_encode_matches_hf_on_sample(trained, corpus):
    ours, ref = trained
    lines = sample(corpus, 300)
    assert [e.ids for e in ref.encode_batch(lines)] == ours.encode_batch(lines)
    for line in lines[:60]:
        enc = ref.encode(line)
        full = ours.encode_full(line)
        assert full.tokens == enc.tokens and full.offsets == enc.offsets, line


@pytest.mark.slow
@pytest.mark.parametrize("corpus", CORPORA)
def test_encode_matches_hf_on_every_line(trained, corpus):
    ours, ref = trained
    lines = list(corpus_lines(corpus))
    assert [e.ids for e in ref.encode_batch(lines)] == ours.encode_batch(lines)
    assert all(ours.decode(ours.encode(l)) == l for l in lines)


@pytest.mark.slow
@pytest.mark.parametrize("corpus,vocab_size", [("kjv", 32000), ("zh-prose", 8000)])
def test_training_gives_hf_merges_on_whole_corpus(corpus, vocab_size):
    lines = list(corpus_lines(corpus))
    ours, ref = BPETokenizer.train(lines, vocab_size, special_tokens=[EOT]), hf_train(lines, vocab_size)
    assert ours.merges == hf_merges(ref) and ours.vocab == ref.get_vocab()


def test_file_round_trip_both_ways(trained, tmp_path):
    hf = pytest.importorskip("tokenizers")
    ours, ref = trained
    text = "In the beginning God created the heaven 和地。<|endoftext|> ok"
    save_tokenizer(ours, tmp_path / "ours")
    loaded_by_hf = hf.Tokenizer.from_file(str(tmp_path / "ours" / "tokenizer.json"))
    assert loaded_by_hf.encode(text).ids == ours.encode(text, split_special=True)
    assert ours.encode(text, split_special=True).count(ours.token_to_id(EOT)) == 1
    assert loaded_by_hf.decode(ours.encode(text)) == text
    ref.save(str(tmp_path / "hf.json"))
    back = load_tokenizer(tmp_path / "hf.json")
    assert isinstance(back, BPETokenizer) and back.merges == ours.merges
    assert back.encode(text, split_special=True) == ref.encode(text).ids
    assert back.special_tokens == {EOT: 0}


def test_old_style_merges_strings_load(ours, tmp_path):
    data = to_hf_json(ours)
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]  # GPT-2 era "a b" strings
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    assert load_tokenizer(tmp_path).encode("God said, Let there be light") == ours.encode("God said, Let there be light")


def test_decode_partial_character_gives_replacement(trained):
    ours, ref = trained
    ids = ours.encode("🙂")
    assert len(ids) > 1  # a 4-byte emoji is more than one token at this vocab size
    assert ours.decode(ids[:1]) == ref.decode(ids[:1]) == "\ufffd"


def test_bad_input():
    with pytest.raises(ValueError, match="smaller than the base alphabet"):
        BPETokenizer.train("abc", vocab_size=100)
    with pytest.raises(ValueError, match="empty"):
        BPETokenizer.train(["", ""], vocab_size=300)
    vocab = {c: i for i, c in enumerate(BYTE_TO_CHAR.values())}
    with pytest.raises(ValueError, match="not in the vocabulary"):
        BPETokenizer(vocab, [("a", "b")])
    with pytest.raises(ValueError, match="lacks"):
        BPETokenizer({"a": 0}, [])
