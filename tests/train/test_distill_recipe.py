"""The distill recipe (Sanh et al. 2019): which teacher layer initialises which student layer, the student's
equality with its teacher where it should be equal, and the run config's checks. Tiny random models only."""
import pytest
import torch

from lmforge.models import build_model
from lmforge.train.recipes import run_config
from lmforge.train.recipes.distill import LabelledBatches, init_from_teacher, student_config, student_layers

TEACHER = dict(vocab_size=97, max_len=24, d_model=32, n_heads=4, n_layers=6, d_ff=48, dropout=0.0)


def randomised(model):
    """Random biases and LayerNorms too (init sets them to 0 and 1), so that every copied tensor is told apart."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def test_student_layers_take_one_out_of_two():
    assert student_layers(6) == [0, 2, 4]  # MiniLM-L6 -> the 3-layer student
    assert student_layers(12) == [0, 2, 4, 6, 8, 10]  # BERT-base -> DistilBERT's 6
    assert student_layers(6, 2) == [0, 3] and student_layers(4, 4) == [0, 1, 2, 3] and student_layers(5) == [0, 2]
    with pytest.raises(ValueError, match="between 1 and the teacher's 6 layers, got 7"):
        student_layers(6, 7)
    with pytest.raises(ValueError, match="a 1-layer teacher has no half"):
        student_layers(1)


def test_each_student_layer_is_its_teacher_layer():
    torch.manual_seed(0)
    teacher = randomised(build_model("bert", TEACHER))
    student = build_model("distilbert", {k: v for k, v in TEACHER.items() if k != "n_layers"} | {"n_layers": 3})
    before = {k: v.clone() for k, v in student.state_dict().items()}
    copied = init_from_teacher(student, teacher, student_layers(6))
    s, t = student.state_dict(), teacher.state_dict()
    for j, i in enumerate([0, 2, 4]):  # student layer j <- teacher layer 2j, every tensor of the block
        names = [k for k in s if k.startswith(f"blocks.{j}.")]
        assert len(names) == 12  # qkv, out, two norms, two linears: weight + bias each
        for name in names:
            source = name.replace(f"blocks.{j}.", f"blocks.{i}.", 1)
            assert copied[name] == source
            assert torch.equal(s[name], t[source])
            if i != j:  # not the teacher layer of the same number
                assert not torch.equal(s[name], t[name])
    for name in ("emb.tok.weight", "emb.norm.weight", "emb.norm.bias"):
        assert copied[name] == name and torch.equal(s[name], t[name])
    # no segments in DistilBERT: segment 0's vector (what a single text gets) is folded into the positions
    assert copied["emb.pos.weight"] == "emb.pos.weight + emb.seg.weight[0]"
    assert torch.equal(s["emb.pos.weight"], t["emb.pos.weight"] + t["emb.seg.weight"][0])
    assert set(copied) == set(s)  # an encoder without heads: nothing is left at its initialisation
    assert not torch.equal(before["blocks.1.ffn.fc1.weight"], s["blocks.1.ffn.fc1.weight"])


def test_a_full_depth_student_is_its_teacher():
    """With every teacher layer kept, the DistilBERT student computes the BERT teacher's hidden states exactly
    on single texts (padding included): the copy misses nothing and the segment fold is right."""
    torch.manual_seed(0)
    teacher = randomised(build_model("bert", TEACHER))
    student = build_model("distilbert", {k: v for k, v in TEACHER.items()}).eval()
    init_from_teacher(student, teacher, list(range(6)))
    ids = torch.randint(1, 97, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    with torch.no_grad():
        torch.testing.assert_close(student(ids, mask).hidden_states, teacher(ids, mask).hidden_states,
                                   rtol=0, atol=1e-5)


def test_heads_with_the_same_shape_are_copied():
    torch.manual_seed(0)
    cfg = TEACHER | {"head": "mlm"}
    teacher = randomised(build_model("bert", cfg))
    student = build_model("distilbert", {k: v for k, v in cfg.items() if k != "n_layers"} | {"n_layers": 3})
    copied = init_from_teacher(student, teacher, [1, 3, 5])
    assert copied["blocks.0.attn.out.weight"] == "blocks.1.attn.out.weight"
    for name in ("mlm.dense.weight", "mlm.norm.bias", "mlm.bias"):
        assert copied[name] == name and torch.equal(student.state_dict()[name], teacher.state_dict()[name])


def test_init_refuses_what_does_not_fit():
    teacher = build_model("bert", TEACHER)
    student = build_model("distilbert", {k: v for k, v in TEACHER.items() if k != "n_layers"} | {"n_layers": 3})
    with pytest.raises(ValueError, match="names 2 teacher layers"):
        init_from_teacher(student, teacher, [0, 2])
    with pytest.raises(ValueError, match=r"layers \[6\] are not layers of the teacher, which has 6"):
        init_from_teacher(student, teacher, [0, 2, 6])
    wide = build_model("distilbert", TEACHER | {"d_model": 64, "n_layers": 3})
    with pytest.raises(ValueError, match="keeps the teacher's width"):
        init_from_teacher(wide, teacher, [0, 2, 4])


def test_the_student_config_is_the_teachers_at_half_depth():
    teacher = build_model("bert", TEACHER)
    cfg = run_config({"recipe": {"name": "distill", "teacher": "t"}, "model": {"family": "distilbert"}})
    assert cfg.NAME == "distill" and cfg.recipe.alpha_ce == 5 and cfg.recipe.alpha_task == 2
    assert cfg.recipe.alpha_cos == 1 and cfg.recipe.temperature == 2
    s = student_config(cfg, teacher.config)
    assert (s.family, s.n_layers, s.d_model, s.n_heads, s.d_ff, s.vocab_size, s.max_len) == \
        ("distilbert", 3, 32, 4, 48, 97, 24)
    cfg = run_config({"recipe": {"name": "distill"}, "model": {"family": "distilbert", "n_layers": 2, "dropout": 0.2}})
    s = student_config(cfg, teacher.config, [0, 3])
    assert (s.n_layers, s.dropout) == (2, 0.2)
    with pytest.raises(ValueError, match="takes its shape from the teacher"):
        student_config(run_config({"recipe": "distill", "model": {"family": "distilbert", "preset": "distilbert-tiny"}}),
                       teacher.config)


def test_bad_run_configs_say_what_to_do():
    with pytest.raises(ValueError, match="recipe 'distill' trains encoder models; family 'gpt' is decoder"):
        run_config({"recipe": "distill", "model": {"family": "gpt"}})
    with pytest.raises(ValueError, match="temperature must be positive"):
        run_config({"recipe": {"name": "distill", "temperature": 0}})
    with pytest.raises(ValueError, match="all 0"):
        run_config({"recipe": {"name": "distill", "alpha_ce": 0, "alpha_task": 0, "alpha_cos": 0}})
    with pytest.raises(ValueError, match="alpha_cos must be >= 0"):
        run_config({"recipe": {"name": "distill", "alpha_cos": -1}})
    with pytest.raises(ValueError, match="max_len must hold"):
        run_config({"recipe": "distill", "data": {"max_len": 1}})


def test_labelled_batches_pad_and_depend_only_on_the_index():
    examples = [([101, 5 + i] + [7] * (i % 4), i % 3) for i in range(10)]
    b = LabelledBatches(examples, 4, pad_id=0, seed=3)
    assert len(b) == 2  # full batches only when training
    ids, mask, labels = b.get(5)
    assert ids.shape[0] == 4 and torch.equal(ids * (1 - mask), torch.zeros_like(ids))  # padding is pad_id, masked
    assert all(int(mask[r].sum()) == len(examples[i][0]) for r, i in enumerate(b.rows(5)))
    assert torch.equal(labels, torch.tensor([examples[i][1] for i in b.rows(5)]))
    assert all(torch.equal(x, y) for x, y in zip(b.get(5), LabelledBatches(examples, 4, 0, seed=3).get(5)))
    epoch = b.rows(0) + b.rows(1)
    assert len(set(epoch)) == 8  # no example twice in an epoch
    ordered = LabelledBatches(examples, 4, 0, shuffle=False)
    assert len(ordered) == 3 and ordered.rows(2) == [8, 9]  # evaluation: every example, in order
    with pytest.raises(ValueError, match="fewer than one batch"):
        LabelledBatches(examples, 11, 0)


def _has_classify_head() -> bool:
    import typing

    from lmforge.models.bert.config import BERTConfig
    return "classify" in typing.get_args(typing.get_type_hints(BERTConfig)["head"])


# the teacher and student classify with the fine-tuning heads (head="classify"), which arrive with the finetune work
needs_heads = pytest.mark.skipif(not _has_classify_head(), reason="needs the encoders' classify heads (finetune)")


def tiny_teacher(tmp_path, minilm, head="classify"):
    """A random 2-layer BERT classifier over MiniLM's WordPiece vocabulary, saved with MiniLM's tokenizer."""
    from lmforge.data.wordnet import LEXNAMES
    from lmforge.models import save_model
    from lmforge.tokenizers import load_tokenizer, save_tokenizer

    torch.manual_seed(0)
    labels = list(LEXNAMES) if head == "classify" else []
    teacher = build_model("bert", dict(vocab_size=30522, max_len=64, d_model=32, n_heads=2, n_layers=2, d_ff=64,
                                       head=head, labels=labels, pooler=head == "classify"))
    path = tmp_path / f"teacher-{head}"
    save_model(teacher, path)
    save_tokenizer(load_tokenizer(minilm), path)
    return path


@needs_heads
def test_the_recipe_distils_from_a_frozen_teacher(tmp_path, minilm):
    import json

    import lmforge
    from lmforge.train.recipes import train

    teacher_dir = tiny_teacher(tmp_path, minilm)
    before = {k: v.clone() for k, v in lmforge.load(teacher_dir).state_dict().items()}
    cfg = run_config({"recipe": {"name": "distill", "teacher": str(teacher_dir)}, "model": {"family": "distilbert"},
                      "data": {"train_examples": 48, "eval_examples": 24, "max_len": 32},
                      "train": {"max_steps": 4, "batch_size": 8, "eval_interval": 4, "eval_steps": 2,
                                "log_interval": 1, "lr": 1e-3, "warmup_steps": 0, "device": "cpu", "progress": False}})
    assert train(cfg, tmp_path / "run") == 0
    summary = json.loads((tmp_path / "run" / "distill.json").read_text())
    assert summary["layers"] == [0] and summary["test_examples"] == 24
    assert summary["layer_map"]["blocks.0.ffn.fc1.weight"] == "blocks.0.ffn.fc1.weight"
    assert summary["layer_map"]["pre_classifier.weight"] == "pool.weight"
    assert summary["layer_map"]["classifier.bias"] == "classifier.bias"
    assert 0 <= summary["teacher_accuracy"] <= 1 and 0 <= summary["student_accuracy"] <= 1
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"distill_kl", "distill_task", "distill_cos", "accuracy"} <= set(rows[0])
    assert rows[0]["loss"] == pytest.approx(5 * rows[0]["distill_kl"] + 2 * rows[0]["distill_task"]
                                            + rows[0]["distill_cos"], rel=1e-4)
    assert "val_accuracy" in rows[-1]
    student = lmforge.load(tmp_path / "run")  # a DistilBERT classifier with the teacher's 45 labels
    assert (student.config.family, student.config.n_layers, student.config.head) == ("distilbert", 1, "classify")
    assert len(student.config.labels) == 45
    after = lmforge.load(teacher_dir).state_dict()  # the teacher was read, never trained
    assert all(torch.equal(before[k], after[k]) for k in before)


@needs_heads
def test_the_teacher_must_be_a_fine_tuned_classifier(tmp_path, minilm):
    from lmforge.train.recipes.distill import run

    for teacher, message in (("", "recipe.teacher is empty"), (str(tmp_path / "nowhere"), "is not a directory"),
                             (str(tiny_teacher(tmp_path, minilm, head="none")), "needs an encoder .* with a "
                                                                                 "classification head")):
        with pytest.raises(ValueError, match=message):
            run(run_config({"recipe": {"name": "distill", "teacher": teacher}}), tmp_path / "run")
