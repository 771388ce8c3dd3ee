"""lmforge.kernels.attention: each form equals the reference attention (lmforge.nn.attention.attention) in values
and gradients, runs only where chosen (a cached choice is followed both ways), never where it does not apply;
accelerate/restore put it into a model's attention layers and take it out, and decoding with it gives the same
tokens as without."""
import json

import pytest
import torch

from lmforge import kernels
from lmforge.kernels import attention as fast, native
from lmforge.kernels.tune import Tuner, forced, using
from lmforge.models import build_model
from lmforge.nn.attention import MultiHeadAttention, attention as reference

needs_kernels = pytest.mark.skipif(native.extension() is None, reason="lmforge's CPU kernels cannot be built here")


def heads_views(B, T, H, D, g):
    """q, k, v as MultiHeadAttention hands them over: views of one (B, T, 3 H D) projection, heads transposed."""
    qkv = torch.randn(B, T, 3 * H * D, generator=g)
    return [t.view(B, T, H, D).transpose(1, 2) for t in qkv.split(H * D, dim=2)]


@needs_kernels
@pytest.mark.parametrize("D", [64, 32, 128, 16, 12])  # 16, 12: head sizes without a register-held form
@pytest.mark.parametrize("masked", [True, False])
def test_decode_attention_matches_the_reference(D, masked):
    g = torch.Generator().manual_seed(0)
    B, H, S, max_len = 5, 3, 37, 64  # 37 keys: tails after the 4-key and 8-key steps
    q = heads_views(B, 1, H, D, g)[0]
    K, V = torch.randn(B, H, max_len, D, generator=g), torch.randn(B, H, max_len, D, generator=g)
    k, v = K.narrow(2, 0, S), V.narrow(2, 0, S)  # the cache's views: strided rows
    keep = torch.ones(B, S, dtype=torch.bool)
    keep[1, :20], keep[3, :36] = False, False  # left padding; row 3 attends to its last key only
    mask = keep[:, None, None, :] if masked else None
    expected, _ = reference(q, k, v, mask)
    with forced("avx2"), torch.inference_mode():
        out, probs = fast.attention(q, k, v, mask)
    assert probs is None and not torch.equal(out, expected)  # our kernel ran, not torch's
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@needs_kernels
def test_decode_attention_with_scale_and_a_mask_shared_by_rows():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 2, n, 64, generator=g) for n in (1, 9, 9))
    mask = torch.tensor([True] * 6 + [False, True, True])[None, None, None, :]  # (1, 1, 1, S): every row
    expected, _ = reference(q, k, v, mask, scale=0.3)
    with forced("avx2"), torch.no_grad():
        out, _ = fast.attention(q, k, v, mask, scale=0.3)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_where_a_form_does_not_apply_the_reference_runs_bit_for_bit():
    """Per-head masks, a bias, probabilities asked for, autograd in a one-query call, bf16: the reference."""
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 2, n, 16, generator=g) for n in (1, 5, 5))
    per_head = torch.rand(2, 2, 1, 5, generator=g) > 0.3
    per_head[..., -1] = True
    bias = torch.randn(1, 2, 1, 5, generator=g)
    with forced("avx2", "written"), torch.no_grad():
        for kw in (dict(mask=per_head), dict(bias=bias), dict(need_weights=True)):
            assert torch.equal(fast.attention(q, k, v, **kw)[0], reference(q, k, v, **kw)[0])
        qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
        assert torch.equal(fast.attention(qb, kb, vb)[0], reference(qb, kb, vb)[0])
    qg = q.clone().requires_grad_()
    with forced("avx2"):
        assert torch.equal(fast.attention(qg, k, v)[0], reference(qg, k, v)[0])


@pytest.mark.parametrize("grad", [True, False])
def test_the_written_causal_form_matches_the_fused_kernel_in_values_and_gradients(grad):
    g = torch.Generator().manual_seed(3)
    q, k, v = heads_views(3, 10, 2, 8, g)
    leaves = [t.detach().clone().requires_grad_(grad) for t in (q, k, v)]
    dout = torch.randn(3, 2, 10, 8, generator=g)
    expected, _ = reference(q, k, v, is_causal=True)
    with forced("written"), torch.set_grad_enabled(grad):
        out, _ = fast.attention(*leaves, is_causal=True)
    assert not torch.equal(out, expected)  # the written form ran, not the fused kernel
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    if grad:
        assert type(out.grad_fn).__name__ == "ViewBackward0"
        out.backward(dout)
        q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
        reference(q2, k2, v2, is_causal=True)[0].backward(dout)
        for a, b in zip(leaves, (q2, k2, v2)):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)


@needs_kernels
@pytest.mark.parametrize("order, ours", [(["avx2", "sdpa"], True), (["sdpa"], False)])
def test_the_cached_decode_choice_is_followed(tmp_path, order, ours):
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, 3, n, 32, generator=g) for n in (1, 20, 20))
    key = f"attention decode heads=3 hs=32 rows<=2 keys<=32 unmasked float32 threads={torch.get_num_threads()}"
    path = tmp_path / "tune.json"
    path.write_text(json.dumps({"choices": {key: {"order": order, "ms": {}}}}))
    with using(Tuner(path)) as t, torch.inference_mode():
        out, _ = fast.attention(q, k, v)
    assert torch.equal(out, reference(q, k, v)[0]) != ours
    assert list(t.records) == [key] and t.records[key]["ms"] == {}  # read from the file, not timed again


