import pytest

from lmforge.models.gpt.config import GPTConfig


def test_presets_and_round_trip():
    c = GPTConfig.preset("gpt2")
    assert (c.d_model, c.n_heads, c.n_layers, c.d_ff, c.max_len) == (768, 12, 12, 3072, 1024)
    assert GPTConfig.from_dict(c.to_dict()) == c
    assert GPTConfig.preset("gpt-mini", dropout=0.1).dropout == 0.1


def test_unknown_key_names_it_and_lists_allowed():
    with pytest.raises(ValueError, match=r"unknown key 'd_modle'\. Allowed keys: vocab_size, max_len, d_model"):
        GPTConfig.from_dict({"d_modle": 64})


def test_wrong_types_and_values():
    with pytest.raises(ValueError, match="n_layers must be an integer, got 'two'"):
        GPTConfig.from_dict({"n_layers": "two"})
    assert GPTConfig.from_dict({"n_layers": "3", "dropout": "0.1", "bias": "false"}).n_layers == 3  # --set strings
    with pytest.raises(ValueError, match="activation='tanh' is not allowed. Allowed values: 'relu'"):
        GPTConfig.from_dict({"activation": "tanh"})
    with pytest.raises(ValueError, match=r"d_model \(100\) must be divisible by n_heads \(3\)"):
        GPTConfig(d_model=100, n_heads=3)
    with pytest.raises(ValueError, match="unknown preset 'gpt5'. Available: gpt-tiny"):
        GPTConfig.preset("gpt5")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        GPTConfig(dropout=1.5)
