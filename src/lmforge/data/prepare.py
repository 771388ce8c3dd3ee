"""Turn the lm recipe's data section (lmforge.train.recipes.lm.DataConfig) into memory-mapped token
arrays: split the corpus, fit or reuse a tokenizer, encode.

    tokenizer, tokens = prepare(DataConfig(corpus="kjv"), "runs/kjv-char")
    tokens["train"]   # numpy memmap of token ids, runs/kjv-char/data/train.bin

The character tokenizer's vocabulary is every character of the corpus (all splits), as in
nanoGPT's shakespeare_char: a val character unseen in train would otherwise be unencodable,
and knowing the alphabet leaks nothing about the held-out text.
"""
from __future__ import annotations

from pathlib import Path

from lmforge.data.corpora import splits
from lmforge.data.tokens import open_tokens, read_header, write_tokens

SPLITS = ("train", "val")


def prepare(cfg, run_dir: str | Path, tokenizer=None):
    """(tokenizer, {"train": memmap, "val": memmap}). Reuses run_dir/data/*.bin when they match.

    With `tokenizer` given (a resumed run) its vocabulary is kept, so the ids match the saved model.
    Several processes (DDP) may call this at once: each file is written atomically with the same bytes.
    """
    data_dir = Path(run_dir) / "data"
    chat_tokens = getattr(cfg, "chat_tokens", False)
    meta = {"corpus": cfg.corpus, "tokenizer": cfg.tokenizer, **({"chat_tokens": True} if chat_tokens else {})}
    if tokenizer is not None and all(_matches(data_dir / s, meta, tokenizer.vocab_size) for s in SPLITS):
        return tokenizer, {s: open_tokens(data_dir / s) for s in SPLITS}
    text = splits(cfg.corpus)
    for s in SPLITS:
        if not text[s]:
            raise ValueError(f"corpus {cfg.corpus!r} has an empty {s} split; give a longer text file")
    if tokenizer is None:
        from lmforge.tokenizers import CharTokenizer

        # chat_tokens: the chat template's role markers as special tokens (ids 0-3), so that a model
        # pretrained here can be fine-tuned to chat (the sft recipe) without growing its vocabulary
        from lmforge.data.chat import CHAT_SPECIAL_TOKENS

        tokenizer = CharTokenizer.train(text["train"] + text["val"] + text["test"],
                                        special_tokens=CHAT_SPECIAL_TOKENS if chat_tokens else ())
    out = {}
    for s in SPLITS:
        write_tokens(data_dir / s, tokenizer.encode(text[s]), tokenizer.vocab_size, meta={**meta, "split": s})
        out[s] = open_tokens(data_dir / s)
    return tokenizer, out


def _matches(path: Path, meta: dict, vocab_size: int) -> bool:
    try:
        h = read_header(path)
        open_tokens(path)  # size agrees with the header
    except (FileNotFoundError, ValueError):
        return False  # absent, stale or truncated: encode again
    return h["vocab_size"] == vocab_size and all(h.get("meta", {}).get(k) == v for k, v in meta.items())
