"""The `span` recipe (T5's span corruption) and the `text2text` recipe (tasks as text, from scratch or from a
span run), end to end on tiny models."""
import json

import pytest
import torch

from lmforge.data.span import uncorrupt
from lmforge.data.text2text import examples
from lmforge.eval.text2text import accuracy, evaluate
from lmforge.models import load_model
from lmforge.tokenizers import load_tokenizer
from lmforge.train.recipes import run_config, train
from lmforge.train.recipes.span import SpanBatches, chunks, sentinel_count

MODEL = {"family": "transformer", "d_model": 64, "n_heads": 2, "n_layers": 1, "d_ff": 128, "max_len": 64,
         "dropout": 0.0}
TRAIN = {"batch_size": 16, "lr": 3e-3, "warmup_steps": 5, "eval_steps": 2, "save_interval": 0, "log_interval": 10,
         "progress": False, "dtype": "fp32"}


@pytest.fixture(scope="module")
def span_run(tmp_path_factory):
    from lmforge.data.corpora import splits
    d = tmp_path_factory.mktemp("span")
    (d / "kjv.txt").write_text("\n".join(splits("kjv")["train"].split("\n")[:400]))
    cfg = {"recipe": {"name": "span"}, "model": MODEL,
           "data": {"corpus": str(d / "kjv.txt"), "vocab_size": 200, "extra_ids": 20, "length": 40},
           "train": {**TRAIN, "max_steps": 60, "eval_interval": 60}}
    assert train(run_config(cfg), d / "run") == 0
    return d, cfg


