import math

import pytest
import torch

from lmforge.nn import FeedForward, LayerNorm, RelativePositionBias, RMSNorm, apply_rope, rope_cache, sinusoidal


def test_sinusoidal_matches_paper_formula():
    d = 10
    pe = sinusoidal(50, d)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_rope_equals_paper_rotation_up_to_permutation():
    # RoFormer eq. 13/34: pair (x_{2i}, x_{2i+1}) rotated by m * theta_i. Our half-split layout pairs
    # (x_i, x_{i+d/2}); permuting the dimensions maps one onto the other exactly.
    torch.manual_seed(0)
    d, m = 8, 5
    x = torch.randn(d)
    theta = [10000 ** (-2 * i / d) for i in range(d // 2)]
    paper = torch.empty(d)
    for i in range(d // 2):  # interleaved pairs
        a, b = x[2 * i], x[2 * i + 1]
        c, s = math.cos(m * theta[i]), math.sin(m * theta[i])
        paper[2 * i], paper[2 * i + 1] = a * c - b * s, a * s + b * c
    perm = torch.tensor([2 * i for i in range(d // 2)] + [2 * i + 1 for i in range(d // 2)])
    cos, sin = rope_cache(d, torch.tensor([m]))
    ours = apply_rope(x[perm][None, None, None], cos, sin)[0, 0, 0]
    torch.testing.assert_close(ours, paper[perm], atol=1e-5, rtol=1e-5)


def test_rope_dot_product_depends_only_on_distance():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    def dot(m, n):
        cq, sq = rope_cache(16, torch.tensor([m])); ck, sk = rope_cache(16, torch.tensor([n]))
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum().item()
    assert dot(3, 1) == pytest.approx(dot(10, 8), abs=1e-4)
    assert dot(3, 1) != pytest.approx(dot(3, 2), abs=1e-4)


def test_t5_relative_buckets():
    # Buckets as in T5 (mesh-tensorflow _relative_position_bucket), bidirectional 32 buckets, max distance 128:
    # 0 -> 0; negative distances (key before query) use buckets 0..15, positive 16..31; exact below 8.
    rel = torch.tensor([0, -1, -7, 1, 7, -8, -200, 200])
    b = RelativePositionBias.bucket(rel, True, 32, 128).tolist()
    assert b[:5] == [0, 1, 7, 17, 23]
    assert b[5] == 8 and b[6] == 15 and b[7] == 31
    causal = RelativePositionBias.bucket(torch.tensor([0, -1, 3, -1000]), False, 32, 128).tolist()
    assert causal == [0, 1, 0, 31]  # decoder: future keys share bucket 0, far past saturates
    bias = RelativePositionBias(n_heads=3)(4, 6, offset=2)
    assert bias.shape == (1, 3, 4, 6)


def test_norms_against_references():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 12)
    rms = RMSNorm(12, eps=1e-6)
    with torch.no_grad():
        rms.weight.uniform_()
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * rms.weight
    torch.testing.assert_close(rms(x), expected)
    ln = LayerNorm(12, bias=False)
    assert ln.bias is None
    torch.testing.assert_close(ln(x), torch.nn.functional.layer_norm(x, (12,), ln.weight, None, 1e-5))


def test_feedforward_variants():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8)
    ff = FeedForward(8, 16, "swiglu", bias=False)
    expected = ff.fc2(torch.nn.functional.silu(ff.gate(x)) * ff.fc1(x))
    torch.testing.assert_close(ff(x), expected)
    relu = FeedForward(8, 16, "relu")
    torch.testing.assert_close(relu(x), relu.fc2(torch.relu(relu.fc1(x))))
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        FeedForward(8, 16, "tanh")
