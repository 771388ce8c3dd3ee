"""lmforge.nn.lora.LoRALinear: the paper's h = W0 x + (alpha/r) B A x, its init, merge and unmerge."""
import math

import pytest
import torch
from torch import nn

from lmforge.kernels import accelerate
from lmforge.nn.lora import LoRALinear


def randomised(layer: LoRALinear) -> LoRALinear:
    with torch.no_grad():
        for b in layer.lora_B.values():
            b.normal_(0, 0.5)  # B starts at zero; a trained adapter has not
    return layer


def test_init_is_kaiming_uniform_a_and_zero_b_so_it_starts_at_the_base():
    torch.manual_seed(0)
    base = nn.Linear(64, 48)
    layer = LoRALinear(base, [("all", 0, 48, 8, 2.0)], dropout=0.1)
    assert layer.weight is base.weight and layer.bias is base.bias  # shared, not copied
    a, b = layer.lora_A["all"], layer.lora_B["all"]
    assert a.shape == (8, 64) and b.shape == (48, 8)
    assert torch.count_nonzero(b) == 0
    # kaiming_uniform_(a=sqrt(5)): bound = sqrt(6 / ((1 + 5) * fan_in)) = 1 / sqrt(fan_in), as nn.Linear
    bound = 1 / math.sqrt(64)
    assert a.abs().max() <= bound and a.abs().max() > 0.9 * bound
    x = torch.randn(3, 5, 64)
    assert torch.equal(layer.eval()(x), base(x))


def test_forward_is_the_papers_formula_per_part():
    torch.manual_seed(1)
    base = nn.Linear(16, 30)
    parts = [("q", 0, 10, 4, 2.0), ("v", 20, 30, 2, 0.5)]  # k rows 10..20 unadapted
    layer = randomised(LoRALinear(base, parts, dropout=0.0))
    x = torch.randn(2, 3, 16)
    want = base(x).detach().clone()
    for name, start, stop, _, scale in parts:
        want[..., start:stop] += scale * x @ layer.lora_A[name].T @ layer.lora_B[name].T
    torch.testing.assert_close(layer(x), want, rtol=0, atol=1e-6)


def test_merge_keeps_outputs_and_unmerge_restores_the_weights():
    torch.manual_seed(2)
    base = nn.Linear(96, 288)
    w0 = base.weight.detach().clone()
    layer = randomised(LoRALinear(base, [("q", 0, 96, 8, 2.0), ("v", 192, 288, 8, 2.0)]))
    x = torch.randn(4, 7, 96)
    before = layer(x).detach()
    layer.merge()
    assert layer.merged and not torch.equal(layer.weight, w0)
    torch.testing.assert_close(layer(x), before, rtol=0, atol=1e-5)  # float rounding of a different sum order
    layer.merge()  # idempotent
    layer.unmerge()
    # not bit-exact in general: (W0 + D) - D rounds once; within 1e-6 of W0 (weights here are ~0.1)
    assert (layer.weight - w0).abs().max().item() <= 1e-6
    torch.testing.assert_close(layer(x), before, rtol=0, atol=1e-5)


def test_only_the_adapters_get_gradients_when_the_base_is_frozen():
    torch.manual_seed(3)
    layer = randomised(LoRALinear(nn.Linear(8, 8).requires_grad_(False), [("all", 0, 8, 2, 1.0)]))
    layer(torch.randn(5, 8)).sum().backward()
    assert layer.weight.grad is None and layer.lora_A["all"].grad is not None and layer.lora_B["all"].grad is not None


@pytest.mark.parametrize("parts, msg", [
    ([("a", 0, 9, 2, 1.0)], "do not fit"),
    ([("a", 0, 4, 0, 1.0)], "rank"),
    ([("a", 0, 5, 2, 1.0), ("b", 4, 8, 2, 1.0)], "overlaps"),
    ([("a", 0, 2, 2, 1.0), ("a", 4, 8, 2, 1.0)], "repeat"),
])
def test_bad_parts_are_a_clear_error(parts, msg):
    with pytest.raises(ValueError, match=msg):
        LoRALinear(nn.Linear(4, 8), parts)


def test_kernels_accelerate_leaves_the_adapter_layer_alone():
    layer = LoRALinear(nn.Linear(8, 8), [("all", 0, 8, 2, 1.0)])
    model = nn.Sequential(layer, nn.Linear(8, 8))
    accelerate(model)
    assert type(model[0]) is LoRALinear and type(model[1]) is not nn.Linear
