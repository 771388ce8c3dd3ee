"""The one interface every lmforge tokenizer shares.

A tokenizer turns text into a list of integer ids and back. Every kind here (characters,
byte-level BPE, WordPiece, Unigram) is a subclass of `Tokenizer` and differs only in how a
piece of ordinary text (no special tokens in it) becomes tokens:

    text --split special tokens (only when asked)--> chunks --_tokenize(chunk)--> tokens
         --post-processor template ([CLS] A [SEP] ...)--> Encoding(ids, tokens, offsets, type_ids)

Offsets are character spans into the *original* text (Python string indices), the same
convention as Hugging Face `tokenizers` gives to Python: `text[start:end]` is the text a token
came from. Special tokens added by a template have the offset (0, 0).

This module knows no file format and no model family: tokenizer.json is read and written by
`io.py`, which sits above the kinds; which special tokens a family uses is said where the family
or the kind is (`wordpiece.BERT_SPECIAL_TOKENS`, `unigram.T5_SPECIAL_TOKENS`, the chat markers in
`lmforge.data.chat`, the end-of-text tokens in `special.py`).

Example (character tokenizer):
    >>> from lmforge.tokenizers import CharTokenizer
    >>> tok = CharTokenizer.train("abca")
    >>> tok.encode("cab"), tok.decode([2, 0, 1])
    ([2, 0, 1], 'cab')
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import regex

_WORD_CHAR = regex.compile(r"\w")  # what single_word added tokens must not touch (HF: regex \w)


@dataclass
class Encoding:
    """The full result of encoding: ids and, aligned with them, tokens, offsets, type ids and the
    attention mask (1 = a real token, 0 = padding added by the `padding` section)."""
    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    type_ids: list[int] = field(default_factory=list)
    attention_mask: list[int] = field(default_factory=list)

    def __post_init__(self):
        if not self.attention_mask:
            self.attention_mask = [1] * len(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def _cut(self, keep: int, left: bool) -> "Encoding":
        """The first `keep` items (left=True: the last `keep`)."""
        part = slice(len(self.ids) - keep, None) if left else slice(0, keep)
        return Encoding(self.ids[part], self.tokens[part], self.offsets[part], self.type_ids[part],
                        self.attention_mask[part])


@dataclass
class Truncation:
    """tokenizer.json's `truncation` section, applied as Hugging Face `tokenizers` applies it (its
    utils/truncation.rs, checked against tokenizers in tests/tokenizers/test_truncation_padding.py).

    max_length counts the special tokens the template adds, so the texts get max_length minus those.
    LongestFirst, for a pair: the shorter text keeps min(its length, budget // 2) tokens, the longer the
    rest (on a tie the second counts as the longer). OnlyFirst / OnlySecond cut only that text.
    direction "Right" drops tokens at the end, "Left" at the start. The overflowing windows that
    `stride` shapes are not produced: lmforge keeps the first window only.

    Example: max_length 10 with [CLS] A [SEP] B [SEP] (3 special tokens), A of 8 tokens, B of 4 ->
    budget 7, B keeps min(4, 7 // 2) = 3, A keeps 4.
    """
    max_length: int
    strategy: str = "LongestFirst"  # LongestFirst, OnlyFirst, OnlySecond
    direction: str = "Right"  # Right, Left
    stride: int = 0

    def __post_init__(self):
        if self.strategy not in ("LongestFirst", "OnlyFirst", "OnlySecond"):
            raise ValueError(f"truncation strategy {self.strategy!r} is not one of LongestFirst, OnlyFirst, OnlySecond")
        if self.direction not in ("Right", "Left"):
            raise ValueError(f"truncation direction {self.direction!r} is not Right or Left")
        if self.max_length < 0:
            raise ValueError(f"truncation max_length must be >= 0, got {self.max_length}")

    def apply(self, a: Encoding, b: Encoding | None, n_special: int) -> tuple[Encoding, Encoding | None]:
        budget = max(0, self.max_length - n_special)
        la, lb = len(a), len(b) if b is not None else 0
        if la + lb <= budget:
            return a, b
        left = self.direction == "Left"
        if b is None or self.strategy != "LongestFirst":
            if self.strategy == "OnlySecond" and b is None:
                raise ValueError("truncation strategy OnlySecond needs a pair of texts; a single text was given")
            first = b is None or self.strategy == "OnlyFirst"
            cut, other = (la, lb) if first else (lb, la)
            if budget - other < 0:
                raise ValueError(f"cannot truncate to max_length {self.max_length}: the "
                                 f"{'first' if first else 'second'} text would need fewer than 0 tokens "
                                 f"(the other has {other}); use strategy LongestFirst or a larger max_length")
            return (a._cut(budget - other, left), b) if first else (a, b._cut(budget - other, left))
        short = min(min(la, lb), budget // 2)
        if la > lb:
            return a._cut(budget - short, left), b._cut(short, left)
        return a._cut(short, left), b._cut(budget - short, left)


@dataclass
class Padding:
    """tokenizer.json's `padding` section, as Hugging Face `tokenizers` applies it: `length` None pads a batch
    to its longest row (BatchLongest; a single text is its own batch), an int pads every row to that length
    (Fixed; longer rows are left as they are); then up to a multiple of pad_to_multiple_of. Padding has
    attention mask 0, type id pad_type_id and offsets (0, 0); direction "Left" puts it in front."""
    length: int | None = None
    direction: str = "Right"
    pad_to_multiple_of: int | None = None
    pad_id: int = 0
    pad_type_id: int = 0
    pad_token: str = "[PAD]"

    def __post_init__(self):
        if self.direction not in ("Right", "Left"):
            raise ValueError(f"padding direction {self.direction!r} is not Right or Left")

    def apply(self, encodings: list[Encoding]) -> list[Encoding]:
        """Pad every encoding in place (and return them)."""
        if not encodings:
            return encodings
        n = self.length if self.length is not None else max(len(e) for e in encodings)
        if self.pad_to_multiple_of and n % self.pad_to_multiple_of:
            n += self.pad_to_multiple_of - n % self.pad_to_multiple_of
        for e in encodings:
            k = n - len(e)
            if k <= 0:
                continue
            if self.direction == "Right":
                e.ids += [self.pad_id] * k; e.tokens += [self.pad_token] * k; e.offsets += [(0, 0)] * k
                e.type_ids += [self.pad_type_id] * k; e.attention_mask += [0] * k
            else:
                e.ids[:0] = [self.pad_id] * k; e.tokens[:0] = [self.pad_token] * k; e.offsets[:0] = [(0, 0)] * k
                e.type_ids[:0] = [self.pad_type_id] * k; e.attention_mask[:0] = [0] * k
        return encodings


@dataclass(frozen=True)
class AddedToken:
    """How an added token is found in text (tokenizer.json "added_tokens", HF added_vocabulary.rs):
    lstrip / rstrip take the whitespace on that side into the token; single_word matches it only
    where no word character (letter, digit, "_") touches it. Tokens without options need none."""
    content: str
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False


@dataclass
class Template:
    """Where special tokens go around one text (`single`) or a pair (`pair`).

    Items are "$A", "$B" or a special token; each has a type id. BERT:
    single = [("[CLS]", 0), ("$A", 0), ("[SEP]", 0)],
    pair = single + [("$B", 1), ("[SEP]", 1)]  ->  [CLS] A [SEP] B [SEP], types 0..0 1..1.
    """
    single: list[tuple[str, int]]
    pair: list[tuple[str, int]]

    @classmethod
    def bert(cls, cls_token: str = "[CLS]", sep_token: str = "[SEP]") -> "Template":
        single = [(cls_token, 0), ("$A", 0), (sep_token, 0)]
        return cls(single, single + [("$B", 1), (sep_token, 1)])

    @classmethod
    def append_eos(cls, eos: str = "</s>") -> "Template":
        """T5: `A </s>` and `A </s> B </s>` (HF T5TokenizerFast)."""
        return cls([("$A", 0), (eos, 0)], [("$A", 0), (eos, 0), ("$B", 0), (eos, 0)])


class Tokenizer:
    """Base class. Subclasses implement `_tokenize(text) -> (ids, tokens, offsets)` for text
    without special tokens and `_decode_tokens(tokens) -> str`; each kind also carries its part of
    tokenizer.json (`_hf_model`, `_hf_parts`, `_from_hf`, used by io.py)."""

    kind = "base"
    CACHE_SIZE = 100_000  # words whose ids are remembered; most words of a text repeat

    def _word_ids(self, word: str) -> list[int]:
        """Ids of one pre-tokenized word via `self._segment`, cached (subclasses set `self._cache = {}`)."""
        ids = self._cache.get(word)
        if ids is None:
            ids = self._segment(word)
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            self._cache[word] = ids
        return ids

    def __init__(self, vocab: dict[str, int], special_tokens: Sequence[str] = (),
                 template: Template | None = None):
        self.vocab: dict[str, int] = dict(vocab)
        self.inv_vocab: dict[int, str] = {i: t for t, i in self.vocab.items()}
        if len(self.inv_vocab) != len(self.vocab):
            raise ValueError("the vocabulary maps two tokens to the same id; every token needs its own id")
        self.special_tokens: dict[str, int] = {}
        # added tokens that are not special (Qwen2's <tool_call>): matched in every text, kept by decode
        self.added_tokens: dict[str, int] = {}
        self.added_options: dict[str, AddedToken] = {}  # only tokens with lstrip / rstrip / single_word
        self._added_re: dict[bool, "regex.Pattern"] = {}
        for t in special_tokens:
            self.add_special_token(t)
        self.template = template
        # tokenizer.json's `truncation` and `padding` sections (io.py reads and writes them); None: off
        self.truncation: Truncation | None = None
        self.padding: Padding | None = None

    # -- vocabulary -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids: one more than the largest id (ids need not be dense in HF files)."""
        return max(self.inv_vocab) + 1 if self.inv_vocab else 0

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def id_to_token(self, id_: int) -> str | None:
        return self.inv_vocab.get(id_)

    def add_special_token(self, token: str) -> int:
        """Register `token` as special (never split, matched in text only when asked).

        A token already in the vocabulary keeps its id; a new one gets the next free id.
        """
        return self.add_token(token, special=True)

    def add_token(self, token: str | AddedToken, special: bool = False) -> int:
        """Register an added token: never split by the model and found in text before it (HF's added
        vocabulary). A special one (control tokens: <|begin_of_text|>, <|im_start|>) is matched only
        when asked (`split_special=True`) and dropped by `decode(skip_special_tokens=True)`; a plain one
        is matched in every text and kept by decode, as HF does. Pass an AddedToken for lstrip /
        rstrip / single_word. A token already in the vocabulary keeps its id; a new one gets the
        next free id."""
        options = token if isinstance(token, AddedToken) else AddedToken(token)
        token = options.content
        if not token:
            raise ValueError("an added token cannot be the empty string")
        if token not in self.vocab:
            new_id = self.vocab_size
            self.vocab[token] = new_id
            self.inv_vocab[new_id] = token
        (self.special_tokens if special else self.added_tokens)[token] = self.vocab[token]
        (self.added_tokens if special else self.special_tokens).pop(token, None)
        if options != AddedToken(token):
            self.added_options[token] = options
        else:
            self.added_options.pop(token, None)
        self._added_re = {}
        return self.vocab[token]

    # -- encoding ---------------------------------------------------------------------------
    def _tokenize(self, text: str) -> tuple[list[int], list[str], list[tuple[int, int]]]:
        raise NotImplementedError

    def _encode_ids(self, text: str) -> list[int]:
        """Ids only for text without special tokens; subclasses override with a faster path."""
        return self._tokenize(text)[0]

    # A kind whose pre-tokenizer treats the start of the input apart (Metaspace's prepend_scheme
    # "first") overrides these two: `start` is where the chunk begins in the text being encoded.
    def _tokenize_at(self, text: str, start: int):
        return self._tokenize(text)

    def _encode_ids_at(self, text: str, start: int) -> list[int]:
        return self._encode_ids(text)

    def _split_special(self, text: str, split_special: bool) -> list[tuple[str, int, int | None]]:
        """-> [(chunk, start, id of the added token, or None for text between them)].

        Plain added tokens are always matched, special ones only with `split_special`. At one
        position the longest token wins, and matches do not overlap (HF: Aho-Corasick, leftmost
        longest). A single_word token touching a word character is left as text; lstrip / rstrip
        take the neighbouring whitespace into the token's chunk."""
        names = {**self.added_tokens, **self.special_tokens} if split_special else self.added_tokens
        if not names:
            return [(text, 0, None)]
        pat = self._added_re.get(split_special)
        if pat is None:
            alts = sorted(names, key=len, reverse=True)
            pat = self._added_re[split_special] = regex.compile("|".join(regex.escape(t) for t in alts))
        out, pos = [], 0
        for m in pat.finditer(text):
            s, e = m.span()
            if s < pos:  # inside whitespace an rstrip token took
                continue
            opt = self.added_options.get(m.group())
            if opt is not None:
                if opt.single_word and ((s > 0 and _WORD_CHAR.match(text[s - 1]))
                                        or (e < len(text) and _WORD_CHAR.match(text[e]))):
                    continue
                while opt.lstrip and s > pos and text[s - 1].isspace():
                    s -= 1
                while opt.rstrip and e < len(text) and text[e].isspace():
                    e += 1
            if s > pos:
                out.append((text[pos:s], pos, None))
            out.append((text[s:e], s, names[m.group()]))
            pos = e
        if pos < len(text):
            out.append((text[pos:], pos, None))
        return out

    def _encode_one(self, text: str, split_special: bool) -> Encoding:
        if not isinstance(text, str):
            raise ValueError(f"encode() takes a str, got {type(text).__name__}; decode bytes first, "
                             "e.g. data.decode('utf-8')")
        ids: list[int] = []
        tokens: list[str] = []
        offsets: list[tuple[int, int]] = []
        for chunk, start, added in self._split_special(text, split_special):
            if added is not None:
                ids.append(added); tokens.append(chunk)  # with lstrip / rstrip, HF's token keeps the spaces
                offsets.append((start, start + len(chunk)))
                continue
            i, t, o = self._tokenize_at(chunk, start)
            ids += i; tokens += t
            offsets += [(a + start, b + start) for a, b in o] if start else o
        return Encoding(ids, tokens, offsets, [0] * len(ids))

    def encode_full(self, text: str, pair: str | None = None, *, add_special_tokens: bool = True,
                    split_special: bool = False) -> Encoding:
        """Encode to ids, tokens, offsets and type ids.

        add_special_tokens: wrap with the template if the tokenizer has one ([CLS] A [SEP]).
        split_special: match special tokens written in the text ("<|endoftext|>") as single
        tokens; off by default so user text cannot inject control tokens. Plain (non-special)
        added tokens are always matched.
        """
        a = self._encode_one(text, split_special)
        b = self._encode_one(pair, split_special) if pair is not None else None
        templated = add_special_tokens and self.template is not None
        if self.truncation is not None:  # before the template, with room left for its special tokens
            n_special = sum(i not in ("$A", "$B") for i, _ in (self.template.single if b is None else
                                                                 self.template.pair)) if templated else 0
            a, b = self.truncation.apply(a, b, n_special)
        if not templated:
            if b is None:
                return self._pad([a])[0]
            return self._pad([Encoding(a.ids + b.ids, a.tokens + b.tokens, a.offsets + b.offsets,
                                       [0] * len(a.ids) + [1] * len(b.ids))])[0]
        out = Encoding([], [], [], [], [])
        for item, type_id in (self.template.single if b is None else self.template.pair):
            part = a if item == "$A" else b if item == "$B" else None
            if part is None:
                out.ids.append(self.special_tokens[item]); out.tokens.append(item)
                out.offsets.append((0, 0)); out.type_ids.append(type_id)
            else:
                out.ids += part.ids; out.tokens += part.tokens; out.offsets += part.offsets
                out.type_ids += [type_id] * len(part.ids)
        out.attention_mask = [1] * len(out.ids)
        return self._pad([out])[0]

    def _pad(self, encodings: list[Encoding]) -> list[Encoding]:
        return self.padding.apply(encodings) if self.padding is not None else encodings

    def encode(self, text: str, pair: str | None = None, *, add_special_tokens: bool = True,
               split_special: bool = False) -> list[int]:
        """Text -> ids. See `encode_full` for the options and for offsets."""
        if (pair is None and (self.template is None or not add_special_tokens)
                and self.truncation is None and self.padding is None):
            if not isinstance(text, str):
                raise ValueError(f"encode() takes a str, got {type(text).__name__}; decode bytes first, "
                                 "e.g. data.decode('utf-8')")
            if not split_special and not self.added_tokens:
                return self._encode_ids(text)
            ids: list[int] = []
            for chunk, start, added in self._split_special(text, split_special):
                if added is not None:
                    ids.append(added)
                else:
                    ids += self._encode_ids_at(chunk, start)
            return ids
        return self.encode_full(text, pair, add_special_tokens=add_special_tokens,
                                split_special=split_special).ids

    def encode_batch(self, texts: Iterable[str], **kwargs) -> list[list[int]]:
        """Ids of each text; with a `padding` section, padded as a batch (see encode_batch_full)."""
        if self.padding is None:
            return [self.encode(t, **kwargs) for t in texts]
        return [e.ids for e in self.encode_batch_full(texts, **kwargs)]

    def encode_batch_full(self, texts: Iterable[str | tuple[str, str]], **kwargs) -> list[Encoding]:
        """Encode each text (or (text, pair) tuple) with `encode_full`, then pad the batch as the `padding`
        section says (BatchLongest: to the longest row), as Hugging Face's encode_batch does."""
        out = [self.encode_full(*t, **kwargs) if isinstance(t, tuple) else self.encode_full(t, **kwargs)
               for t in texts]
        return self._pad(out)

    def offsets(self, text: str, **kwargs) -> list[tuple[int, int]]:
        """Character span of each token: `text[start:end]` is what the token covers."""
        return self.encode_full(text, **kwargs).offsets

    # -- decoding ---------------------------------------------------------------------------
    def _decode_tokens(self, tokens: list[str]) -> str:
        """Tokens (special ones included) -> text, as the kind's HF decoder does."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        tokens = []
        for i in ids:
            t = self.inv_vocab.get(int(i))
            if t is None:
                raise ValueError(f"id {i} is not in the vocabulary (ids are 0..{self.vocab_size - 1})")
            tokens.append(t)
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in self.special_tokens]
        return self._decode_tokens(tokens)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, special_tokens={list(self.special_tokens)})"


def read_texts(text_or_texts: str | Iterable[str]) -> Iterable[str]:
    """Accept one string or an iterable of strings (lines, documents) for training."""
    if isinstance(text_or_texts, str):
        return [text_or_texts]
    if isinstance(text_or_texts, (bytes, bytearray)):
        raise ValueError("training takes text, not bytes; decode it first, e.g. data.decode('utf-8')")
    return text_or_texts
