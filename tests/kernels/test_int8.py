"""lmforge.kernels.int8: every int8 product agrees with F.linear on the dequantized weight, and the one used
is the one that timed fastest."""
import time

import pytest
import torch
import torch.nn.functional as F

from lmforge import kernels
from lmforge.kernels import int8
from lmforge.kernels.tune import Tuner, forced, using
from lmforge.nn.quant import Int8Linear as PlainInt8Linear
from lmforge.nn.quant import quantize_int8


def reference(x, q, scale, bias=None):
    return F.linear(x, q.float() * scale[:, None], bias)


@pytest.mark.parametrize("rows, out_f, in_f", [(1, 256, 768), (2, 96, 100), (5, 130, 64), (40, 64, 96), (1, 9, 200)])
def test_every_candidate_matches_f_linear_on_the_dequantized_weight(rows, out_f, in_f):
    torch.manual_seed(0)
    q, scale = quantize_int8(torch.randn(out_f, in_f) * 0.02)
    x = torch.randn(rows, in_f)
    expected = reference(x, q, scale)
    found = int8.candidates(x)
    assert {"dequantize", "int8pack"} <= set(found)
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        assert "avx2" in found  # built here (a compiler is part of the test environment)
        assert ("avx2 dequantize" in found) == (rows > 1)
    bias = torch.randn(out_f)
    for name, f in found.items():  # in_f 100: a tail after the 32-wide steps; fp32 sums in another order
        torch.testing.assert_close(f(x, q, scale), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item(),
                                   msg=lambda m: f"{name}: {m}")
        torch.testing.assert_close(f(x, q, scale, bias), expected + bias, rtol=1e-5,
                                   atol=1e-5 * expected.abs().max().item(), msg=lambda m: f"{name} + bias: {m}")


def test_int8_linear_takes_any_leading_shape_and_a_bias():
    torch.manual_seed(0)
    q, scale = quantize_int8(torch.randn(64, 48))
    x, bias = torch.randn(2, 3, 48), torch.randn(64)
    y = int8.int8_linear(x, q, scale, bias)
    assert y.shape == (2, 3, 64)
    torch.testing.assert_close(y, reference(x, q, scale, bias), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("default_is_slow", [True, False])
def test_the_product_used_is_the_one_that_timed_fastest(monkeypatch, tmp_path, default_is_slow):
    """A candidate made slow on purpose (it sleeps) loses, whichever comes first (the first is the default a
    fast path must beat); the choice is kept for later products of the shape and in tune's cache file."""

    used = []

    def slow(x, q, scale, bias=None):
        used.append("slow")
        time.sleep(0.005)
        return reference(x, q, scale, bias)

    def fast(x, q, scale, bias=None):
        used.append("fast")
        return reference(x, q, scale, bias)

    monkeypatch.setattr(int8, "_chosen", {})
    order = {"slow": slow, "fast": fast} if default_is_slow else {"fast": fast, "slow": slow}
    monkeypatch.setattr(int8, "candidates", lambda x: order)
    q, scale = quantize_int8(torch.randn(32, 16))
    with using(Tuner(tmp_path / "tune.json")) as t:
        int8.int8_linear(torch.randn(1, 16), q, scale)
        assert list(int8.choices().values()) == ["fast"]
        used.clear()
        int8.int8_linear(torch.randn(1, 1, 16), q, scale)  # same rows bucket: no timing again
        assert used == ["fast"]
    (record,) = t.records.values()
    assert record["order"][0] == "fast" and (tmp_path / "tune.json").is_file()


def test_forced_wins_over_a_choice_made_before_and_is_not_kept(monkeypatch, tmp_path):
    """A product chosen (and memoized) unforced, then forced() to another candidate: the forced one runs; after it,
    the memoized choice again."""
    used = []

    def named(name):
        return lambda x, q, scale, bias=None: used.append(name) or reference(x, q, scale, bias)
    monkeypatch.setattr(int8, "_chosen", {})
    monkeypatch.setattr(int8, "candidates", lambda x: {"dequantize": named("dequantize"), "avx2": named("avx2")})
    q, scale = quantize_int8(torch.randn(32, 16))
    with using(Tuner(tmp_path / "tune.json")), forced():  # the default, untimed: not memoized either
        int8.int8_linear(torch.randn(1, 16), q, scale)
    assert used == ["dequantize"] and int8.choices() == {}
    with using(Tuner(tmp_path / "tune.json")):
        int8.int8_linear(torch.randn(1, 16), q, scale)  # timed: both run, then the chosen one
        chosen = int8.choices()
        used.clear()
        with forced("avx2" if list(chosen.values()) == ["dequantize"] else "dequantize"):
            int8.int8_linear(torch.randn(1, 16), q, scale)
        assert used and used != list(chosen.values()) and int8.choices() == chosen
        used.clear()
        int8.int8_linear(torch.randn(1, 16), q, scale)
        assert used == list(chosen.values())


def test_accelerate_swaps_the_int8_layer_and_set_enabled_false_gives_the_reference():
    torch.manual_seed(0)
    model = torch.nn.Sequential(PlainInt8Linear.from_weight(torch.randn(64, 32), torch.randn(64)))
    x = torch.randn(1, 32)
    expected = model(x)
    kernels.accelerate(model)
    assert type(model[0]) is int8.Int8Linear
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    kernels.set_enabled(False)
    try:
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)  # exactly nn.quant's forward
    finally:
        kernels.set_enabled(True)
    kernels.restore(model)
    assert type(model[0]) is PlainInt8Linear


def test_an_input_that_needs_a_gradient_takes_the_reference(monkeypatch):
    """The fast products record no gradient: with one of them forced (not whatever the timing picks, which may be
    the differentiable reference anyway), a gradient still flows, so the reference must have been taken."""
    torch.manual_seed(0)
    layer = kernels.accelerate(torch.nn.Sequential(PlainInt8Linear.from_weight(torch.randn(8, 4))))[0]
    x = torch.randn(2, 4, requires_grad=True)
    monkeypatch.setattr(int8, "_chosen", {})
    with forced("avx2", "int8pack"):
        layer(x).sum().backward()
    torch.testing.assert_close(x.grad, (layer.weight.float() * layer.scale[:, None]).sum(0).expand(2, 4))
