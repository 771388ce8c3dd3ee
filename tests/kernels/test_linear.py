"""lmforge.kernels.linear: the batched few-row products equal F.linear, and training never takes them.

Which product runs is timed on the machine (lmforge.kernels.tune); a test about one path makes it the choice
with tune.forced(...) (tests/kernels/test_tune.py shows the choice follows the timing)."""
import copy
import gc
import io
import weakref

import pytest
import torch
import torch.nn.functional as F

from lmforge.kernels import Linear, PackedWeights, linear, set_large_onednn, set_packing
from lmforge.kernels.tune import forced
from lmforge.kernels.packed import _PACK_AFTER

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.fixture
def packing():
    yield set_packing
    set_packing(True)


@pytest.mark.parametrize("n_threads", [2, 3])
@pytest.mark.parametrize("out_f,in_f,rows,bias", [(2304, 768, 5, True), (50257, 64, 3, False),
                                                  (1000, 1024, 32, True), (768, 3072, 7, False)])
def test_split_product_equals_f_linear(threads, batched_calls, n_threads, out_f, in_f, rows, bias):
    """3-32 rows outside a PackedWeights table: the output features split across threads."""
    threads(n_threads)
    torch.manual_seed(0)
    w, b = torch.randn(out_f, in_f), (torch.randn(out_f) if bias else None)
    x = torch.randn(1, rows, in_f)
    with torch.no_grad(), forced("split"):
        got = linear(x, w, b)
    assert got.shape == (1, rows, out_f)
    assert batched_calls == ["baddbmm" if bias else "bmm"]  # the split path ran
    torch.testing.assert_close(got, F.linear(x, w, b), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("out_f,in_f,bias", [(50257, 768, False), (3072, 768, True), (768, 3072, True)])
def test_single_row_product_equals_f_linear(threads, batched_calls, n_threads, out_f, in_f, bias):
    """One row (batch-1 decoding) takes the matrix-times-column path, one thread included; 50257 rows
    leave a remainder that is computed aside."""
    threads(n_threads)
    torch.manual_seed(0)
    w, b = torch.randn(out_f, in_f), (torch.randn(out_f) if bias else None)
    x = torch.randn(1, 1, in_f)
    with torch.no_grad(), forced("columns"):
        got = linear(x, w, b)
    assert got.shape == (1, 1, out_f)
    assert batched_calls == ["baddbmm" if bias else "bmm"]
    torch.testing.assert_close(got, F.linear(x, w, b), rtol=1e-5, atol=1e-4)


def test_a_non_contiguous_single_row_gives_the_same_result(threads):
    threads(2)
    torch.manual_seed(0)
    w = torch.randn(2304, 768)
    x = torch.randn(768, 2)[:, :1].t()  # (1, 768) with strides (1, 2)
    with torch.no_grad(), forced("columns"):
        torch.testing.assert_close(linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-4)


def test_gradients_flow_through_the_usual_path(threads, batched_calls):
    threads(2)
    torch.manual_seed(0)
    layer = Linear(768, 2304)
    x = torch.randn(1, 1, 768, requires_grad=True)
    layer(x).square().sum().backward()
    assert batched_calls == []  # training keeps F.linear
    ref = torch.nn.Linear(768, 2304)
    ref.load_state_dict(layer.state_dict())
    x2 = x.detach().clone().requires_grad_()
    ref(x2).square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad)
    torch.testing.assert_close(x.grad, x2.grad)


def test_linear_is_an_nn_linear_with_the_same_state_dict():
    layer = Linear(4, 3)
    assert isinstance(layer, torch.nn.Linear)
    assert set(layer.state_dict()) == {"weight", "bias"}


def test_a_non_contiguous_weight_takes_the_usual_path(threads, batched_calls):
    threads(2)
    w = torch.randn(768, 2304).t()  # (2304, 768), column-major
    x = torch.randn(1, 768)
    with torch.no_grad():
        torch.testing.assert_close(linear(x, w), F.linear(x, w))
    assert batched_calls == []


