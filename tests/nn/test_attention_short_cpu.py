"""The bf16 short-sequence CPU path of `attention` (written out instead of the fused kernel) computes the same attention."""
import pytest
import torch

from lmforge.nn.attention import attention


def reference(q, k, v, is_causal):
    """fp32 softmax(q k^T / sqrt(hs)) v with the causal mask aligned to the end (KV-cache offset)."""
    q, k, v = q.float(), k.float(), v.float()
    T, S = q.size(-2), k.size(-2)
    scores = q @ k.transpose(-2, -1) / q.size(-1) ** 0.5
    if is_causal:
        scores = scores.masked_fill(~torch.ones(T, S, dtype=torch.bool).tril(S - T), float("-inf"))
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("is_causal", [True, False])
@pytest.mark.parametrize("T,S", [(64, 64), (1, 10), (5, 9)])
def test_bf16_short_path_matches_fp32(T, S, is_causal):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, n, 16, generator=g).bfloat16() for n in (T, S, S))
    out, probs = attention(q, k, v, is_causal=is_causal)
    assert probs is None and out.dtype == torch.bfloat16 and out.shape == (3, 2, T, 16)
    assert (out.float() - reference(q, k, v, is_causal)).abs().max() < 3e-2  # bf16 scores: ~1e-2 expected


def test_bf16_short_path_gradients_match_fp32():
    g = torch.Generator().manual_seed(1)
    qkv = [torch.randn(2, 2, 8, 16, generator=g).bfloat16().requires_grad_() for _ in range(3)]
    attention(*qkv, is_causal=True)[0].float().square().sum().backward()
    ref = [t.detach().float().requires_grad_() for t in qkv]
    reference(*ref, True).square().sum().backward()
    for a, b in zip(qkv, ref):
        assert (a.grad.float() - b.grad).abs().max() < 0.1 * b.grad.abs().max()
