"""The one interface every lmforge tokenizer shares.

A tokenizer turns text into a list of integer ids and back. Every kind here (characters,
byte-level BPE, WordPiece, Unigram) is a subclass of `Tokenizer` and differs only in how a
piece of ordinary text (no special tokens in it) becomes tokens:

    text --split special tokens (only when asked)--> chunks --_tokenize(chunk)--> tokens
         --post-processor template ([CLS] A [SEP] ...)--> Encoding(ids, tokens, offsets, type_ids)

Offsets are character spans into the *original* text (Python string indices), the same
convention as Hugging Face `tokenizers` gives to Python: `text[start:end]` is the text a token
came from. Special tokens added by a template have the offset (0, 0).

Example (character tokenizer):
    >>> from lmforge.tokenizers import CharTokenizer
    >>> tok = CharTokenizer.train("abca")
    >>> tok.encode("cab"), tok.decode([2, 0, 1])
    ([2, 0, 1], 'cab')
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import regex

# Special tokens for every family lmforge builds; a tokenizer carries the ones it was given.
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
GPT_SPECIAL_TOKENS = ("<|endoftext|>",)
T5_SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in T5's SentencePiece model
GLM_SPECIAL_TOKENS = ("[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>")
CHAT_SPECIAL_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
END_OF_TEXT_TOKENS = ("<|endoftext|>", "</s>", "<|end|>")  # GPT-2's, T5's, the chat template's end of turn


def eos_ids(tok) -> list[int]:
    """Ids of the END_OF_TEXT_TOKENS that `tok` has: generation stops at any of them."""
    return [tok.special_tokens[t] for t in END_OF_TEXT_TOKENS if t in tok.special_tokens]


def t5_sentinels(n: int = 100) -> list[str]:
    """T5's span-corruption sentinels, `<extra_id_0>` ... `<extra_id_{n-1}>`.

    They sit at the END of the vocabulary in reverse order: `<extra_id_0>` has the largest id
    (T5 paper, sec. 3.1.4; HF T5Tokenizer `extra_ids`). Example: n=2 on a 10-token vocab ->
    `<extra_id_1>` = 10, `<extra_id_0>` = 11. Append the list returned here, in this order.
    """
    return [f"<extra_id_{i}>" for i in reversed(range(n))]


@dataclass
class Encoding:
    """The full result of encoding: ids and, aligned with them, tokens, offsets, type ids."""
    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    type_ids: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


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
    without special tokens, `_decode_tokens(tokens) -> str`, `vocab` and the HF JSON parts."""

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
        for t in special_tokens:
            self.add_special_token(t)
        self.template = template

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
        if not token:
            raise ValueError("a special token cannot be the empty string")
        if token not in self.vocab:
            new_id = self.vocab_size
            self.vocab[token] = new_id
            self.inv_vocab[new_id] = token
        self.special_tokens[token] = self.vocab[token]
        self._special_re = None
        return self.vocab[token]

    # -- encoding ---------------------------------------------------------------------------
    def _tokenize(self, text: str) -> tuple[list[int], list[str], list[tuple[int, int]]]:
        raise NotImplementedError

    def _encode_ids(self, text: str) -> list[int]:
        """Ids only for text without special tokens; subclasses override with a faster path."""
        return self._tokenize(text)[0]

    def _split_special(self, text: str, split_special: bool) -> list[tuple[str, int, bool]]:
        """-> [(chunk, start, is_special)]. Longest special token wins where two overlap."""
        if not split_special or not self.special_tokens:
            return [(text, 0, False)]
        if getattr(self, "_special_re", None) is None:
            alts = sorted(self.special_tokens, key=len, reverse=True)
            self._special_re = regex.compile("|".join(regex.escape(t) for t in alts))
        out, pos = [], 0
        for m in self._special_re.finditer(text):
            if m.start() > pos:
                out.append((text[pos:m.start()], pos, False))
            out.append((m.group(), m.start(), True))
            pos = m.end()
        if pos < len(text):
            out.append((text[pos:], pos, False))
        return out

    def _encode_one(self, text: str, split_special: bool) -> Encoding:
        if not isinstance(text, str):
            raise ValueError(f"encode() takes a str, got {type(text).__name__}; decode bytes first, "
                             "e.g. data.decode('utf-8')")
        ids: list[int] = []
        tokens: list[str] = []
        offsets: list[tuple[int, int]] = []
        for chunk, start, special in self._split_special(text, split_special):
            if special:
                ids.append(self.special_tokens[chunk]); tokens.append(chunk)
                offsets.append((start, start + len(chunk)))
                continue
            i, t, o = self._tokenize(chunk)
            ids += i; tokens += t
            offsets += [(a + start, b + start) for a, b in o] if start else o
        return Encoding(ids, tokens, offsets, [0] * len(ids))

    def encode_full(self, text: str, pair: str | None = None, *, add_special_tokens: bool = True,
                    split_special: bool = False) -> Encoding:
        """Encode to ids, tokens, offsets and type ids.

        add_special_tokens: wrap with the template if the tokenizer has one ([CLS] A [SEP]).
        split_special: match special tokens written in the text ("<|endoftext|>") as single
        tokens; off by default so user text cannot inject control tokens.
        """
        a = self._encode_one(text, split_special)
        b = self._encode_one(pair, split_special) if pair is not None else None
        if not add_special_tokens or self.template is None:
            if b is None:
                return a
            return Encoding(a.ids + b.ids, a.tokens + b.tokens, a.offsets + b.offsets,
                            [0] * len(a.ids) + [1] * len(b.ids))
        out = Encoding([], [], [], [])
        for item, type_id in (self.template.single if b is None else self.template.pair):
            part = a if item == "$A" else b if item == "$B" else None
            if part is None:
                out.ids.append(self.special_tokens[item]); out.tokens.append(item)
                out.offsets.append((0, 0)); out.type_ids.append(type_id)
            else:
                out.ids += part.ids; out.tokens += part.tokens; out.offsets += part.offsets
                out.type_ids += [type_id] * len(part.ids)
        return out

    def encode(self, text: str, pair: str | None = None, *, add_special_tokens: bool = True,
               split_special: bool = False) -> list[int]:
        """Text -> ids. See `encode_full` for the options and for offsets."""
        if pair is None and (self.template is None or not add_special_tokens) and not split_special:
            if not isinstance(text, str):
                raise ValueError(f"encode() takes a str, got {type(text).__name__}; decode bytes first, "
                                 "e.g. data.decode('utf-8')")
            return self._encode_ids(text)
        return self.encode_full(text, pair, add_special_tokens=add_special_tokens,
                                split_special=split_special).ids

    def encode_batch(self, texts: Iterable[str], **kwargs) -> list[list[int]]:
        return [self.encode(t, **kwargs) for t in texts]

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

    # -- Hugging Face tokenizer.json --------------------------------------------------------
    def _hf_model(self) -> dict:
        raise NotImplementedError

    def _hf_parts(self) -> dict:
        """normalizer, pre_tokenizer, decoder for this kind (post_processor comes from template)."""
        return {"normalizer": None, "pre_tokenizer": None, "decoder": None}

    def to_hf_json(self) -> dict:
        """The tokenizer as a dict in the Hugging Face `tokenizers` tokenizer.json format."""
        from .hfjson import to_hf_json
        return to_hf_json(self)

    def save(self, path: str | Path) -> Path:
        """Write `tokenizer.json` into directory `path` (or to `path` if it ends in .json), atomically."""
        from ..io import atomic_write_text
        path = Path(path)
        if path.suffix != ".json":
            path = path / "tokenizer.json"
        atomic_write_text(path, json.dumps(self.to_hf_json(), ensure_ascii=False, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        tok = load_tokenizer(path)
        if not isinstance(tok, cls):
            raise ValueError(f"{path} holds a {type(tok).__name__}, not a {cls.__name__}; "
                             "use lmforge.tokenizers.load_tokenizer to load any kind")
        return tok

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, special_tokens={list(self.special_tokens)})"


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load any lmforge or Hugging Face tokenizer.json: a directory holding one, or the file."""
    from .hfjson import from_hf_json
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {path}; pass a run directory or the file itself")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a valid UTF-8 JSON tokenizer file: {e}") from None
    return from_hf_json(data, source=str(path))


def read_texts(text_or_texts: str | Iterable[str]) -> Iterable[str]:
    """Accept one string or an iterable of strings (lines, documents) for training."""
    if isinstance(text_or_texts, str):
        return [text_or_texts]
    if isinstance(text_or_texts, (bytes, bytearray)):
        raise ValueError("training takes text, not bytes; decode it first, e.g. data.decode('utf-8')")
    return text_or_texts
