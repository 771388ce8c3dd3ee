"""lmforge.kernels.tune: each fast path is chosen by timing (a candidate made slow on purpose loses), the choices are
kept on disk per CPU model and torch version and read back by the next process, a broken cache is survived,
and whatever is chosen computes F.linear's numbers; the off switches give F.linear exactly."""
import importlib
import json
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from lmforge import kernels
from lmforge.kernels import hugepages, linear, native, tune

linear_module = importlib.import_module("lmforge.kernels.linear")  # `linear` is its function
from lmforge.kernels.packed import _PACK_AFTER
from lmforge.kernels.tune import Tuner, forced, measure, using
from lmforge.models import build_model


def sleeper(seconds):
    return lambda: time.sleep(seconds)


def no_timing():
    pytest.fail("timed although the choice was cached")


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the thread split is a candidate from two threads on
    yield
    torch.set_num_threads(before)


def test_a_candidate_slow_on_purpose_loses_and_a_fast_one_wins():
    t = Tuner()  # memory only
    slow = {"F.linear": sleeper(0.004), "slow": sleeper(0.02)}
    assert t.choose("a", ("F.linear", "slow"), lambda: measure(slow)) == ("F.linear",)
    fast = {"F.linear": sleeper(0.02), "fast": sleeper(0.004), "slow": sleeper(0.04)}
    assert t.choose("b", ("F.linear", "fast", "slow"), lambda: measure(fast)) == ("fast", "F.linear")
    assert t.records["b"]["ms"]["fast"] < t.records["b"]["ms"]["F.linear"] < t.records["b"]["ms"]["slow"]


def test_a_tie_keeps_the_default():
    """A candidate must beat the default by the margin: as fast is not enough (the default wins the noise)."""
    same = {"F.linear": sleeper(0.01), "same": sleeper(0.01)}
    assert Tuner().choose("tie", ("F.linear", "same"), lambda: measure(same)) == ("F.linear",)
    assert tune.rank({"F.linear": 1.0, "a": 0.5, "b": 0.97, "c": 0.8}, "F.linear") == ("a", "c", "F.linear")


def test_a_key_is_timed_once():
    t, calls = Tuner(), []
    seconds = lambda: calls.append(1) or {"F.linear": 1.0, "x": 0.5}  # noqa: E731
    assert t.choose("k", ("F.linear", "x"), seconds) == t.choose("k", ("F.linear", "x"), seconds) == ("x", "F.linear")
    assert calls == [1]


def test_the_cache_is_written_and_read_back_by_a_fresh_tuner(tmp_path):
    path = tmp_path / "tune.json"
    first = Tuner(path)
    candidates = {"F.linear": sleeper(0.01), "fast": sleeper(0.001)}
    order = first.choose("k", ("F.linear", "fast"), lambda: measure(candidates))
    assert order == ("fast", "F.linear")
    data = json.loads(path.read_text())
    assert data["cpu"] == tune.cpu_model() and data["torch"] == torch.__version__
    assert data["choices"]["k"]["order"] == ["fast", "F.linear"]
    assert Tuner(path).choose("k", ("F.linear", "fast"), no_timing) == order  # the next process starts tuned
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed over


def test_two_tuners_on_one_file_keep_each_others_choices(tmp_path):
    path = tmp_path / "tune.json"
    a, b = Tuner(path), Tuner(path)
    a.choose("a", ("F.linear", "x"), lambda: {"F.linear": 1.0, "x": 0.5})
    b.choose("b", ("F.linear", "x"), lambda: {"F.linear": 1.0, "x": 2.0})
    assert set(json.loads(path.read_text())["choices"]) == {"a", "b"}


