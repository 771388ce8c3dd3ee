"""Read and write the Hugging Face `tokenizers` file format (tokenizer.json).

The file is one JSON object (tokenizers 0.13+ "version": "1.0"):

    {"version": "1.0", "truncation": null, "padding": null,
     "added_tokens": [{"id": 0, "content": "[PAD]", "special": true, ...}],
     "normalizer": {...}, "pre_tokenizer": {...}, "post_processor": {...}, "decoder": {...},
     "model": {"type": "BPE" | "WordPiece" | "Unigram" | "WordLevel", ...}}

Each kind writes its own `model`, `normalizer`, `pre_tokenizer` and `decoder` (`_hf_model`,
`_hf_parts`) and reads them back (`_from_hf(data, specials)`; BPE builds its parts with pipeline.py,
which covers the forms of Llama, Qwen2, GLM-4 and Mistral); this module handles the parts they
share (added tokens, special or plain, with lstrip / rstrip / single_word; the post-processor
template) and, when reading, picks the kind from the model type. It sits above the kinds and
imports them; they never import it.
A character tokenizer is stored as a WordLevel model behind a one-character Split, so the file
loads in `tokenizers.Tokenizer.from_file` too.

    >>> from lmforge.tokenizers import CharTokenizer
    >>> data = to_hf_json(CharTokenizer.train("abc", special_tokens=["<|endoftext|>"]))
    >>> data["model"]["type"], data["added_tokens"][0]["content"]
    ('WordLevel', '<|endoftext|>')
    >>> from_hf_json(data).encode("cab")
    [3, 1, 2]
"""
from __future__ import annotations

import json
from pathlib import Path

from ..io import atomic_write_text
from .base import AddedToken, Padding, Template, Tokenizer, Truncation
from .bpe import BPETokenizer
from .char import CHAR_SPLIT_REGEX, CharTokenizer
from .unigram import UnigramTokenizer
from .wordpiece import WordPieceTokenizer

# model type in tokenizer.json -> the kind that reads it (WordLevel: only our character files)
KINDS = {"BPE": BPETokenizer, "WordPiece": WordPieceTokenizer, "Unigram": UnigramTokenizer}


def save_tokenizer(tok: Tokenizer, path: str | Path) -> Path:
    """Write `tokenizer.json` into directory `path` (or to `path` if it ends in .json), atomically.
    Returns the file's path."""
    path = Path(path)
    if path.suffix != ".json":
        path = path / "tokenizer.json"
    atomic_write_text(path, json.dumps(to_hf_json(tok), ensure_ascii=False, indent=2) + "\n")
    return path


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load any lmforge or Hugging Face tokenizer.json: a directory holding one, or the file. A Hugging Face
    T5 directory with its SentencePiece model (spiece.model) and no tokenizer.json, or one whose normalizer is
    SentencePiece's precompiled character map (which lmforge does not read), is read from spiece.model through
    lmforge.tokenizers.sentencepiece, with the sentinels its tokenizer_config.json asks for (`extra_ids`,
    T5Tokenizer's default 100)."""
    path = Path(path)
    js = path / "tokenizer.json"
    if path.is_dir() and (path / "spiece.model").is_file() and (
            not js.is_file() or '"Precompiled"' in js.read_text(encoding="utf-8", errors="replace")):
        from .sentencepiece import load_spiece
        config = path / "tokenizer_config.json"
        extra = json.loads(config.read_text(encoding="utf-8")).get("extra_ids", 100) if config.is_file() else 100
        return load_spiece(path / "spiece.model", extra_ids=extra)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {path}; pass a run directory or the file itself")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a valid UTF-8 JSON tokenizer file: {e}") from None
    return from_hf_json(data, source=str(path))


