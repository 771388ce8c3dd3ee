"""Parallel text for translation: the bundled gettext TSVs, a fixed split by program, token-count batches.

TSV format (the bundled gettext-en-de.tsv.xz / gettext-en-zh.tsv.xz, or any file like them): a header
`domain<TAB>en<TAB>de` (or `zh`), one pair per line; newlines inside a message are written `\\n`.
We keep that escaped form as the text the model reads and writes: `\\n` is one more thing it must copy.

The split is by `domain` (the program a message belongs to), fixed by the two lists below, so every
test message comes from programs never seen in training. A val/test pair whose English also occurs in
the training split (gnulib messages are shared by many programs) is dropped from val/test.

    >>> placeholders('Copy %s to %2$d <b>now</b>\\\\n 100%%')
    ['%s', '%2$d', '<b>', '</b>', '\\\\n', '%%']
"""
from __future__ import annotations

import lzma
import random
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# <pad> <s> </s>: ids 0, 1, 2 in every translation tokenizer (TransformerConfig / LSTMConfig defaults)
SPECIALS = ("<pad>", "<s>", "</s>")
PAD, BOS, EOS = 0, 1, 2
LANGS = ("de", "zh")
BUNDLED = {"en-de": "gettext-en-de.tsv.xz", "en-zh": "gettext-en-zh.tsv.xz"}

# Fixed split by program. Test: ~2,500 EN-DE / ~2,400 EN-ZH rows of mid-sized, self-contained tools;
# val: ~800 rows. Every other domain (git, postgres, gnupg, coreutils, gtk, ...) is training data.
TEST_DOMAINS = ("wget", "wget-gnulib", "tar", "sed", "shadow", "apt", "man-db", "man-db-gnulib", "avahi", "psmisc")
VAL_DOMAINS = ("diffutils", "findutils", "xz", "grep", "adduser")

# printf conversions (%s, %1$d, %-10.3f, %lu, %%), markup tags, backslash escapes (\n, \t, \")
_PLACEHOLDER = re.compile(r"%(?:\d+\$)?[-+ #0']*(?:\*|\d+)?(?:\.(?:\*|\d+))?(?:hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGaAcspn%]"
                          r"|</?[A-Za-z][^<>]*>|\\[ntr\"\\]")


def placeholders(text: str) -> list[str]:
    """The things a translator must copy through unchanged, in order of appearance."""
    return _PLACEHOLDER.findall(text)


@dataclass(frozen=True)
class Pair:
    domain: str
    src: str  # English
    tgt: str  # German or Chinese


def read_tsv(path_or_pair: str | Path) -> tuple[str, list[Pair]]:
    """Read a bundled pair ("en-de", "en-zh") or a TSV file (.tsv or .tsv.xz) -> (target language, pairs)."""
    name = str(path_or_pair)
    if name in BUNDLED:
        raw = lzma.decompress((resources.files("lmforge.data") / "corpora" / BUNDLED[name]).read_bytes())
        source = f"bundled corpus {name}"
    else:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (pass a TSV file, or a bundled pair: {', '.join(BUNDLED)})")
        raw = path.read_bytes()
        if path.suffix == ".xz":
            raw = lzma.decompress(raw)
        source = str(path)
    try:
        lines = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{source} is not UTF-8 text ({e})") from None
    header = lines[0].rstrip("\r").split("\t")
    if len(header) != 3 or header[0] != "domain" or header[1] != "en":
        raise ValueError(f"{source}: the header must be 'domain<TAB>en<TAB>de' or 'domain<TAB>en<TAB>zh', "
                         f"got {lines[0][:80]!r}")
    lang = header[2]
    if lang not in LANGS:
        raise ValueError(f"{source}: unknown language column {lang!r}; supported target languages: {', '.join(LANGS)}")
    if lines and lines[-1] == "":
        lines = lines[:-1]  # the final newline
    pairs = []
    for n, line in enumerate(lines[1:], start=2):
        cols = line.rstrip("\r").split("\t")
        if line.strip() == "":
            raise ValueError(f"{source}, line {n}: empty line; every line needs domain, en and {lang}")
        if len(cols) != 3:
            raise ValueError(f"{source}, line {n}: expected 3 tab-separated columns (domain, en, {lang}), "
                             f"got {len(cols)}: {line[:80]!r}")
        if not cols[1].strip() or not cols[2].strip():
            raise ValueError(f"{source}, line {n}: the en or {lang} column is empty")
        pairs.append(Pair(*cols))
    if not pairs:
        raise ValueError(f"{source} has a header but no pairs")
    return lang, pairs


