"""AdamW parameter groups and the learning-rate schedules, against their textbook definitions."""
import math

import pytest

from lmforge.config import TrainConfig
from lmforge.models import build_model
from lmforge.train.optim import Schedule, build_optimizer, param_groups


def test_decay_only_matrices_and_embeddings():
    model = build_model("gpt", {"vocab_size": 11, "max_len": 8, "d_model": 8, "n_heads": 2, "n_layers": 1})
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == [
        "blocks.0.attn.out.weight", "blocks.0.attn.qkv.weight", "blocks.0.ffn.fc1.weight", "blocks.0.ffn.fc2.weight",
        "pos_emb.weight", "tok_emb.weight"]
    assert all(names[id(p)].endswith("bias") or "norm" in names[id(p)] for p in no_decay["params"])
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))  # tied head counted once
    opt = build_optimizer(model, TrainConfig(beta2=0.95, weight_decay=0.2))
    assert opt.param_groups[0]["betas"] == (0.9, 0.95) and opt.param_groups[0]["weight_decay"] == 0.2


def test_cosine_warms_up_then_decays_to_min_lr():
    s = Schedule("cosine", lr=1.0, warmup_steps=10, max_steps=110, min_lr=0.1)
    warm = [s(i) for i in range(11)]
    assert warm == sorted(warm) and warm[0] == pytest.approx(1 / 11) and warm[10] == 1.0
    assert s(60) == pytest.approx(0.55)  # half way through the decay: (lr + min_lr) / 2
    assert s(35) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    decay = [s(i) for i in range(10, 111)]
    assert decay == sorted(decay, reverse=True) and s(110) == s(500) == 0.1


def test_inverse_sqrt_is_vaswani_eq3():
    d_model, warmup = 512, 4000  # the paper's base model
    s = Schedule("inverse_sqrt", lr=(d_model * warmup) ** -0.5, warmup_steps=warmup, max_steps=100000)
    for step_num in (1, 100, 3999, 4000, 4001, 20000, 100000):
        paper = d_model ** -0.5 * min(step_num ** -0.5, step_num * warmup ** -1.5)
        assert s(step_num - 1) == pytest.approx(paper, rel=1e-12)
    assert max(s(i) for i in range(0, 8000)) == pytest.approx(7.0e-4, rel=1e-2)


def test_constant_after_warmup():
    s = Schedule("constant", lr=0.5, warmup_steps=3, max_steps=10)
    assert [s(i) for i in range(6)] == pytest.approx([0.125, 0.25, 0.375, 0.5, 0.5, 0.5])
    assert Schedule("constant", lr=0.5, warmup_steps=0, max_steps=10)(0) == 0.5


def test_inverse_sqrt_needs_warmup():
    with pytest.raises(ValueError, match="inverse_sqrt' needs warmup_steps > 0"):
        TrainConfig(schedule="inverse_sqrt", warmup_steps=0)


def test_inverse_sqrt_schedule_is_the_papers_formula():
    """Vaswani et al. 2017 eq. 3: lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), d_model 512, warmup 4000."""
    s = Schedule("inverse_sqrt", lr=(512 * 4000) ** -0.5, warmup_steps=4000, max_steps=100_000)
    for step in (1, 100, 1000, 4000, 10_000, 100_000):
        paper = 512 ** -0.5 * min(step ** -0.5, step * 4000 ** -1.5)
        assert abs(s(step - 1) - paper) < 1e-12  # our step is 0-based
    assert abs(s(3999) - 6.9877e-4) < 1e-7  # the peak, at the end of warmup
