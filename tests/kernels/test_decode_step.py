"""lmforge.kernels.decode: a pre-norm layer's decoding step in seven calls gives what the layer's modules give (to the
bit where every part is our kernel), writes the KV cache as they do, runs only where it applies and where its
parts were chosen, and is put in and taken out by accelerate / restore; and its two kernels (cpu.cpp:
cached_attention, linear_rows' add and GELU) against torch."""
import pytest
import torch
import torch.nn.functional as F

from lmforge import kernels
from lmforge.kernels import decode, native
from lmforge.kernels.tune import forced
from lmforge.models import build_model
from lmforge.nn.block import Block

needs_kernels = pytest.mark.skipif(native.extension() is None, reason="lmforge's CPU kernels cannot be built here")


@pytest.fixture
def spy():
    """The real kernels, with the calls of each counted by name: spy["cached_attention"] etc."""
    ext, calls = native.extension(), {}

    class Spy:
        def __getattr__(self, name):
            fn = getattr(ext, name)

            def counted(*a, **k):
                calls[name] = calls.get(name, 0) + 1
                return fn(*a, **k)
            return counted
    native._extension = Spy()
    try:
        yield calls
    finally:
        native._extension = ext


@needs_kernels
@pytest.mark.parametrize("D", [64, 32, 128, 12])  # 12: a head size without a register-held form
@pytest.mark.parametrize("masked", [False, True])
def test_cached_attention_writes_the_cache_and_attends_as_torch(D, masked):
    g = torch.Generator().manual_seed(0)
    B, H, L, position = 3, 4, 40, 21
    K, V = torch.randn(B, H, L, D, generator=g), torch.randn(B, H, L, D, generator=g)
    qkv = torch.randn(B, 3 * H * D, generator=g)
    keep = torch.ones(B, position + 1, dtype=torch.bool)
    keep[1, :9] = False  # a left-padded row
    K2, V2 = K.clone(), V.clone()
    q, k, v = (t.view(B, H, D) for t in qkv.split(H * D, dim=1))
    K2[:, :, position], V2[:, :, position] = k, v
    expected = F.scaled_dot_product_attention(q[:, :, None], K2[:, :, :position + 1], V2[:, :, :position + 1],
                                              attn_mask=keep[:, None, None] if masked else None, scale=0.3)
    out = native.extension().cached_attention(qkv, K, V, position, keep if masked else None, 0.3)
    assert torch.equal(K, K2) and torch.equal(V, V2)  # k, v written at `position`, nothing else touched
    torch.testing.assert_close(out, expected.reshape(B, H * D), rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="outside the cache"):
        native.extension().cached_attention(qkv, K, V, L, None, 0.3)


@needs_kernels
@pytest.mark.parametrize("rows", [1, 2, 3, 8, 13])  # 13 = 8 + 4 + 1: every group size
@pytest.mark.parametrize("out_f,in_f", [(1003, 385), (768, 768)])  # 1003: the last outputs one at a time
def test_linear_rows_adds_the_residual_and_applies_the_gelu_in_its_pass(rows, out_f, in_f):
    torch.manual_seed(0)
    x, w, b, add = torch.randn(rows, in_f), torch.randn(out_f, in_f), torch.randn(out_f), torch.randn(rows, out_f)
    ext, atol = native.extension(), 1e-4 * in_f / 768
    y = ext.linear_rows(x, w, b)
    assert torch.equal(ext.linear_rows(x, w, b, add), add + y)  # the same sum, in the same order
    torch.testing.assert_close(ext.linear_rows(x, w, b, None, True), F.gelu(F.linear(x, w, b), approximate="tanh"),
                               rtol=1e-5, atol=atol)
    assert torch.equal(ext.linear_rows(x, w, b, None, True), ext.gelu_tanh_forward(y, False)[0])
    with pytest.raises(RuntimeError, match="add: contiguous fp32"):
        ext.linear_rows(x, w, b, add.t().contiguous().t()[:, :-1])


def gpt(**kw):
    torch.manual_seed(0)
    # d_model 256: the products are big enough for the few-row paths (256 x 256 weights at least)
    config = dict(vocab_size=97, max_len=64, d_model=256, n_heads=4, n_layers=2, dropout=0.0)
    return build_model("gpt", {**config, **kw}).eval()


def greedy(model, prompts, n=10):
    from lmforge.generate import generate
    return [(s.row, s.token, s.raw_logprob) for s in generate(model, prompts, max_new_tokens=n, temperature=0.0)]


def greedy_through_modules(model, prompts):
    """greedy() with the step off: every layer through its modules."""
    decode.set_decode_step(False)
    try:
        return greedy(model, prompts)
    finally:
        decode.set_decode_step(True)


