"""Byte-level BPE, as in GPT-2 (Radford et al. 2019, sec. 2.2; openai/gpt-2 src/encoder.py).

1. Pre-tokenize: GPT-2's regex splits text into words, each keeping its leading space:
   "Hello world's" -> ["Hello", " world", "'s"].
2. Each word becomes UTF-8 bytes, each byte one printable character (`bytes_to_unicode`):
   the space byte is "Ġ", so " world" -> "Ġworld". 256 base tokens cover every string, so
   there is never an unknown character.
3. Merges, learned in training, are applied in rank order: repeatedly merge the adjacent pair
   with the lowest rank until no pair of the word has a rank.

Training (Sennrich et al. 2016) starts from the 256 byte characters and repeatedly adds the
most frequent adjacent pair, counted over all words weighted by word frequency. Tie-break:
among pairs with the same count the one with the smallest (left id, right id) wins; ids are
given in order of creation (special tokens, then the 256 byte characters sorted by code point,
then merges). This is exactly Hugging Face `BpeTrainer`'s rule, so the same corpus gives the
same merges (tests/tokenizers/test_bpe.py checks it on the bundled corpora). The learner itself
is `merges.learn_merges`, which WordPiece training shares.

Textbook example (Wikipedia "Byte pair encoding"; minbpe's test): "aaabdaaabac" has pair
counts aa:4 (overlapping), ab:2, bd:1, ... so "aa" is merged first; then ("aa","a") and
("a","b") both occur twice and the tie goes to the smaller ids, ("a","b"); then ("aa","ab"):
    >>> tok = BPETokenizer.train(["aaabdaaabac"], vocab_size=256 + 3)
    >>> tok.merges
    [('a', 'a'), ('a', 'b'), ('aa', 'ab')]
    >>> [tok.id_to_token(i) for i in tok.encode("aaabdaaabac")]
    ['aaab', 'd', 'aaab', 'a', 'c']
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import regex

from .base import Tokenizer, read_texts
from .merges import learn_merges

# GPT-2's pre-tokenizer (openai/gpt-2 src/encoder.py); the same pattern is HF's ByteLevel default.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT_SPECIAL_TOKENS = ("<|endoftext|>",)  # GPT-2's one special token, id 50256 in its vocabulary


def bytes_to_unicode() -> dict[int, str]:
    """Byte -> printable character (GPT-2 encoder.py). Printable Latin-1 bytes map to
    themselves; the other 68 (control bytes, space, ...) map to chr(256 + n) in byte order.

    Example: 0x41 ('A') -> 'A', 0x20 (space) -> 'Ġ' (U+0120), 0x0A (newline) -> 'Ċ' (U+010A).
    """
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
# str.translate table: latin-1 decoded byte string -> byte-level characters
_BYTES_TRANSLATE = {b: c for b, c in BYTE_TO_CHAR.items()}


def to_byte_level(word: str) -> str:
    """"Ġworld" form of a word: its UTF-8 bytes as byte-level characters. ' é' -> 'ĠÃ©'."""
    return word.encode("utf-8").decode("latin-1").translate(_BYTES_TRANSLATE)


class BPETokenizer(Tokenizer):
    """Byte-level BPE (GPT-2 family). `merges` is the ordered list of learned pairs."""

    kind = "bpe"

    def __init__(self, vocab: dict[str, int], merges: Sequence[tuple[str, str]],
                 special_tokens: Sequence[str] = (), pattern: str = GPT2_PATTERN,
                 add_prefix_space: bool = False, ignore_merges: bool = False):
        super().__init__(vocab, special_tokens)
        missing = [c for c in BYTE_TO_CHAR.values() if c not in self.vocab]
        if missing:
            raise ValueError(f"byte-level BPE vocabulary lacks {len(missing)} of the 256 byte characters "
                             f"(e.g. {missing[0]!r}); it cannot encode every string. Retrain with lmforge or "
                             "with HF's initial_alphabet=ByteLevel.alphabet()")
        self.merges = [tuple(m) for m in merges]
        # (left id, right id) -> (rank, merged id); a pair listed twice keeps its last rank (as HF)
        self.ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for r, (a, b) in enumerate(self.merges):
            try:
                self.ranks[(self.vocab[a], self.vocab[b])] = (r, self.vocab[a + b])
            except KeyError as e:
                raise ValueError(f"merge #{r} ({a!r}, {b!r}) uses {e.args[0]!r}, which is not in the "
                                 "vocabulary; the merges and vocab come from different tokenizers") from None
        self.pattern = pattern
        self._pat = regex.compile(pattern)
        self.add_prefix_space = add_prefix_space
        self.ignore_merges = ignore_merges
        self._byte_ids = [self.vocab[BYTE_TO_CHAR[b]] for b in range(256)]
        self._cache: dict[str, list[int]] = {}

    # -- training ---------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: str | Iterable[str], vocab_size: int, special_tokens: Sequence[str] = (),
              min_frequency: int = 0, pattern: str = GPT2_PATTERN) -> "BPETokenizer":
        """Learn merges until the vocabulary (specials + 256 bytes + merges) has `vocab_size`
        tokens, or no pair occurs `min_frequency` times (HF's defaults: min_frequency 0)."""
        specials = list(dict.fromkeys(special_tokens))
        alphabet = sorted(BYTE_TO_CHAR.values())  # sorted by code point, as HF does
        floor = len(specials) + len([c for c in alphabet if c not in specials])
        if vocab_size < floor:
            raise ValueError(f"vocab_size {vocab_size} is smaller than the base alphabet: byte-level BPE needs "
                             f"256 byte tokens + {len(specials)} special tokens = {floor}; use --vocab-size >= {floor}")
        pat = regex.compile(pattern)
        counts: Counter[str] = Counter()
        for t in read_texts(texts):
            counts.update(pat.findall(t))
        if not counts:
            raise ValueError("no text to train on: the training texts are empty; pass non-empty text")
        words = Counter()
        for w, c in counts.items():
            words[to_byte_level(w)] += c
        vocab, merges = learn_merges(words, vocab_size, specials, alphabet, min_frequency)
        return cls(vocab, merges, specials, pattern)

    # -- encoding ---------------------------------------------------------------------------
    def _segment(self, word: str) -> list[int]:
        """Ids of one pre-tokenized word: bytes, then merges by rank (lowest first, leftmost
        first). Example with merges [(a,a), (aa,a), (aaa,b)]: "aaab" -> a a a b -> aa a b ->
        aaa b -> aaab."""
        if self.ignore_merges:
            bl = to_byte_level(word)
            if bl in self.vocab:
                return [self.vocab[bl]]
        bi = self._byte_ids
        ids = [bi[b] for b in word.encode("utf-8")]
        ranks = self.ranks
        while len(ids) > 1:
            best = None
            for pair in zip(ids, ids[1:]):
                r = ranks.get(pair)
                if r is not None and (best is None or r[0] < best[0]):
                    best, best_pair = r, pair
            if best is None:
                break
            a, b = best_pair
            new_id = best[1]
            out, i, n = [], 0, len(ids)
            while i < n:  # merge every occurrence, left to right, non-overlapping
                if i < n - 1 and ids[i] == a and ids[i + 1] == b:
                    out.append(new_id); i += 2
                else:
                    out.append(ids[i]); i += 1
            ids = out
        return ids

    def _encode_ids(self, text: str) -> list[int]:
        if self.add_prefix_space and text and not text.startswith(" "):
            text = " " + text
        cache = self._cache
        out: list[int] = []
        for w in self._pat.findall(text):
            ids = cache.get(w)
            if ids is None:
                ids = self._word_ids(w)
            out += ids
        return out

    def _tokenize(self, text: str):
        shift = 0
        if self.add_prefix_space and text and not text.startswith(" "):
            text, shift = " " + text, 1  # the added space is aligned to the first character
        ids, tokens, offsets = [], [], []
        inv = self.inv_vocab
        for m in self._pat.finditer(text):
            word, start = m.group(), m.start()
            wids = self._word_ids(word)
            # char index of every byte of the word, to map each token's byte span to characters
            char_of_byte = [j for j, ch in enumerate(word) for _ in range(len(ch.encode("utf-8")))]
            pos = 0
            for i in wids:
                t = inv[i]  # one byte-level character per byte
                a, b = char_of_byte[pos], char_of_byte[pos + len(t) - 1] + 1
                pos += len(t)
                ids.append(i); tokens.append(t)
                offsets.append((max(start + a - shift, 0), start + b - shift))
        return ids, tokens, offsets

    def _decode_tokens(self, tokens: list[str]) -> str:
        # bytes that do not form valid UTF-8 (a token sequence cut inside a character) decode
        # to U+FFFD, as HF's ByteLevel decoder does; a token with a character outside the byte
        # table (a special token like "[PAD]" is fine, "<|用户|>" is not) stands for its UTF-8 bytes
        data = bytearray()
        for t in tokens:
            try:
                data += bytes(CHAR_TO_BYTE[c] for c in t)
            except KeyError:
                data += t.encode("utf-8")
        return data.decode("utf-8", errors="replace")

    # -- tokenizer.json ---------------------------------------------------------------------
    def _hf_model(self) -> dict:
        return {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                "ignore_merges": self.ignore_merges,
                "vocab": dict(sorted(self.vocab.items(), key=lambda kv: kv[1])),
                "merges": [list(m) for m in self.merges]}

    def _hf_parts(self) -> dict:
        if self.pattern != GPT2_PATTERN:
            pre = {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": self.pattern}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": self.add_prefix_space, "trim_offsets": False,
                 "use_regex": False}]}
        else:
            pre = {"type": "ByteLevel", "add_prefix_space": self.add_prefix_space, "trim_offsets": False,
                   "use_regex": True}
        return {"normalizer": None, "pre_tokenizer": pre,
                "post_processor": {"type": "ByteLevel", "add_prefix_space": self.add_prefix_space,
                                   "trim_offsets": False, "use_regex": True},
                "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                            "use_regex": True}}

    @classmethod
    def _from_hf(cls, data: dict, specials: list[str]) -> "BPETokenizer":
        model = data["model"]
        if data.get("normalizer") is not None:
            raise ValueError(f"BPE tokenizer.json with normalizer {data['normalizer'].get('type')!r} is not "
                             "supported; lmforge reads byte-level BPE files without a normalizer (GPT-2 style)")
        pre = data.get("pre_tokenizer") or {}
        pattern, prefix = None, False
        if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
            pattern, prefix = GPT2_PATTERN, pre.get("add_prefix_space", False)
        elif pre.get("type") == "Sequence":
            parts = pre.get("pretokenizers", [])
            if (len(parts) == 2 and parts[0].get("type") == "Split" and "Regex" in parts[0].get("pattern", {})
                    and parts[0].get("behavior") == "Isolated" and not parts[0].get("invert")
                    and parts[1].get("type") == "ByteLevel" and not parts[1].get("use_regex", True)):
                pattern, prefix = parts[0]["pattern"]["Regex"], parts[1].get("add_prefix_space", False)
        if pattern is None:
            raise ValueError(f"BPE tokenizer.json with pre_tokenizer {pre.get('type')!r} is not supported; "
                             "lmforge reads byte-level BPE (ByteLevel, or Split regex + ByteLevel)")
        if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") or model.get("byte_fallback"):
            raise ValueError("BPE with continuing_subword_prefix / end_of_word_suffix / byte_fallback is not "
                             "supported; lmforge reads byte-level BPE (GPT-2 style)")
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
        return cls(model["vocab"], merges, [], pattern, prefix, model.get("ignore_merges", False))


ByteLevelBPETokenizer = BPETokenizer
