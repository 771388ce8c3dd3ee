"""The `blank` recipe (GLM pretraining by blank infilling): a tiny GLM learns a text it sees over and over and
then fills a blank in it; its batches are a function of the index; its config refuses what it cannot train."""
import json

import numpy as np
import pytest
import torch

import lmforge
from lmforge.data.blank import SPECIAL_TOKENS, BlankTokens
from lmforge.generate import infill
from lmforge.tokenizers import CharTokenizer, load_tokenizer
from lmforge.train.recipes import run_config, train
from lmforge.train.recipes.blank import BlankBatches, BlankDataConfig, blank_loss

POEM = "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n"


def tiny(corpus, steps=150):
    return {"recipe": "blank",
            "model": {"family": "glm", "d_model": 64, "n_heads": 4, "n_layers": 2, "max_len": 48},
            "data": {"corpus": str(corpus), "block_size": 25},
            "train": {"max_steps": steps, "batch_size": 16, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 10,
                      "eval_interval": steps, "eval_steps": 2, "save_interval": 0, "log_interval": 10,
                      "progress": False, "dtype": "fp32"}}


def trained(tmp_path, steps):
    corpus = tmp_path / "poem.txt"
    corpus.write_text(POEM * 400, encoding="utf-8")
    out = tmp_path / "run"
    assert train(run_config(tiny(corpus, steps)), out) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return out, rows


def test_a_tiny_glm_trains_and_fills(tmp_path):
    out, rows = trained(tmp_path, 40)
    assert rows[-1]["loss"] < 0.7 * rows[0]["loss"]
    model, tok = lmforge.load(out).eval(), load_tokenizer(out)
    assert [tok.id_to_token(model.config.mask_id), tok.id_to_token(model.config.eop_id)] == ["[MASK]", "<eop>"]
    ids = tok.encode("床前明月光，[MASK]。举头望明月，低头思故乡。", split_special=True)
    fill, = infill(model, ids, max_tokens=10)
    assert fill.steps and all(0 <= t < tok.vocab_size for t in fill.tokens)


@pytest.mark.slow
def test_a_tiny_glm_learns_to_fill_a_line(tmp_path):
    out, rows = trained(tmp_path, 400)
    assert rows[-1]["loss"] < 0.2 * rows[0]["loss"]
    model, tok = lmforge.load(out).eval(), load_tokenizer(out)
    fill, = infill(model, tok.encode("床前明月光，[MASK]。举头望明月，低头思故乡。", split_special=True), max_tokens=10)
    assert tok.decode(fill.tokens) == "疑是地上霜" and fill.finish_reason == "eop"


def test_batches_are_a_function_of_the_index_and_the_loss_reads_part_b():
    tok = CharTokenizer.train(POEM, special_tokens=list(SPECIAL_TOKENS))
    tokens = np.asarray(tok.encode(POEM * 20))
    b = BlankTokens.from_vocab(tok.special_tokens)
    batches = BlankBatches(tokens, 4, block_size=20, blank_tokens=b, pad_id=0, data=BlankDataConfig(block_size=20),
                           sentence_end_ids=[tok.vocab["。"]], seed=3)
    one, again = batches.get(5), batches.get(5)
    assert all(torch.equal(x, y) for x, y in zip(one, again))
    ids, targets, positions, block, prefix_len, attention = one
    assert (targets[attention == 0] == -100).all() and BlankBatches.batch_tokens(one) == int(attention.sum())
    for r in range(4):
        assert (targets[r, :prefix_len[r]] == -100).all() and (block[r, :prefix_len[r]] == 0).all()
    model = lmforge.models.build_model("glm", {"vocab_size": tok.vocab_size, "max_len": 32, "d_model": 32,
                                               "n_heads": 2, "n_layers": 1})
    assert blank_loss(model, one).item() == pytest.approx(float(np.log(tok.vocab_size)), rel=0.2)


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown mask kind 'xmask'"):
        run_config({**tiny("kjv"), "data": {"mix": {"mask": 0.5, "xmask": 0.5}}})
    with pytest.raises(ValueError, match="weights sum to 0"):
        run_config({**tiny("kjv"), "data": {"mix": {"mask": 0}}})
    with pytest.raises(ValueError, match="recipe 'blank' trains the glm family"):
        run_config({**tiny("kjv"), "model": {"family": "gpt"}})
    with pytest.raises(ValueError, match="longer than the model's context"):
        cfg = tiny(tmp_path / "p.txt")
        (tmp_path / "p.txt").write_text(POEM * 50, encoding="utf-8")
        cfg["model"]["max_len"] = 26  # 25 characters + up to 4 <sop>
        train(run_config(cfg), tmp_path / "run")
