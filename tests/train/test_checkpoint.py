"""Checkpoints: round trip, journal recovery, kill during save, full disk, refusal of code-running pickles,
clear errors for missing / corrupt / mis-shaped files."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import lmforge
from lmforge.models import build_model
from lmforge.train.checkpoint import (STAGING, capture_rng, load_checkpoint, load_train_state, restore_rng,
                                      save_checkpoint)

CFG = {"vocab_size": 11, "max_len": 8, "d_model": 8, "n_heads": 2, "n_layers": 1}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def model_at(step: float):
    """A model whose every parameter equals `step`: which checkpoint a file came from is visible in it."""
    m = build_model("gpt", CFG)
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(step)
    return m


def save(run, step, **kw):
    save_checkpoint(run, model_at(step), {"step": step, "data": {"position": step}}, metrics=[{"step": step, "loss": 1.0}], **kw)


def test_round_trip_restores_weights_state_and_rng(tmp_path):
    torch.manual_seed(3)
    model = build_model("gpt", CFG)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randint(0, 11, (2, 8)), targets=torch.randint(0, 11, (2, 8))).loss.backward()
    opt.step()
    rng = capture_rng()
    expected_draw = torch.rand(5)
    save_checkpoint(tmp_path, model, {"step": 7, "optimizer": opt.state_dict(), "rng": rng}, metrics=[{"step": 7, "loss": 2.0}])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "loss.png", "metrics.jsonl",
                                                          "model.safetensors", "train_state.pt"]
    fresh = build_model("gpt", CFG)
    state, metrics = load_checkpoint(tmp_path, fresh)
    assert state["step"] == 7 and metrics == [{"step": 7, "loss": 2.0}]
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    opt2 = torch.optim.AdamW(fresh.parameters())
    opt2.load_state_dict(state["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    torch.manual_seed(99)
    restore_rng(state["rng"])
    assert torch.equal(torch.rand(5), expected_draw)
    # the run directory is also a model directory for lmforge.load
    loaded = lmforge.load(tmp_path)
    ids = torch.randint(0, 11, (1, 8))
    assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_interrupted_save_is_discarded_and_previous_checkpoint_loads(tmp_path):
    run, new = tmp_path / "run", tmp_path / "new"
    save(run, 1)
    save(new, 2)
    (run / STAGING).mkdir()  # a save that died before its commit point: some files staged, no COMMITTED
    shutil.copy(new / "model.safetensors", run / STAGING / "model.safetensors")
    state, _ = load_checkpoint(run, model := build_model("gpt", CFG))
    assert state["step"] == 1 and all((p == 1).all() for p in model.parameters())
    assert not (run / STAGING).exists()


def test_committed_save_killed_mid_rename_is_rolled_forward(tmp_path):
    run, new = tmp_path / "run", tmp_path / "new"
    save(run, 1)
    save(new, 2)
    staging = run / STAGING
    staging.mkdir()
    names = sorted(p.name for p in new.iterdir())
    for n in names:
        shutil.copy(new / n, staging / n)
    (staging / "COMMITTED").write_text("\n".join(names))
    os.replace(staging / "model.safetensors", run / "model.safetensors")  # killed after the first rename
    state, _ = load_checkpoint(run, model := build_model("gpt", CFG))
    assert state["step"] == 2 and all((p == 2).all() for p in model.parameters())


KILL_LOOP = textwrap.dedent("""
    import sys, torch
    from lmforge.models import build_model
    from lmforge.train.checkpoint import save_checkpoint
    m = build_model("gpt", {"vocab_size": 11, "max_len": 8, "d_model": 64, "n_heads": 2, "n_layers": 2})
    step = 0
    while True:
        step += 1
        with torch.no_grad():
            for p in m.parameters():
                p.fill_(step)
        save_checkpoint(sys.argv[1], m, {"step": step}, metrics=[{"step": s, "loss": 1.0} for s in range(step)])
        print(step, flush=True)
