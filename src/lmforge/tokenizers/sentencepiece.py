"""Read a SentencePiece model file (T5's `spiece.model`) as a UnigramTokenizer, without the sentencepiece package.

The file is one protobuf message, `ModelProto` (sentencepiece_model.proto): field 1 the pieces (each a
message: 1 piece text, 2 score as float32, 3 type: 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused,
6 byte), field 2 the trainer spec (3 model_type: 1 unigram; 35 byte_fallback), field 3 the normalizer spec
(1 name; 3 add_dummy_prefix, 4 remove_extra_whitespaces, both true unless written). Protobuf's wire format
is a sequence of (key = field << 3 | wire type, value): varints, 64- and 32-bit words, length-prefixed bytes.

Control pieces (<pad>, </s>) and user-defined pieces become special tokens, the unknown piece the unk token.
Normalization: `nfkc` is per-character NFKC; `nmt_nfkc` (sentencepiece's default, T5's) adds its NMT rules:
ASCII control characters are removed and line breaks, tabs and a few invisible separators become spaces
(NMT_SPACES, NMT_REMOVED: what sentencepiece's normalizer does to each, checked against it in the tests);
`identity` is none. The file's precompiled character map is not read: these rules are its content for the
standard rule names. T5 checkpoints add `extra_ids` sentinels after the pieces (HF T5Tokenizer:
`<extra_id_0>` gets the largest id) and end every sequence with </s>.

    >>> tok = load_spiece("t5-dir/spiece.model", extra_ids=100)   # doctest: +SKIP
    >>> tok.encode("Hello")[-1] == tok.token_to_id("</s>")          # doctest: +SKIP
    True
"""
from __future__ import annotations

import struct
from pathlib import Path

from .base import Template
from .unigram import UnigramTokenizer, t5_sentinels

NORMALIZERS = ("nmt_nfkc", "nfkc", "identity")
NMT_SPACES = frozenset("\t\n\r\x0c\u200b\u200c\u200e\u2028\u2029\ufeff")  # -> " " under nmt_nfkc
NMT_REMOVED = frozenset(map(chr, [*range(0x01, 0x09), 0x0b, *range(0x0e, 0x20), 0x7f]))  # dropped under nmt_nfkc
_NORMAL, _UNKNOWN, _CONTROL, _USER, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6


def _fields(data: bytes, source: str):
    """(field number, value) of one protobuf message: ints for varints, bytes for the rest."""
    i, n = 0, len(data)

    def varint():
        nonlocal i
        shift = out = 0
        while True:
            if i >= n:
                raise ValueError(f"{source} ends inside a number: not a SentencePiece model file")
            b = data[i]
            i += 1
            out |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return out

    while i < n:
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            yield field, varint()
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield field, data[i:i + size]
            i += size
        elif wire == 2:
            size = varint()
            if i + size > n:
                raise ValueError(f"{source} ends inside a field: not a SentencePiece model file")
            yield field, data[i:i + size]
            i += size
        else:
            raise ValueError(f"{source}: protobuf wire type {wire} is not valid here: not a SentencePiece model file")


def read_spiece(data: bytes, source: str = "spiece.model") -> dict:
    """The parts of a ModelProto lmforge uses: pieces [(text, score, type)], model_type, byte_fallback,
    normalizer name, add_dummy_prefix, remove_extra_whitespaces."""
    out = {"pieces": [], "model_type": 1, "byte_fallback": False, "normalizer": "nmt_nfkc",
           "add_dummy_prefix": True, "remove_extra_whitespaces": True}
    for field, value in _fields(data, source):
        if field == 1:
            piece = {1: b"", 2: b"\0\0\0\0", 3: _NORMAL}
            piece.update(dict(_fields(value, source)))
            out["pieces"].append((piece[1].decode("utf-8"), struct.unpack("<f", piece[2])[0], piece[3]))
        elif field == 2:
            spec = dict(_fields(value, source))
            out["model_type"], out["byte_fallback"] = spec.get(3, 1), bool(spec.get(35, 0))
        elif field == 3:
            spec = dict(_fields(value, source))
            out["normalizer"] = spec.get(1, b"nmt_nfkc").decode("utf-8")
            out["add_dummy_prefix"], out["remove_extra_whitespaces"] = bool(spec.get(3, 1)), bool(spec.get(4, 1))
    if not out["pieces"]:
        raise ValueError(f"{source} has no pieces: not a SentencePiece model file")
    return out


class SentencePieceTokenizer(UnigramTokenizer):
    """A UnigramTokenizer read from a SentencePiece file whose rule is nmt_nfkc: NFKC after the NMT rules."""

    def _norm_char(self, c: str) -> str:
        return " " if c in NMT_SPACES else "" if c in NMT_REMOVED else super()._norm_char(c)


def load_spiece(path: str | Path, extra_ids: int = 0) -> UnigramTokenizer:
    """A SentencePiece Unigram model file -> UnigramTokenizer; extra_ids T5 sentinels appended (T5: 100)."""
    path = Path(path)
    spec = read_spiece(path.read_bytes(), str(path))
    kinds = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}
    if spec["model_type"] != 1:
        raise ValueError(f"{path} is a SentencePiece {kinds.get(spec['model_type'], spec['model_type'])} model; "
                         "lmforge reads Unigram models (T5's) from spiece.model")
    rule = spec["normalizer"]
    if rule not in NORMALIZERS:
        raise ValueError(f"{path} uses the normalization rule {rule!r}; lmforge reads {', '.join(NORMALIZERS)}")
    if not (spec["add_dummy_prefix"] and spec["remove_extra_whitespaces"]):
        raise ValueError(f"{path} turns off add_dummy_prefix or remove_extra_whitespaces; lmforge's Unigram "
                         "tokenizer always prepends ▁ and collapses spaces, as T5's model does")
    pieces = [(p, s) for p, s, _ in spec["pieces"]]
    unk = [p for p, _, t in spec["pieces"] if t == _UNKNOWN]
    if len(unk) != 1:
        raise ValueError(f"{path} has {len(unk)} unknown pieces; a SentencePiece model has exactly one")
    specials = [p for p, _, t in spec["pieces"] if t in (_CONTROL, _USER)]
    sentinels = [s for s in t5_sentinels(extra_ids) if s not in {p for p, _ in pieces}]
    template = Template.append_eos("</s>") if "</s>" in specials else None
    cls = SentencePieceTokenizer if rule == "nmt_nfkc" else UnigramTokenizer
    return cls(pieces + [(s, 0.0) for s in sentinels], unk[0], specials + sentinels, spec["byte_fallback"],
               rule != "identity", template)
