import math

import pytest
import torch

from lmforge.nn import MultiHeadAttention, attention, causal_mask, combine, ensure_self, padding_mask, prefix_mask


def test_hand_computed_2x2():
    # The docstring example: scores [[0, 2], [0, 2]] (scale 1), softmax [e^0, e^2]/(1+e^2), out = p0*1 + p1*3
    q = torch.tensor([[1.0], [1.0]])[None, None]
    k = torch.tensor([[0.0], [2.0]])[None, None]
    v = torch.tensor([[1.0], [3.0]])[None, None]
    p1 = math.exp(2) / (1 + math.exp(2))
    for need in (False, True):
        out, probs = attention(q, k, v, need_weights=need)
        assert out[0, 0, :, 0].tolist() == pytest.approx([(1 - p1) * 1 + p1 * 3] * 2, abs=1e-6)
    torch.testing.assert_close(probs[0, 0], torch.tensor([[1 - p1, p1]] * 2))
    out, probs = attention(q, k, v, is_causal=True, need_weights=True)  # query 0 sees only key 0
    torch.testing.assert_close(probs[0, 0], torch.tensor([[1.0, 0.0], [1 - p1, p1]]))
    assert out[0, 0, :, 0].tolist() == pytest.approx([1.0, (1 - p1) + 3 * p1], abs=1e-6)


def test_fused_equals_explicit_with_mask_and_bias():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 4)
    mask = ensure_self(combine(causal_mask(5, 7), padding_mask(torch.tensor([[1] * 7, [0, 0] + [1] * 5]))), 2)
    bias = torch.randn(1, 3, 5, 7)
    a, _ = attention(q, k, v, mask, bias)
    b, probs = attention(q, k, v, mask, bias, need_weights=True)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert (probs.masked_select(~mask.expand_as(probs)) == 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 3, 5))


def test_against_torch_multihead_attention():
    torch.manual_seed(0)
    d, h, B, T = 24, 3, 2, 6
    ref = torch.nn.MultiheadAttention(d, h, batch_first=True)
    ours = MultiHeadAttention(d, h)
    with torch.no_grad():
        ours.qkv.weight.copy_(ref.in_proj_weight)
        ours.qkv.bias.copy_(ref.in_proj_bias)
        ours.out.weight.copy_(ref.out_proj.weight)
        ours.out.bias.copy_(ref.out_proj.bias)
    x = torch.randn(B, T, d)
    y_ref, w_ref = ref(x, x, x, attn_mask=~causal_mask(T), average_attn_weights=False)  # torch: True = blocked
    y, w = ours(x, is_causal=True, need_weights=True)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, w_ref, atol=1e-5, rtol=1e-5)
    y_fused, _ = ours(x, is_causal=True)
    torch.testing.assert_close(y_fused, y_ref, atol=1e-5, rtol=1e-5)


def test_cross_attention_against_torch():
    torch.manual_seed(1)
    d, h = 16, 2
    ref = torch.nn.MultiheadAttention(d, h, batch_first=True)
    ours = MultiHeadAttention(d, h, cross=True)
    with torch.no_grad():
        ours.q.weight.copy_(ref.in_proj_weight[:d]); ours.q.bias.copy_(ref.in_proj_bias[:d])
        ours.kv.weight.copy_(ref.in_proj_weight[d:]); ours.kv.bias.copy_(ref.in_proj_bias[d:])
        ours.out.weight.copy_(ref.out_proj.weight); ours.out.bias.copy_(ref.out_proj.bias)
    x, mem = torch.randn(2, 3, d), torch.randn(2, 5, d)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    y_ref, _ = ref(x, mem, mem, key_padding_mask=~keep.bool())
    y, _ = ours(x, memory=mem, mask=padding_mask(keep))
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)


def test_masks_on_small_matrices():
    assert causal_mask(3).int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert causal_mask(2, 4).int().tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]  # two new queries after 2 cached keys
    assert prefix_mask(4, 2).int().tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    keep = torch.tensor([[0, 1, 1]])
    m = combine(causal_mask(3), padding_mask(keep))
    assert m[0, 0].int().tolist() == [[0, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert ensure_self(m)[0, 0].int().tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_attention_dropout_only_in_training():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(1, 4, 8)
    mha.eval()
    a, _ = mha(x)
    b, _ = mha(x)
    assert torch.equal(a, b)
    mha.train()
    c, _ = mha(x)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("T, S", [(3, 3), (2, 5), (1, 4)])
def test_is_causal_is_end_aligned_and_combines_with_mask_and_bias(T, S):
    """is_causal == the explicit end-aligned causal mask, in the fused and written-out paths, also when T < S
    (new queries after cached keys; torch's own is_causal would align to the start) and with a mask or bias."""
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, T, 8), torch.randn(2, 3, S, 8), torch.randn(2, 3, S, 8)
    keep = torch.ones(2, 1, 1, S, dtype=torch.bool)
    keep[1, ..., -1] = False  # row 1 may not see its last key (every query still sees one)
    bias = torch.randn(1, 3, T, S)
    causal = causal_mask(T, S)
    for kw, explicit in ((dict(), dict(mask=causal)), (dict(mask=keep), dict(mask=keep & causal)),
                         (dict(bias=bias), dict(mask=causal, bias=bias))):
        want, _ = attention(q, k, v, **explicit, need_weights=True)
        fused, _ = attention(q, k, v, **kw, is_causal=True)
        written, probs = attention(q, k, v, **kw, is_causal=True, need_weights=True)
        torch.testing.assert_close(fused, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(written, want, atol=1e-5, rtol=1e-5)
        assert (probs.masked_select(~causal.expand_as(probs)) == 0).all()