""")


@pytest.mark.parametrize("delay", [0.05, 0.13, 0.31])
def test_sigkill_at_any_moment_of_saving_leaves_a_consistent_checkpoint(tmp_path, delay):
    proc = subprocess.Popen([sys.executable, "-c", KILL_LOOP, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == "1"  # one good checkpoint exists; now kill somewhere in later saves
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    model = build_model("gpt", {**CFG, "d_model": 64, "n_layers": 2})
    state, metrics = load_checkpoint(tmp_path, model)  # raises if weights and state disagree
    assert state["step"] >= 1 and len(metrics) == state["step"]
    assert all((p == state["step"]).all() for p in model.parameters())


FULL_DISK = textwrap.dedent("""
    import resource, signal, sys, torch
    from lmforge.models import build_model
    from lmforge.train.checkpoint import save_checkpoint
    run = sys.argv[1]
    m = build_model("gpt", {"vocab_size": 11, "max_len": 8, "d_model": 64, "n_heads": 2, "n_layers": 2})
    save_checkpoint(run, m, {"step": 1})
    # from now on no file may grow past 4 KiB: writes fail with EFBIG like on a full disk
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    try:
        save_checkpoint(run, m, {"step": 2})
    except OSError as e:
        print("OSError", e.errno)
""")


def test_full_disk_during_save_keeps_previous_checkpoint(tmp_path):
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True, text=True, env=ENV)
    assert out.stdout.startswith("OSError"), out.stderr  # an OSError, whichever writer hit the limit
    before = build_model("gpt", {**CFG, "d_model": 64, "n_layers": 2})
    torch.manual_seed(0)
    state, _ = load_checkpoint(tmp_path, before)
    assert state["step"] == 1
    assert not (tmp_path / STAGING).exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = ""


def test_pickle_that_would_run_code_is_refused(tmp_path):
    global MARKER
    MARKER = str(tmp_path / "pwned")
    path = tmp_path / "train_state.pt"
    torch.save({"step": 1, "payload": RunsCode()}, path)
    with pytest.raises(ValueError, match="would run code"):
        load_train_state(path)
    assert not (tmp_path / "pwned").exists()


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope", build_model("gpt", CFG))
    save(tmp_path, 1)
    (tmp_path / "train_state.pt").write_bytes((tmp_path / "train_state.pt").read_bytes()[:100])
    with pytest.raises(ValueError, match="train_state.pt is corrupt"):
        load_checkpoint(tmp_path, build_model("gpt", CFG))
    save(tmp_path, 1)
    (tmp_path / "model.safetensors").write_bytes((tmp_path / "model.safetensors").read_bytes()[:50])
    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        load_checkpoint(tmp_path, build_model("gpt", CFG))
    save(tmp_path, 1)
    (tmp_path / "train_state.pt").unlink()
    with pytest.raises(ValueError, match="train_state.pt is missing"):
        load_checkpoint(tmp_path, build_model("gpt", CFG))


def test_mismatched_shape_names_the_tensor(tmp_path):
    save(tmp_path, 1)
    bigger = build_model("gpt", {**CFG, "vocab_size": 12})
    with pytest.raises(ValueError, match=r"tensor 'tok_emb.weight' has shape \(11, 8\) in the file but \(12, 8\)"):
        load_checkpoint(tmp_path, bigger)


def test_weights_and_state_from_different_steps_are_refused(tmp_path):
    save(tmp_path / "a", 1)
    save(tmp_path / "b", 2)
    shutil.copy(tmp_path / "b" / "model.safetensors", tmp_path / "a" / "model.safetensors")
    with pytest.raises(ValueError, match="model.safetensors is from step 2 but train_state.pt is from step 1"):
        load_checkpoint(tmp_path / "a", build_model("gpt", CFG))


class ValueHead(torch.nn.Module):
    """A wrapper as post-training builds them: a scalar per position on a GPT's final hidden states (the shape of a
    value or reward model). It follows config_record's protocol: `base` and `wrapper_config()`."""

    def __init__(self, base):
        super().__init__()
        self.base = base
        self.head = torch.nn.Linear(base.config.d_model, 1)

    def wrapper_config(self) -> dict:
        return {"kind": "value_head", "d_out": 1}

    def forward(self, ids):
        return self.head(self.base(ids).hidden_states).squeeze(-1)  # (B, T)


def test_a_plain_model_keeps_its_config_json(tmp_path):
    """Run directories written before wrappers existed read the same: config.json is {"family", **config}."""
    import json
    m = build_model("gpt", CFG)
    save_checkpoint(tmp_path, m, {"step": 1})
    assert json.loads((tmp_path / "config.json").read_text()) == {"family": "gpt", **m.config.to_dict()}


