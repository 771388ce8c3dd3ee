"""Tokenizers from scratch: characters, BPE (GPT-2, Llama, Qwen2, GLM-4, Mistral), WordPiece (BERT), Unigram (T5).

Pure Python plus `regex`; no torch, no model. Every kind shares `Tokenizer`'s interface and
reads/writes Hugging Face tokenizer.json files.

    base.py      the interface every kind shares: Tokenizer, Encoding, Template
    char.py bpe.py wordpiece.py unigram.py   the kinds, each a subclass of Tokenizer
    pipeline.py  tokenizer.json's normalizers, pre-tokenizers and decoders (BPE of open models)
    merges.py    the BPE merge learner that bpe.py and wordpiece.py train with
    io.py        tokenizer.json read/write (load_tokenizer, save_tokenizer); above the kinds
    special.py   the end-of-text tokens generation stops at (eos_ids)
    stream.py    ids -> text while streaming (stop strings, partial characters)

    >>> from lmforge.tokenizers import CharTokenizer, load_tokenizer
    >>> tok = CharTokenizer.train("In the beginning")
    >>> tok.decode(tok.encode("begin the")) == "begin the"
    True
"""
from .base import AddedToken, Encoding, Padding, Template, Tokenizer, Truncation
from .bpe import GPT_SPECIAL_TOKENS, BPETokenizer, ByteLevelBPETokenizer
from .char import CharTokenizer
from .io import from_hf_json, load_tokenizer, save_tokenizer, to_hf_json
from .merges import learn_merges
from .special import END_OF_TEXT_TOKENS, eos_ids
from .unigram import T5_SPECIAL_TOKENS, UnigramTokenizer, t5_sentinels
from .wordpiece import BERT_SPECIAL_TOKENS, WordPieceTokenizer

__all__ = ["Tokenizer", "Encoding", "Template", "Truncation", "Padding", "AddedToken", "CharTokenizer", "BPETokenizer",
           "ByteLevelBPETokenizer",
           "WordPieceTokenizer", "UnigramTokenizer", "learn_merges",
           "load_tokenizer", "save_tokenizer", "to_hf_json", "from_hf_json",
           "BERT_SPECIAL_TOKENS", "GPT_SPECIAL_TOKENS", "T5_SPECIAL_TOKENS", "t5_sentinels",
           "END_OF_TEXT_TOKENS", "eos_ids"]
