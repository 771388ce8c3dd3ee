"""The `mlm` recipe (BERT pretraining) and its loss."""
import json
from collections import Counter

import pytest
import torch

import lmforge
from lmforge.objectives import bert_pretraining_loss
from lmforge.train.recipes import run_config, train

TINY = {"recipe": "mlm",
        "model": {"family": "bert", "d_model": 64, "n_heads": 2, "n_layers": 2, "max_len": 64, "dropout": 0.0},
        "data": {"corpus": "kjv", "vocab_size": 400, "max_len": 64},
        "train": {"max_steps": 120, "batch_size": 16, "lr": 3e-3, "warmup_steps": 10, "eval_interval": 120,
                  "eval_steps": 8, "save_interval": 0, "log_interval": 10, "progress": False}}


def test_loss_equals_transformers_bert_for_pretraining(transformers, tmp_path):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=101, hidden_size=36, num_hidden_layers=2, num_attention_heads=3,
                                  intermediate_size=50, max_position_embeddings=40, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    hf = transformers.BertForPreTraining(cfg).eval()
    hf.save_pretrained(tmp_path)
    ours = lmforge.load(tmp_path).eval()
    ids = torch.randint(5, 101, (4, 20))
    attention = torch.ones_like(ids)
    attention[1, 15:] = 0
    types = torch.zeros_like(ids)
    types[:, 10:] = 1
    labels = torch.full_like(ids, -100)
    labels[:, 3], labels[2, 7] = ids[:, 3], ids[2, 7]
    nsp = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        want = hf(ids, attention_mask=attention, token_type_ids=types, labels=labels, next_sentence_label=nsp).loss
        got = bert_pretraining_loss(ours, (ids, attention, types, labels, nsp))
    assert got.loss.item() == pytest.approx(want.item(), abs=1e-5)
    with torch.no_grad():  # the loss computes the head at the scored positions only: the same logits there
        full = ours(ids, attention_mask=attention, token_type_ids=types).logits
        some = ours(ids, attention_mask=attention, token_type_ids=types, predict=labels != -100).logits
    torch.testing.assert_close(some, full[labels != -100], atol=1e-6, rtol=1e-6)
    assert set(got.metrics) == {"mlm_loss", "mlm_acc", "nsp_loss", "nsp_acc"}


def test_a_tiny_bert_learns_and_its_batches_are_a_function_of_the_index(tmp_path):
    out = tmp_path / "run"
    assert train(run_config(TINY), out) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0], rows[-1]
    assert last["mlm_loss"] < first["mlm_loss"]
    assert {"val_nsp_acc", "val_mlm_loss", "nsp_acc"} <= set(last)
    model = lmforge.load(out)
    assert model.config.family == "bert" and model.config.head == "pretraining"

    from lmforge.tokenizers import load_tokenizer
    from lmforge.train.recipes.mlm import PairBatches, pairs_for
    tok = load_tokenizer(out)
    pairs = pairs_for("kjv", "val", tok, 64, seed=0)
    # better than always answering the most frequent token ("the", about 5% of the masked positions)
    counts = Counter(i for p in pairs for i in p.ids if i not in tok.special_tokens.values())
    assert last["val_mlm_acc"] > 1.2 * max(counts.values()) / sum(counts.values())
    kw = dict(tok=tok, vocab_size=tok.vocab_size, mask_prob=0.15, nsp=True, seed=3)
    whole = PairBatches(pairs, 4, **kw).get(7)
    again = PairBatches(pairs, 4, **kw).get(7)
    assert all(torch.equal(a, b) for a, b in zip(whole, again))
    halves = [PairBatches(pairs, 2, rank=r, world_size=2, **kw).get(7) for r in (0, 1)]
    assert torch.equal(torch.cat([halves[0][4], halves[1][4]]), whole[4])  # the same pairs, split by rank
    ids, attention, types, labels, nsp = whole
    cls, sep = tok.special_tokens["[CLS]"], tok.special_tokens["[SEP]"]
    assert (ids[:, 0] == cls).all() and ((ids == sep) | (labels == sep)).sum(1).eq(2).all()
    assert ((labels != -100) & (attention == 0)).sum() == 0  # padding is never a target


def test_bad_runs_say_what_to_change(tmp_path):
    with pytest.raises(ValueError, match="recipe 'mlm' trains encoder models; family 'gpt' is decoder"):
        run_config({**TINY, "model": {"family": "gpt", "preset": "gpt-tiny"}})
    bad = {**TINY, "data": {**TINY["data"], "corpus": "gettext-en-de"}}
    with pytest.raises(ValueError, match="no document structure"):
        train(run_config(bad), tmp_path / "a")
    bad = {**TINY, "model": {**TINY["model"], "head": "mlm"}}
    with pytest.raises(ValueError, match="model.head is 'mlm' but data.nsp=True"):
        train(run_config(bad), tmp_path / "b")
    from lmforge.tokenizers import CharTokenizer, save_tokenizer
    save_tokenizer(CharTokenizer.train("abc"), tmp_path / "chars")
    bad = {**TINY, "data": {**TINY["data"], "tokenizer": str(tmp_path / "chars")}}
    with pytest.raises(ValueError, match=r"has no \[CLS\], \[SEP\], \[MASK\], \[PAD\]"):
        train(run_config(bad), tmp_path / "c")