def test_a_wrapped_model_checkpoints_all_tensors_and_resumes_bit_exactly(tmp_path):
    """A value head on a GPT trains through the Trainer: config.json names the base family and the wrapper, the
    weights hold base and head tensors, and 3 steps (stopped) + resume to 6 == 6 steps straight, every tensor equal."""
    import json

    import numpy as np
    from safetensors.torch import load_file

    from lmforge.config import TrainConfig
    from lmforge.data.sampler import RandomWindows
    from lmforge.train.loop import Trainer

    tokens = np.random.default_rng(0).integers(0, 11, 2000).astype(np.uint16)

    def build():
        torch.manual_seed(0)
        return ValueHead(build_model("gpt", {**CFG, "dropout": 0.1}))  # dropout: resume must restore the RNG

    def value_loss(model, batch):  # regress each position's value on whether the next token is even
        x, y = batch
        return torch.nn.functional.mse_loss(model(x), (y % 2 == 0).float())

    cfg = TrainConfig(max_steps=6, batch_size=4, lr=1e-2, warmup_steps=0, log_interval=1, dtype="fp32",
                      progress=False, eval_interval=0, save_interval=0)

    def run(out, stop_at=None, resume=False):
        def stop(trainer, row):
            if row["step"] == stop_at:
                trainer.request_stop("interrupted")  # the same schedule as the straight run: max_steps unchanged

        t = Trainer(build(), cfg, RandomWindows(tokens, 8, 4, seed=1), out_dir=out, loss_fn=value_loss,
                    callbacks=[stop], log=lambda s: None)
        t.fit(resume=resume)
        return t

    straight = run(tmp_path / "a")
    assert run(tmp_path / "b", stop_at=3).step == 3
    resumed = run(tmp_path / "b", resume=True)
    record = json.loads((tmp_path / "b" / "config.json").read_text())
    assert record == {"family": "gpt", **build().base.config.to_dict(), "wrapper": {"kind": "value_head", "d_out": 1}}
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert {"head.weight", "head.bias", "base.tok_emb.weight"} <= set(a) and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["head.weight"], build().head.weight.detach())  # it trained
    assert [r["loss"] for r in straight.metrics] == [r["loss"] for r in resumed.metrics]


def test_wrapper_records_nest_and_a_model_without_a_family_is_refused():
    from lmforge.train.checkpoint import config_record

    class Adapter(ValueHead):
        def __init__(self, base):
            torch.nn.Module.__init__(self)
            self.base = base

        def wrapper_config(self):
            return {"kind": "lora", "rank": 4}

    record = config_record(Adapter(ValueHead(build_model("gpt", CFG))))
    assert record["family"] == "gpt" and record["wrapper"] == {"kind": "lora", "rank": 4,
                                                               "base": {"kind": "value_head", "d_out": 1}}
    with pytest.raises(ValueError, match="not a family model"):
        config_record(torch.nn.Linear(2, 2))


def test_a_wrapped_run_loads_as_its_wrapper_or_as_its_base(tmp_path, monkeypatch):
    """lmforge.load on a wrapper's directory: a clear error while its kind is unknown, the base family model with
    base_only=True, and the wrapper itself once its kind is registered (WRAPPERS)."""
    import re
    import sys

    from lmforge.models import WRAPPERS, load_model

    for kind in list(WRAPPERS):  # the kinds the package registers: this test registers its own
        monkeypatch.delitem(WRAPPERS, kind)
    torch.manual_seed(0)
    wrapped = ValueHead(build_model("gpt", CFG))
    save_checkpoint(tmp_path, wrapped, {"step": 1})
    known = re.escape(", ".join(k for k in WRAPPERS if k != "value_head") or "none")  # the kinds registered now
    with pytest.raises(ValueError, match="holds a value_head around a gpt model; wrapper kind 'value_head' is not "
                                         rf"registered \(known: {known}\). .*base_only=True"):
        load_model(tmp_path)
    base = load_model(tmp_path, base_only=True)
    assert all(torch.equal(v, wrapped.base.state_dict()[k]) for k, v in base.state_dict().items())

    class Registered(ValueHead):
        @classmethod
        def from_record(cls, base, record):
            assert record == {"kind": "value_head", "d_out": 1}
            return cls(base)
    monkeypatch.setitem(sys.modules, "wrapper_kinds_for_test", type(sys)("wrapper_kinds_for_test"))
    sys.modules["wrapper_kinds_for_test"].Registered = Registered
    monkeypatch.setitem(WRAPPERS, "value_head", "wrapper_kinds_for_test:Registered")
    again = load_model(tmp_path)
    ids = torch.randint(0, CFG["vocab_size"], (2, 5))
    assert isinstance(again, Registered) and torch.equal(again.eval()(ids), wrapped.eval()(ids))