def test_a_new_kind_of_call_is_timed_and_recorded(tmp_path):
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 2, 6, 16, generator=g).requires_grad_() for _ in range(3))
    with using(Tuner(tmp_path / "tune.json")) as t:
        fast.attention(q, k, v, is_causal=True)
    (key, record), = t.records.items()
    assert key.startswith("attention train heads=2 hs=16 rows<=2 len<=8 float32") and set(record["ms"]) == {
        "sdpa", "written"}
    assert json.loads((tmp_path / "tune.json").read_text())["choices"][key]["order"] == record["order"]


def test_accelerate_puts_it_into_the_attention_layers_and_decoding_keeps_its_tokens():
    """Greedy decoding of a batch of prompts of different lengths (the padding mask) with our forms forced gives
    the tokens torch's paths give (forced(): the default everywhere); restore() gives the layers the reference."""
    from lmforge.generate import generate
    torch.manual_seed(0)
    model = build_model("gpt", dict(vocab_size=50, max_len=48, d_model=64, n_heads=2, n_layers=2, dropout=0.0)).eval()
    prompts = [[1, 2, 3, 4, 5, 6, 7], [8, 9], [10, 11, 12]]

    def greedy():
        return [(s.row, s.token) for s in generate(model, prompts, max_new_tokens=12, temperature=0.0)]
    kernels.accelerate(model)
    layers = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    assert layers and all(m.attend is fast.attention for m in layers)
    with forced():
        expected = greedy()
    if native.extension() is None:
        pytest.skip("lmforge's CPU kernels cannot be built here")
    ext, masked = native.extension(), []

    class Spy:  # the real kernels, counting the decoding attention's calls with a padding mask: through the
        def __getattr__(self, name):  # layer's modules, or in lmforge.kernels.decode's step (its cached twin)
            return getattr(ext, name)

        def decode_attention(self, q, k, v, keep, scale):
            masked.append(keep is not None)
            return ext.decode_attention(q, k, v, keep, scale)

        def cached_attention(self, qkv, k, v, position, keep, scale):
            masked.append(keep is not None)
            return ext.cached_attention(qkv, k, v, position, keep, scale)
    native._extension = Spy()
    try:
        with forced("avx2", "written"):
            assert greedy() == expected
    finally:
        native._extension = ext
    assert masked and all(masked)  # our kernel decoded every step, over the left-padded rows' mask
    kernels.restore(model)
    assert all(m.attend is reference for m in layers) and all("attend" not in vars(m) for m in layers)


def test_set_attention_off_takes_the_reference():
    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(2, 2, n, 32, generator=g) for n in (1, 7, 7))
    fast.set_attention(False)
    try:
        with forced("avx2"), torch.no_grad():
            assert torch.equal(fast.attention(q, k, v)[0], reference(q, k, v)[0])
    finally:
        fast.set_attention(True)
    if native.extension() is not None:  # on again: the same call takes our kernel (another rounding)
        with forced("avx2"), torch.no_grad():
            assert not torch.equal(fast.attention(q, k, v)[0], reference(q, k, v)[0])


@pytest.mark.parametrize("order, written", [(["written", "sdpa"], True), (["sdpa"], False)])
def test_under_torch_compile_the_cached_training_choice_is_followed(tmp_path, order, written):
    """Traced by torch.compile, the training choice is read eagerly and becomes a constant of the graph: the written
    form where eager chose it (the compiled output then equals eager's written form bit for bit), else the
    reference; gradients agree with the reference."""
    g = torch.Generator().manual_seed(7)
    leaves = [torch.randn(2, 8, 2, 16, generator=g).requires_grad_() for _ in range(3)]
    key = f"attention train heads=2 hs=16 rows<=2 len<=8 float32 threads={torch.get_num_threads()}"
    path = tmp_path / "tune.json"
    path.write_text(json.dumps({"choices": {key: {"order": order, "ms": {}}}}))

    def f(a, b, c):
        return fast.attention(a.transpose(1, 2), b.transpose(1, 2), c.transpose(1, 2), is_causal=True)[0]
    torch._dynamo.reset()
    try:
        with using(Tuner(path)) as t:
            out = torch.compile(f, backend="aot_eager")(*leaves)
            assert list(t.records) == [key] and t.records[key]["ms"] == {}  # the compiled call read the choice
            eager = f(*leaves)
        q, k, v = (x.transpose(1, 2) for x in leaves)
        if written:
            assert torch.equal(out, fast._written_causal(q, k, v, 0.25))
        else:
            assert torch.equal(out, reference(q, k, v, is_causal=True)[0])
        torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
        out.sum().backward()
        grads = [x.grad.clone() for x in leaves]
        for x in leaves:
            x.grad = None
        reference(q, k, v, is_causal=True)[0].sum().backward()
        for a, b in zip(grads, leaves):
            torch.testing.assert_close(a, b.grad, rtol=1e-5, atol=1e-5)
    finally:
        torch._dynamo.reset()
