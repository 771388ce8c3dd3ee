"""The finetune recipe end to end on tiny encoders (a WordPiece vocabulary learned in-process from WordNet glosses):
each head learns its WordNet task above chance in seconds, the run directory carries the head's labels, the
eval command scores it, and bad input says what to do."""
import json
from collections import Counter

import pytest
import torch

import lmforge
from lmforge.cli import main
from lmforge.models import build_model, save_model
from lmforge.train.recipes import run_config
from lmforge.train.recipes.finetune import run as finetune

TRAIN = dict(max_steps=100, batch_size=32, lr=3e-3, warmup_steps=10, min_lr=0.0, weight_decay=0.01, eval_interval=60,
             eval_steps=4, log_interval=20, save_interval=0, progress=False, dtype="fp32", seed=0)


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """Tiny BERT and DistilBERT directories (lmforge format) sharing a 2000-piece WordPiece vocabulary learned from
    4700 training glosses, and the same BERT as a Hugging Face directory."""
    from lmforge.convert.hf import save_hf
    from lmforge.data.wordnet import load_task
    from lmforge.tokenizers import WordPieceTokenizer, save_tokenizer

    root = tmp_path_factory.mktemp("encoders")
    examples, _ = load_task("supersense", "train")
    tok = WordPieceTokenizer.train([ex["text"] for ex in examples[::20]], 2000)
    small = dict(vocab_size=tok.vocab_size, max_len=64, d_model=64, n_heads=2, n_layers=2, dropout=0.0)
    torch.manual_seed(0)
    for family in ("bert", "distilbert"):
        save_model(build_model(family, small), root / family)
        save_tokenizer(tok, root / family)
    save_hf(lmforge.load(root / "bert"), root / "bert-hf")
    save_tokenizer(tok, root / "bert-hf")
    return root


def config(source, task, steps=100, **data):
    return run_config({"recipe": "finetune", "model": {"from": str(source)}, "train": {**TRAIN, "max_steps": steps},
                       "data": {"task": task, "max_len": 64, "train_examples": 6000, "eval_examples": 400, **data}})


