"""WordPiece, as in BERT (Devlin et al. 2019; google-research/bert tokenization.py).

1. Normalize, one character at a time (BERT's BasicTokenizer, in the order of HF's
   `BertNormalizer`): drop control characters, NUL and U+FFFD; turn whitespace into " ";
   put spaces around CJK ideographs so each becomes its own word; strip accents (NFD, then
   drop non-spacing marks); lower-case.  "Héllo,世界" -> "hello, 世  界 "
2. Pre-tokenize: split on whitespace, and isolate every punctuation character (ASCII
   punctuation or Unicode category P*).  -> ["hello", ",", "世", "界"]
3. Each word: greedy longest match from the left; pieces after the first carry "##".
   A word that cannot be covered, or is longer than `max_input_chars_per_word` (100),
   becomes a single [UNK].

Textbook example (BERT's docstring, toy vocabulary):
    >>> tok = WordPieceTokenizer({"[UNK]": 0, "un": 1, "##aff": 2, "##able": 3, "[CLS]": 4, "[SEP]": 5})
    >>> tok.encode_full("unaffable", add_special_tokens=False).tokens
    ['un', '##aff', '##able']
    >>> tok.encode_full("unaffable").tokens
    ['[CLS]', 'un', '##aff', '##able', '[SEP]']
    >>> tok.encode_full("una", "able").type_ids   # [CLS] [UNK] [SEP] [UNK] [SEP]: no "##a", no "able"
    [0, 0, 0, 1, 1]

Offsets point into the original text, so "Café" gives the token "cafe" with offsets (0, 4).
"""
from __future__ import annotations

import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import regex

from .base import Template, Tokenizer, read_texts
from .merges import learn_merges

# BERT's special tokens (google-research/bert; HF BertTokenizer's defaults), WordPiece's defaults here
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# CJK Unified Ideograph blocks, exactly the ranges of HF tokenizers' BertNormalizer (bert.rs)
# (google-research/bert `_is_chinese_char`, which has 0x2B820 where HF has 0x2B920).
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_CONTROL = regex.compile(r"\p{C}")          # Cc Cf Cn Co Cs: BERT's _is_control (minus \t \n \r)
_WHITE = regex.compile(r"[\t\n\r\p{White_Space}]")
_MN = regex.compile(r"\p{Mn}")
# BERT pre-tokenizer: words are runs of non-space non-punctuation; each punctuation char alone.
# Punctuation = ASCII punctuation (BERT counts $ + < = > ^ ` | ~ too) or Unicode category P*.
_PUNCT = r"!-/:-@\[-`{-~\p{P}"
_WORDS = regex.compile(rf"[{_PUNCT}]|[^\p{{White_Space}}{_PUNCT}]+")


def _is_cjk(cp: int) -> bool:
    return any(a <= cp <= b for a, b in _CJK)


class _CharMap(dict):
    """str.translate table that computes each character's normalized form on first use."""
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def __missing__(self, cp: int) -> str:
        out = self[cp] = self.fn(chr(cp))
        return out


