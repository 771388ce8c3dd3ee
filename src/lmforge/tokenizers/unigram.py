"""Unigram language-model tokenizer, as in SentencePiece and T5 (Kudo 2018, "Subword
Regularization"; Kudo & Richardson 2018).

Text is normalized (optional per-character NFKC; runs of spaces collapsed, ends stripped), every
space becomes "▁" and one "▁" is put in front: "Hello world" -> "▁Hello▁world". The text is cut
into words at each "▁" and each word is segmented by Viterbi: the split whose pieces have the
largest total log-probability (score). Where two splits tie, sentencepiece's float32 sums decide, so
such lines are split as sentencepiece does, in float32 over the whole line (see "Viterbi" below). A character no piece covers becomes <unk> (a run of them
one <unk>, as SentencePiece does) or, with byte_fallback, its UTF-8 bytes <0xE4><0xBD><0xA0>.

    >>> tok = UnigramTokenizer([("<unk>", 0.0), ("▁", -2.0), ("▁a", -1.0), ("b", -2.0), ("ab", -2.5),
    ...                         ("a", -3.0), ("▁ab", -4.0)], unk_token="<unk>")
    >>> tok.encode_full("ab ab").tokens    # ▁a+b = -3.0 beats ▁ab = -4.0 and ▁+ab = -4.5
    ['▁a', 'b', '▁a', 'b']

Training (Kudo 2018, sec. 3.2, SentencePiece's unigram_model_trainer.cc): seed with frequent
substrings, then repeat {EM: expected piece counts by forward-backward, scores = digamma-
smoothed log-probabilities; prune: drop the pieces whose removal costs the least likelihood,
keeping 75%} until the vocabulary has the requested size. Single characters are never pruned.
"""
from __future__ import annotations

import math
import struct
import unicodedata
from array import array
from collections import Counter, defaultdict
from typing import Iterable, Sequence

from .base import Template, Tokenizer, read_texts

T5_SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in T5's SentencePiece model


def t5_sentinels(n: int = 100) -> list[str]:
    """T5's span-corruption sentinels, `<extra_id_0>` ... `<extra_id_{n-1}>`.

    They sit at the END of the vocabulary in reverse order: `<extra_id_0>` has the largest id
    (T5 paper, sec. 3.1.4; HF T5Tokenizer `extra_ids`). Example: n=2 on a 10-token vocab ->
    `<extra_id_1>` = 10, `<extra_id_0>` = 11. Append the list returned here, in this order.
    """
    return [f"<extra_id_{i}>" for i in reversed(range(n))]


SPACE = "▁"  # U+2581, SentencePiece's whitespace marker
UNK_PENALTY = 10.0  # unknown-character score = lowest piece score - 10 (SentencePiece kUnkPenalty)
# Lines whose running score may grow this large (float32 spacing there: 2**-7) run wholly in float32
# (_viterbi_f32); below it a word is cached unless it has a tie or near-tie. It covers lines of up to
# ~2,800 characters with the 8k model (largest |score| 23.5, <unk>'s).
SAFE_MAGNITUDE = 2.0 ** 16
_MISS = object()