def split_by_domain(pairs: list[Pair]) -> dict[str, list[Pair]]:
    """{"train", "val", "test"} by TEST_DOMAINS / VAL_DOMAINS; val/test lose English seen in train."""
    out = {"train": [], "val": [], "test": []}
    for p in pairs:
        out["test" if p.domain in TEST_DOMAINS else "val" if p.domain in VAL_DOMAINS else "train"].append(p)
    seen = {p.src for p in out["train"]}
    for k in ("val", "test"):
        out[k] = [p for p in out[k] if p.src not in seen]
    return out


def encode_pairs(tokenizer, pairs: list[Pair], max_len: int | None = None) -> tuple[list[tuple[list[int], list[int]]], int]:
    """Pairs -> ([(source ids + </s>, <s> + target ids + </s>)], number skipped for exceeding max_len)."""
    out, skipped = [], 0
    for p in pairs:
        s = tokenizer.encode(p.src) + [EOS]
        t = [BOS] + tokenizer.encode(p.tgt) + [EOS]
        if max_len is not None and (len(s) > max_len or len(t) > max_len):
            skipped += 1
            continue
        out.append((s, t))
    return out, skipped


def train_tokenizer(pairs: list[Pair], vocab_size: int):
    """A joint byte-level BPE (GPT-2 style; Sennrich et al. 2016 learned BPE jointly on both languages)
    over both sides of `pairs` -- pass the training split only."""
    from lmforge.tokenizers import ByteLevelBPETokenizer
    texts = [p.src for p in pairs] + [p.tgt for p in pairs]
    return ByteLevelBPETokenizer.train(texts, vocab_size=vocab_size, special_tokens=SPECIALS)


class TokenBatches:
    """Batches of about `max_tokens` tokens (padding included), pairs of similar length together.

    Pairs are sorted by (source, target) length and cut into batches whose rows * longest side stays
    within max_tokens (Vaswani et al. 2017 sec. 5.1: "batched together by approximate sequence
    length"). `get(i)` is a pure function of i: epoch e = i // n visits the batches in a permutation
    seeded by (seed, e). Returns (src (B, S), tgt_in (B, T), targets (B, T)) with targets' padding -100.
    """

    def __init__(self, examples: list[tuple[list[int], list[int]]], max_tokens: int, seed: int = 0, pad_id: int = PAD):
        if not examples:
            raise ValueError("no translation pairs to batch (is the split empty, or every pair longer than max_len?)")
        self.examples, self.seed, self.pad_id = examples, seed, pad_id
        order = sorted(range(len(examples)), key=lambda i: (len(examples[i][0]), len(examples[i][1]), i))
        self.batches, cur, longest = [], [], 0
        for i in order:
            n = max(len(examples[i][0]), len(examples[i][1]))
            if cur and max(longest, n) * (len(cur) + 1) > max_tokens:
                self.batches.append(cur)
                cur, longest = [], 0
            cur.append(i)
            longest = max(longest, n)
        self.batches.append(cur)

    def __len__(self) -> int:
        return len(self.batches)

    def get(self, index: int):
        import torch
        epoch, k = divmod(index, len(self.batches))
        perm = list(range(len(self.batches)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(perm)
        rows = [self.examples[i] for i in self.batches[perm[k]]]
        S, T = max(len(s) for s, _ in rows), max(len(t) for _, t in rows) - 1
        src = torch.full((len(rows), S), self.pad_id, dtype=torch.long)
        tgt = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        targets = torch.full((len(rows), T), -100, dtype=torch.long)
        for r, (s, t) in enumerate(rows):
            src[r, :len(s)] = torch.tensor(s)
            tgt[r, :len(t) - 1] = torch.tensor(t[:-1])  # <s> y1 .. y_n   (shifted right, sec. 3.1)
            targets[r, :len(t) - 1] = torch.tensor(t[1:])  # y1 .. y_n </s>
        return src, tgt, targets

    def batch_tokens(self, batch) -> int:
        """Real (non-padding) source + target tokens of one batch from `get` (the trainer's tokens column)."""
        src, _, targets = batch
        return int((src != self.pad_id).sum()) + int((targets != -100).sum())

    def tokens(self) -> int:
        """Real (non-padding) source + target tokens in one epoch."""
        return sum(len(s) + len(t) - 1 for s, t in self.examples)
