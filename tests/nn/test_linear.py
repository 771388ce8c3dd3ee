"""lmforge.nn.linear: the batched few-row products equal F.linear, and training never takes them."""
import pytest
import torch
import torch.nn.functional as F

from lmforge.nn import Linear, linear


@pytest.fixture
def batched_calls(monkeypatch):
    """Counts calls of the batched products the split path uses (F.linear never calls them)."""
    calls = []
    for name in ("bmm", "baddbmm"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    return calls


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("n_threads", [2, 3])
@pytest.mark.parametrize("out_f,in_f,rows,bias", [(2304, 768, 1, True), (50257, 64, 3, False),
                                                  (1000, 1024, 32, True), (768, 3072, 7, False)])
def test_split_product_equals_f_linear(threads, batched_calls, n_threads, out_f, in_f, rows, bias):
    threads(n_threads)
    torch.manual_seed(0)
    w, b = torch.randn(out_f, in_f), (torch.randn(out_f) if bias else None)
    x = torch.randn(1, rows, in_f)
    with torch.no_grad():
        got = linear(x, w, b)
    assert got.shape == (1, rows, out_f)
    assert batched_calls == ["baddbmm" if bias else "bmm"]  # the split path ran
    torch.testing.assert_close(got, F.linear(x, w, b), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("out_f,in_f,bias", [(50257, 768, False), (3072, 768, True), (768, 3072, True)])
def test_single_row_product_equals_f_linear(threads, batched_calls, n_threads, out_f, in_f, bias):
    """One row (batch-1 decoding) takes the matrix-times-column path, one thread included; 50257 rows
    leave a remainder that is computed aside."""
    threads(n_threads)
    torch.manual_seed(0)
    w, b = torch.randn(out_f, in_f), (torch.randn(out_f) if bias else None)
    x = torch.randn(1, 1, in_f)
    with torch.no_grad():
        got = linear(x, w, b)
    assert got.shape == (1, 1, out_f)
    assert batched_calls == ["baddbmm" if bias else "bmm"]
    torch.testing.assert_close(got, F.linear(x, w, b), rtol=1e-5, atol=1e-4)


def test_a_non_contiguous_single_row_gives_the_same_result(threads):
    threads(2)
    torch.manual_seed(0)
    w = torch.randn(2304, 768)
    x = torch.randn(768, 2)[:, :1].t()  # (1, 768) with strides (1, 2)
    with torch.no_grad():
        torch.testing.assert_close(linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-4)


def test_gradients_flow_through_the_usual_path(threads, batched_calls):
    threads(2)
    torch.manual_seed(0)
    layer = Linear(768, 2304)
    x = torch.randn(1, 1, 768, requires_grad=True)
    layer(x).square().sum().backward()
    assert batched_calls == []  # training keeps F.linear
    ref = torch.nn.Linear(768, 2304)
    ref.load_state_dict(layer.state_dict())
    x2 = x.detach().clone().requires_grad_()
    ref(x2).square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad)
    torch.testing.assert_close(x.grad, x2.grad)


def test_linear_is_an_nn_linear_with_the_same_state_dict():
    layer = Linear(4, 3)
    assert isinstance(layer, torch.nn.Linear)
    assert set(layer.state_dict()) == {"weight", "bias"}


def test_a_non_contiguous_weight_takes_the_usual_path(threads, batched_calls):
    threads(2)
    w = torch.randn(768, 2304).t()  # (2304, 768), column-major
    x = torch.randn(1, 768)
    with torch.no_grad():
        torch.testing.assert_close(linear(x, w), F.linear(x, w))
    assert batched_calls == []