class UnigramTokenizer(Tokenizer):
    kind = "unigram"
    CACHE_SIZE = 100_000

    def __init__(self, pieces: Sequence[tuple[str, float]], unk_token: str = "<unk>",
                 special_tokens: Sequence[str] = (), byte_fallback: bool = False, nfkc: bool = False,
                 template: Template | None = None, extra_ids: int = 0):
        # extra_ids: T5's sentinels <extra_id_{n-1}> .. <extra_id_0> appended as special tokens, so that
        # <extra_id_0> is the last id (HF T5Tokenizer(extra_ids=n) on a spiece.model; lmforge.data.span)
        if extra_ids < 0:
            raise ValueError(f"extra_ids must be >= 0 (the number of <extra_id_k> sentinels), got {extra_ids}")
        sentinels = t5_sentinels(extra_ids)
        pieces = [(p, float(s)) for p, s in pieces] + [(t, 0.0) for t in sentinels]
        special_tokens = [*special_tokens, *sentinels]
        vocab = {}
        for p, _ in pieces:
            if p in vocab:
                raise ValueError(f"piece {p!r} appears twice in the Unigram vocabulary; each piece once")
            vocab[p] = len(vocab)
        if unk_token not in vocab:
            raise ValueError(f"the Unigram vocabulary has no unk token {unk_token!r}; add it or pass unk_token=")
        super().__init__(vocab, [*special_tokens, unk_token], template)
        self.pieces, self.unk_token, self.byte_fallback, self.nfkc = pieces, unk_token, byte_fallback, nfkc
        self.scores = {p: s for p, s in pieces if p not in self.special_tokens and not _is_byte_piece(p)}
        # Viterbi's lookup table, a flat trie: every prefix of a piece -> its score, or None if the
        # prefix is no piece. A miss ends the scan from a position (no longer piece can match there).
        self._prefixes: dict[str, float | None] = {p[:k]: None for p in self.scores for k in range(1, len(p))}
        self._prefixes.update(self.scores)
        lowest = min(self.scores.values(), default=0.0)
        self._unk_score = lowest - UNK_PENALTY
        self._unk_score32 = _f32(_f32(lowest) - UNK_PENALTY)  # as sentencepiece computes it, in float
        # |any running score| <= characters so far * this, as the best path never scores below the
        # path of single characters (a piece or <unk> each)
        self._max_abs_score = max([abs(self._unk_score), *(abs(s) for s in self.scores.values())])
        self._prefixes32: dict[str, float | None] | None = None  # _prefixes in float32, on first use
        # a piece with ▁ after its first character spans words: then a line cannot be cut into words
        self._joined_words = any(SPACE in p[1:] for p in self.scores)
        if byte_fallback:
            missing = [f"<0x{b:02X}>" for b in range(256) if f"<0x{b:02X}>" not in vocab]
            if missing:
                raise ValueError(f"byte_fallback needs the 256 pieces <0x00>..<0xFF>; {missing[0]} is missing")
        self._cache: dict[str, list[int]] = {}  # word -> ids, its split safe in any line below SAFE_MAGNITUDE
        self._near_ties: dict[str, tuple[list[int], float]] = {}  # word -> (ids, magnitude it is safe below)
        self._tie_lines: dict[str, list[int]] = {}  # line -> ids, for lines split by _viterbi_f32

    # -- normalization ------------------------------------------------------------------------
    def _norm_char(self, c: str) -> str:
        return unicodedata.normalize("NFKC", c) if self.nfkc else c

    def _normalize_aligned(self, text: str) -> tuple[str, list[int]]:
        """-> ("▁Hello▁world", original index of each character). Spaces: runs collapse to one,
        leading/trailing ones go (SentencePiece remove_extra_whitespaces); one ▁ is prepended
        (add_dummy_prefix) and aligned to the first character."""
        chars, orig = [], []
        for i, c in enumerate(text):
            for n in self._norm_char(c):
                if n == " " and (not chars or chars[-1] == SPACE):
                    continue
                chars.append(SPACE if n == " " else n); orig.append(i)
        while chars and chars[-1] == SPACE:
            chars.pop(); orig.pop()
        if chars:
            chars.insert(0, SPACE); orig.insert(0, orig[0])
        return "".join(chars), orig

    def normalize(self, text: str) -> str:
        if self.nfkc:
            text = "".join(self._norm_char(c) for c in text)
        words = text.split(" ")
        return "".join(SPACE + w for w in words if w)

    # -- Viterbi ------------------------------------------------------------------------------
    # sentencepiece (unigram_model.cc, Model::EncodeOptimized, its default encoder) runs one lattice
    # over the whole normalized line: start positions left to right, from each the pieces shortest
    # first, then <unk> if no one-character piece starts there; a candidate replaces the best path
    # ending where it ends only if its score is strictly greater, so of two equal scores the one found
    # first stays. Scores are float32 and so is every running sum. Where no two splits come close,
    # the winner is that of exact arithmetic, which we find word by word (no piece has a ▁ after its
    # first character, so every path passes through every ▁) and cache. Where two splits tie, as
    # `─`+`──` and `──`+`─` always do, float32 rounding of the sum carried from the start of the line
    # picks the winner, so such lines run sentencepiece's Viterbi in float32 (_viterbi_f32).
    def _viterbi(self, word: str) -> tuple[list[str], float]:
        """Best split of one word in (near) exact arithmetic, float64, and the margin of its closest
        call: the smallest |candidate - best[j]| compared, 0 for a tie (_safe_below says what margin
        float32 needs). best[j] = best score of word[:j]; ties keep the split found first."""
        n, table, unk_score = len(word), self._prefixes, self._unk_score
        best = [0.0] + [-math.inf] * n
        back = [0] * (n + 1)
        margin = math.inf
        for i in range(n):  # every position is reached: a one-character piece or <unk> ends at i + 1
            base = best[i]
            covered = False
            for j in range(i + 1, n + 1):
                s = table.get(word[i:j], _MISS)
                if s is _MISS:
                    break
                if s is not None:
                    if j == i + 1:
                        covered = True
                    d = base + s - best[j]
                    if d > 0:
                        best[j], back[j] = base + s, i
                        if d < margin:
                            margin = d
                    elif -d < margin:
                        margin = -d
            if not covered:
                d = base + unk_score - best[i + 1]
                if d > 0:
                    best[i + 1], back[i + 1] = base + unk_score, i
                    if d < margin:
                        margin = d
                elif -d < margin:
                    margin = -d
        out, j = [], n
        while j > 0:
            out.append(word[back[j]:j]); j = back[j]
        return out[::-1], margin

    def _viterbi_f32(self, line: str) -> list[str]:
        """Best split of a whole normalized line ("▁In▁the▁beginning") exactly as sentencepiece
        finds it: same order of candidates, same strict comparison, float32 scores and sums (a
        float64 sum of two float32 numbers rounds to their float32 sum: 53 >= 2 * 24 + 2 bits)."""
        if self._prefixes32 is None:
            self._prefixes32 = {p: None if s is None else _f32(s) for p, s in self._prefixes.items()}
        n, table, unk_score = len(line), self._prefixes32, self._unk_score32
        best = [0.0] + [-math.inf] * n  # float32 values
        back = [0] * (n + 1)
        f32 = array("f", [0.0])  # storing into it rounds to float32
        for i in range(n):
            base = best[i]
            covered = False
            for j in range(i + 1, n + 1):
                s = table.get(line[i:j], _MISS)
                if s is _MISS:
                    break
                if s is not None:
                    if j == i + 1:
                        covered = True
                    if base + s > best[j]:  # rounding is monotonic: only a float64 win can win in float32
                        f32[0] = base + s
                        if f32[0] > best[j]:
                            best[j], back[j] = f32[0], i
            if not covered and base + unk_score > best[i + 1]:
                f32[0] = base + unk_score
                if f32[0] > best[i + 1]:
                    best[i + 1], back[i + 1] = f32[0], i
        out, j = [], n
        while j > 0:
            out.append(line[back[j]:j]); j = back[j]
        return out[::-1]

    def _line_pieces(self, line: str) -> list[str]:
        """Best split of a normalized line: word by word, or all at once in float32 where two splits
        of a word come close enough for float32 rounding to choose between them."""
        magnitude = len(line) * self._max_abs_score  # bounds |any running score| in the line
        if magnitude >= SAFE_MAGNITUDE or self._joined_words:
            return self._viterbi_f32(line)
        out = []
        for w in line.split(SPACE)[1:]:
            pieces, margin = self._viterbi(SPACE + w)
            if magnitude >= _safe_below(len(w) + 1, margin):
                return self._viterbi_f32(line)
            out += pieces
        return out

    def _pieces_to_tokens(self, pieces: list[str]) -> list[tuple[int, str, int]]:
        """-> [(id, token, length in the text)] with unknown runs fused or byte-encoded."""
        vocab, unk = self.vocab, self.vocab[self.unk_token]
        out: list[tuple[int, str, int]] = []
        for p in pieces:
            i = vocab.get(p)
            if i is not None and p in self.scores:
                out.append((i, p, len(p)))
            elif self.byte_fallback:
                bs = p.encode("utf-8")
                out += [(vocab[f"<0x{b:02X}>"], f"<0x{b:02X}>", len(p) if k == 0 else 0) for k, b in enumerate(bs)]
            elif out and out[-1][0] == unk:  # fuse a run of unknown characters (SentencePiece)
                out[-1] = (unk, self.unk_token, out[-1][2] + len(p))
            else:
                out.append((unk, self.unk_token, len(p)))
        return out

    def _word_ids(self, word: str, magnitude: float) -> list[int] | None:
        """Ids of SPACE + word, cached by word (the pre-tokenized word without its ▁); None if in a
        line of this magnitude float32 rounding could split the word otherwise. A word whose split
        holds below SAFE_MAGNITUDE goes into the cache, which needs no check; one with a tie or a
        near-tie goes into _near_ties with the magnitude it holds up to."""
        near = self._near_ties.get(word)
        if near is None:
            pieces, margin = self._viterbi(SPACE + word)
            ids = [i for i, _, _ in self._pieces_to_tokens(pieces)]
            holds = _safe_below(len(word) + 1, margin)
            if len(self._cache) + len(self._near_ties) >= self.CACHE_SIZE:
                self._cache.clear(); self._near_ties.clear()
            if holds >= SAFE_MAGNITUDE:
                self._cache[word] = ids
                return ids
            near = self._near_ties[word] = (ids, holds)
        ids, holds = near
        return ids if magnitude < holds else None

    def _encode_ids(self, text: str) -> list[int]:
        # the words of normalize(text).split(SPACE), without building the normalized string
        if self.nfkc:
            text = "".join(self._norm_char(c) for c in text)
        magnitude = (len(text) + 1) * self._max_abs_score  # >= len(normalize(text)) * max |score|
        if magnitude >= SAFE_MAGNITUDE or self._joined_words:
            return self._ids_f32(text, memo=False)
        out: list[int] = []
        cache, word_ids = self._cache, self._word_ids
        for w in text.split(" "):
            if not w:
                continue
            for part in (w.split(SPACE) if SPACE in w else (w,)):
                ids = cache.get(part)
                if ids is None:
                    ids = word_ids(part, magnitude)
                    if ids is None:  # a tie in this word: float32 along the line decides, as in sentencepiece
                        return self._ids_f32(text)
                out += ids
        return out

    def _ids_f32(self, text: str, memo: bool = True) -> list[int]:
        """Ids of a (NFKC'd) text by sentencepiece's float32 Viterbi over the whole line; lines with
        ties are memoized as words are (box-drawing lines repeat), long lines are not."""
        ids = self._tie_lines.get(text)
        if ids is None:
            line = "".join(SPACE + w for w in text.split(" ") if w)
            ids = [i for i, _, _ in self._pieces_to_tokens(self._viterbi_f32(line))]
            if memo:
                if len(self._tie_lines) >= self.CACHE_SIZE:
                    self._tie_lines.clear()
                self._tie_lines[text] = ids
        return ids

    def _tokenize(self, text: str):
        norm, orig = self._normalize_aligned(text)
        ids, tokens, offsets = [], [], []
        pos = 0
        for i, t, n in self._pieces_to_tokens(self._line_pieces(norm)):
            a, b = (pos, pos + n) if n else (pos - 1, pos)  # later bytes of a char share its span
            ids.append(i); tokens.append(t); offsets.append((orig[a], orig[b - 1] + 1))
            pos += n
        return ids, tokens, offsets

    def _decode_tokens(self, tokens: list[str]) -> str:
        data, out = bytearray(), []
        for t in tokens:
            if self.byte_fallback and _is_byte_piece(t):
                data.append(int(t[3:5], 16)); continue
            if data:
                out.append(data.decode("utf-8", errors="replace")); data = bytearray()
            out.append(t)
        if data:
            out.append(data.decode("utf-8", errors="replace"))
        text = "".join(out).replace(SPACE, " ")
        return text[1:] if text.startswith(" ") else text

    # -- training -----------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: str | Iterable[str], vocab_size: int, special_tokens: Sequence[str] = T5_SPECIAL_TOKENS,
              unk_token: str = "<unk>", max_piece_length: int = 16, shrinking_factor: float = 0.75,
              em_iterations: int = 2, seed_size: int = 1_000_000, nfkc: bool = False,
              extra_ids: int = 0) -> "UnigramTokenizer":
        """Learn pieces and scores (defaults from SentencePiece's trainer_spec: max_piece_length 16,
        shrinking_factor 0.75, num_sub_iterations 2, seed_sentencepiece_size 1M). The vocabulary is special tokens first
        (T5: <pad> </s> <unk>), then pieces by descending score, then `extra_ids` sentinels (T5: 100), which
        `vocab_size` does not count: T5's 32000 pieces + 100 extra ids = 32100 tokens."""
        specials = list(dict.fromkeys([*special_tokens, unk_token]))
        probe = cls([(unk_token, 0.0)], unk_token, nfkc=nfkc)
        words: Counter[str] = Counter()
        line_ends: Counter[str] = Counter()  # how often each word is the last of its line
        for t in read_texts(texts):
            ws = probe.normalize(t).split(SPACE)[1:]
            for w in ws:
                words[SPACE + w] += 1
            if ws:
                line_ends[SPACE + ws[-1]] += 1
        if not words:
            raise ValueError("no text to train on: the training texts are empty; pass non-empty text")
        chars = Counter()
        for w, c in words.items():
            for ch in w:
                chars[ch] += c
        if vocab_size < len(specials) + len(chars):
            raise ValueError(f"vocab_size {vocab_size} is smaller than the alphabet: {len(chars)} distinct characters "
                             f"+ {len(specials)} special tokens = {len(specials) + len(chars)}; raise --vocab-size")
        # 1. seed (SentencePiece MakeSeedSentencePieces): the internal nodes of the suffix tree of all
        # lines, i.e. substrings that occur at least twice and are right-branching (followed by two or
        # more different characters), with no ▁ after their first character. SentencePiece builds the
        # tree over whole lines, so a word's end is followed by the next word's ▁ or by the end of the
        # line: "▁from" (always a whole word) is a seed once it ends a line as well as being followed
        # by another word; "▁shal" (shall, shalt) is one anyway. Ranked and scored by freq * length,
        # as SentencePiece does; characters by freq.
        sub: dict[str, list] = {}  # piece -> [freq, first follower, branching?]
        for w, c in words.items():
            for n, end in ((c - line_ends[w], SPACE), (line_ends[w], None)):  # None: end of line
                if not n:
                    continue
                for i in range(len(w)):
                    for j in range(i + 2, min(len(w), i + max_piece_length) + 1):
                        nxt = w[j] if j < len(w) else end
                        e = sub.get(w[i:j])
                        if e is None:
                            sub[w[i:j]] = [n, nxt, False]
                        else:
                            e[0] += n
                            if e[1] != nxt:
                                e[2] = True
        coverage = sorted(((p, e[0] * len(p)) for p, e in sub.items() if e[2] and e[0] >= 2),
                          key=lambda kv: (-kv[1], kv[0]))
        pieces = dict(chars)
        pieces.update(coverage[:seed_size])
        total = sum(pieces.values())
        scores = {p: math.log(f / total) for p, f in pieces.items()}
        target = vocab_size - len(specials)
        word_list = list(words.items())
        while True:
            for _ in range(em_iterations):  # 2. EM
                expected = _expected_counts(word_list, scores, max_piece_length)
                total = sum(expected.values())
                # M-step, Bayesian: digamma smoothing drops pieces with expected count < 0.5 (spm)
                # (characters always stay, their count floored at 0.5 so every word stays coverable)
                scores = {p: _digamma(max(f, 0.5)) - _digamma(total) for p, f in expected.items()
                          if f >= 0.5 or len(p) == 1}
                for ch in chars:
                    scores.setdefault(ch, _digamma(0.5) - _digamma(total))
            if len(scores) <= int(target * 1.1):
                break
            scores = _prune(word_list, scores, max(int(target * 1.1), int(len(scores) * shrinking_factor)),
                            set(chars), max_piece_length)
        keep = sorted(scores.items(), key=lambda kv: (-(len(kv[0]) == 1), -kv[1], kv[0]))
        chars_first = keep[:len(chars)]  # single characters are required; then the best pieces
        rest = sorted(keep[len(chars):], key=lambda kv: (-kv[1], kv[0]))[:target - len(chars)]
        final = sorted(chars_first + rest, key=lambda kv: (-kv[1], kv[0]))
        return cls([(s, 0.0) for s in specials] + final, unk_token, [s for s in specials if s != unk_token],
                   nfkc=nfkc, template=Template.append_eos("</s>") if "</s>" in specials else None, extra_ids=extra_ids)

    # -- tokenizer.json -----------------------------------------------------------------------
    def _hf_model(self) -> dict:
        return {"type": "Unigram", "unk_id": self.vocab[self.unk_token], "byte_fallback": self.byte_fallback,
                "vocab": [[p, s] for p, s in self.pieces]}

    def _hf_parts(self) -> dict:
        norms = ([{"type": "NFKC"}] if self.nfkc else []) + [
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            {"type": "Strip", "strip_left": True, "strip_right": True}]
        meta = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "always", "split": True}
        decoder = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}, meta]} \
            if self.byte_fallback else meta
        return {"normalizer": {"type": "Sequence", "normalizers": norms}, "pre_tokenizer": meta, "decoder": decoder}

    @classmethod
    def _from_hf(cls, data: dict, specials: list[str]) -> "UnigramTokenizer":
        model = data["model"]
        pieces = [(p, s) for p, s in model["vocab"]]
        unk_id = model.get("unk_id")
        if unk_id is None:
            raise ValueError("Unigram tokenizer.json without unk_id is not supported; set model.unk_id")
        norm = data.get("normalizer") or {}
        kinds = [n.get("type") for n in norm.get("normalizers", [])] if norm.get("type") == "Sequence" else \
            [norm.get("type")] if norm else []
        unsupported = [k for k in kinds if k not in ("NFKC", "Replace", "Strip")]
        if unsupported:
            raise ValueError(f"Unigram tokenizer.json with normalizer {unsupported[0]!r} is not supported "
                             "(SentencePiece's Precompiled charsmap included); lmforge reads NFKC/Replace/Strip")
        unk = pieces[unk_id][0]
        return cls(pieces, unk, [t for t in specials if t != unk], model.get("byte_fallback", False), "NFKC" in kinds)