def test_a_trainable_bias_keeps_the_usual_path(threads, batched_calls):
    """A frozen weight with a trainable bias (BitFit): the bias must get its gradient."""
    threads(2)
    layer = Linear(768, 2304)
    layer.weight.requires_grad_(False)
    with PackedWeights():
        for _ in range(_PACK_AFTER + 1):
            layer(torch.randn(8, 768)).sum().backward()
    assert batched_calls == [] and layer.bias.grad is not None


@needs_onednn
@pytest.mark.parametrize("rows,bias", [(3, True), (8, False), (32, True)])
def test_packed_product_equals_f_linear(threads, rows, bias):
    threads(2)
    torch.manual_seed(0)
    w, b = torch.randn(3072, 768), (torch.randn(3072) if bias else None)
    x = torch.randn(rows, 1, 768)
    with torch.no_grad(), PackedWeights() as table, forced("packed", "split"):
        for _ in range(_PACK_AFTER + 1):  # the first calls take the split, then the packed copy
            torch.testing.assert_close(linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-4)
    assert table[id(w)][3] is not None


@needs_onednn
def test_nothing_is_packed_outside_a_table_or_for_one_or_two_rows(threads, monkeypatch):
    threads(8)  # at 8 threads a 768-row matrix is too short for the column form: one row must not pack either
    torch.manual_seed(0)
    w = torch.randn(768, 3072)
    monkeypatch.setattr(torch.ops.mkldnn, "_reorder_linear_weight",
                        lambda *a: pytest.fail("a weight was packed"), raising=False)
    with torch.no_grad(), forced("packed", "columns", "split"):  # packing first wherever it is a candidate
        for _ in range(_PACK_AFTER + 1):
            linear(torch.randn(8, 3072), w)  # no table entered
        with PackedWeights() as table:
            for rows in [1, 2] * _PACK_AFTER:
                x = torch.randn(rows, 3072)
                torch.testing.assert_close(linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-4)
    assert table == {}


@needs_onednn
def test_one_prefill_does_not_pack_and_a_changed_weight_is_repacked(threads):
    threads(2)
    torch.manual_seed(0)
    w, x = torch.randn(2304, 768), torch.randn(1, 12, 768)
    with torch.no_grad(), PackedWeights() as table, forced("packed", "split"):
        linear(x, w)
        assert table[id(w)][3] is None  # a single 12-token prefill: no copy
        for _ in range(_PACK_AFTER):
            linear(x, w)
        old = table[id(w)][3]
        assert old is not None
        w.mul_(-2.0)  # an optimizer step, a load_state_dict: the weight changes in place
        for _ in range(_PACK_AFTER + 1):
            torch.testing.assert_close(linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-4)
        assert table[id(w)][3] is not None and table[id(w)][3] is not old


@needs_onednn
def test_inference_mode_weights_are_not_packed(threads):
    threads(2)
    with torch.inference_mode():
        w, x = torch.randn(2304, 768), torch.randn(8, 768)
        with PackedWeights() as table, forced("packed", "split"):
            for _ in range(_PACK_AFTER + 1):
                torch.testing.assert_close(linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-4)
    assert table == {}


@needs_onednn
def test_packed_layers_deepcopy_and_save_and_their_copies_leave_with_the_table(threads):
    threads(2)
    layer = Linear(768, 2304)
    x = torch.randn(8, 768)
    table = PackedWeights()
    with torch.no_grad(), table, forced("packed", "split"):
        for _ in range(_PACK_AFTER):
            layer(x)
        twin = copy.deepcopy(layer)  # a DPO reference model, an EMA copy: the copies are not on the layer
        torch.save(layer.state_dict(), io.BytesIO())
        torch.testing.assert_close(twin(x), layer(x))
    assert table[id(layer.weight)][3] is not None
    weight = weakref.ref(layer.weight)
    del layer, twin
    gc.collect()
    assert weight() is None  # the live table does not keep the weight itself alive (only its packed copy)
    gone = []
    weakref.finalize(table, gone.append, True)
    del table
    gc.collect()
    assert gone == [True]  # nothing else holds the table (and its copies) alive


