"""Byte-level BPE, as in GPT-2 (Radford et al. 2019, sec. 2.2; openai/gpt-2 src/encoder.py).

1. Pre-tokenize: GPT-2's regex splits text into words, each keeping its leading space:
   "Hello world's" -> ["Hello", " world", "'s"].
2. Each word becomes UTF-8 bytes, each byte one printable character (`bytes_to_unicode`):
   the space byte is "Ġ", so " world" -> "Ġworld". 256 base tokens cover every string, so
   there is never an unknown character.
3. Merges, learned in training, are applied in rank order: repeatedly merge the adjacent pair
   with the lowest rank (the leftmost of equal ranks) until no pair of the word has a rank.

The same model serves today's open models; only the parts around it differ (pipeline.py):
- Llama 3, Qwen2, GLM-4: a bigger regex first (`Split`: digits in runs of at most three, or one
  by one in Qwen2; a letter run may take one leading non-letter), then the byte mapping; Qwen2 first
  puts the text in NFC. Llama 3 sets `ignore_merges`: a word already in the vocabulary is one token,
  whatever the merges would give.
- Llama 2, Mistral (SentencePiece's BPE): no byte mapping. The text becomes "▁In▁the▁beginning"
  (a normalizer, or the Metaspace pre-tokenizer) and is split into characters; a character outside
  the vocabulary becomes its UTF-8 bytes as tokens `<0xE4><0xBD><0xA0>` (`byte_fallback`), or the
  unknown token, runs of which are fused into one (`fuse_unk`). The decoder turns "▁" back into
  spaces and byte tokens back into text.

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

import heapq
from collections import Counter
from typing import Iterable, Sequence

import regex

from .base import Tokenizer, read_texts
from .merges import learn_merges
# the byte table and GPT-2's pattern live with the ByteLevel step; they are re-exported here, where
# GPT-2's BPE is explained
from .pipeline import (BYTE_TO_CHAR, CHAR_TO_BYTE, GPT2_PATTERN, ByteLevel, ByteLevelDecoder, Decoder,  # noqa: F401
                       JoinWithSpaces, Normalizer, PreTokenizer, PreTokenizerSequence, Split, bytes_to_unicode,
                       decoder_from_hf, normalizer_from_hf, pre_tokenizer_from_hf, to_byte_level)

GPT_SPECIAL_TOKENS = ("<|endoftext|>",)  # GPT-2's one special token, id 50256 in its vocabulary


def _regex_of(pre: PreTokenizer) -> str | None:
    """The regex a byte-level pre-tokenizer splits with (GPT-2's, or a Split's before ByteLevel)."""
    if isinstance(pre, ByteLevel):
        return GPT2_PATTERN if pre.use_regex else None
    first = pre.parts[0] if isinstance(pre, PreTokenizerSequence) and pre.parts else None
    if isinstance(first, Split) and first.is_regex:
        return first.pattern
    return None


class BPETokenizer(Tokenizer):
    """BPE over bytes (GPT-2, Llama 3, Qwen2, GLM-4) or over characters with byte fallback (Llama 2,
    Mistral). `merges` is the ordered list of learned pairs.

    The GPT-2 form is built from `pattern` and `add_prefix_space`; any other form passes its parts:
    `normalizer`, `pre_tokenizer` and `decoder` (pipeline.py; a tokenizer.json gives them), and for
    character-level BPE `byte_fallback`, `unk_token`, `fuse_unk`.
    """

    kind = "bpe"

    def __init__(self, vocab: dict[str, int], merges: Sequence[tuple[str, str]],
                 special_tokens: Sequence[str] = (), pattern: str = GPT2_PATTERN,
                 add_prefix_space: bool = False, ignore_merges: bool = False, *,
                 normalizer: Normalizer | None = None, pre_tokenizer: PreTokenizer | None = None,
                 decoder: Decoder | None = None, byte_fallback: bool = False, unk_token: str | None = None,
                 fuse_unk: bool = False):
        super().__init__(vocab, special_tokens)
        if pre_tokenizer is None:  # GPT-2's form: ByteLevel with its regex, or a regex Split, then ByteLevel
            if pattern == GPT2_PATTERN:
                pre_tokenizer = ByteLevel(add_prefix_space, use_regex=True, trim_offsets=False)
            else:
                pre_tokenizer = PreTokenizerSequence(
                    [Split(pattern), ByteLevel(add_prefix_space, use_regex=False, trim_offsets=False)])
        self.normalizer, self.pre_tokenizer = normalizer, pre_tokenizer
        self.byte_level = pre_tokenizer.byte_level
        self.decoder = decoder or (ByteLevelDecoder() if self.byte_level else JoinWithSpaces())
        self.pattern = _regex_of(pre_tokenizer)  # kept for tools that re-use the split (tiktoken in bench/)
        self.add_prefix_space = add_prefix_space
        if self.byte_level:
            missing = [c for c in BYTE_TO_CHAR.values() if c not in self.vocab]
            if missing:
                raise ValueError(f"byte-level BPE vocabulary lacks {len(missing)} of the 256 byte characters "
                                 f"(e.g. {missing[0]!r}); it cannot encode every string. Retrain with lmforge or "
                                 "with HF's initial_alphabet=ByteLevel.alphabet()")
            self._byte_ids = [self.vocab[BYTE_TO_CHAR[b]] for b in range(256)]
        if unk_token is not None and unk_token not in self.vocab:
            raise ValueError(f"the BPE unk_token {unk_token!r} is not in the vocabulary; add it or set unk_token "
                             "to null")
        self.byte_fallback, self.unk_token, self.fuse_unk = byte_fallback, unk_token, fuse_unk
        self._unk_id = None if unk_token is None else self.vocab[unk_token]
        self.merges = [tuple(m) for m in merges]
        # (left id, right id) -> (rank, merged id); a pair listed twice keeps its last rank (as HF)
        self.ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for r, (a, b) in enumerate(self.merges):
            try:
                self.ranks[(self.vocab[a], self.vocab[b])] = (r, self.vocab[a + b])
            except KeyError as e:
                raise ValueError(f"merge #{r} ({a!r}, {b!r}) uses {e.args[0]!r}, which is not in the "
                                 "vocabulary; the merges and vocab come from different tokenizers") from None
        self.ignore_merges = ignore_merges
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
    def _symbols(self, word: str) -> tuple[list[int], list[list[int]]]:
        """The word's starting symbols and, for each, [first, last] index of the characters it covers.

        Byte-level: one per UTF-8 byte. Character-level (HF bpe/model.rs merge_word): one per
        character; a character outside the vocabulary becomes its bytes <0xE4><0xBD><0xA0> with
        byte_fallback (when the vocabulary has all of them), else the unknown token, a run of which is
        one token with fuse_unk. (Like HF, an unknown run waiting to be written lets byte tokens that
        follow it go first; without an unknown token an unknown character is dropped.)"""
        if self.byte_level:
            bi = self._byte_ids
            spans = [[j, j] for j, ch in enumerate(word) for _ in ch.encode("utf-8")]
            return [bi[b] for b in word.encode("utf-8")], spans
        vocab, unk = self.vocab, self._unk_id
        ids, where = [], []
        pending = None  # [first, last] character of an unknown run not yet written
        for j, ch in enumerate(word):
            i = vocab.get(ch)
            if i is not None:
                if pending is not None:
                    ids.append(unk); where.append(pending); pending = None
                ids.append(i); where.append([j, j])
                continue
            if self.byte_fallback:
                bids = [vocab.get(f"<0x{b:02X}>") for b in ch.encode("utf-8")]
                if None not in bids:
                    ids += bids; where += [[j, j] for _ in bids]
                    continue
            if unk is not None:
                if pending is not None and self.fuse_unk:
                    pending[1] = j
                    continue
                if pending is not None:
                    ids.append(unk); where.append(pending)
                pending = [j, j]
        if pending is not None:
            ids.append(unk); where.append(pending)
        return ids, where

    def _merge(self, ids: list[int], spans: list[list[int]] | None = None) -> list[int]:
        """Apply the merges to a word's symbols: always the pair with the lowest rank, the leftmost of
        equal ranks (HF bpe/word.rs merge_all: a heap of (rank, position), stale entries skipped; a
        linked list of symbols, so a long unsplit text costs O(n log n)). Example with merges
        [(a,a), (aa,a), (aaa,b)]: "aaab" -> a a a b -> aa a b -> aaa b -> aaab.
        `spans` ([first char, last char] per symbol) are merged alongside when given."""
        n = len(ids)
        ranks = self.ranks
        heap = [(r[0], i, r[1]) for i, r in enumerate(map(ranks.get, zip(ids, ids[1:]))) if r is not None]
        if not heap:
            return ids
        heapq.heapify(heap)
        sym = list(ids)
        nxt = list(range(1, n)) + [-1]
        prv = list(range(-1, n - 1))
        alive = [True] * n
        while heap:
            _, i, new = heapq.heappop(heap)
            if not alive[i]:
                continue
            j = nxt[i]
            if j < 0:
                continue
            r = ranks.get((sym[i], sym[j]))
            if r is None or r[1] != new:  # stale: one of the two was merged since
                continue
            sym[i] = new
            alive[j] = False
            k = nxt[j]
            nxt[i] = k
            if k >= 0:
                prv[k] = i
            if spans is not None:
                spans[i][1] = spans[j][1]
            p = prv[i]
            if p >= 0:
                r = ranks.get((sym[p], new))
                if r is not None:
                    heapq.heappush(heap, (r[0], p, r[1]))
            if k >= 0:
                r = ranks.get((new, sym[k]))
                if r is not None:
                    heapq.heappush(heap, (r[0], i, r[1]))
        if spans is not None:
            spans[:] = [s for s, a in zip(spans, alive) if a]
        return [s for s, a in zip(sym, alive) if a]

    def _whole(self, word: str) -> int | None:
        """With ignore_merges (Llama 3), a word already in the vocabulary is one token."""
        if not self.ignore_merges:
            return None
        return self.vocab.get(to_byte_level(word) if self.byte_level else word)

    def _segment(self, word: str) -> list[int]:
        """Ids of one pre-tokenized word (cached by `_word_ids`)."""
        whole = self._whole(word)
        if whole is not None:
            return [whole]
        return self._merge(self._symbols(word)[0])

    def _segment_spans(self, word: str) -> tuple[list[int], list[list[int]]]:
        """Ids and, for each, [first, last] character index in the word it covers."""
        whole = self._whole(word)
        if whole is not None:
            return [whole], [[0, len(word) - 1]]
        ids, spans = self._symbols(word)
        return self._merge(ids, spans), spans

    def _words(self, text: str, first: bool) -> list[str]:
        """Normalized, pre-tokenized words of a text (no alignment kept)."""
        if self.normalizer is not None:
            text = self.normalizer(text)
        return [w for w, _, _ in self.pre_tokenizer.split(text, None, first)]

    def _encode_ids_at(self, text: str, start: int) -> list[int]:
        cache = self._cache
        out: list[int] = []
        for w in self._words(text, start == 0):
            ids = cache.get(w)
            if ids is None:
                ids = self._word_ids(w)
            out += ids
        return out

    def _encode_ids(self, text: str) -> list[int]:
        return self._encode_ids_at(text, 0)

    def _tokenize_at(self, text: str, start: int):
        align = [(i, i + 1) for i in range(len(text))]  # each normalized character -> its span in `text`
        if self.normalizer is not None:
            text, align = self.normalizer.normalize(text, align)
        ids, tokens, offsets = [], [], []
        inv = self.inv_vocab
        for word, walign, _ in self.pre_tokenizer.split(text, align, start == 0):
            wids, spans = self._segment_spans(word)
            for i, (a, b) in zip(wids, spans):
                ids.append(i); tokens.append(inv[i]); offsets.append((walign[a][0], walign[b][1]))
        return ids, tokens, offsets

    def _tokenize(self, text: str):
        return self._tokenize_at(text, 0)

    def _decode_tokens(self, tokens: list[str]) -> str:
        return self.decoder.decode(tokens)

    # -- tokenizer.json ---------------------------------------------------------------------
    def _hf_model(self) -> dict:
        return {"type": "BPE", "dropout": None, "unk_token": self.unk_token, "continuing_subword_prefix": None,
                "end_of_word_suffix": None, "fuse_unk": self.fuse_unk, "byte_fallback": self.byte_fallback,
                "ignore_merges": self.ignore_merges,
                "vocab": dict(sorted(self.vocab.items(), key=lambda kv: kv[1])),
                "merges": [list(m) for m in self.merges]}

    def _hf_parts(self) -> dict:
        return {"normalizer": None if self.normalizer is None else self.normalizer.to_hf(),
                "pre_tokenizer": self.pre_tokenizer.to_hf(),
                "post_processor": {"type": "ByteLevel", "add_prefix_space": self.add_prefix_space,
                                   "trim_offsets": False, "use_regex": True} if self.byte_level else None,
                "decoder": self.decoder.to_hf()}

    @classmethod
    def _from_hf(cls, data: dict, specials: list[str]) -> "BPETokenizer":
        model = data["model"]
        for key in ("continuing_subword_prefix", "end_of_word_suffix"):
            if model.get(key):
                raise ValueError(f"BPE with {key} {model[key]!r} is not supported; lmforge reads byte-level BPE "
                                 "(GPT-2, Llama 3, Qwen2, GLM-4) and character BPE with byte fallback (Llama 2, "
                                 "Mistral), neither of which marks word pieces")
        if model.get("dropout"):
            raise ValueError(f"BPE dropout {model['dropout']} makes encoding random; lmforge encodes "
                             "deterministically: set \"dropout\": null in the file to load it")
        normalizer = normalizer_from_hf(data.get("normalizer"))
        pre = pre_tokenizer_from_hf(data.get("pre_tokenizer"))
        for a in data.get("added_tokens") or []:
            if a.get("normalized") and normalizer is not None and normalizer(a["content"]) != a["content"]:
                raise ValueError(f"added token {a['content']!r} is marked normalized and the normalizer changes "
                                 f"it (to {normalizer(a['content'])!r}); lmforge matches added tokens in the text "
                                 "as written: set \"normalized\": false for it")
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
        return cls(model["vocab"], merges, [], ignore_merges=model.get("ignore_merges", False),
                   normalizer=normalizer, pre_tokenizer=pre, decoder=decoder_from_hf(data.get("decoder")),
                   byte_fallback=model.get("byte_fallback", False), unk_token=model.get("unk_token"),
                   fuse_unk=model.get("fuse_unk", False))


ByteLevelBPETokenizer = BPETokenizer
