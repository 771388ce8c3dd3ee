"""KVCache.join / trim and Context: the padding bookkeeping of right-aligned decoding rows."""
import torch

from lmforge.nn.cache import Context, KVCache, cat_padded
from lmforge.nn.masks import causal_padding_mask, pad_rows

T_, F_ = True, False


def test_pad_rows_and_cat_padded_examples():
    ids, keep = pad_rows([[5, 6], [7]])
    assert ids.tolist() == [[5, 6], [7, 0]] and keep.tolist() == [[T_, T_], [T_, F_]]
    ids, keep = pad_rows([[5, 6], [7]], left=True)
    assert ids.tolist() == [[5, 6], [0, 7]] and keep.tolist() == [[T_, T_], [F_, T_]]
    a, b = torch.tensor([[1, 2]]), torch.tensor([[3]])
    assert cat_padded(a, b, 1).tolist() == [[1, 2], [3, 0]]
    assert cat_padded(a, b, 1, left=True).tolist() == [[1, 2], [0, 3]]


def test_context_positions_and_mask_count_from_each_rows_first_token():
    ids, keep = pad_rows([[5, 6], [7, 8, 9]], left=True)
    ctx = Context(2)
    _, positions, mask = ctx.feed(ids, keep)
    assert positions.tolist() == [[0, 0, 1], [0, 1, 2]] and mask.tolist() == [[F_, T_, T_], [T_, T_, T_]]
    _, positions, mask = ctx.feed(torch.tensor([[1], [2]]))
    assert positions.tolist() == [[2], [3]] and mask.shape == (2, 4)
    full = Context(2)
    assert full.feed(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool))[1:] == (None, None)
    # the mask the models build from it: causal, no padding key, every query sees itself
    m = causal_padding_mask(torch.tensor([[F_, T_, T_]]), 3)[0, 0]
    assert m.int().tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def filled(B, L, base):
    cache = KVCache(1, B, 1, 2, 8)
    vals = base + torch.arange(B * L, dtype=torch.float32).view(B, 1, L, 1).expand(B, 1, L, 2)
    cache.layer(0).update(vals, -vals)
    cache.advance(L)
    return cache, vals


def test_kvcache_join_right_aligns_and_trim_drops_shared_padding():
    a, va = filled(1, 3, 0.0)
    b, vb = filled(2, 1, 100.0)
    out = a.join(b)
    assert out.length == 3 and out.batch_size == 3 and out.max_len == 8
    torch.testing.assert_close(out.k[0][:1, :, :3], va)
    torch.testing.assert_close(out.k[0][1:, :, 2:3], vb)  # the shorter rows sit at the right end
    torch.testing.assert_close(out.v[0][1:, :, 2:3], -vb)
    ctx_a, ctx_b = Context(1, a), Context(2, b)
    ctx_a.keep, ctx_b.keep = torch.ones(1, 3, dtype=torch.bool), torch.ones(2, 1, dtype=torch.bool)
    ctx = ctx_a.join(ctx_b)
    assert ctx.padded and ctx.keep.tolist() == [[T_, T_, T_], [F_, F_, T_], [F_, F_, T_]]
    ctx.reorder(torch.tensor([1, 2]))  # the long row leaves: two columns of padding every row has
    ctx.trim()
    assert not ctx.padded and ctx.keep.shape == (2, 1) and ctx.cache.length == 1
    torch.testing.assert_close(ctx.cache.k[0][:, :, :1], vb)


def test_join_pads_cross_attention_keys_to_the_longer_source():
    a, b = KVCache(1, 1, 2, 4, 8), KVCache(1, 2, 2, 4, 8)
    a.cross[0] = (torch.ones(1, 2, 5, 4), torch.ones(1, 2, 5, 4))
    b.cross[0] = (torch.full((2, 2, 3, 4), 2.0), torch.full((2, 2, 3, 4), 2.0))
    k, _ = a.join(b).cross[0]
    assert k.shape == (3, 2, 5, 4) and k[1:, :, 3:].abs().sum() == 0 and (k[1:, :, :3] == 2).all()
