"""The parts of a tokenizer.json around the model: normalizers, pre-tokenizers, decoders.

Hugging Face `tokenizers` runs every text through the same pipeline (tokenizers docs, "The
tokenization pipeline"):

    text -> added tokens split out -> normalizer -> pre-tokenizer -> model (per word) -> ids
    ids -> tokens -> decoder -> text

Today's open models differ mostly here, not in the model. GPT-2 byte-level BPE uses one ByteLevel
pre-tokenizer; Llama 3, Qwen2 and GLM-4 split with a bigger regex first (numbers in runs of at most
three digits, letters with one leading non-letter) and then map bytes; Llama 2 and Mistral keep
SentencePiece's form: a normalizer puts "▁" in front and for every space, there is no pre-tokenizer,
and characters outside the vocabulary fall back to byte tokens <0x0A>; newer files do the same with a
Metaspace pre-tokenizer. This module reads each part from its tokenizer.json object, runs it, and
writes it back:

    >>> pre = pre_tokenizer_from_hf({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
    ...                              "split": True})
    >>> [w for w, _, _ in pre.split("Hey  friend!")]
    ['▁Hey', '▁', '▁friend!']
    >>> decoder_from_hf({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}).decode(
    ...     ["▁Hey", "▁", "▁friend!"])
    'Hey  friend!'

A piece of text travels as (text, align, first). `align` is None on the fast path (ids only);
otherwise align[i] is the (start, end) span, in the caller's text, of text[i], so each token's
offsets can be read off the characters it covers. `first` says the piece starts the input (what
Metaspace's prepend_scheme "first" looks at). Parts that are not here raise ValueError naming the part
and listing what is supported.
"""
from __future__ import annotations

import unicodedata

import regex


Align = list[tuple[int, int]] | None
Piece = tuple[str, Align, bool]

# Unicode White_Space, which Rust's char::is_whitespace (HF's Strip) tests; str.isspace also takes
# the separators U+001C..U+001F, which Rust does not
WHITESPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                       "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def _need(d: dict, key: str, part: str):
    if key not in d:
        raise ValueError(f"{part} in tokenizer.json has no {key!r}; the file is incomplete")
    return d[key]


def _pattern(d: dict, part: str) -> tuple[str, bool]:
    """A Split/Replace "pattern": {"String": s} or {"Regex": r} -> (regex source, is_regex)."""
    p = _need(d, "pattern", part)
    if isinstance(p, dict) and "Regex" in p:
        return p["Regex"], True
    if isinstance(p, dict) and "String" in p:
        return p["String"], False
    raise ValueError(f"{part} pattern {p!r} is neither {{'String': ...}} nor {{'Regex': ...}}")


def _pattern_to_hf(source: str, is_regex: bool) -> dict:
    return {"Regex": source} if is_regex else {"String": source}


# ==== GPT-2's byte table ============================================================================
# GPT-2's pre-tokenizer (openai/gpt-2 src/encoder.py); the same pattern is HF's ByteLevel default.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


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
_BYTES_TRANSLATE = {b: c for b, c in BYTE_TO_CHAR.items()}  # str.translate table over latin-1 decoded bytes


def to_byte_level(word: str) -> str:
    """"Ġworld" form of a word: its UTF-8 bytes as byte-level characters. ' é' -> 'ĠÃ©'."""
    return word.encode("utf-8").decode("latin-1").translate(_BYTES_TRANSLATE)


# ==== normalizers ===================================================================================
class Normalizer:
    """text -> normalized text; `normalize(text, align)` carries the alignment along when given."""

    def normalize(self, text: str, align: Align = None) -> tuple[str, Align]:
        raise NotImplementedError

    def __call__(self, text: str) -> str:
        return self.normalize(text)[0]

    def to_hf(self) -> dict:
        raise NotImplementedError