def to_hf_json(tok: Tokenizer) -> dict:
    """The tokenizer as a dict in the Hugging Face `tokenizers` tokenizer.json format."""
    parts = tok._hf_parts()
    added = []
    for t, i in sorted({**tok.added_tokens, **tok.special_tokens}.items(), key=lambda kv: kv[1]):
        o = tok.added_options.get(t, AddedToken(t))
        added.append({"id": i, "content": t, "single_word": o.single_word, "lstrip": o.lstrip, "rstrip": o.rstrip,
                      "normalized": False, "special": t in tok.special_tokens})
    post, template = parts.get("post_processor"), _template_to_hf(tok)
    if post and template:  # Llama 3: the byte-level offsets step, then <|begin_of_text|> $A
        post = {"type": "Sequence", "processors": [post, template]}
    return {"version": "1.0", "truncation": _truncation_to_hf(tok.truncation), "padding": _padding_to_hf(tok.padding),
            "added_tokens": added,
            "normalizer": parts["normalizer"], "pre_tokenizer": parts["pre_tokenizer"],
            "post_processor": post or template, "decoder": parts["decoder"], "model": tok._hf_model()}


def from_hf_json(data: dict, source: str = "tokenizer.json") -> Tokenizer:
    """Build the lmforge tokenizer a tokenizer.json dict describes."""
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ValueError(f"{source} has no 'model' object; it is not a Hugging Face tokenizer.json")
    model = data["model"]
    kind = model.get("type")
    if kind is None:  # old files omit the type; infer it from the fields
        kind = "BPE" if "merges" in model else "Unigram" if isinstance(model.get("vocab"), list) else \
            "WordPiece" if "continuing_subword_prefix" in model else "WordLevel"
    pre = data.get("pre_tokenizer") or {}
    if kind == "WordLevel" and pre.get("type") == "Split" and pre.get("pattern", {}).get("Regex") == CHAR_SPLIT_REGEX:
        cls = CharTokenizer
    elif kind in KINDS:
        cls = KINDS[kind]
    else:
        raise ValueError(f"{source}: model type {kind!r} is not supported; lmforge reads BPE, WordPiece, "
                         "Unigram and its own character files (WordLevel split per character)")
    specials = [a["content"] for a in sorted(data.get("added_tokens") or [], key=lambda a: a["id"])]
    tok = cls._from_hf(data, specials)
    for a in data.get("added_tokens") or []:
        if tok.vocab.get(a["content"], a["id"]) != a["id"]:
            raise ValueError(f"{source}: added token {a['content']!r} has id {a['id']} but the model "
                             f"vocabulary gives it {tok.vocab[a['content']]}")
        if a["content"] not in tok.vocab:
            tok.vocab[a["content"]] = a["id"]; tok.inv_vocab[a["id"]] = a["content"]
        # "special" absent: files from before tokenizers 0.10 listed only special tokens here
        tok.add_token(AddedToken(a["content"], bool(a.get("lstrip")), bool(a.get("rstrip")),
                                 bool(a.get("single_word"))), special=a.get("special", True))
    tok.template = _template_from_hf(data.get("post_processor"))
    tok.truncation = _truncation_from_hf(data.get("truncation"), source)
    tok.padding = _padding_from_hf(data.get("padding"), source)
    # a template inserts its tokens by id, so HF does not require them among the added tokens
    for item, _ in tok.template.single + tok.template.pair if tok.template else ():
        if item not in ("$A", "$B") and item not in tok.special_tokens:
            if item not in tok.vocab:
                raise ValueError(f"{source}: the post_processor inserts {item!r}, which is not in the vocabulary")
            tok.add_special_token(item)
    return tok


def _template_to_hf(tok: Tokenizer) -> dict | None:
    t = tok.template
    if t is None:
        return None

    def items(seq):
        out = []
        for item, type_id in seq:
            if item in ("$A", "$B"):
                out.append({"Sequence": {"id": item[1], "type_id": type_id}})
            else:
                out.append({"SpecialToken": {"id": item, "type_id": type_id}})
        return out

    names = dict.fromkeys(i for i, _ in t.single + t.pair if i not in ("$A", "$B"))
    return {"type": "TemplateProcessing", "single": items(t.single), "pair": items(t.pair),
            "special_tokens": {n: {"id": n, "ids": [tok.special_tokens[n]], "tokens": [n]} for n in names}}


