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

# GPT-2's end of document (also Qwen2's and GLM-4's), T5's and Llama 2's (SentencePiece's) end of
# sequence, the end of turn of lmforge's chat template (lmforge.data.chat; a test checks that the
# template's end token is listed here), Llama 3's end of turn and of text (its generation_config.json
# lists both), Qwen2's end of turn (ChatML)
END_OF_TEXT_TOKENS = ("<|endoftext|>", "</s>", "<|end|>", "<|eot_id|>", "<|end_of_text|>", "<|im_end|>")


def eos_ids(tok) -> list[int]:
    """Ids of the END_OF_TEXT_TOKENS that `tok` has: generation stops at any of them."""
    return [tok.special_tokens[t] for t in END_OF_TEXT_TOKENS if t in tok.special_tokens]