def test_span_run_learns_and_saves_a_t5_vocabulary(span_run):
    d, _ = span_run
    tok = load_tokenizer(d / "run")
    assert tok.vocab_size == 220 and sentinel_count(tok) == 20 and tok.token_to_id("<extra_id_0>") == 219
    assert [tok.id_to_token(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]  # the transformer's layout
    rows = [json.loads(l) for l in (d / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0] - 1.0 and "val_loss" in rows[-1] and "acc" in rows[-1]
    assert load_model(d / "run").config.vocab_size == 220


def test_span_batches_are_pure_and_invertible(span_run):
    d, _ = span_run
    tok = load_tokenizer(d / "run")
    ex = chunks(["In the beginning God created the heaven and the earth."] * 20, tok, 30)
    kw = dict(vocab_size=tok.vocab_size, n_sentinels=20, eos_id=2, pad_id=0, start_id=1, density=0.15, mean_span=3.0)
    b = SpanBatches(ex, 4, seed=3, **kw)
    src, tgt, targets = b.get(5)
    assert all(torch.equal(x, y) for x, y in zip(b.get(5), (src, tgt, targets)))
    assert not torch.equal(b.get(6)[0], src)
    assert (tgt[:, 0] == 1).all() and torch.equal(tgt[:, 1:][targets[:, 1:] != -100], targets[:, :-1][targets[:, 1:] != -100])
    for r in range(4):
        s = [i for i in src[r].tolist() if i != 0]
        t = [i for i in targets[r].tolist() if i != -100]
        assert len(uncorrupt(s, t, vocab_size=tok.vocab_size, n_sentinels=20, eos_id=2)) == 30
    # over processes: rank r of 2 takes rows [r*B, (r+1)*B) of the one global batch
    r1 = SpanBatches(ex, 2, seed=3, rank=1, world_size=2, **kw).get(5)[0]
    assert torch.equal(r1[:, :src.size(1)], src[2:4, :r1.size(1)]) or r1.size(1) != src.size(1)


def test_text2text_init_starts_from_the_span_run(span_run, tmp_path):
    from lmforge.train.recipes.text2text import _init
    d, _ = span_run
    cfg = run_config({"recipe": {"name": "text2text", "init": str(d / "run")}})
    tok, state = _init(cfg, tmp_path / "ft", resume=False)
    base = load_model(d / "run")
    assert cfg.model == {"family": "transformer", **base.config.to_dict()}
    assert state.keys() == base.state_dict().keys() and all(torch.equal(state[k], v) for k, v in base.state_dict().items())
    assert load_tokenizer(tmp_path / "ft").vocab_size == tok.vocab_size == 220
    cfg = {"recipe": {"name": "text2text", "tasks": ["en-zh"], "init": str(d / "run")},
           "data": {"limit": 8, "max_len": 64, "max_tokens": 1024}, "train": {**TRAIN, "max_steps": 5, "eval_interval": 5}}
    assert train(run_config(cfg), tmp_path / "ft2") == 0
    assert json.loads((tmp_path / "ft2" / "text2text.json").read_text())["init"] == str(d / "run")


def test_text2text_memorises_the_program_task(tmp_path):
    cfg = {"recipe": {"name": "text2text", "tasks": ["program"]}, "model": MODEL,
           "data": {"limit": 12, "vocab_size": 150, "extra_ids": 5, "max_len": 64, "max_tokens": 1024},
           "train": {**TRAIN, "max_steps": 150, "eval_interval": 150, "lr": 5e-3}}
    assert train(run_config(cfg), tmp_path / "ft") == 0
    summary = json.loads((tmp_path / "ft" / "text2text.json").read_text())
    assert summary["init"] is None and summary["steps"] == 150 and summary["tasks"] == ["program"]
    model, tok = load_model(tmp_path / "ft"), load_tokenizer(tmp_path / "ft")
    seen = examples("program", "train")
    seen = seen[::len(seen) // 12][:12]
    r = evaluate(model, tok, seen)
    assert r["program"]["n"] == 12 and r["program"]["accuracy"] >= 0.9, r["program"]["samples"]


def test_text2text_from_scratch_writes_its_own_tokenizer(tmp_path):
    cfg = {"recipe": {"name": "text2text", "tasks": ["en-de", "program"]}, "model": MODEL,
           "data": {"limit": 20, "vocab_size": 300, "extra_ids": 5, "max_len": 64, "max_tokens": 1024},
           "train": {**TRAIN, "max_steps": 10, "eval_interval": 10}}
    assert train(run_config(cfg), tmp_path / "s") == 0
    tok = load_tokenizer(tmp_path / "s")
    assert tok.vocab_size == 305 and sentinel_count(tok) == 5
    r = evaluate(load_model(tmp_path / "s"), tok, examples("en-de", "test")[:4] + examples("program", "test")[:4])
    assert set(r) == {"en-de", "program"} and r["en-de"]["n"] == 4 and 0 <= r["en-de"]["bleu"] <= 100


def test_bad_configs():
    with pytest.raises(ValueError, match="recipe 'span' trains encoder-decoder models"):
        run_config({"recipe": "span", "model": {"family": "gpt"}})
    with pytest.raises(ValueError, match="unknown task"):
        run_config({"recipe": {"name": "text2text", "tasks": ["en-fr"]}})
    with pytest.raises(ValueError, match="extra_ids must be >= 1"):
        run_config({"recipe": "span", "data": {"extra_ids": 0}})
    with pytest.raises(ValueError, match="one answer per example"):
        accuracy(["a"], ["a", "b"])


def test_init_must_be_a_run_and_fix_the_model(span_run, tmp_path):
    d, _ = span_run
    with pytest.raises(ValueError, match="not a run or model directory"):
        train_or_raise({"recipe": {"name": "text2text", "init": str(tmp_path)}}, tmp_path / "x")
    with pytest.raises(ValueError, match="leave the model section out"):
        train_or_raise({"recipe": {"name": "text2text", "init": str(d / "run")}, "model": {**MODEL, "d_model": 32}},
                       tmp_path / "y")


def test_a_tokenizer_without_sentinels_is_refused(tmp_path):
    from lmforge.tokenizers import UnigramTokenizer, save_tokenizer
    (tmp_path / "c.txt").write_text("In the beginning God created the heaven and the earth.\n" * 50)
    save_tokenizer(UnigramTokenizer.train(["In the beginning God created the heaven"], 40,
                                          special_tokens=("<pad>", "<s>", "</s>")), tmp_path / "tok")
    with pytest.raises(ValueError, match="does not end in <extra_id_0>"):
        train_or_raise({"recipe": "span", "model": MODEL,
                        "data": {"corpus": str(tmp_path / "c.txt"), "tokenizer": str(tmp_path / "tok")}}, tmp_path / "r")


def train_or_raise(d, out):
    from lmforge.train.recipes import recipe
    cfg = run_config(d)
    return recipe(cfg.NAME).run(cfg, out)


def test_span_then_text2text_with_the_t5_family(tmp_path):
    (tmp_path / "c.txt").write_text("\n".join(examples("en-de", "val")[i].src[29:] for i in range(0, 400, 2)))
    cfg = {"recipe": {"name": "span"}, "model": {"family": "t5", "preset": "t5-tiny", "dropout": 0.0},
           "data": {"corpus": str(tmp_path / "c.txt"), "vocab_size": 150, "extra_ids": 10, "length": 30},
           "train": {**TRAIN, "max_steps": 10, "eval_interval": 10}}
    assert train(run_config(cfg), tmp_path / "span") == 0
    tok = load_tokenizer(tmp_path / "span")
    assert [tok.id_to_token(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]  # T5's layout: the decoder starts at <pad>
    model = load_model(tmp_path / "span")
    assert model.config.family == "t5" and model.decoder_start == 0 and model.config.eos_id == 1
    cfg = {"recipe": {"name": "text2text", "tasks": ["en-de"], "init": str(tmp_path / "span")},
           "data": {"limit": 8, "max_len": 64, "max_tokens": 1024}, "train": {**TRAIN, "max_steps": 5, "eval_interval": 5}}
    assert train(run_config(cfg), tmp_path / "ft") == 0
    r = evaluate(load_model(tmp_path / "ft"), tok, examples("en-de", "test")[:3])
    assert r["en-de"]["n"] == 3
