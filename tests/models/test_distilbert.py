"""DistilBERT against Hugging Face transformers (DistilBertModel, DistilBertForMaskedLM) on small random configs."""
import json

import pytest
import torch

import lmforge
from lmforge.convert.hf import save_hf
from lmforge.models import build_model, save_model

ODD = dict(dim=36, n_heads=3, n_layers=3, vocab_size=101, max_position_embeddings=40, hidden_dim=52)


def make_hf(transformers, tmp_path, arch="DistilBertModel", **cfg):
    torch.manual_seed(0)
    config = transformers.DistilBertConfig(dropout=0, attention_dropout=0, **cfg)
    hf = getattr(transformers, arch)(config).eval()
    with torch.no_grad():  # HF initialises biases and LayerNorms to 0/1: randomise them so every tensor is tested
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "norm" in name.lower():
                p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path / arch
    hf.save_pretrained(path)
    return hf, path


def batch(vocab: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab, (3, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    mask[2, 5:] = 0
    return ids, mask


@pytest.mark.parametrize("arch", ["DistilBertModel", "DistilBertForMaskedLM"])
def test_random_config_matches_transformers(transformers, tmp_path, arch):
    hf, path = make_hf(transformers, tmp_path, arch, **ODD)
    ours = lmforge.load(path).eval()
    assert ours.config.family == "distilbert" and ours.emb.seg is None and not hasattr(ours, "pool")
    ids, mask = batch(101)
    with torch.no_grad():
        out = ours(ids, mask)
        ref = hf(ids, attention_mask=mask, output_hidden_states=True)
    assert (out.hidden_states - ref.hidden_states[-1]).abs().max().item() <= 1e-5
    if arch == "DistilBertForMaskedLM":
        assert (out.logits - ref.logits).abs().max().item() <= 1e-5
    else:
        assert out.logits is None and out.pooled is None


@pytest.mark.parametrize("head", ["none", "mlm"])
def test_convert_both_ways(transformers, tmp_path, head):
    torch.manual_seed(0)
    model = build_model("distilbert", dict(vocab_size=101, max_len=40, d_model=36, n_heads=3, n_layers=3, d_ff=52,
                                           head=head)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_model(model, tmp_path / "ours")
    save_hf(lmforge.load(tmp_path / "ours"), tmp_path / "hf")
    cls = {"none": "DistilBertModel", "mlm": "DistilBertForMaskedLM"}[head]
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == [cls]
    hf = getattr(transformers, cls).from_pretrained(tmp_path / "hf").eval()
    save_model(lmforge.load(tmp_path / "hf"), tmp_path / "back")
    a, b = model.state_dict(), lmforge.load(tmp_path / "back").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ids, mask = batch(101)
    with torch.no_grad():
        out, ref = model(ids, mask), hf(ids, attention_mask=mask, output_hidden_states=True)
    assert (out.hidden_states - ref.hidden_states[-1]).abs().max().item() <= 1e-5
    if head == "mlm":
        assert (out.logits - ref.logits).abs().max().item() <= 1e-5


def test_segments_and_long_inputs_are_refused():
    model = build_model("distilbert", "distilbert-tiny").eval()
    ids = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="no segment embeddings"):
        model(ids, token_type_ids=torch.zeros_like(ids))
    with pytest.raises(ValueError, match="at most max_len = 512"):
        model(torch.zeros(1, 513, dtype=torch.long))