@needs_kernels
@pytest.mark.parametrize("prompts", [[[1, 2, 3, 4, 5]], [[1, 2, 3, 4, 5, 6, 7], [8, 9], [10, 11, 12]]])
def test_the_step_gives_what_the_modules_give(prompts, spy):
    """Greedy decoding with our kernels forced: with the step (one cached_attention per layer and token, left-padded
    rows masked) the same tokens and log-probabilities to the bit as through the modules (step off)."""
    model = kernels.accelerate(gpt())
    assert all(b.fast_decode is decode.block_step for b in model.blocks)
    with forced("avx2"):
        expected = greedy_through_modules(model, prompts)
        assert "cached_attention" not in spy and spy["decode_attention"] > 0
        assert greedy(model, prompts) == expected
    assert spy["cached_attention"] == 2 * 9  # 2 layers x 9 steps after the prefill
    kernels.restore(model)
    assert all(b.fast_decode is None and "fast_decode" not in vars(b) for b in model.blocks)


@needs_kernels
def test_int8_layers_take_the_step_with_their_own_product(spy):
    """A model from lmforge.quantize(model, "int8"): the glue of the step around the int8 layers' own product, the
    same tokens and log-probabilities to the bit as through the modules."""
    import lmforge
    model = kernels.accelerate(lmforge.quantize(gpt(), "int8"))
    prompts = [[1, 2, 3, 4, 5, 6, 7], [8, 9]]
    with forced("avx2"):
        expected = greedy_through_modules(model, prompts)
        assert "cached_attention" not in spy
        assert greedy(model, prompts) == expected
    assert spy["cached_attention"] == 2 * 9 and spy["int8_linear"] > 0 and "linear_rows" not in spy


@needs_kernels
def test_where_a_part_chose_torch_the_step_follows_or_steps_aside(spy):
    """forced(): torch's default for every choice. The products then run as `linear` runs them (F.linear) and the
    attention's choice is torch's kernel, so the layers run their modules: no kernel of ours, the tokens of plain
    PyTorch (every fast path off)."""
    prompts = [[3, 1, 4, 1, 5], [9, 2]]
    model = kernels.accelerate(gpt())
    kernels.set_enabled(False)
    try:
        plain = greedy(model, prompts)
    finally:
        kernels.set_enabled(True)
    with forced():
        assert greedy(model, prompts) == plain
    assert not spy
    with forced("columns", "avx2"):  # our attention, the column form for the products: the step, F.linear's math
        torch.testing.assert_close([t[2] for t in greedy(model, prompts)], [t[2] for t in plain], rtol=0, atol=1e-4)
    assert spy["cached_attention"] > 0 and "linear_rows" not in spy


@needs_kernels
def test_layers_of_another_kind_run_their_modules(spy):
    """Llama-style layers (RMSNorm, rotary positions, grouped heads, gated feed-forward) and asking for the attention
    weights: the step does not apply, and decoding gives the modules' tokens."""
    torch.manual_seed(0)
    llama = build_model("llama", dict(vocab_size=97, max_len=64, d_model=256, n_heads=4, n_kv_heads=2,
                                      n_layers=2, d_ff=512)).eval()
    kernels.accelerate(llama)
    with forced("avx2"):
        greedy(llama, [[1, 2, 3]])
    assert "cached_attention" not in spy
    x = torch.randn(1, 1, 256)
    block = kernels.accelerate(gpt()).blocks[0]
    cache = gpt().new_cache(1, 8).layer(0)
    with torch.no_grad():
        assert decode.block_step(block, x, cache=cache, rope=(x, x)) is None
        assert decode.block_step(block, x, cache=cache, bias=torch.zeros(1, 4, 1, 1)) is None
    with torch.enable_grad():  # autograd records: the modules, which it can record
        assert decode.block_step(block, x, cache=cache) is None


def test_a_full_cache_is_a_clear_error():
    model = kernels.accelerate(gpt())
    cache = model.new_cache(1, 3)
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]), cache=cache)
        with pytest.raises(ValueError, match="KV cache is full: 4 positions needed, the cache holds 3"):
            model(torch.tensor([[4]]), cache=cache)
        with pytest.raises(ValueError, match="KV cache is full"):  # the step's own check, before it writes
            decode.block_step(model.blocks[0], torch.randn(1, 1, 256), cache=cache.layer(0))


def test_block_has_no_step_until_accelerated():
    assert Block.fast_decode is None
    assert all(b.fast_decode is None for b in gpt().blocks)


@needs_kernels
def test_a_strided_input_gives_what_a_contiguous_one_gives():
    model = kernels.accelerate(gpt())
    x = torch.randn(2, 3, 256)[:, 1:2]  # (2, 1, 256) with a row stride of 768: not contiguous as (2, 256)
    outs = []
    for inp in (x, x.contiguous()):
        cache = model.new_cache(2, 8)
        with torch.no_grad(), forced("avx2"):
            outs.append(decode.block_step(model.blocks[0], inp, cache=cache.layer(0)))
    assert outs[0] is not None and torch.equal(outs[0], outs[1])
