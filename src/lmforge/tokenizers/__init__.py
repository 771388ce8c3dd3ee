"""Tokenizers from scratch: characters, byte-level BPE (GPT-2), WordPiece (BERT), Unigram (T5).

Pure Python plus `regex`; no torch, no model. Every kind shares `Tokenizer`'s interface and
reads/writes Hugging Face tokenizer.json files.

    >>> from lmforge.tokenizers import CharTokenizer, load_tokenizer
    >>> tok = CharTokenizer.train("In the beginning")
    >>> tok.decode(tok.encode("begin the")) == "begin the"
    True
"""
from .base import (BERT_SPECIAL_TOKENS, CHAT_SPECIAL_TOKENS, END_OF_TEXT_TOKENS, GLM_SPECIAL_TOKENS,
                   GPT_SPECIAL_TOKENS, T5_SPECIAL_TOKENS, Encoding, Template, Tokenizer, eos_ids, load_tokenizer,
                   t5_sentinels)
from .bpe import BPETokenizer, ByteLevelBPETokenizer
from .char import CharTokenizer
from .unigram import UnigramTokenizer
from .wordpiece import WordPieceTokenizer

__all__ = ["Tokenizer", "Encoding", "Template", "CharTokenizer", "BPETokenizer", "ByteLevelBPETokenizer", "WordPieceTokenizer", "UnigramTokenizer", "load_tokenizer", "t5_sentinels",
           "BERT_SPECIAL_TOKENS", "GPT_SPECIAL_TOKENS", "T5_SPECIAL_TOKENS", "GLM_SPECIAL_TOKENS",
           "CHAT_SPECIAL_TOKENS", "END_OF_TEXT_TOKENS", "eos_ids"]