def _safe_below(n: int, margin: float) -> float:
    """The line magnitude M below which float32 sums keep the split of an n-character word whose
    closest call has this margin: |x| < M rounds to float32 with error <= M * 2**-24, as does each
    score; so each piece of a path adds <= M * 2**-23, and two paths of <= n pieces differ from exact
    by <= n * M * 2**-22 together. With a factor 2 to spare: safe while M < margin * 2**21 / n."""
    return margin * 2.0 ** 21 / n


def _f32(x: float) -> float:
    """x rounded to float32, as sentencepiece stores scores."""
    return struct.unpack("f", struct.pack("f", x))[0]


def _is_byte_piece(p: str) -> bool:
    return len(p) == 6 and p.startswith("<0x") and p.endswith(">")


def _digamma(x: float) -> float:
    """psi(x), by recurrence up to 7 then the asymptotic series (as SentencePiece's Digamma)."""
    r = 0.0
    while x < 7:
        r -= 1 / x
        x += 1
    x -= 0.5
    xx = 1 / x
    xx2 = xx * xx
    xx4 = xx2 * xx2
    return r + math.log(x) + xx2 / 24 - 7 / 960 * xx4 + 31 / 8064 * xx4 * xx2 - 127 / 30720 * xx4 * xx4


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def _expected_counts(words, scores, maxlen) -> dict[str, float]:
    """E-step: forward-backward over each word's lattice; count(piece) += P(piece at i:j | word) * freq."""
    expected: dict[str, float] = defaultdict(float)
    for w, freq in words:
        n = len(w)
        edges = [[(j, w[i:j], scores[w[i:j]]) for j in range(i + 1, min(n, i + maxlen) + 1) if w[i:j] in scores]
                 for i in range(n)]
        alpha = [0.0] + [-math.inf] * n
        for i in range(n):
            if alpha[i] != -math.inf:
                for j, _, s in edges[i]:
                    alpha[j] = _logaddexp(alpha[j], alpha[i] + s)
        beta = [-math.inf] * n + [0.0]
        for i in range(n - 1, -1, -1):
            for j, _, s in edges[i]:
                beta[i] = _logaddexp(beta[i], s + beta[j])
        z = alpha[n]
        for i in range(n):
            for j, p, s in edges[i]:
                expected[p] += freq * math.exp(min(0.0, alpha[i] + s + beta[j] - z))
    return expected