def test_packing_off_frees_the_copies_and_takes_the_split(threads, packing, batched_calls):
    threads(2)
    torch.manual_seed(0)
    w, x = torch.randn(2304, 768), torch.randn(8, 768)
    with torch.no_grad(), PackedWeights() as table, forced("packed", "split"):
        for _ in range(_PACK_AFTER):
            linear(x, w)
        packing(False)
        assert table == {}
        batched_calls.clear()
        torch.testing.assert_close(linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-4)
    assert batched_calls == ["bmm"]


def test_a_non_contiguous_bias_gives_the_same_result(threads):
    threads(2)
    torch.manual_seed(0)
    w, b = torch.randn(2304, 768), torch.randn(2 * 2304)[::2]  # every other element: stride 2
    for rows in (1, 2, 8):
        x = torch.randn(rows, 768)
        with torch.no_grad():
            torch.testing.assert_close(linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_large_training_products_take_onednn_forward_with_f_linear_gradients():
    """The forward may differ from F.linear by float rounding; the backward is F.linear's, so given the same
    output gradient the input, weight and bias gradients are bit-identical."""
    torch.manual_seed(0)
    x = torch.randn(4, 256, 768, requires_grad=True)
    w = (torch.randn(1000, 768) * 0.02).requires_grad_()
    b = torch.randn(1000, requires_grad=True)
    with forced("onednn"):
        y = linear(x, w, b)
    assert type(y.grad_fn).__name__ == "_TrainLinearBackward"
    ref = F.linear(x, w, b)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    ours = torch.autograd.grad(y, (x, w, b), g)
    theirs = torch.autograd.grad(ref, (x, w, b), g)
    for a, t in zip(ours, theirs):
        assert torch.equal(a, t)


def test_small_products_timed_faster_by_f_linear_and_bf16_training_products_stay_f_linear():
    """Whether oneDNN takes a product is timed (no size threshold): one where it did not measure faster keeps
    F.linear, here the nanoGPT CPU shape's; bf16 and autocast never take it, even where oneDNN is preferred."""
    torch.manual_seed(0)
    big_x, big_w = torch.randn(1024, 768), torch.randn(768, 768)
    small = (torch.randn(12, 64, 128, requires_grad=True), torch.randn(384, 128, requires_grad=True))
    with forced():  # the tuned order: F.linear only
        assert type(linear(*small).grad_fn).__name__ != "_TrainLinearBackward"
    with forced("onednn"):
        assert type(linear(*small).grad_fn).__name__ == "_TrainLinearBackward"  # the same product, timed faster
        assert type(linear(big_x.bfloat16(), big_w.bfloat16().requires_grad_()).grad_fn).__name__ != \
            "_TrainLinearBackward"                                                 # bf16
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast's bf16 product, as F.linear would
            y = linear(big_x.requires_grad_(), big_w.requires_grad_())
            assert y.dtype == torch.bfloat16 and type(y.grad_fn).__name__ != "_TrainLinearBackward"


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_a_large_product_without_gradients_runs_onednn():
    torch.manual_seed(0)
    x, w = torch.randn(1024, 768), torch.randn(768, 768)
    with torch.no_grad(), forced("onednn"), torch.profiler.profile() as prof:  # a prefill, an evaluation
        y = linear(x, w)
    assert any("_linear_pointwise" in e.name for e in prof.events())
    torch.testing.assert_close(y, F.linear(x, w), rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_a_frozen_weight_still_passes_the_input_gradient():
    torch.manual_seed(0)
    x = torch.randn(1024, 768, requires_grad=True)
    w = torch.randn(768, 768) * 0.02  # frozen (fine-tuning only the layers below)
    with forced("onednn"):
        y = linear(x, w)
    assert type(y.grad_fn).__name__ == "_TrainLinearBackward"
    g = torch.randn_like(y)
    assert torch.equal(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(F.linear(x, w), x, g)[0])


def test_large_onednn_can_be_switched_off():
    x, w = torch.randn(1024, 768, requires_grad=True), torch.randn(768, 768, requires_grad=True)
    set_large_onednn(False)
    try:
        with forced("onednn"):  # preferred where it can run: the switch must still win
            y = linear(x, w)
        assert type(y.grad_fn).__name__ != "_TrainLinearBackward" and torch.equal(y, F.linear(x, w))
    finally:
        set_large_onednn(True)