def _template_from_hf(pp: dict | None) -> Template | None:
    """TemplateProcessing, BertProcessing, RobertaProcessing or a Sequence holding one."""
    if pp is None:
        return None
    kind = pp.get("type")
    if kind == "Sequence":
        found = [t for t in (_template_from_hf(p) for p in pp.get("processors", [])) if t is not None]
        return found[-1] if found else None
    if kind == "BertProcessing":
        return Template.bert(pp["cls"][0], pp["sep"][0])
    if kind == "RobertaProcessing":  # <s> A </s></s> B </s>, all type 0
        c, s = pp["cls"][0], pp["sep"][0]
        return Template([(c, 0), ("$A", 0), (s, 0)], [(c, 0), ("$A", 0), (s, 0), (s, 0), ("$B", 0), (s, 0)])
    if kind == "TemplateProcessing":
        def items(seq):
            out = []
            for it in seq:
                if "Sequence" in it:
                    out.append(("$" + it["Sequence"]["id"], it["Sequence"]["type_id"]))
                else:
                    out.append((it["SpecialToken"]["id"], it["SpecialToken"]["type_id"]))
            return out
        for name, spec in pp.get("special_tokens", {}).items():
            if len(spec.get("ids", [])) != 1:
                raise ValueError(f"template special token {name!r} maps to {len(spec.get('ids', []))} ids; "
                                 "lmforge supports one id per template token")
        return Template(items(pp["single"]), items(pp["pair"]))
    if kind == "ByteLevel":
        return None
    raise ValueError(f"post_processor of type {kind!r} is not supported; supported: TemplateProcessing, "
                     "BertProcessing, RobertaProcessing, ByteLevel, Sequence")


def _truncation_from_hf(t: dict | None, source: str) -> Truncation | None:
    """{"max_length": 128, "strategy": "LongestFirst", "stride": 0, "direction": "Right"} (direction: tokenizers
    0.13+; older files have none and truncate on the right)."""
    if t is None:
        return None
    try:
        return Truncation(int(t["max_length"]), t.get("strategy", "LongestFirst"), t.get("direction", "Right"),
                          int(t.get("stride", 0)))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{source}: the truncation section {t!r} cannot be read ({e})") from None


def _truncation_to_hf(t: Truncation | None) -> dict | None:
    return None if t is None else {"direction": t.direction, "max_length": t.max_length, "strategy": t.strategy,
                                   "stride": t.stride}


def _padding_from_hf(p: dict | None, source: str) -> Padding | None:
    """{"strategy": "BatchLongest" | {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null,
    "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}."""
    if p is None:
        return None
    strategy = p.get("strategy", "BatchLongest")
    if not (strategy == "BatchLongest" or isinstance(strategy, dict) and isinstance(strategy.get("Fixed"), int)):
        raise ValueError(f"{source}: padding strategy {strategy!r} is not BatchLongest or {{'Fixed': N}}")
    try:
        return Padding(None if strategy == "BatchLongest" else strategy["Fixed"], p.get("direction", "Right"),
                       p.get("pad_to_multiple_of"), int(p.get("pad_id", 0)), int(p.get("pad_type_id", 0)),
                       p.get("pad_token", "[PAD]"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: the padding section {p!r} cannot be read ({e})") from None


def _padding_to_hf(p: Padding | None) -> dict | None:
    if p is None:
        return None
    return {"strategy": "BatchLongest" if p.length is None else {"Fixed": p.length}, "direction": p.direction,
            "pad_to_multiple_of": p.pad_to_multiple_of, "pad_id": p.pad_id, "pad_type_id": p.pad_type_id,
            "pad_token": p.pad_token}