def test_tiny_bert_learns_supersense_above_chance(encoders, tmp_path):
    summary = finetune(config(encoders / "bert", "wordnet-supersense", steps=200), tmp_path / "run", log=lambda m: None)
    from lmforge.data.wordnet import load_task
    val, _ = load_task("supersense", "val")
    picked = [val[i * len(val) // 400] for i in range(400)]  # the examples scored (evenly spread)
    majority = Counter(ex["label"] for ex in picked).most_common(1)[0][1] / len(picked)
    # chance is 1/45; always answering the most frequent class scores `majority` (~11%)
    assert summary["val"]["n"] == 400 and summary["val"]["accuracy"] > majority + 0.04, (summary["val"], majority)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"accuracy", "val_accuracy", "val_loss"} <= set(rows[-1]) and rows[-1]["loss"] < rows[0]["loss"]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["head"] == "classify" and saved["labels"][:3] == ["adj.all", "adj.pert", "adv.all"] and saved["pooler"]
    assert json.loads((tmp_path / "run" / "finetune.json").read_text())["val"] == summary["val"]


@pytest.mark.parametrize("source,task,steps,metric,floor", [
    ("bert", "wordnet-qa", 100, "exact_match", 0.15),  # a random span of a ~7-word sentence is right < 5% of the time
    ("bert-hf", "wordnet-tags", 150, "entity_f1", 0.15),  # tagging nothing scores 0; a Hugging Face directory as the start
])
def test_span_and_tag_heads_learn(encoders, tmp_path, source, task, steps, metric, floor):
    summary = finetune(config(encoders / source, task, steps), tmp_path / "run", log=lambda m: None)
    assert summary["val"][metric] > floor, summary["val"]
    model = lmforge.load(tmp_path / "run")
    assert (model.config.family, model.config.head) == ("bert", "qa" if task == "wordnet-qa" else "tag")
    assert model.config.pooler is False  # token heads read every token, not the pooler (as HF's classes)


def test_eval_command_and_info_print_the_scores_and_labels(encoders, tmp_path, capsys):
    run = tmp_path / "run"
    finetune(config(encoders / "bert", "wordnet-tags", steps=10, eval_examples=50),
             run, log=lambda m: None)
    assert main(["eval", "wordnet", str(run), "--limit", "100", "--show", "2"]) == 0
    out = capsys.readouterr().out
    assert "wordnet-tags, test split: 100 of 4,567 examples" in out and "labels: O, B-TERM, I-TERM" in out
    assert "entity F1" in out and out.count("gold ") == 2
    assert main(["info", str(run)]) == 0
    assert "labels      3: O, B-TERM, I-TERM" in capsys.readouterr().out
    # the labels do not fit another task's head: said, not a crash
    assert main(["eval", "wordnet", str(run), "--task", "wordnet-supersense"]) == 2
    assert "needs a model with head='classify'; this bert model has head='tag'" in capsys.readouterr().err
    # a model fine-tuned for tags, fine-tuned again for supersense: the old head (3 labels) is replaced, not reused
    lines = []
    finetune(config(run, "wordnet-supersense", steps=2, eval_examples=10), tmp_path / "again", log=lines.append)
    new = [line for line in lines if "new (random) tensors:" in line]
    assert new and "pool.weight" in new[0] and "classifier.weight" in new[0], lines
    assert lmforge.load(tmp_path / "again").config.labels[0] == "adj.all"


def test_bad_input_is_refused_with_what_to_do(encoders, tmp_path):
    with pytest.raises(ValueError, match="unknown task 'wordnet-ner'. Known tasks: wordnet-supersense, wordnet-tags"):
        config(encoders / "bert", "wordnet-ner")
    gpt = tmp_path / "gpt"
    save_model(build_model("gpt", dict(vocab_size=50, max_len=16, d_model=16, n_heads=2, n_layers=1)), gpt)
    with pytest.raises(ValueError, match="recipe 'finetune' trains encoders \\(bert, distilbert\\); model.from .* "
                                         "holds a gpt model, which is a decoder"):
        config(gpt, "wordnet-qa")
    with pytest.raises(ValueError, match="family 'gpt' is a decoder"):
        run_config({"recipe": "finetune", "model": {"family": "gpt"}})
    with pytest.raises(ValueError, match="head come from the task"):
        run_config({"recipe": "finetune", "model": {"from": str(encoders / "bert"), "head": "qa"}})
    with pytest.raises(ValueError, match="has no config.json"):
        config(tmp_path / "nowhere", "wordnet-qa")
    cfg = run_config({"recipe": "finetune", "model": {"preset": "bert-tiny"}, "data": {"task": "wordnet-qa"}})
    with pytest.raises(ValueError, match="data.tokenizer: a model built from a config .* needs a tokenizer"):
        finetune(cfg, tmp_path / "run", log=lambda m: None)
    big = config(encoders / "bert", "wordnet-qa", max_len=100)
    with pytest.raises(ValueError, match="data.max_len \\(100\\) is longer than the model's max_len \\(64\\)"):
        finetune(big, tmp_path / "run", log=lambda m: None)


def test_a_random_config_with_a_tokenizer_directory(encoders, tmp_path):
    cfg = run_config({"recipe": "finetune", "model": {"family": "distilbert", "d_model": 32, "n_heads": 2, "n_layers": 1,
                                                     "max_len": 64},
                      "train": {**TRAIN, "max_steps": 3, "eval_interval": 0},
                      "data": {"task": "wordnet-supersense", "tokenizer": str(encoders / "bert"), "max_len": 64,
                               "train_examples": 100, "eval_examples": 20}})
    summary = finetune(cfg, tmp_path / "run", log=lambda m: None)
    assert summary["steps"] == 3 and summary["val"]["n"] == 20
    assert lmforge.load(tmp_path / "run").config.labels[-1] == "adj.ppl"


def test_a_bert_pretrained_with_mlm_and_nsp_heads_is_fine_tuned_without_them(encoders, tmp_path):
    """What the mlm recipe writes (head='pretraining'): the encoder and pooler are copied, the pretraining heads
    are left behind, the classifier is new."""
    from lmforge.tokenizers import load_tokenizer, save_tokenizer
    base = lmforge.load(encoders / "bert")
    torch.manual_seed(1)
    pretrained = build_model("bert", base.config.replace(head="pretraining"))
    save_model(pretrained, tmp_path / "mlm")
    save_tokenizer(load_tokenizer(encoders / "bert"), tmp_path / "mlm")
    lines = []
    finetune(config(tmp_path / "mlm", "wordnet-supersense", steps=1, eval_examples=10), tmp_path / "run",
             log=lines.append)
    said = next(line for line in lines if "new (random) tensors" in line)
    assert "new (random) tensors: classifier.weight, classifier.bias; not used: mlm." in said and "nsp.weight" in said
    tuned = lmforge.load(tmp_path / "run")
    assert tuned.config.head == "classify" and tuned.mlm is None and tuned.nsp is None
