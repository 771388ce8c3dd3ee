"""Character tokenizer: one token per Unicode code point (nanoGPT's shakespeare_char).

The vocabulary is the sorted set of characters seen in training, after any special tokens:

    >>> tok = CharTokenizer.train("hello")
    >>> tok.vocab                     # sorted characters -> ids
    {'e': 0, 'h': 1, 'l': 2, 'o': 3}
    >>> tok.encode("hole")
    [1, 3, 2, 0]

A character never seen in training maps to `unk_token` when the tokenizer has one, and
otherwise raises ValueError naming the character.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from .base import Tokenizer, read_texts

# tokenizer.json pre-tokenizer regex of a character tokenizer: each code point alone (io.py reads a
# WordLevel model behind this Split as a CharTokenizer)
CHAR_SPLIT_REGEX = r"[\s\S]"


class CharTokenizer(Tokenizer):
    kind = "char"

    def __init__(self, vocab: dict[str, int], special_tokens: Sequence[str] = (), unk_token: str | None = None):
        for t in vocab:
            if len(t) != 1 and t not in special_tokens and t != unk_token:
                raise ValueError(f"character vocabulary entry {t!r} is not a single character; "
                                 "declare it in special_tokens")
        super().__init__(vocab, special_tokens)
        self.unk_token = unk_token
        if unk_token is not None:
            self.add_special_token(unk_token)

    @classmethod
    def train(cls, text: str | Iterable[str], special_tokens: Sequence[str] = (),
              unk_token: str | None = None) -> "CharTokenizer":
        """Vocabulary = special tokens (ids 0..k-1, in the order given, then `unk_token`),
        then every distinct character seen, sorted by code point."""
        chars: set[str] = set()
        for t in read_texts(text):
            chars.update(t)
        if not chars:
            raise ValueError("no characters to train on: the training text is empty; pass non-empty text")
        specials = list(dict.fromkeys([*special_tokens, *([unk_token] if unk_token else [])]))
        vocab = {t: i for i, t in enumerate(specials)}
        for ch in sorted(chars):
            vocab.setdefault(ch, len(vocab))
        return cls(vocab, specials, unk_token)

    def _unknown(self, ch: str) -> int:
        if self.unk_token is not None:
            return self.vocab[self.unk_token]
        raise ValueError(f"character {ch!r} (U+{ord(ch):04X}) is not in the vocabulary and the tokenizer "
                         "has no unk token; retrain on text that contains it or pass unk_token='<unk>'")

    def _encode_ids(self, text: str) -> list[int]:
        v = self.vocab
        try:
            return [v[c] for c in text]
        except KeyError:
            return [v[c] if c in v else self._unknown(c) for c in text]

    def _tokenize(self, text: str):
        ids = self._encode_ids(text)
        tokens = [self.inv_vocab[i] for i in ids]
        return ids, tokens, [(i, i + 1) for i in range(len(text))]

    def _decode_tokens(self, tokens: list[str]) -> str:
        return "".join(tokens)

    # tokenizer.json: a WordLevel model over single characters (HF has no "char" model).
    # Split with the regex `[\s\S]` isolates each code point; the Fuse decoder joins them back.
    def _hf_model(self) -> dict:
        return {"type": "WordLevel", "vocab": dict(sorted(self.vocab.items(), key=lambda kv: kv[1])),
                "unk_token": self.unk_token if self.unk_token is not None else "<unk>"}

    def _hf_parts(self) -> dict:
        return {"normalizer": None,
                "pre_tokenizer": {"type": "Split", "pattern": {"Regex": CHAR_SPLIT_REGEX},
                                  "behavior": "Isolated", "invert": False},
                "decoder": {"type": "Fuse"}}

    @classmethod
    def _from_hf(cls, data: dict, specials: list[str]) -> "CharTokenizer":
        vocab = data["model"]["vocab"]
        unk = data["model"].get("unk_token")
        unk = unk if unk in vocab else None  # "<unk>" absent from the vocab means: no unk token
        return cls(vocab, [t for t in specials if t != unk], unk)
