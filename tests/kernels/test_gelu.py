"""lmforge.kernels.gelu: the tanh GELU's sigmoid form equals torch's F.gelu(approximate="tanh") in values and
gradients, runs only where it was timed faster (a cached choice is followed both ways) and only in training;
accelerate/restore put it into a model's feed-forwards and take it out."""
import json

import pytest
import torch
import torch.nn.functional as F

from lmforge import kernels
from lmforge.kernels import gelu, native
from lmforge.kernels.tune import Tuner, forced, using
from lmforge.models import build_model
from lmforge.nn import feedforward


def backward_name(y):
    return type(y.grad_fn).__name__


@pytest.mark.parametrize("form, grad_fn", [("sigmoid", "GeluTanh"), ("avx2", "GeluTanhAVX2")])
@pytest.mark.parametrize("shape", [(4, 16, 64), (3, 7), (1, 9, 13)])  # 13, 21: a tail after the 8-wide steps
def test_our_forms_match_torch_forward_and_gradient(form, grad_fn, shape):
    if form == "avx2" and native.extension() is None:
        pytest.skip("lmforge's CPU kernels cannot be built here")
    torch.manual_seed(0)
    x = (torch.randn(shape) * 3).requires_grad_()  # tails too: large |x| saturates the sigmoid
    ref = x.detach().clone().requires_grad_()
    g = torch.randn(shape)
    with forced(form):
        y = gelu.gelu_tanh(x)
    y_ref = F.gelu(ref, approximate="tanh")
    assert type(y.grad_fn).__name__ == f"_{grad_fn}Backward"  # that form ran
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=2e-6)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, ref.grad, rtol=1e-5, atol=1e-5)


def test_the_sigmoid_form_gradcheck_float64():
    x = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    with forced("sigmoid"):
        assert torch.autograd.gradcheck(gelu.gelu_tanh, (x,))


@pytest.mark.parametrize("order, expected", [(["sigmoid", "F.gelu"], "_GeluTanhBackward"), (["F.gelu"], "GeluBackward0")])
def test_the_cached_choice_is_followed(tmp_path, order, expected):
    x = torch.randn(6, 32, requires_grad=True)
    key = f"gelu_tanh train 32 rows<=8 float32 threads={torch.get_num_threads()}"
    path = tmp_path / "tune.json"
    path.write_text(json.dumps({"choices": {key: {"order": order, "ms": {}}}}))
    with using(Tuner(path)) as t:
        assert backward_name(gelu.gelu_tanh(x)) == expected
    assert list(t.records) == [key] and t.records[key]["ms"] == {}  # read from the file, not timed again


def test_a_new_shape_is_timed_and_recorded(tmp_path):
    with using(Tuner(tmp_path / "tune.json")) as t:
        gelu.gelu_tanh(torch.randn(3, 48, requires_grad=True))
    (key, record), = t.records.items()
    forms = {"F.gelu", "sigmoid"} | ({"avx2"} if native.extension() is not None else set())
    assert key.startswith("gelu_tanh train 48 rows<=4 float32") and set(record["ms"]) == forms


def test_in_bf16_it_is_torch_bit_for_bit_with_or_without_gradient():
    """bf16 takes torch's own kernel, untimed, in training and inference alike."""
    xb = torch.randn(5, 33, dtype=torch.bfloat16, requires_grad=True)
    with forced("sigmoid", "avx2"):
        assert torch.equal(gelu.gelu_tanh(xb), F.gelu(xb, approximate="tanh"))
        with torch.no_grad():
            assert torch.equal(gelu.gelu_tanh(xb), F.gelu(xb, approximate="tanh"))


def test_without_gradient_the_avx2_forward_matches_torch_and_torch_stays_the_default():
    """Decoding and evaluation (no autograd) in fp32: the AVX2 forward alone where it was chosen (it writes gelu(x)
    only), torch's kernel bit for bit where it was not; the sigmoid form is a training form, never used here."""
    x = torch.randn(5, 8, 33) * 3  # 33: a tail after the 8-wide steps; a non-contiguous view too
    with torch.no_grad():
        with forced("sigmoid"):
            assert torch.equal(gelu.gelu_tanh(x), F.gelu(x, approximate="tanh"))
        if native.extension() is None:
            pytest.skip("lmforge's CPU kernels cannot be built here")
        with forced("avx2"):
            y = gelu.gelu_tanh(x.transpose(0, 1))
        assert not torch.equal(y, F.gelu(x.transpose(0, 1), approximate="tanh"))  # another kernel ran
        torch.testing.assert_close(y, F.gelu(x.transpose(0, 1), approximate="tanh"), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("order, ours", [(["avx2", "F.gelu"], True), (["F.gelu"], False)])
def test_the_cached_inference_choice_is_followed(tmp_path, order, ours):
    if native.extension() is None:
        pytest.skip("lmforge's CPU kernels cannot be built here")
    x = torch.randn(6, 40)
    key = f"gelu_tanh infer 40 rows<=8 float32 threads={torch.get_num_threads()}"
    path = tmp_path / "tune.json"
    path.write_text(json.dumps({"choices": {key: {"order": order, "ms": {}}}}))
    with using(Tuner(path)) as t, torch.inference_mode():
        y = gelu.gelu_tanh(x)
    assert torch.equal(y, F.gelu(x, approximate="tanh")) != ours
    assert list(t.records) == [key] and t.records[key]["ms"] == {}  # read from the file, not timed again


def test_accelerate_puts_it_into_the_feed_forwards_and_restore_takes_it_out():
    torch.manual_seed(0)
    model = build_model("gpt", dict(vocab_size=64, max_len=16, d_model=32, n_heads=2, n_layers=2, dropout=0.0))
    ids = torch.randint(0, 64, (2, 16))
    expected = model(ids, ids).loss
    kernels.accelerate(model)
    ffs = [m for m in model.modules() if isinstance(m, feedforward.FeedForward)]
    assert ffs and all(m.act is gelu.gelu_tanh for m in ffs)
    with forced("sigmoid"):
        loss = model(ids, ids).loss
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    kernels.restore(model)
    assert all(m.act is feedforward.gelu_tanh for m in ffs)
    assert set(model.state_dict()) == set(build_model("gpt", dict(vocab_size=64, max_len=16, d_model=32, n_heads=2,
                                                                   n_layers=2, dropout=0.0)).state_dict())


def test_under_torch_compile_the_cached_choice_is_followed(tmp_path):
    """Traced by torch.compile, the choice is read (or timed) eagerly and becomes a constant of the graph; the
    compiled forward and backward equal eager's."""
    x = torch.randn(6, 32)
    key = f"gelu_tanh train 32 rows<=8 float32 threads={torch.get_num_threads()}"
    path = tmp_path / "tune.json"
    path.write_text(json.dumps({"choices": {key: {"order": ["sigmoid", "F.gelu"], "ms": {}}}}))
    torch._dynamo.reset()
    with using(Tuner(path)) as t:
        xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
        yc = torch.compile(gelu.gelu_tanh, backend="aot_eager")(xc)
        assert list(t.records) == [key]  # the compiled call read the choice
        ye = gelu.gelu_tanh(xe)
        assert torch.equal(yc, ye)  # the same ops: torch's tanh GELU would differ in the last bits
        yc.sum().backward()
        ye.sum().backward()
        torch.testing.assert_close(xc.grad, xe.grad)
    assert list(t.records) == [key]
    torch._dynamo.reset()