class Unicode(Normalizer):
    """NFC, NFD, NFKC or NFKD (Unicode standard annex #15). Qwen2's files use NFC."""

    def __init__(self, form: str):
        self.form = form

    def normalize(self, text, align=None):
        if align is None or unicodedata.is_normalized(self.form, text):
            return unicodedata.normalize(self.form, text), align
        # per cluster (a starter and the marks after it); as in HF, the k-th output character of a
        # cluster takes the span of its k-th input character, or of the last one when the cluster
        # grows ("e" + U+0301 -> "é" keeps the span of "e"). Where clusters interact (Hangul jamo) the
        # whole text shares one span: ids stay exact
        out, out_align, i = [], [], 0
        while i < len(text):
            j = i + 1
            while j < len(text) and unicodedata.combining(text[j]):
                j += 1
            n = unicodedata.normalize(self.form, text[i:j])
            out.append(n); out_align += [align[i + min(k, j - i - 1)] for k in range(len(n))]
            i = j
        joined, whole = "".join(out), unicodedata.normalize(self.form, text)
        if joined != whole:
            return whole, [(align[0][0], align[-1][1])] * len(whole)
        return whole, out_align

    def to_hf(self):
        return {"type": self.form}


class Lowercase(Normalizer):
    """Each character lowercased on its own, as Rust's char::to_lowercase (a final 'Σ' -> 'σ')."""

    def normalize(self, text, align=None):
        if align is None:
            return "".join(c.lower() for c in text), None
        out, out_align = [], []
        for c, a in zip(text, align):
            lc = c.lower(); out.append(lc); out_align += [a] * len(lc)
        return "".join(out), out_align

    def to_hf(self):
        return {"type": "Lowercase"}


class Prepend(Normalizer):
    """Put `prepend` in front of non-empty text (Llama 2: "▁"); it is aligned to the first character."""

    def __init__(self, prepend: str):
        self.prepend = prepend

    def normalize(self, text, align=None):
        if not text:
            return text, align
        return self.prepend + text, None if align is None else [align[0]] * len(self.prepend) + align

    def to_hf(self):
        return {"type": "Prepend", "prepend": self.prepend}


class Replace(Normalizer):
    """Replace every match of a string or regex by `content` (Llama 2: " " -> "▁"). The characters put
    in take the span of the last character they replace (as HF aligns them)."""

    def __init__(self, pattern: str, content: str, is_regex: bool = False):
        self.pattern, self.content, self.is_regex = pattern, content, is_regex
        self._re = regex.compile(pattern if is_regex else regex.escape(pattern))

    def normalize(self, text, align=None):
        if align is None:
            if not self.is_regex:
                return (text.replace(self.pattern, self.content) if self.pattern else text), None
            return self._re.sub(lambda m: self.content, text), None
        out, out_align, pos = [], [], 0
        for m in self._re.finditer(text):
            s, e = m.span()
            if s == e:
                continue
            out.append(text[pos:s]); out_align += align[pos:s]
            out.append(self.content); out_align += [align[e - 1]] * len(self.content)
            pos = e
        out.append(text[pos:]); out_align += align[pos:]
        return "".join(out), out_align

    def to_hf(self):
        return {"type": "Replace", "pattern": _pattern_to_hf(self.pattern, self.is_regex), "content": self.content}


class Strip(Normalizer):
    """Remove whitespace at the left and/or right end."""

    def __init__(self, left: bool = True, right: bool = True):
        self.left, self.right = left, right

    def normalize(self, text, align=None):
        s, e = 0, len(text)
        while self.left and s < e and text[s] in WHITESPACE:
            s += 1
        while self.right and e > s and text[e - 1] in WHITESPACE:
            e -= 1
        return text[s:e], None if align is None else align[s:e]

    def to_hf(self):
        return {"type": "Strip", "strip_left": self.left, "strip_right": self.right}


class NormalizerSequence(Normalizer):
    def __init__(self, parts: list[Normalizer]):
        self.parts = parts

    def normalize(self, text, align=None):
        for p in self.parts:
            text, align = p.normalize(text, align)
        return text, align

    def to_hf(self):
        return {"type": "Sequence", "normalizers": [p.to_hf() for p in self.parts]}


NORMALIZERS = ("NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Prepend", "Replace", "Strip", "Sequence")


def normalizer_from_hf(d: dict | None) -> Normalizer | None:
    """A tokenizer.json "normalizer" object -> a Normalizer (None stays None)."""
    if d is None:
        return None
    kind = d.get("type")
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return Unicode(kind)
    if kind == "Lowercase":
        return Lowercase()
    if kind == "Prepend":
        return Prepend(_need(d, "prepend", "Prepend normalizer"))
    if kind == "Replace":
        src, is_regex = _pattern(d, "Replace normalizer")
        return Replace(src, _need(d, "content", "Replace normalizer"), is_regex)
    if kind == "Strip":
        return Strip(d.get("strip_left", True), d.get("strip_right", True))
    if kind == "Sequence":
        return NormalizerSequence([normalizer_from_hf(p) for p in _need(d, "normalizers", "Sequence normalizer")])
    raise ValueError(f"normalizer of type {kind!r} is not supported; lmforge reads the normalizers "
                     f"{', '.join(NORMALIZERS)} (BertNormalizer with WordPiece files)")


