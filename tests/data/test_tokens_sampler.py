"""Token files (memmap + header) and the deterministic window sampler."""
import numpy as np
import pytest
import torch

from lmforge.train.recipes.lm import DataConfig
from lmforge.data.prepare import prepare
from lmforge.data.sampler import RandomWindows
from lmforge.data.tokens import open_tokens, write_tokens


def test_token_file_round_trip_and_dtype(tmp_path):
    ids = [0, 5, 65535, 7]
    write_tokens(tmp_path / "a", ids, vocab_size=65536)
    arr = open_tokens(tmp_path / "a")
    assert isinstance(arr, np.memmap) and arr.dtype == np.dtype("<u2") and arr.tolist() == ids
    write_tokens(tmp_path / "b", [70000, 1], vocab_size=100000)
    assert open_tokens(tmp_path / "b").dtype == np.dtype("<u4")
    assert (tmp_path / "a.bin").stat().st_size == 8  # 4 tokens x 2 bytes, no padding


def test_token_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 10\)"):
        write_tokens(tmp_path / "a", [3, 10], vocab_size=10)
    write_tokens(tmp_path / "a", list(range(10)), vocab_size=10)
    (tmp_path / "a.bin").write_bytes((tmp_path / "a.bin").read_bytes()[:7])
    with pytest.raises(ValueError, match="a.bin has 7 bytes but its header says 10 tokens"):
        open_tokens(tmp_path / "a")
    (tmp_path / "a.json").write_text("{")
    with pytest.raises(ValueError, match="a.json is not valid JSON"):
        open_tokens(tmp_path / "a")
    with pytest.raises(FileNotFoundError):
        open_tokens(tmp_path / "missing")


def test_windows_are_a_pure_function_of_seed_and_index():
    tokens = np.arange(1000, dtype=np.uint16)
    s = RandomWindows(tokens, block_size=8, batch_size=4, seed=1)
    x, y = s.get(3)
    assert x.shape == y.shape == (4, 8) and x.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)  # targets are the next token
    assert torch.equal(s.get(3)[0], RandomWindows(tokens, 8, 4, seed=1).get(3)[0])  # no hidden state
    assert not torch.equal(s.get(3)[0], s.get(4)[0])
    assert not torch.equal(s.get(3)[0], RandomWindows(tokens, 8, 4, seed=2).get(3)[0])
    assert int(x.max()) <= 999 - 1  # the last window still has a target inside the data


def test_ranks_split_one_global_batch():
    tokens = np.arange(5000, dtype=np.uint16)
    whole = RandomWindows(tokens, 16, batch_size=6, seed=0).get(7)[0]
    parts = [RandomWindows(tokens, 16, batch_size=3, seed=0, rank=r, world_size=2).get(7)[0] for r in range(2)]
    assert torch.equal(torch.cat(parts), whole)


def test_too_little_data_for_a_window():
    with pytest.raises(ValueError, match="fewer than block_size \\+ 1 = 9"):
        RandomWindows(np.arange(8), block_size=8, batch_size=1)


def test_prepare_encodes_once_and_reuses_files(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 50)
    tok, tokens = prepare(DataConfig(corpus=str(corpus), block_size=8), tmp_path / "run")
    assert tok.decode(tokens["train"][:9].tolist()) == "the quick"
    assert len(tokens["train"]) + len(tokens["val"]) == int(len(corpus.read_text()) * 0.95)
    mtime = (tmp_path / "run" / "data" / "train.bin").stat().st_mtime_ns
    tok2, again = prepare(DataConfig(corpus=str(corpus), block_size=8), tmp_path / "run", tokenizer=tok)
    assert tok2 is tok and (tmp_path / "run" / "data" / "train.bin").stat().st_mtime_ns == mtime
    assert np.array_equal(again["val"], tokens["val"])