def test_the_cache_file_is_per_cpu_model_and_torch_version_in_the_users_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LMFORGE_CACHE_DIR", str(tmp_path / "mine"))
    path = tune.cache_file()
    assert path.parent == tmp_path / "mine"
    cpu = tune.cpu_model().lower().split()[0]
    assert cpu in path.name and torch.__version__.split("+")[0] in path.name and path.suffix == ".json"
    monkeypatch.delenv("LMFORGE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tune.cache_file().parent == tmp_path / "xdg" / "lmforge"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tune.cache_file().parent == tmp_path / "home" / ".cache" / "lmforge"


@pytest.mark.parametrize("content", ["{not json", json.dumps([1, 2]), json.dumps({"choices": {"k": {"order": 3}}}),
                                     json.dumps({"choices": {"k": {"order": []}}})])
def test_a_corrupt_cache_is_ignored_with_a_warning_and_rewritten(tmp_path, content):
    path = tmp_path / "tune.json"
    path.write_text(content)
    t = Tuner(path)
    with pytest.warns(UserWarning, match="ignoring the kernel tuning cache"):
        order = t.choose("k", ("F.linear", "x"), lambda: {"F.linear": 1.0, "x": 0.5})
    assert order == ("x", "F.linear")
    assert json.loads(path.read_text())["choices"]["k"]["order"] == ["x", "F.linear"]


def test_an_unwritable_cache_warns_once_and_keeps_the_choices_in_memory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the folder should be
    t = Tuner(blocker / "tune.json")
    with pytest.warns(UserWarning, match="cannot write the kernel tuning cache"):
        t.choose("a", ("F.linear", "x"), lambda: {"F.linear": 1.0, "x": 0.5})
    assert t.choose("a", ("F.linear", "x"), no_timing) == ("x", "F.linear")


def test_tuning_off_times_nothing_and_takes_the_default_unless_cached():
    t = Tuner()
    t.choose("cached", ("F.linear", "x"), lambda: {"F.linear": 1.0, "x": 0.5})
    tune.set_tuning(False)
    try:
        assert t.choose("new", ("F.linear", "x"), no_timing) == ("F.linear",)
        assert t.choose("cached", ("F.linear", "x"), no_timing) == ("x", "F.linear")
    finally:
        tune.set_tuning(True)
    assert "new" not in t.records  # not recorded: timed once tuning is on again
    assert t.choose("new", ("F.linear", "x"), lambda: {"F.linear": 1.0, "x": 0.5}) == ("x", "F.linear")


def test_forced_takes_the_first_named_candidate_untimed():
    t = Tuner()
    with forced("packed", "columns"):
        assert t.choose("k", ("F.linear", "columns", "split"), no_timing) == ("columns", "F.linear")
    with forced():
        assert t.choose("k", ("F.linear", "columns"), no_timing) == ("F.linear",)
    assert t.records == {}


def test_rows_are_timed_per_power_of_two():
    assert [tune.bucket(n) for n in (1, 2, 3, 4, 5, 8, 9, 17, 32, 33)] == [1, 2, 4, 4, 8, 8, 16, 32, 32, 64]


def test_linear_follows_the_cached_choice(tmp_path, threads, batched_calls):
    """A cache that says "columns" for this key runs the column form, untimed (one bmm); one that says F.linear
    runs no batched product at all."""
    w, x = torch.randn(2304, 768), torch.randn(1, 768)
    key = f"few_rows 2304x768 rows<=1 float32 threads={torch.get_num_threads()}"
    for order, expected in [(["columns", "F.linear"], ["bmm"]), (["F.linear"], [])]:
        path = tmp_path / f"{order[0]}.json"
        path.write_text(json.dumps({"choices": {key: {"order": order, "ms": {}}}}))
        batched_calls.clear()
        with using(Tuner(path)) as t, torch.no_grad():
            torch.testing.assert_close(linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-4)
        assert batched_calls == expected and list(t.records) == [key]


def test_a_few_row_product_is_timed_once_and_recorded_with_every_candidate(tmp_path, threads):
    w, x = torch.randn(768, 768), torch.randn(3, 768)
    with using(Tuner(tmp_path / "tune.json")) as t, torch.no_grad():
        torch.testing.assert_close(linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-4)
        key = f"few_rows 768x768 rows<=4 float32 threads={torch.get_num_threads()}"
        names = {"F.linear", "columns", "split"} | ({"packed"} if torch.backends.mkldnn.is_available() else set())
        names |= {"avx2"} if native.extension() is not None else set()
        assert set(t.records) == {key} and set(t.records[key]["ms"]) == names
        assert t.records[key]["order"][-1] == "F.linear"
        linear(torch.randn(4, 768), w)  # the same bucket: no new key
        assert set(t.records) == {key}


def test_timing_draws_nothing_from_the_callers_random_stream(tmp_path):
    w = torch.randn(768, 768)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with using(Tuner(tmp_path / "tune.json")) as t, torch.no_grad():
        linear(torch.ones(1, 768), w)
    assert t.records and torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", ["F.linear", "columns", "split", "packed", "avx2"])
@pytest.mark.parametrize("rows", [1, 2, 3, 8, 32])
@pytest.mark.parametrize("out_f,in_f,bias", [(2304, 768, True), (768, 3072, False), (1003, 384, True)])
def test_every_candidate_equals_f_linear(threads, name, rows, out_f, in_f, bias):
    torch.manual_seed(0)
    w, b = torch.randn(out_f, in_f), (torch.randn(out_f) if bias else None)
    x = torch.randn(rows, 1, in_f)
    atol = 1e-4 * in_f / 768  # float rounding grows with the length of the sums (outputs here are ~sqrt(in_f))
    with torch.no_grad(), kernels.PackedWeights(), forced(name):
        for _ in range(_PACK_AFTER + 1):  # packed: its copy is made on the _PACK_AFTER-th call
            torch.testing.assert_close(linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=atol)


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 13])
@pytest.mark.parametrize("out_f,in_f,bias", [(2304, 768, True), (1003, 385, True), (7, 3072, False), (1, 8, False)])
def test_the_avx2_loop_equals_f_linear(threads, rows, out_f, in_f, bias):
    """lmforge's own few-row product (cpu.cpp): rows eight at a time (two groups of four), then four, two, one
    (13 = 8 + 4 + 1), outputs four or two at a time then the last ones, a tail after the 8-wide steps (in_f 385),
    with and without a bias; and `linear` runs it when forced."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("the AVX2 kernels are built only on an AVX2 CPU")
    ext = native.extension()
    assert ext is not None  # built here (a compiler is part of the test environment)
    assert native.buildable()
    torch.manual_seed(0)
    w, b = torch.randn(out_f, in_f), (torch.randn(out_f) if bias else None)
    x = torch.randn(rows, in_f)
    atol = 1e-4 * in_f / 768
    torch.testing.assert_close(ext.linear_rows(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=atol)
    with pytest.raises(RuntimeError, match="contiguous fp32"):
        ext.linear_rows(x.t(), w, b)
    if out_f * in_f >= linear_module._MIN_FEW_ROW_WEIGHT and rows <= linear_module._NATIVE_ROWS:
        calls = []
        real = ext.linear_rows
        with torch.no_grad(), forced("avx2"):
            native._extension = type("Spy", (), {"linear_rows": staticmethod(
                lambda *a: calls.append(1) or real(*a))})()
            try:
                y = linear(x, w, b)
            finally:
                native._extension = ext
        torch.testing.assert_close(y, F.linear(x, w, b), rtol=1e-5, atol=atol)
        assert calls == [1]


def test_our_kernels_run_on_torchs_threads(threads):
    """cpu.cpp's products split their rows with at::parallel_for, which is OpenMP inlined from torch's headers: built
    without -fopenmp they ran on one thread (measured: decode 40.9 -> 48.4 tok/s at 2 threads once fixed)."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("the AVX2 kernels are built only on an AVX2 CPU")
    assert native.extension().parallel_threads(1000) == torch.get_num_threads() == 2