def _prune(words, scores, keep: int, required: set[str], maxlen: int) -> dict[str, float]:
    """Keep the `keep` pieces whose removal would lose the most likelihood (SentencePiece
    PruneSentencePieces): with freq from the Viterbi splits of all words, and F the share of
    words (by count) whose split uses s,
        loss(s) = F * (log p(s) - sum over the best split of s without s of log p'(alt)),
    where p' gives s's frequency to each of its alternatives."""
    tmp = UnigramTokenizer([("<unk>", 0.0)] + list(scores.items()), "<unk>")
    freq: Counter[str] = Counter()
    share: Counter[str] = Counter()
    for w, c in words:
        split = tmp._viterbi(w)[0]
        for p in split:
            freq[p] += c
        for p in set(split):
            share[p] += c
    total, n_words = sum(freq.values()), sum(c for _, c in words)
    loss, always = {}, set(required)
    for p in scores:
        if p in required:
            continue
        f = freq.get(p, 0)
        if f == 0:
            continue  # not on any best path: removing it costs nothing
        tmp._prefixes[p] = None  # best split of the piece itself without it
        alt = tmp._viterbi(p)[0]
        tmp._prefixes[p] = scores[p]
        new_total = total + f * (len(alt) - 1)
        logp_alt = sum(math.log(freq.get(a, 0) + f) - math.log(new_total) for a in alt)
        loss[p] = share[p] / n_words * (math.log(f) - math.log(total) - logp_alt)
    kept = sorted(loss, key=lambda p: (-loss[p], p))[:max(0, keep - len(always))]
    return {p: scores[p] for p in [*always, *kept] if p in scores}
