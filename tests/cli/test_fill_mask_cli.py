"""`lmforge fill-mask`: top-k at each [MASK] against transformers' masked-LM logits on random BertForMaskedLM /
DistilBertForMaskedLM directories with a WordPiece tokenizer trained here; attention maps for any encoder."""
import re

import pytest
import torch

from lmforge.cli import main
from lmforge.data.corpora import splits
from lmforge.tokenizers import WordPieceTokenizer, save_tokenizer

TEXT = "And the [MASK] said unto them, [MASK] not."


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer.train(splits("kjv")["val"][:20000], vocab_size=300)


@pytest.mark.parametrize("arch", ["BertForMaskedLM", "DistilBertForMaskedLM"])
def test_top_k_at_each_mask_equals_transformers(transformers, tokenizer, tmp_path, capsys, arch):
    torch.manual_seed(0)
    V = tokenizer.vocab_size
    if arch == "BertForMaskedLM":
        config = transformers.BertConfig(vocab_size=V, hidden_size=36, num_attention_heads=3, num_hidden_layers=2,
                                         intermediate_size=52, max_position_embeddings=64)
    else:
        config = transformers.DistilBertConfig(vocab_size=V, dim=36, n_heads=3, n_layers=2, hidden_dim=52,
                                               max_position_embeddings=64)
    hf = getattr(transformers, arch)(config).eval()
    hf.save_pretrained(tmp_path)
    save_tokenizer(tokenizer, tmp_path)
    assert main(["fill-mask", str(tmp_path), TEXT, "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    enc = tokenizer.encode_full(TEXT, split_special=True)
    masks = [i for i, t in enumerate(enc.tokens) if t == "[MASK]"]
    with torch.no_grad():
        probs = hf(torch.tensor([enc.ids])).logits[0, masks].softmax(-1)  # (2, V)
    blocks = out.split("[MASK] ")[1:]
    assert len(blocks) == 2
    for n, (block, pos, p) in enumerate(zip(blocks, masks, probs), 1):
        assert block.splitlines()[0] == f"{n} (token {pos}):"
        rows = re.findall(r"^\s+([0-9.]+)\s+(\S+)$", block, re.M)
        top = p.topk(3)
        assert [t for _, t in rows] == [tokenizer.id_to_token(i) for i in top.indices.tolist()]
        assert [float(q) for q, _ in rows] == pytest.approx(top.values.tolist(), abs=1e-4)


def test_minilm_has_no_head_but_draws_attention(minilm, tmp_path, capsys):
    assert main(["fill-mask", str(minilm), "The [MASK] is shining."]) == 2
    assert "has no masked-LM head" in capsys.readouterr().err
    png = tmp_path / "att.png"
    assert main(["fill-mask", str(minilm), "The sun is shining.", "--attention", str(png), "--layer", "-1"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["fill-mask", str(minilm), "x", "--attention", str(png), "--head", "12"]) == 2
    assert "--head must be 'all', mean or an index in [-12, 11]" in capsys.readouterr().err


def test_attention_maps_are_the_models(minilm):
    """What is drawn is the model's own attention: rows sum to 1 and equal forward(need_weights=True)."""
    import lmforge
    from lmforge.cli.fill_mask import predict
    from lmforge.tokenizers import load_tokenizer
    model, tok = lmforge.load(minilm), load_tokenizer(minilm)
    tokens, filled, maps = predict(model, tok, "The sun is shining.", 5)
    assert tokens == ["[CLS]", "the", "sun", "is", "shining", ".", "[SEP]"] and filled == []
    assert len(maps) == 6 and maps[0].shape == (12, 7, 7)
    assert torch.allclose(maps[3].sum(-1), torch.ones(12, 7), atol=1e-5)
