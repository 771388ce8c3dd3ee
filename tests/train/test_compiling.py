"""train.compile: false (eager, unchanged), true, auto (chosen by timing, cached, eager on failure)."""
import time
import warnings

import pytest
import torch

from lmforge.config import TrainConfig
from lmforge.data.sampler import RandomWindows
from lmforge.kernels import tune
from lmforge.models import build_model
from lmforge.train.compiling import CompileFailed, choose_compile
from lmforge.train.loop import Trainer


@pytest.fixture
def tuner(tmp_path):
    with tune.using(tune.Tuner(tmp_path / "tune.json")) as t:
        yield t


def busy(seconds):
    """A step that takes `seconds` (the candidate made slow on purpose)."""
    return lambda: time.sleep(seconds)


def test_auto_keeps_the_candidate_that_timed_faster(tuner):
    compiled, why, seconds = choose_compile("cpu demo-a", eager_step=busy(0.004), compiled_step=lambda: None)
    assert compiled and "compiled" in why and seconds is not None
    compiled, why, _ = choose_compile("cpu demo-b", eager_step=lambda: None, compiled_step=busy(0.004))
    assert not compiled and why.endswith(": eager")


def test_a_candidate_must_win_by_the_margin(tuner):
    """Within 5% of eager is noise: eager (the default) stays."""
    compiled, _, _ = choose_compile("cpu demo-tie", eager_step=busy(0.004), compiled_step=busy(0.0039))
    assert not compiled


def test_the_choice_is_cached_on_disk_and_not_timed_again(tmp_path):
    calls = []

    def eager():
        calls.append("eager")
        time.sleep(0.004)

    with tune.using(tune.Tuner(tmp_path / "tune.json")):
        assert choose_compile("cpu demo-cache", eager, lambda: None)[0]
    timed = len(calls)
    assert timed > 3
    with tune.using(tune.Tuner(tmp_path / "tune.json")):  # a new process: the file
        compiled, why, seconds = choose_compile("cpu demo-cache", eager, lambda: None)
    assert compiled and "cached" in why and seconds is not None  # cached "compiled": compiled again for this run
    assert len(calls) == timed  # eager not run again


def test_a_cached_choice_without_timings_is_followed(tmp_path):
    """A cache file whose record has no timings (written by hand, or by another version) is still followed."""
    import json
    key = f"compile cpu demo-bare threads={torch.get_num_threads()}"
    (tmp_path / "tune.json").write_text(json.dumps({"choices": {key: {"order": ["compiled", "eager"], "ms": {}}}}))
    with tune.using(tune.Tuner(tmp_path / "tune.json")):
        compiled, why, seconds = choose_compile("cpu demo-bare", busy(0.004), lambda: None)
    assert compiled and "without its timings" in why and "cached" in why and seconds is not None


def test_a_compilation_that_fails_is_reported_and_not_cached(tuner):
    def broken():
        raise RuntimeError("InductorError: no C++ compiler")

    with pytest.raises(CompileFailed, match="no C\\+\\+ compiler"):
        choose_compile("cpu demo-fail", lambda: None, broken)
    assert not any(k.endswith("demo-fail threads=" + str(torch.get_num_threads())) for k in tuner.records)


@pytest.mark.parametrize("bad", ["fast", "yes please", 2, None])
def test_bad_values_say_what_to_write(bad):
    with pytest.raises(ValueError, match="compile"):
        TrainConfig.from_dict({"compile": bad})
    with pytest.raises(ValueError, match="true, false or auto"):
        TrainConfig(compile=bad)


def test_config_accepts_true_false_auto():
    assert TrainConfig.from_dict({"compile": "auto"}).compile == "auto"
    assert TrainConfig.from_dict({"compile": "true"}).compile is True  # --set train.compile=true
    assert TrainConfig.from_dict({"compile": False}).compile is False
    assert TrainConfig().compile is False


def windows(vocab=40, seed=1):
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, vocab, (4000,), generator=g).numpy()
    return RandomWindows(data, 16, 4, seed=seed)


def tiny(dropout=0.0):
    torch.manual_seed(0)
    return build_model("gpt", {"vocab_size": 40, "max_len": 16, "d_model": 32, "n_heads": 2, "n_layers": 1,
                               "dropout": dropout})


def test_compile_false_trains_eager_and_says_nothing():
    logs = []
    cfg = TrainConfig(max_steps=3, batch_size=4, log_interval=1, eval_interval=0, dtype="fp32", progress=False)
    trainer = Trainer(tiny(), cfg, windows(), log=logs.append)
    trainer.fit()
    assert trainer.compiled is False and trainer.net is trainer.model
    assert not any(line.startswith("compile:") for line in logs)


def test_the_timed_step_leaves_no_trace():
    """What auto compiles and times: a training step that draws nothing from the run's random stream (dropout
    on) and leaves no gradients, so a timed run continues as an untimed one would."""
    cfg = TrainConfig(max_steps=1, batch_size=4, dtype="fp32", progress=False)
    trainer = Trainer(tiny(dropout=0.1), cfg, windows(), log=lambda s: None)
    batch = windows().get(0)
    state = torch.get_rng_state()
    trainer._timed_step(trainer.model, batch)()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(p.grad is None for p in trainer.model.parameters())


def test_compile_that_fails_trains_eager_with_a_warning(tuner):
    """A real failure: inductor pointed at a C++ compiler that does not exist."""
    import torch._inductor.config as inductor

    logs = []
    cfg = TrainConfig(max_steps=2, batch_size=4, log_interval=1, eval_interval=0, dtype="fp32", progress=False,
                      compile=True)
    trainer = Trainer(tiny(), cfg, windows(), log=logs.append)
    torch._dynamo.reset()
    with inductor.patch({"cpp.cxx": (None, "no-such-c++-compiler")}), \
            inductor.patch({"fx_graph_cache": False}), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit()
    torch._dynamo.reset()
    assert trainer.compiled is False and trainer.net is trainer.model and trainer.step == 2
    assert any("torch.compile failed" in str(w.message) for w in caught)
    assert any(line.startswith("compile: eager (torch.compile failed") for line in logs)


@pytest.mark.slow
def test_compiled_training_matches_eager(tuner):
    """The same 3 steps eager and compiled (train.compile: true): losses and weights agree within fp32
    rounding (inductor fuses and reorders the glue: not bit for bit). Dropout off: inductor draws its
    dropout masks from a random stream of its own."""
    torch._dynamo.reset()
    runs = {}
    for mode in (False, True):
        logs = []
        cfg = TrainConfig(max_steps=3, batch_size=4, log_interval=1, eval_interval=0, dtype="fp32",
                          progress=False, compile=mode, seed=3)
        trainer = Trainer(tiny(), cfg, windows(), log=logs.append)
        trainer.fit()
        assert trainer.compiled is mode
        assert any(line.startswith("compile: torch.compile (train.compile: true; compilation took") for line in logs) \
            == mode
        runs[mode] = ([r["loss"] for r in trainer.metrics], trainer.model.state_dict())
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-4)
    for name, w in runs[False][1].items():
        torch.testing.assert_close(runs[True][1][name], w, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()
