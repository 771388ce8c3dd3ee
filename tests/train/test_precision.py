"""train.dtype: fp32, bf16, or auto -- bf16 only where the hardware has it and a timed step says it pays."""
import pytest
import torch

from lmforge.kernels.tune import Tuner, using
from lmforge.models import build_model
from lmforge.train.precision import choose_dtype, cpu_flags


@pytest.fixture(autouse=True)
def fresh_choices():
    """Each test times afresh: `auto`'s measured choice is cached (lmforge.kernels.tune), per model shape."""
    with using(Tuner()):
        yield


def tiny(vocab):
    torch.manual_seed(0)
    return build_model("gpt", {"vocab_size": vocab, "max_len": 32, "d_model": 32, "n_heads": 2, "n_layers": 2})


def test_dtype_choice_follows_the_hardware():
    model = tiny(20)
    assert choose_dtype("fp32", torch.device("cpu"), model) == (False, "fp32 requested")
    use, why = choose_dtype("auto", torch.device("cpu"), model)
    if not cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile"} and "BF16" not in torch.backends.cpu.get_cpu_capability():
        assert not use and "no native bf16" in why  # e.g. an AVX2-only CPU, where bf16 is ~100x slower
    else:
        assert why.endswith(": bf16") == use and "measured" in why


@pytest.mark.parametrize("fp32_s, bf16_s, chosen", [(1.0, 0.5, True), (1.0, 0.95, False), (1.0, 2.0, False)])
def test_auto_takes_bf16_only_for_a_clear_measured_win(monkeypatch, fp32_s, bf16_s, chosen):
    """On a CPU that says it has native bf16, `auto` follows the timing: bf16 only at >= MIN_SPEEDUP."""
    import lmforge.train.precision as precision
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(precision, "_seconds", lambda fn, device, bf16, budget: bf16_s if bf16 else fp32_s)
    use, why = choose_dtype("auto", torch.device("cpu"), tiny(20), probe=lambda: None)
    assert use is chosen and f"{fp32_s / bf16_s:.2f}x" in why and "training step" in why


def test_auto_keeps_its_measured_choice_for_the_next_run(monkeypatch, tmp_path):
    """The timing is cached on disk per model shape and batch: a second run (a fresh process: a fresh Tuner on the
    same file) takes the same choice without timing; another shape is timed."""
    import lmforge.train.precision as precision
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_bf16"})
    calls = []
    probe = lambda: calls.append(1)  # noqa: E731  (timed for real: a few hundred calls in ~0.2 s)
    path = tmp_path / "tune.json"
    with using(Tuner(path)):
        first = choose_dtype("auto", torch.device("cpu"), tiny(20), probe=probe, probe_key="batch=4")
    assert calls and "measured" in first[1] and "cached" not in first[1]
    calls.clear()
    with using(Tuner(path)):
        again = choose_dtype("auto", torch.device("cpu"), tiny(20), probe=probe, probe_key="batch=4")
        assert calls == [] and again[0] == first[0] and "measured" in again[1] and "cached" in again[1]
        choose_dtype("auto", torch.device("cpu"), tiny(24), probe=probe, probe_key="batch=4")  # another shape
        assert calls
