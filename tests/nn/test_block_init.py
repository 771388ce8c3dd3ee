import math

import pytest
import torch
from torch import nn

from lmforge.nn import Block, FeedForward, LayerNorm, LMHead, MultiHeadAttention, init_weights


def make_block(norm_first, cross=False):
    torch.manual_seed(0)
    return Block(MultiHeadAttention(16, 2), FeedForward(16, 32, "relu"), lambda: LayerNorm(16),
                 cross_attn=MultiHeadAttention(16, 2, cross=True) if cross else None, norm_first=norm_first).eval()


def test_post_norm_is_add_and_norm():
    # Vaswani et al. 2017 sec. 3.1: LayerNorm(x + Sublayer(x)) after each sub-layer.
    b = make_block(norm_first=False, cross=True)
    x, mem = torch.randn(2, 4, 16), torch.randn(2, 3, 16)
    h = b.norm1(x + b.attn(x, is_causal=True)[0])
    h = b.norm2(h + b.cross_attn(h, memory=mem)[0])
    expected = b.norm3(h + b.ffn(h))
    torch.testing.assert_close(b(x, is_causal=True, memory=mem)[0], expected)


def test_pre_norm():
    # GPT-2 sec. 2.3: layer normalization moved to the input of each sub-block.
    b = make_block(norm_first=True)
    x = torch.randn(2, 4, 16)
    h = x + b.attn(b.norm1(x), is_causal=True)[0]
    torch.testing.assert_close(b(x, is_causal=True)[0], h + b.ffn(b.norm3(h)))


def test_init_lists_every_tensor():
    torch.manual_seed(0)
    n_layers = 8
    model = nn.ModuleList([make_block(True) for _ in range(n_layers)])
    emb = nn.Embedding(1000, 16)
    wrapper = nn.ModuleDict({"blocks": model, "emb": emb, "head": LMHead(emb)})
    init_weights(wrapper, std=0.02, n_layers=n_layers)
    out_w = torch.cat([b.attn.out.weight.flatten() for b in model] + [b.ffn.fc2.weight.flatten() for b in model])
    qkv_w = torch.cat([b.attn.qkv.weight.flatten() for b in model])
    assert out_w.std().item() == pytest.approx(0.02 / math.sqrt(2 * n_layers), rel=0.1)
    assert qkv_w.std().item() == pytest.approx(0.02, rel=0.1)
    assert emb.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert all((b.attn.qkv.bias == 0).all() and (b.norm1.weight == 1).all() and (b.norm1.bias == 0).all() for b in model)
    assert sum(1 for _ in wrapper.head.parameters()) == 0  # tied: the head owns no weight


def test_init_refuses_unknown_modules():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3))
    with pytest.raises(TypeError, match="no rule for odd"):
        init_weights(nn.ModuleDict({"odd": Odd()}))
