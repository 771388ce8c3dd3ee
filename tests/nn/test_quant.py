"""lmforge.nn.quant: the int8 (per-output-channel absmax) and bf16 weight layers, as reference math."""
import pytest
import torch
import torch.nn.functional as F

from lmforge.nn.quant import BF16Linear, Int8Linear, quantize_int8


def test_quantize_int8_textbook_case():
    q, scale = quantize_int8(torch.tensor([[0.5, -1.0], [0.0, 0.0]]))
    assert q.dtype == torch.int8 and q.tolist() == [[64, -127], [0, 0]]  # 0.5 * 127 = 63.5 -> 64 (half to even)
    torch.testing.assert_close(scale, torch.tensor([1 / 127, 1.0]))  # an all-zero row: scale 1, not 0/0


def test_each_weight_is_within_half_a_step_of_its_row_scale():
    torch.manual_seed(0)
    w = torch.randn(96, 80) * torch.logspace(-3, 1, 96)[:, None]  # rows of very different sizes
    q, scale = quantize_int8(w)
    assert q.abs().max() == 127 and (q.abs().amax(1) == 127).all()  # every row uses the full range
    err = (q.float() * scale[:, None] - w).abs()
    assert (err <= scale[:, None] / 2 * (1 + 1e-5)).all()


def test_int8_linear_is_f_linear_on_the_dequantized_weight_and_close_to_the_float_layer():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    layer = Int8Linear.from_weight(lin.weight, lin.bias)
    x = torch.randn(3, 5, 64)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight.float() * layer.scale[:, None], lin.bias),
                               rtol=0, atol=0)
    with torch.no_grad():
        y = lin(x)
    assert (layer(x) - y).abs().max() < 0.01 * y.abs().max()
    assert set(layer.state_dict()) == {"weight", "scale", "bias"} and not layer.weight.requires_grad


def test_bf16_linear_computes_in_bf16_and_returns_the_input_dtype():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    layer = BF16Linear.from_weight(lin.weight, lin.bias)
    x = torch.randn(2, 64)
    assert layer.weight.dtype == torch.bfloat16 and layer.bias.dtype == torch.float32
    expected = F.linear(x.bfloat16(), lin.weight.detach().bfloat16()).float() + lin.bias.detach()
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=0)
    assert layer(x).dtype == torch.float32
