"""The tanh GELU's sigmoid form (lmforge.nn.feedforward.gelu_tanh) against torch's F.gelu(approximate="tanh")."""
import pytest
import torch
import torch.nn.functional as F

from lmforge.nn.feedforward import FeedForward, gelu_tanh


def test_gelu_tanh_matches_torch_forward_and_gradient():
    torch.manual_seed(0)
    x = (torch.randn(4, 16, 64) * 3).requires_grad_()  # tails too: large |x| saturates the sigmoid
    ref = x.detach().clone().requires_grad_()
    g = torch.randn(4, 16, 64)
    y, y_ref = gelu_tanh(x), F.gelu(ref, approximate="tanh")
    assert y.grad_fn is not None and "GeluTanh" in type(y.grad_fn).__name__  # the sigmoid form ran
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=2e-6)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, ref.grad, rtol=1e-5, atol=1e-5)


def test_gelu_tanh_gradcheck_float64():
    x = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gelu_tanh, (x,))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gelu_tanh_without_gradient_is_torch_bit_for_bit(dtype):
    """Evaluation and decoding (no gradient), and bf16 even with one, take torch's own kernel."""
    x = torch.randn(5, 33).to(dtype)
    with torch.no_grad():
        assert torch.equal(gelu_tanh(x), F.gelu(x, approximate="tanh"))
    xb = torch.randn(5, 33, dtype=torch.bfloat16, requires_grad=True)
    assert torch.equal(gelu_tanh(xb), F.gelu(xb, approximate="tanh"))


def test_feedforward_gelu_tanh_trains_like_torch():
    torch.manual_seed(0)
    ff = FeedForward(8, 32, "gelu_tanh")
    x = torch.randn(2, 5, 8)
    out = ff(x)
    ref = ff.fc2(F.gelu(ff.fc1(x), approximate="tanh"))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