# ==== pre-tokenizers ================================================================================
def _slice(piece: Piece, s: int, e: int, first: bool) -> Piece:
    text, align, _ = piece
    return text[s:e], None if align is None else align[s:e], first


def _isolate(pat, text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_match) covering text: the matches of `pat` and the gaps between them
    (HF pattern.rs find_matches); empty matches are skipped."""
    out, prev = [], 0
    for m in pat.finditer(text):
        s, e = m.span()
        if s == e:
            continue
        if prev != s:
            out.append((prev, s, False))
        out.append((s, e, True))
        prev = e
    if prev != len(text):
        out.append((prev, len(text), False))
    return out


def _isolated(pat, piece: Piece) -> list[Piece]:
    """`piece` split at every match of `pat`, matches and gaps alike (behavior Isolated). Fast path:
    where the matches of a group-free regex cover the text, as GPT-2's and Llama 3's do, they are
    the words."""
    text, align, first = piece
    if align is None and not pat.groups:
        ws = pat.findall(text)
        if sum(map(len, ws)) == len(text):
            out = [(w, None, False) for w in ws]
            if first:
                k = next((k for k, w in enumerate(ws) if w), None)
                if k is not None:
                    out[k] = (ws[k], None, True)
            return out
    return [_slice(piece, s, e, first and s == 0) for s, e, _ in _isolate(pat, text)]


def _apply_behavior(spans: list[tuple[int, int, bool]], behavior: str) -> list[tuple[int, int]]:
    """Which spans become pieces under a SplitDelimiterBehavior (HF normalizer.rs split):
    Removed drops matches, Isolated keeps each alone, MergedWithPrevious/Next glues a match to its
    neighbour (a run of matches: only the one next to the neighbour), Contiguous joins runs of the same kind.
    Example, delimiter "-" in "a-b--c": Removed a b c; Isolated a - b - - c; MergedWithPrevious a- b- - c;
    MergedWithNext a -b - -c; Contiguous a - b -- c."""
    if behavior == "Removed":
        return [(s, e) for s, e, m in spans if not m]
    if behavior == "Isolated":
        return [(s, e) for s, e, _ in spans]
    out: list[list[int]] = []
    prev_match = False
    if behavior == "MergedWithNext":
        for s, e, m in reversed(spans):
            if m and not prev_match and out:
                out[-1][0] = s
            else:
                out.append([s, e])
            prev_match = m
        return [(s, e) for s, e in reversed(out)]
    for s, e, m in spans:
        join = (m and not prev_match) if behavior == "MergedWithPrevious" else (m == prev_match)
        if join and out:
            out[-1][1] = e
        else:
            out.append([s, e])
        prev_match = m
    return [(s, e) for s, e in out]


BEHAVIORS = ("Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous")


class PreTokenizer:
    """Cuts a normalized text into words; the model tokenizes each word on its own."""

    byte_level = False  # the words are to be mapped to GPT-2's byte characters before the model

    def split(self, text: str, align: Align = None, first: bool = True) -> list[Piece]:
        return self.split_pieces([(text, align, first)])

    def split_pieces(self, pieces: list[Piece]) -> list[Piece]:
        out: list[Piece] = []
        for p in pieces:
            out += [q for q in self._split_one(p) if q[0]]  # empty pieces are dropped, as HF does
        return out

    def _split_one(self, piece: Piece) -> list[Piece]:
        raise NotImplementedError

    def to_hf(self) -> dict:
        raise NotImplementedError


class Split(PreTokenizer):
    """Split on a regex (or a literal string); Llama 3, Qwen2 and GLM-4 use a regex with behavior
    Isolated: every match is a word, and so is any text between matches."""

    def __init__(self, pattern: str, behavior: str = "Isolated", invert: bool = False, is_regex: bool = True):
        if behavior not in BEHAVIORS:
            raise ValueError(f"Split behavior {behavior!r} is not one of {', '.join(BEHAVIORS)}")
        self.pattern, self.behavior, self.invert, self.is_regex = pattern, behavior, invert, is_regex
        try:
            self._re = regex.compile(pattern if is_regex else regex.escape(pattern))
        except regex.error as e:
            raise ValueError(f"Split pattern {pattern!r} is not a regex lmforge can compile: {e}") from None

    def _split_one(self, piece):
        if self.behavior == "Isolated" and not self.invert:
            return _isolated(self._re, piece)
        spans = _isolate(self._re, piece[0])
        if self.invert:
            spans = [(s, e, not m) for s, e, m in spans]
        return [_slice(piece, s, e, piece[2] and s == 0) for s, e in _apply_behavior(spans, self.behavior)]

    def to_hf(self):
        return {"type": "Split", "pattern": _pattern_to_hf(self.pattern, self.is_regex),
                "behavior": self.behavior, "invert": self.invert}


class Digits(PreTokenizer):
    """Numbers apart from the rest: runs of digits, or each digit alone (individual_digits)."""

    def __init__(self, individual_digits: bool = False):
        self.individual_digits = individual_digits
        self._re = regex.compile(r"\p{N}" if individual_digits else r"\p{N}+")

    def _split_one(self, piece):
        return _isolated(self._re, piece)

    def to_hf(self):
        return {"type": "Digits", "individual_digits": self.individual_digits}


class ByteLevel(PreTokenizer):
    """GPT-2's pre-tokenizer: optionally a space in front, optionally GPT-2's regex split, then every
    word as UTF-8 bytes drawn as printable characters (bpe.py); the byte mapping is left to the model,
    so a word is cached by its text. Must be the last step, as in every file seen."""

    byte_level = True

    def __init__(self, add_prefix_space: bool = False, use_regex: bool = True, trim_offsets: bool = True):
        self.add_prefix_space, self.use_regex, self.trim_offsets = add_prefix_space, use_regex, trim_offsets
        self._re = regex.compile(GPT2_PATTERN)

    def _split_one(self, piece):
        text, align, first = piece
        if self.add_prefix_space and text and not text.startswith(" "):
            text, align = " " + text, None if align is None else [align[0]] + align
        piece = (text, align, first)
        return _isolated(self._re, piece) if self.use_regex else [piece]

    def to_hf(self):
        return {"type": "ByteLevel", "add_prefix_space": self.add_prefix_space, "trim_offsets": self.trim_offsets,
                "use_regex": self.use_regex}


PREPEND_SCHEMES = ("always", "first", "never")


class Metaspace(PreTokenizer):
    """SentencePiece's whitespace: every space becomes `replacement` ("▁"), one is put in front (always,
    only at the start of the input: first, or never), and with `split` each word starts at a "▁"."""

    def __init__(self, replacement: str = "▁", prepend_scheme: str = "always", split: bool = True):
        if prepend_scheme not in PREPEND_SCHEMES:
            raise ValueError(f"Metaspace prepend_scheme {prepend_scheme!r} is not one of {', '.join(PREPEND_SCHEMES)}")
        if len(replacement) != 1:
            raise ValueError(f"Metaspace replacement {replacement!r} must be one character")
        self.replacement, self.prepend_scheme, self.split_words = replacement, prepend_scheme, split
        self._re = regex.compile(regex.escape(replacement))

    def _split_one(self, piece):
        text, align, first = piece
        text = text.replace(" ", self.replacement)
        if text and (self.prepend_scheme == "always" or (self.prepend_scheme == "first" and first)) \
                and not text.startswith(self.replacement):
            text, align = self.replacement + text, None if align is None else [align[0]] + align
        piece = (text, align, first)
        if not self.split_words:
            return [piece]
        spans = _apply_behavior(_isolate(self._re, text), "MergedWithNext")
        return [_slice(piece, s, e, first and s == 0) for s, e in spans]

    def to_hf(self):
        return {"type": "Metaspace", "replacement": self.replacement, "prepend_scheme": self.prepend_scheme,
                "split": self.split_words}


class PreTokenizerSequence(PreTokenizer):
    def __init__(self, parts: list[PreTokenizer]):
        for p in parts[:-1]:
            if p.byte_level:
                raise ValueError("a ByteLevel pre-tokenizer followed by others is not supported; lmforge reads "
                                 "ByteLevel as the last step of a pre-tokenizer Sequence (as GPT-2, Llama 3, "
                                 "Qwen2 and GLM-4 files have it)")
        self.parts = parts
        self.byte_level = bool(parts) and parts[-1].byte_level

    def split_pieces(self, pieces):
        for p in self.parts:
            pieces = p.split_pieces(pieces)
        return pieces

    def to_hf(self):
        return {"type": "Sequence", "pretokenizers": [p.to_hf() for p in self.parts]}


class Whole(PreTokenizer):
    """No pre-tokenizer (Llama 2's files): the normalized text is one word."""

    def _split_one(self, piece):
        return [piece]

    def to_hf(self):
        return None


PRE_TOKENIZERS = ("ByteLevel", "Split", "Metaspace", "Digits", "Sequence")


def pre_tokenizer_from_hf(d: dict | None) -> PreTokenizer:
    """A tokenizer.json "pre_tokenizer" object -> a PreTokenizer (None: the text is one word)."""
    if d is None:
        return Whole()
    kind = d.get("type")
    if kind == "ByteLevel":
        return ByteLevel(d.get("add_prefix_space", True), d.get("use_regex", True), d.get("trim_offsets", True))
    if kind == "Split":
        src, is_regex = _pattern(d, "Split pre-tokenizer")
        return Split(src, d.get("behavior", "Isolated"), d.get("invert", False), is_regex)
    if kind == "Metaspace":
        return Metaspace(*_metaspace_args(d))
    if kind == "Digits":
        return Digits(d.get("individual_digits", False))
    if kind == "Sequence":
        return PreTokenizerSequence([pre_tokenizer_from_hf(p)
                                     for p in _need(d, "pretokenizers", "Sequence pre-tokenizer")])
    raise ValueError(f"pre-tokenizer of type {kind!r} is not supported; lmforge reads the pre-tokenizers "
                     f"{', '.join(PRE_TOKENIZERS)} (BertPreTokenizer with WordPiece files)")


def _metaspace_args(d: dict) -> tuple[str, str, bool]:
    # files written before tokenizers 0.19 say add_prefix_space instead of prepend_scheme
    scheme = d.get("prepend_scheme") or ("always" if d.get("add_prefix_space", True) else "never")
    return d.get("replacement", "▁"), scheme, d.get("split", True)


# ==== decoders ======================================================================================
class Decoder:
    """tokens -> text. Each part maps the list of token strings to a new list (HF `decode_chain`);
    `decode` joins the result."""

    def chain(self, tokens: list[str]) -> list[str]:
        raise NotImplementedError

    def decode(self, tokens: list[str]) -> str:
        return "".join(self.chain(tokens))

    def to_hf(self) -> dict | None:
        raise NotImplementedError


class ByteLevelDecoder(Decoder):
    """Byte characters back to bytes, bytes to UTF-8 text; invalid UTF-8 (a sequence cut inside a
    character) becomes U+FFFD. A token with a character outside the byte table (an added token such
    as "<|用户|>") stands for its own UTF-8 bytes."""

    def chain(self, tokens):
        data = bytearray()
        for t in tokens:
            try:
                data += bytes(CHAR_TO_BYTE[c] for c in t)
            except KeyError:
                data += t.encode("utf-8")
        return [data.decode("utf-8", errors="replace")]

    def to_hf(self):
        return {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}


_BYTE_TOKEN = regex.compile(r"<0x(\+?[0-9A-Fa-f]{1,2})>")  # the 6 characters "<0x0A>"; Rust's from_str_radix takes a "+"


def byte_of_token(t: str) -> int | None:
    """<0x0A> -> 10; anything else -> None."""
    m = _BYTE_TOKEN.fullmatch(t) if len(t) == 6 else None
    return int(m.group(1), 16) if m else None


class ByteFallback(Decoder):
    """Runs of byte tokens <0xE4><0xBD><0xA0> back to the text they encode ("你"); a run that is not
    valid UTF-8 gives one U+FFFD per byte token."""

    def chain(self, tokens):
        out: list[str] = []
        run = bytearray()
        for t in [*tokens, None]:
            b = None if t is None else byte_of_token(t)
            if b is not None:
                run.append(b)
                continue
            if run:
                try:
                    out.append(run.decode("utf-8"))
                except UnicodeDecodeError:
                    out += ["\ufffd"] * len(run)
                run = bytearray()
            if t is not None:
                out.append(t)
        return out

    def to_hf(self):
        return {"type": "ByteFallback"}


class Fuse(Decoder):
    def chain(self, tokens):
        return ["".join(tokens)]

    def to_hf(self):
        return {"type": "Fuse"}


class StripDecoder(Decoder):
    """Remove up to `start` leading and `stop` trailing `content` characters from each token
    (Llama 2: one leading space, the one its normalizer put in front)."""

    def __init__(self, content: str = " ", start: int = 0, stop: int = 0):
        self.content, self.start, self.stop = content, start, stop

    def chain(self, tokens):
        out = []
        for t in tokens:
            s, e = 0, len(t)
            while s < min(self.start, len(t)) and t[s] == self.content:
                s += 1
            while len(t) - e < self.stop and e > s and t[e - 1] == self.content:
                e -= 1
            out.append(t[s:e])
        return out

    def to_hf(self):
        return {"type": "Strip", "content": self.content, "start": self.start, "stop": self.stop}


class ReplaceDecoder(Decoder):
    """Replace in each token (Llama 2: "▁" -> " ")."""

    def __init__(self, pattern: str, content: str, is_regex: bool = False):
        self._replace = Replace(pattern, content, is_regex)

    def chain(self, tokens):
        return [self._replace(t) for t in tokens]

    def to_hf(self):
        r = self._replace
        return {"type": "Replace", "pattern": _pattern_to_hf(r.pattern, r.is_regex), "content": r.content}


class MetaspaceDecoder(Decoder):
    """"▁" back to a space; in the first token every "▁" goes instead, unless prepend_scheme is never
    (as HF's decoder does: it assumes the first "▁" was put there by the pre-tokenizer)."""

    def __init__(self, replacement: str = "▁", prepend_scheme: str = "always", split: bool = True):
        self.replacement, self.prepend_scheme, self.split_words = replacement, prepend_scheme, split

    def chain(self, tokens):
        drop_first = self.prepend_scheme != "never"
        return [t.replace(self.replacement, "" if i == 0 and drop_first else " ") for i, t in enumerate(tokens)]

    def to_hf(self):
        return {"type": "Metaspace", "replacement": self.replacement, "prepend_scheme": self.prepend_scheme,
                "split": self.split_words}


class DecoderSequence(Decoder):
    def __init__(self, parts: list[Decoder]):
        self.parts = parts

    def chain(self, tokens):
        for p in self.parts:
            tokens = p.chain(tokens)
        return tokens

    def to_hf(self):
        return {"type": "Sequence", "decoders": [p.to_hf() for p in self.parts]}


class JoinWithSpaces(Decoder):
    """No decoder in the file: HF joins the tokens with spaces."""

    def chain(self, tokens):
        return [" ".join(tokens)]

    def to_hf(self):
        return None


DECODERS = ("ByteLevel", "ByteFallback", "Fuse", "Strip", "Replace", "Metaspace", "Sequence")


def decoder_from_hf(d: dict | None) -> Decoder:
    """A tokenizer.json "decoder" object -> a Decoder (None: join the tokens with spaces, as HF)."""
    if d is None:
        return JoinWithSpaces()
    kind = d.get("type")
    if kind == "ByteLevel":
        return ByteLevelDecoder()
    if kind == "ByteFallback":
        return ByteFallback()
    if kind == "Fuse":
        return Fuse()
    if kind == "Strip":
        return StripDecoder(_need(d, "content", "Strip decoder"), d.get("start", 0), d.get("stop", 0))
    if kind == "Replace":
        src, is_regex = _pattern(d, "Replace decoder")
        return ReplaceDecoder(src, _need(d, "content", "Replace decoder"), is_regex)
    if kind == "Metaspace":
        return MetaspaceDecoder(*_metaspace_args(d))
    if kind == "Sequence":
        return DecoderSequence([decoder_from_hf(p) for p in _need(d, "decoders", "Sequence decoder")])
    raise ValueError(f"decoder of type {kind!r} is not supported; lmforge reads the decoders "
                     f"{', '.join(DECODERS)} (WordPiece with WordPiece files)")


