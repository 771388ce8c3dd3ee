"""Property tests: byte-level BPE round-trips any string; no input crashes any tokenizer."""
import os

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tok_corpora import sample

from lmforge.tokenizers import BPETokenizer, CharTokenizer, UnigramTokenizer, WordPieceTokenizer

LINES = sample("kjv", 150) + sample("zh-prose", 100) + sample("gettext-en-de", 100)
BPE = BPETokenizer.train(LINES, 600, special_tokens=["<|endoftext|>"])
WP = WordPieceTokenizer.train(LINES, 3000)
UG = UnigramTokenizer.train(LINES, 3000)
CH = CharTokenizer.train(LINES, unk_token="<unk>")

# any code point except surrogates (not valid in UTF-8 text): emoji, CJK, combining marks, controls
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
tricky = st.lists(st.sampled_from(["🙂", "👩‍👩‍👧", "汉字", "e\u0301", "\u0000", "\x1b", "\t", "\n", " ", "  ",
                                   "İ", "ß", "\u200b", "\ufeff", "\U0010ffff", "<|endoftext|>", "[CLS]", "▁", "##"]),
                  max_size=12).map("".join)
SETTINGS = settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", 150)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.one_of(text, tricky))
def test_bpe_decode_encode_is_identity(s):
    assert BPE.decode(BPE.encode(s)) == s
    enc = BPE.encode_full(s)
    assert enc.ids == BPE.encode(s)
    assert all(0 <= a <= b <= len(s) for a, b in enc.offsets)


@SETTINGS
@given(st.one_of(text, tricky))
def test_bpe_special_tokens_split_only_when_asked(s):
    ids = BPE.encode(s + "<|endoftext|>" + s, split_special=True)
    assert ids.count(BPE.token_to_id("<|endoftext|>")) >= 1
    assert BPE.token_to_id("<|endoftext|>") not in BPE.encode(s + "<|endoftext|>")
    assert BPE.decode(ids) == s + "<|endoftext|>" + s


@SETTINGS
@given(st.one_of(text, tricky), st.one_of(text, tricky))
@pytest.mark.parametrize("tok", [WP, UG, CH], ids=["wordpiece", "unigram", "char"])
def test_no_input_crashes(tok, s, t):
    enc = tok.encode_full(s, t)
    assert len(enc.ids) == len(enc.tokens) == len(enc.offsets) == len(enc.type_ids)
    assert tok.encode(s) == tok.encode_full(s).ids  # the fast ids path agrees with the full one
    assert all(0 <= a <= b <= max(len(s), len(t)) for a, b in enc.offsets)
    assert isinstance(tok.decode(enc.ids), str)


@SETTINGS
@given(st.text(st.characters(blacklist_categories=("Cs",), whitelist_categories=("L", "N", "P", "Zs")), max_size=40))
def test_unigram_and_char_round_trip_normalized_text(s):
    # SentencePiece's meta symbol U+2581 is the tokenizer's own space mark, not text (sentencepiece reads it as a
    # space too); hypothesis draws it from the constants in the code under test although its category (So) is
    # not in the alphabet above, so it is left out here
    assume("\u2581" not in s)
    norm = " ".join(w for w in s.split(" ") if w)  # runs of spaces collapse; other whitespace is text (e.g. "\n")
    if all(c in CH.vocab for c in s):
        assert CH.decode(CH.encode(s)) == s
    if all(c in UG.scores for c in norm.replace(" ", "")):
        assert UG.decode(UG.encode(s), skip_special_tokens=True) == norm


class FullDecodeStream:
    """TextStream's algorithm written the slow way: decode every id again after each token."""

    def __init__(self, decode, stop):
        self.decode, self.stop, self.ids, self.text = decode, [x for x in stop if x], [], ""
        self.hold, self.stopped = max((len(x) for x in self.stop), default=1) - 1, False

    def emit(self, upto):
        new = upto[len(self.text):] if len(upto) > len(self.text) else ""
        self.text = upto if new else self.text
        return new

    def push(self, token):
        if self.stopped:
            return ""
        self.ids.append(token)
        full = self.decode(self.ids)
        if full.endswith("\ufffd"):
            return ""
        for x in self.stop:
            i = full.find(x, max(0, len(self.text) - len(x)))
            if i >= 0:
                self.stopped = True
                return self.emit(full[:i])
        return self.emit(full[:len(full) - self.hold] if self.hold else full)

    def flush(self):
        return "" if self.stopped else self.emit(self.decode(self.ids).rstrip("\ufffd"))


@SETTINGS
@given(st.one_of(text, tricky), st.sampled_from([(), ("the",), ("\n", "汉"), ("abc", "d")]))
@pytest.mark.parametrize("tok", [BPE, WP, UG, CH], ids=["bpe", "wordpiece", "unigram", "char"])
def test_streaming_decodes_only_the_tail_and_gives_the_same_pieces(tok, s, stop):
    """TextStream decodes a few tokens around the new one instead of everything: the same pieces as
    decoding everything each time; for byte-level BPE (whose decode is concatenation) also the full text."""
    from lmforge.tokenizers.stream import TextStream
    ids = tok.encode(s + " and the rest 汉字") * 3
    fast, slow = TextStream(tok.decode, stop), FullDecodeStream(tok.decode, stop)
    pieces = [fast.push(i) for i in ids] + [fast.flush()]
    assert pieces == [slow.push(i) for i in ids] + [slow.flush()]
    if tok is BPE and not stop:
        assert "".join(pieces) == tok.decode(ids)
        decoded = []  # ids decoded per push: a few around the new token, not all of them
        counted = TextStream(lambda part: decoded.append(len(part)) or tok.decode(part))
        longest = 0
        for i in ids * 2:
            decoded.clear()
            counted.push(i)
            longest = max(longest, sum(decoded))
        assert longest <= 2 * TextStream.CONTEXT + 8 < len(ids) * 2
