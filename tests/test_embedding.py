"""lmforge.embed against sentence-transformers on the real all-MiniLM-L6-v2 folder and on KJV text (mean pooling
+ Normalize as its modules.json says; CLS and max pooling through a re-configured copy), and the pooling arithmetic."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

import lmforge
from lmforge.data.corpora import splits
from lmforge.embedding import Pipeline, pool, read_pipeline

st = pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def texts():
    """Held-out KJV verses, and verses run together past MiniLM's 128-token tokenizer limit and its 256-token
    max_seq_length."""
    verses = [v for v in splits("kjv")["test"].splitlines() if v.strip()]
    return verses[:24] + [" ".join(verses[i:i + 12]) for i in range(0, 36, 12)]


def reference(directory, texts):
    model = st.SentenceTransformer(str(directory), device="cpu")
    return torch.tensor(model.encode(texts, batch_size=8))


def test_minilm_matches_sentence_transformers(minilm, texts):
    assert read_pipeline(minilm) == Pipeline(("mean",), True, 256)
    ours = lmforge.embed(minilm, texts, batch_size=8)
    ref = reference(minilm, texts)
    assert ours.shape == (len(texts), 384)
    assert F.cosine_similarity(ours, ref).min().item() >= 0.99999
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(texts)), atol=1e-5)
    # sentence-transformers cuts at max_seq_length (256), not at the tokenizer file's 128: the long texts
    # need it (with 128 they would differ)
    cut = lmforge.embed(minilm, texts[-3:], pipeline=Pipeline(("mean",), True, 128))
    assert F.cosine_similarity(cut, ref[-3:]).min().item() < 0.999


def test_a_loaded_model_with_its_tokenizer(minilm, texts):
    from lmforge.tokenizers import load_tokenizer
    model = lmforge.load(minilm)
    model.train()
    a = lmforge.embed(model, texts[:4], tokenizer=load_tokenizer(minilm), pipeline=read_pipeline(minilm))
    assert model.training  # the caller's mode is given back
    assert torch.allclose(a, lmforge.embed(minilm, texts[:4]), atol=1e-6)
    with pytest.raises(ValueError, match="needs tokenizer="):
        lmforge.embed(model, texts[:1])


@pytest.mark.parametrize("modes", [["cls"], ["max"], ["cls", "mean"]])
def test_other_pooling_configs_match_sentence_transformers(minilm, texts, tmp_path, modes):
    """A copy of the folder (weights linked) whose 1_Pooling/config.json asks for other modes, without Normalize."""
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json", "sentence_bert_config.json"):
        os.symlink(minilm / name, tmp_path / name)
    (tmp_path / "1_Pooling").mkdir()
    legacy = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max", "pooling_mode_mean_tokens": "mean"}
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 384, **{k: v in modes for k, v in legacy.items()}}))
    modules = json.loads((minilm / "modules.json").read_text())[:2]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    ours = lmforge.embed(tmp_path, texts[:12])
    ref = reference(tmp_path, texts[:12])
    assert ours.shape == ref.shape == (12, 384 * len(modes))
    assert F.cosine_similarity(ours, ref).min().item() >= 0.99999
    assert (ours - ref).abs().max().item() <= 1e-4


def test_pool_by_hand():
    hidden = torch.tensor([[[1.0], [3.0], [9.0]]])
    mask = torch.tensor([[1, 1, 0]])
    got = pool(hidden, mask, ["mean", "max", "cls", "lasttoken", "mean_sqrt_len_tokens"])
    assert torch.allclose(got, torch.tensor([[2.0, 3.0, 1.0, 3.0, 4 / 2 ** 0.5]]))


def test_bad_pipelines_and_models(tmp_path):
    with pytest.raises(ValueError, match="pooling mode 'weightedmean' is not supported"):
        Pipeline(("weightedmean",))
    (tmp_path / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.models.Dense", "path": "2"}]))
    with pytest.raises(ValueError, match="has a Dense module"):
        read_pipeline(tmp_path)
    gpt = lmforge.build_model("gpt", "gpt-tiny")
    with pytest.raises(ValueError, match="needs an encoder"):
        lmforge.embed(gpt, ["x"], tokenizer=object())
