"""Special tokens that mean the same whatever the kind: where a generated text ends.

A tokenizer carries the special tokens it was given (`Tokenizer.special_tokens`); which ones a
family uses is said next to the family's kind or template (`bpe.GPT_SPECIAL_TOKENS`,
`wordpiece.BERT_SPECIAL_TOKENS`, `unigram.T5_SPECIAL_TOKENS`, `lmforge.data.chat`). Generation
(the CLI, the server) stops at any end-of-text token the tokenizer has, whichever convention it
follows:

    >>> from lmforge.tokenizers import CharTokenizer
    >>> tok = CharTokenizer.train("abc", special_tokens=["<pad>", "</s>"])
    >>> eos_ids(tok)
    [1]
"""
from __future__ import annotations

import json
from pathlib import Path

# GPT-2's end of document (also Qwen2's and GLM-4's), T5's and Llama 2's (SentencePiece's) end of
# sequence, the end of turn of lmforge's chat template (lmforge.data.chat; a test checks that the
# template's end token is listed here), Llama 3's end of turn and of text, Qwen2's end of turn (ChatML):
# a model directory's generation_config.json names them too, a run saved without one still stops
END_OF_TEXT_TOKENS = ("<|endoftext|>", "</s>", "<|end|>", "<|eot_id|>", "<|end_of_text|>", "<|im_end|>")


def eos_ids(tok, directory: str | Path | None = None) -> list[int]:
    """Ids generation stops at: the END_OF_TEXT_TOKENS that `tok` has and, for a model directory, the ids
    its generation_config.json names (a Hugging Face model's end of turn: Llama 3's <|eot_id|>, ...)."""
    ids = [tok.special_tokens[t] for t in END_OF_TEXT_TOKENS if t in tok.special_tokens]
    if directory is not None:
        ids += [i for i in generation_eos_ids(directory) if i not in ids]
    return ids


def generation_eos_ids(directory: str | Path) -> tuple[int, ...]:
    """`eos_token_id` of directory/generation_config.json (one id or a list; transformers' generation
    defaults), () when the file is absent. ValueError when it is not a token id or a list of them."""
    path = Path(directory) / "generation_config.json"
    if not path.is_file():
        return ()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid UTF-8 JSON: {e}") from None
    ids = data.get("eos_token_id") if isinstance(data, dict) else None
    ids = [ids] if isinstance(ids, int) else ids or []
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"{path}: eos_token_id must be a token id or a list of them, got {ids!r}")
    return tuple(ids)
