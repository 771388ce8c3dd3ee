import lzma
from pathlib import Path

import pytest
import torch

import lmforge
from lmforge.models import build_model, save_model
from lmforge.tokenizers import CharTokenizer, save_tokenizer


def kjv_text(n_chars: int = 20000) -> str:
    with lzma.open(Path(lmforge.__file__).parent / "data" / "corpora" / "kjv.txt.xz", "rt", encoding="utf-8") as f:
        return f.read(n_chars)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory as the trainer writes it: random tiny GPT + character tokenizer (with <|endoftext|>)."""
    path = tmp_path_factory.mktemp("run")
    tok = CharTokenizer.train(kjv_text(), special_tokens=["<|endoftext|>"])
    torch.manual_seed(0)
    model = build_model("gpt", dict(vocab_size=tok.vocab_size, max_len=64, d_model=32, n_heads=4, n_layers=2))
    save_model(model, path)
    save_tokenizer(tok, path)
    return path
