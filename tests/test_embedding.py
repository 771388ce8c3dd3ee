"""lmforge.embed against sentence-transformers on the real all-MiniLM-L6-v2 folder and on KJV text (mean pooling
+ Normalize as its modules.json says; CLS and max pooling through a re-configured copy), and the pooling arithmetic.
Contextual word vectors against transformers' BertModel (word pieces found by the HF tokenizer's word ids), and
"bank" by a river and "bank" with money getting two vectors."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

import lmforge
from lmforge.data.corpora import splits
from lmforge.embedding import Pipeline, contextual_word_vectors, find_word, pool, read_pipeline
from lmforge.wordvec import sense_separation

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


def test_find_word():
    assert find_word("Bankers sat on the Bank.", "bank") == (19, 23)  # "Bankers" is another word
    assert find_word("by the river's bank, then", "BANK") == (15, 19)
    assert find_word("他去银行取钱", "银行") == (2, 4)  # Chinese has no spaces: any occurrence is a whole word
    with pytest.raises(ValueError, match="does not occur as a whole word"):
        find_word("the embankment", "bank")
    with pytest.raises(ValueError, match="empty"):
        find_word("text", " ")


def test_contextual_word_vectors_match_transformers(minilm, transformers):
    """The mean of BertModel's last hidden states over the tokens HF's tokenizer assigns to the word (word_ids),
    for words of one piece and of several ("whelps" -> w ##hel ##ps, "Bethmaachah" -> 4 pieces)."""
    texts = ["Let a bear robbed of her whelps meet a man, rather than a fool in his folly.",
             "And they came and besieged him in Abel of Bethmaachah, and they cast up a bank against the city",
             "He sat on the bank of the river.", "I cashed a check at the bank.", "Aroer"]
    words = ["whelps", "Bethmaachah", "bank", "bank", "Aroer"]
    spans = [find_word(t, w) for t, w in zip(texts, words)]
    ours = contextual_word_vectors(minilm, texts, spans, batch_size=2)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(minilm))
    model = transformers.BertModel.from_pretrained(str(minilm)).eval()
    enc = hf_tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state                      # (N, T, 384)
    pieces = []
    for i, (start, _) in enumerate(spans):
        word = enc.char_to_word(i, start)
        pieces.append([j for j, w in enumerate(enc.word_ids(i)) if w == word])
    assert [len(p) for p in pieces] == [3, 4, 1, 1, 3]
    ref = torch.stack([hidden[i, p].mean(0) for i, p in enumerate(pieces)])
    assert ours.shape == (5, 384)
    assert (ours - ref).abs().max().item() <= 1e-5
    # a word given as a string is found in each text the same way
    assert torch.allclose(contextual_word_vectors(minilm, texts[2:4], "bank"), ours[2:4], atol=1e-6)


def test_bank_by_the_river_and_bank_with_money_get_two_vectors(minilm):
    """KJV verses and WordNet examples: each use of "bank" is nearer the other uses of its own sense; word2vec's
    one vector per word cannot do better than a coin toss."""
    river = ["And Pharaoh said unto Joseph, In my dream, behold, I stood upon the bank of the river:",
             "He took up also the mantle of Elijah that fell from him, and went back, and stood by the bank of Jordan;",
             "he sat on the bank of the river and watched the currents"]
    money = ["Wherefore then gavest not thou my money into the bank, that at my coming I might have required mine "
             "own with usury?", "he cashed a check at the bank", "that bank holds the mortgage on my home"]
    vectors = contextual_word_vectors(minilm, river + money, "bank")
    senses = ["river"] * 3 + ["money"] * 3
    got = sense_separation(vectors, senses)
    assert got["nearest"] == 1.0 and got["within"] > got["across"] + 0.05
    one_vector = sense_separation(vectors[:1].expand(6, -1), senses)
    assert one_vector["nearest"] == 0.5 and one_vector["within"] == pytest.approx(one_vector["across"])


def test_contextual_word_vectors_bad_input(minilm):
    with pytest.raises(ValueError, match="does not occur"):
        contextual_word_vectors(minilm, ["the river bank", "the embankment"], "bank")
    with pytest.raises(ValueError, match="one \\(start, end\\) span per text"):
        contextual_word_vectors(minilm, ["the river bank", "a bank"], [(10, 14)])
    with pytest.raises(ValueError, match="one \\(start, end\\) span per text"):
        contextual_word_vectors(minilm, ["a bank"], [(2, 60)])
    # MiniLM reads 256 tokens (sentence_bert_config.json): a word after them is cut off with the text
    with pytest.raises(ValueError, match="no token left after the text was cut"):
        contextual_word_vectors(minilm, ["word " * 300 + "bank"], "bank")
    model = lmforge.load(minilm)
    with pytest.raises(ValueError, match="needs tokenizer="):
        contextual_word_vectors(model, ["a bank"], "bank")