@pytest.mark.parametrize("rows", [1, 8, 1024])
def test_every_fast_path_off_gives_f_linear_exactly(threads, batched_calls, rows):
    torch.manual_seed(0)
    w, b = torch.randn(768, 768), torch.randn(768)
    x = torch.randn(rows, 768)
    kernels.set_enabled(False)
    try:
        with torch.no_grad(), kernels.PackedWeights(), forced("packed", "columns", "split", "onednn", "avx2"):
            for _ in range(_PACK_AFTER + 1):
                assert torch.equal(linear(x, w, b), F.linear(x, w, b))
    finally:
        kernels.set_enabled(True)
    assert batched_calls == []


@pytest.mark.skipif(not hugepages.available(), reason="no transparent huge pages here (not Linux, or THP 'never')")
def test_a_model_moves_to_huge_pages_only_where_they_measured_faster(tmp_path):
    torch.manual_seed(0)
    m = build_model("gpt", dict(vocab_size=4096, max_len=64, d_model=128, n_heads=4, n_layers=1, dropout=0.0))
    ptr = m.tok_emb.weight.data_ptr()
    with forced():  # torch's allocation first, as where huge pages did not measure faster
        assert kernels.huge_page_weights(m) == 0 and m.tok_emb.weight.data_ptr() == ptr
    with using(Tuner(tmp_path / "tune.json")) as t:  # timed for real, now
        moved = kernels.huge_page_weights(m)
    (key, record), = t.records.items()
    assert key.startswith("huge_pages ") and set(record["ms"]) == {"torch_alloc", "huge_pages"}
    assert (moved > 0) == (record["order"][0] == "huge_pages") == (m.tok_emb.weight.data_ptr() != ptr)


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env})