class WordPieceTokenizer(Tokenizer):
    kind = "wordpiece"

    def __init__(self, vocab: dict[str, int], special_tokens: Sequence[str] | None = None,
                 unk_token: str = "[UNK]", prefix: str = "##", max_input_chars_per_word: int = 100,
                 lowercase: bool = True, strip_accents: bool | None = None, clean_text: bool = True,
                 handle_chinese_chars: bool = True, template: Template | None = None):
        if unk_token not in vocab:
            raise ValueError(f"the WordPiece vocabulary has no unk token {unk_token!r}; add it to the vocab "
                             "or pass unk_token=<a token in the vocab>")
        if special_tokens is None:
            special_tokens = [t for t in BERT_SPECIAL_TOKENS if t in vocab]
        if template is None and "[CLS]" in vocab and "[SEP]" in vocab:
            template = Template.bert()
        super().__init__(vocab, [*special_tokens, unk_token], template)
        self.unk_token, self.prefix = unk_token, prefix
        self.max_input_chars_per_word = max_input_chars_per_word
        self.lowercase, self.clean_text, self.handle_chinese_chars = lowercase, clean_text, handle_chinese_chars
        self.strip_accents = lowercase if strip_accents is None else strip_accents  # HF: None -> follow lowercase
        self._strip_accents_setting = strip_accents
        self._charmap = _CharMap(self._normalize_char)
        self._max_len = max(len(t) for t in self.vocab)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_vocab_file(cls, path: str | Path, **kwargs) -> "WordPieceTokenizer":
        """BERT's vocab.txt: one token per line, id = line number."""
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return cls({t: i for i, t in enumerate(lines)}, **kwargs)

    # -- normalization and pre-tokenization ---------------------------------------------------
    def _normalize_char(self, c: str) -> str:
        if self.clean_text:
            if c in "\x00\ufffd" or (c not in "\t\n\r" and _CONTROL.match(c)):
                return ""
            if _WHITE.match(c):
                return " "
        if self.handle_chinese_chars and _is_cjk(ord(c)):
            return " " + self._fold(c) + " "
        return self._fold(c)

    def _fold(self, c: str) -> str:
        if self.strip_accents:
            c = "".join(ch for ch in unicodedata.normalize("NFD", c) if not _MN.match(ch))
        if self.lowercase:  # per character, as Rust's char::to_lowercase: final 'Σ' -> 'σ'
            c = "".join(ch.lower() for ch in c)
        return c

    def normalize(self, text: str) -> str:
        return text.translate(self._charmap)

    # -- WordPiece --------------------------------------------------------------------------
    def _segment(self, word: str) -> list[int]:
        """Greedy longest-match-first. "unaffable" -> un ##aff ##able (toy vocab above)."""
        if len(word) > self.max_input_chars_per_word:
            return [self.vocab[self.unk_token]]
        vocab, ids, start, n = self.vocab, [], 0, len(word)
        while start < n:
            end = min(n, start + self._max_len)
            while start < end:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                i = vocab.get(piece)
                if i is not None:
                    ids.append(i)
                    break
                end -= 1
            else:
                return [vocab[self.unk_token]]
            start = end
        return ids

    def _encode_ids(self, text: str) -> list[int]:
        cache, out = self._cache, []
        for w in _WORDS.findall(text.translate(self._charmap)):
            ids = cache.get(w)
            if ids is None:
                ids = self._word_ids(w)
            out += ids
        return out

    def _tokenize(self, text: str):
        parts, orig = [], []  # normalized text, and for each of its characters the original index
        cm = self._charmap
        for i, c in enumerate(text):
            n = cm[ord(c)]
            if n:
                parts.append(n)
                orig.extend([i] * len(n))
        norm = "".join(parts)
        ids, tokens, offsets = [], [], []
        inv, unk = self.inv_vocab, self.vocab[self.unk_token]
        for m in _WORDS.finditer(norm):
            s, e = m.span()
            pos = s
            for i in self._word_ids(m.group()):
                t = inv[i]
                if i == unk:
                    a, b = s, e
                else:
                    a = pos
                    b = pos + len(t) - (len(self.prefix) if pos > s else 0)
                pos = b
                ids.append(i); tokens.append(t); offsets.append((orig[a], orig[b - 1] + 1))
        return ids, tokens, offsets

    def _decode_tokens(self, tokens: list[str]) -> str:
        """HF's WordPiece decoder: join with spaces, glue "##" pieces, then BERT's cleanup."""
        text = " ".join(tokens).replace(" " + self.prefix, "")
        for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                     (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
            text = text.replace(a, b)
        return text

    # -- training -----------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: str | Iterable[str], vocab_size: int,
              special_tokens: Sequence[str] = BERT_SPECIAL_TOKENS, min_frequency: int = 0,
              limit_alphabet: int | None = None, lowercase: bool = True) -> "WordPieceTokenizer":
        """Learn a WordPiece vocabulary the way HF's WordPieceTrainer does: BPE merges over
        normalized, pre-tokenized words, with "##" on every character after the first
        (h ##u ##g); the vocabulary is kept, the merges are not (WordPiece encodes greedily).
        Words are visited most frequent first (then alphabetically), which fixes the ids of
        the "##c" tokens and so the tie-break among equally frequent pairs.
        limit_alphabet: keep only the most frequent characters (HF's `limit_alphabet`)."""
        unk = "[UNK]"
        specials = list(dict.fromkeys([*special_tokens, unk]))
        probe = cls({unk: 0}, [], lowercase=lowercase)
        counts: Counter[str] = Counter()
        for t in read_texts(texts):
            counts.update(_WORDS.findall(probe.normalize(t)))
        if not counts:
            raise ValueError("no text to train on: the training texts are empty; pass non-empty text")
        chars: Counter[str] = Counter()
        for w, c in counts.items():
            for ch in w:
                chars[ch] += c
        alphabet = sorted(chars) if limit_alphabet is None else \
            sorted(sorted(chars, key=lambda ch: (-chars[ch], ch))[:limit_alphabet])
        floor = len(specials) + len(alphabet)
        if vocab_size < floor:
            raise ValueError(f"vocab_size {vocab_size} is smaller than the alphabet: {len(alphabet)} distinct "
                             f"characters + {len(specials)} special tokens = {floor}; raise --vocab-size to at "
                             f"least {floor} or set limit_alphabet")
        words = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        vocab, _ = learn_merges(words, vocab_size, specials, alphabet, min_frequency, prefix="##")
        return cls(vocab, [t for t in specials if t != unk], unk, lowercase=lowercase)

    # -- tokenizer.json -----------------------------------------------------------------------
    def _hf_model(self) -> dict:
        return {"type": "WordPiece", "unk_token": self.unk_token, "continuing_subword_prefix": self.prefix,
                "max_input_chars_per_word": self.max_input_chars_per_word,
                "vocab": dict(sorted(self.vocab.items(), key=lambda kv: kv[1]))}

    def _hf_parts(self) -> dict:
        return {"normalizer": {"type": "BertNormalizer", "clean_text": self.clean_text,
                               "handle_chinese_chars": self.handle_chinese_chars,
                               "strip_accents": self._strip_accents_setting, "lowercase": self.lowercase},
                "pre_tokenizer": {"type": "BertPreTokenizer"},
                "decoder": {"type": "WordPiece", "prefix": self.prefix, "cleanup": True}}

    @classmethod
    def _from_hf(cls, data: dict, specials: list[str]) -> "WordPieceTokenizer":
        model, norm = data["model"], data.get("normalizer") or {}
        if norm.get("type") not in ("BertNormalizer", None):
            raise ValueError(f"WordPiece tokenizer.json with normalizer {norm.get('type')!r} is not supported; "
                             "lmforge reads BertNormalizer (or none)")
        pre = (data.get("pre_tokenizer") or {}).get("type")
        if pre not in ("BertPreTokenizer", None):
            raise ValueError(f"WordPiece tokenizer.json with pre_tokenizer {pre!r} is not supported; "
                             "lmforge reads BertPreTokenizer")
        unk = model.get("unk_token", "[UNK]")
        kw = dict(lowercase=norm.get("lowercase", False), strip_accents=norm.get("strip_accents"),
                  clean_text=norm.get("clean_text", False),
                  handle_chinese_chars=norm.get("handle_chinese_chars", False)) if norm else \
            dict(lowercase=False, strip_accents=False, clean_text=False, handle_chinese_chars=False)
        return cls(model["vocab"], [t for t in specials if t != unk], unk,
                   model.get("continuing_subword_prefix", "##"), model.get("max_input_chars_per_word", 100), **kw)
