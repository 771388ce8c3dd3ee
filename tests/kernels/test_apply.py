"""lmforge.kernels.accelerate / restore: a model's layers take the fast products and give them back, with the same
parameters and state dict and outputs equal within float rounding; the Engine, the Trainer and the seq2seq
decoders apply them on CPU; the switches turn them off."""
import pytest
import torch
import torch.nn.functional as F

from lmforge import kernels
from lmforge.config import TrainConfig
from lmforge.models import build_model
from lmforge.kernels.tune import forced
from lmforge.nn import LMHead

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the column form needs two blocks at least; the thread split two threads
    yield
    torch.set_num_threads(before)


def gpt(tied=True):
    """384-wide matrices: large enough for the few-row paths (a 128-wide one would keep F.linear)."""
    torch.manual_seed(0)
    return build_model("gpt", dict(vocab_size=512, max_len=32, d_model=384, n_heads=6, n_layers=1, dropout=0.0,
                                   tie_embeddings=tied)).eval()


def kinds(model):
    return {type(m) for m in model.modules() if isinstance(m, (torch.nn.Linear, LMHead))}


@pytest.mark.parametrize("tied", [True, False])
def test_accelerate_swaps_the_classes_only_and_restore_swaps_them_back(tied):
    model = gpt(tied)
    params = dict(model.named_parameters())
    keys = list(model.state_dict())
    assert kinds(model) == {torch.nn.Linear, LMHead}  # nn/ builds plain PyTorch
    assert kernels.accelerate(model) is model
    assert kinds(model) == {kernels.Linear, kernels.LMHead}
    assert all(isinstance(m, torch.nn.Linear) for m in model.modules() if type(m) is kernels.Linear)
    assert model.blocks[0].attn.out.residual  # attributes set on a layer stay with it
    assert dict(model.named_parameters()) == params and list(model.state_dict()) == keys
    kernels.accelerate(model)  # twice: nothing more happens
    assert kinds(model) == {kernels.Linear, kernels.LMHead}
    assert kernels.restore(model) is model
    assert kinds(model) == {torch.nn.Linear, LMHead}
    assert dict(model.named_parameters()) == params and list(model.state_dict()) == keys


def test_a_subclass_of_linear_is_left_alone():
    class Scaled(torch.nn.Linear):  # e.g. an adapter's layer: it may compute something else
        def forward(self, x):
            return 2 * super().forward(x)
    net = torch.nn.Sequential(Scaled(4, 4), torch.nn.Linear(4, 4))
    kernels.accelerate(net)
    assert type(net[0]) is Scaled and type(net[1]) is kernels.Linear


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("rows", [1, 2, 8])
def test_outputs_equal_with_and_without_kernels_and_the_fast_paths_ran(threads, batched_calls, tied, rows):
    model = gpt(tied)
    ids = torch.randint(0, 512, (rows, 1))
    # the column form (1-2 rows) or the thread split (8 rows, no table entered), as if timed fastest
    with torch.no_grad(), forced("columns" if rows <= 2 else "split"):
        plain = model(ids).logits
        assert batched_calls == []  # nn/ alone: F.linear
        kernels.accelerate(model)
        fast = model(ids).logits
        assert batched_calls
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-4)
        kernels.restore(model)
        batched_calls.clear()
        assert torch.equal(model(ids).logits, plain) and batched_calls == []


@needs_onednn
def test_a_large_training_product_takes_the_onednn_forward_only_when_accelerated():
    layer = torch.nn.Linear(768, 768)
    x = torch.randn(1024, 768, requires_grad=True)
    assert type(layer(x).grad_fn).__name__ != "_TrainLinearBackward"
    kernels.accelerate(layer)
    with forced("onednn"):
        y = layer(x)
    assert type(y.grad_fn).__name__ == "_TrainLinearBackward"
    kernels.restore(layer)
    torch.testing.assert_close(y, layer(x), rtol=1e-5, atol=1e-5)


def test_set_enabled_false_makes_an_accelerated_model_plain(threads, batched_calls):
    model = gpt()
    ids = torch.randint(0, 512, (1, 1))
    with torch.no_grad(), forced("columns", "onednn"):  # the fast paths preferred: the switch must still win
        plain = model(ids).logits
        kernels.accelerate(model)
        kernels.set_enabled(False)
        try:
            assert torch.equal(model(ids).logits, plain) and batched_calls == []
            layer = torch.nn.Linear(768, 768)
            kernels.accelerate(layer)
            x = torch.randn(1024, 768, requires_grad=True)
            with torch.enable_grad():
                y = layer(x)
            assert type(y.grad_fn).__name__ != "_TrainLinearBackward" and torch.equal(y, F.linear(x, layer.weight,
                                                                                                 layer.bias))
        finally:
            kernels.set_enabled(True)
        model(ids)
        assert batched_calls  # back on


def test_the_few_row_switch(threads, batched_calls):
    model = kernels.accelerate(gpt())
    ids = torch.randint(0, 512, (1, 1))
    kernels.set_few_rows(False)
    try:
        with torch.no_grad():
            model(ids)
        assert batched_calls == []
    finally:
        kernels.set_few_rows(True)


def test_the_engine_and_the_seq2seq_decoders_apply_the_kernels_on_cpu():
    from lmforge.generate import Engine
    from lmforge.generate.seq2seq import greedy
    model = gpt()
    Engine(model)
    assert kinds(model) == {kernels.Linear, kernels.LMHead}
    torch.manual_seed(0)
    translator = build_model("transformer", dict(vocab_size=40, max_len=16, d_model=32, n_heads=2, n_layers=1,
                                                 d_ff=64, dropout=0.0)).eval()
    greedy(translator, torch.tensor([[5, 6, 7, 2]]), max_new_tokens=3)
    assert kinds(translator) == {kernels.Linear, kernels.LMHead}


def test_the_trainer_applies_the_kernels_on_cpu_to_the_model_and_its_companions():
    from lmforge.train.loop import Trainer
    model, reference = gpt(), gpt()
    Trainer(model, TrainConfig(max_steps=1, device="cpu", dtype="fp32", progress=False), None,
            companions={"reference": reference}, log=lambda s: None)
    assert kinds(model) == kinds(reference) == {kernels.Linear, kernels.LMHead}