def test_the_environment_switches():
    code = ("import sys, lmforge.kernels; m = {k.rsplit('.')[-1]: v for k, v in sys.modules.items()}; "
            "print(m['linear']._few_rows, m['onednn']._large_onednn_on, m['packed']._packing, m['hugepages']._enabled, "
            "m['int8']._enabled, m['tune']._tuning)")
    assert run_python(code).stdout.split() == ["True"] * 6
    assert run_python(code, LMFORGE_FAST_PATHS="0", LMFORGE_TUNING="off").stdout.split() == ["False"] * 6
    bad = run_python(code, LMFORGE_FAST_PATHS="maybe")
    assert bad.returncode != 0 and "LMFORGE_FAST_PATHS='maybe' is not a switch" in bad.stderr


def test_a_choice_timed_on_a_busy_machine_is_timed_again_on_a_quieter_one(tmp_path, monkeypatch):
    """Each record keeps the load it was timed under; one timed busy (> tune.BUSY per core) is not trusted by a
    process on a machine at least 1.5x quieter: it is timed again there and replaced. Timed quiet, or read as
    busy as it was timed, it is used as it is."""
    path = tmp_path / "tune.json"
    monkeypatch.setattr(tune, "load", lambda: 3.0)
    Tuner(path).choose("k", ("F.linear", "x"), lambda: {"F.linear": 1.0, "x": 0.5})
    assert json.loads(path.read_text())["choices"]["k"]["load"] == 3.0
    assert Tuner(path).choose("k", ("F.linear", "x"), no_timing) == ("x", "F.linear")  # as busy now: kept
    monkeypatch.setattr(tune, "load", lambda: 0.5)
    monkeypatch.setattr(tune, "_tuning", False)
    assert Tuner(path).choose("k", ("F.linear", "x"), no_timing) == ("x", "F.linear")  # tuning off: still used
    monkeypatch.setattr(tune, "_tuning", True)
    quiet = Tuner(path)
    assert quiet.choose("k", ("F.linear", "x"), lambda: {"F.linear": 1.0, "x": 2.0}) == ("F.linear",)  # re-timed
    record = json.loads(path.read_text())["choices"]["k"]
    assert record["order"] == ["F.linear"] and record["load"] == 0.5
    monkeypatch.setattr(tune, "load", lambda: 0.01)
    assert Tuner(path).choose("k", ("F.linear", "x"), no_timing) == ("F.linear",)  # timed quiet: never again
    assert tune.stale({"load": 3.0}, 1.0) and not tune.stale({"load": 3.0}, 2.5)
    assert not tune.stale({"load": 1.0}, 0.1) and not tune.stale({}, 0.1) and not tune.stale({"load": 3.0}, None)


def test_a_choice_timed_without_a_candidate_the_caller_now_has_is_timed_again(tmp_path):
    """A later lmforge (or a kernel built since) brings a new candidate: the cached choice did not weigh it, so the
    key is timed again with it; a cached choice that weighed every candidate is used untimed."""
    path = tmp_path / "tune.json"
    Tuner(path).choose("k", ("F.linear", "x"), lambda: {"F.linear": 1.0, "x": 0.5})
    assert Tuner(path).choose("k", ("F.linear", "x"), no_timing) == ("x", "F.linear")
    again = Tuner(path).choose("k", ("F.linear", "x", "y"), lambda: {"F.linear": 1.0, "x": 0.5, "y": 0.2})
    assert again == ("y", "x", "F.linear")
    assert Tuner(path).choose("k", ("F.linear", "x", "y"), no_timing) == again
    assert Tuner(path).choose("k", ("F.linear", "y"), no_timing) == again  # fewer candidates here: still covered
