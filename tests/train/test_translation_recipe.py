"""End to end on a tiny model: memorise 32 real pairs, beam-search them back, average checkpoints, resume."""
import json

import torch

from lmforge.eval.translation import evaluate_pairs, load_translator
from lmforge.train.recipes.translation import average_checkpoints, run as train

from tr_helpers import memo_config


def test_memorises_32_pairs_to_bleu_over_90(memo_run):
    run, pairs, summary, _ = memo_run
    model, tok = load_translator(run)
    r = evaluate_pairs(model, tok, [p.src for p in pairs], [p.tgt for p in pairs], "de", beam=4)
    assert r["n"] == 32 and r["bleu"] > 90, (r["bleu"], r["hypotheses"][:5])
    g = evaluate_pairs(model, tok, [p.src for p in pairs], [p.tgt for p in pairs], "de", beam=0)
    assert g["bleu"] > 90
    assert summary["steps"] == 300 and summary["train_tokens"] > 0


def test_run_directory_has_snapshots_average_and_summary(memo_run):
    run, _, summary, _ = memo_run
    saved = json.loads((run / "translation.json").read_text())
    assert saved["best"] in ("final", "averaged") and saved["averaged"] == ["step-00000250.safetensors",
                                                                            "step-00000300.safetensors"]
    assert (run / "averaged" / "model.safetensors").is_file() and (run / "averaged" / "tokenizer.json").is_file()
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == saved["averaged"]  # only the last 2 are kept


def test_average_checkpoints_is_the_mean(tmp_path):
    from safetensors.torch import save_file
    save_file({"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.0])}, tmp_path / "a.safetensors")
    save_file({"w": torch.tensor([3.0, 6.0]), "b": torch.tensor([1.0])}, tmp_path / "b.safetensors")
    avg = average_checkpoints([tmp_path / "a.safetensors", tmp_path / "b.safetensors"])
    assert avg["w"].tolist() == [2.0, 4.0] and avg["b"].tolist() == [0.5]


def test_resume_is_bit_exact(memo_run, tmp_path, monkeypatch):
    """10 steps + resume to 20 == 20 steps straight (the Trainer's guarantee holds with this recipe's batches/loss)."""
    import types

    import lmforge.train.loop
    from safetensors.torch import load_file
    clock = iter(range(10**9))  # the trainer's clock advances one "second" per reading: time is deterministic
    monkeypatch.setattr(lmforge.train.loop, "time", types.SimpleNamespace(perf_counter=lambda: float(next(clock))))
    _, _, _, tsv = memo_run
    straight = train(memo_config(tsv, steps=20), tmp_path / "a", log=lambda m: None)
    cfg = memo_config(tsv, steps=20)
    train(cfg.replace(train={**cfg.train.to_dict(), "max_steps": 10}), tmp_path / "b", log=lambda m: None)
    half = json.loads((tmp_path / "b" / "translation.json").read_text())
    resumed = train(cfg, tmp_path / "b", resume=True, log=lambda m: None)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert straight["steps"] == 20 and all(torch.equal(a[k], b[k]) for k in a)
    # tokens and training time are summed over the two parts
    assert resumed["train_tokens"] == straight["train_tokens"] > half["train_tokens"] > 0
    # with the clock above each part reads it about equally often: summed, the two parts take about as long as
    # the straight run; a resume that restarted the count would report about half
    assert resumed["train_seconds"] > half["train_seconds"]
    assert resumed["train_seconds"] > 0.8 * straight["train_seconds"]


def test_lstm_learns_the_same_pairs(memo_run, tmp_path):
    """The baseline goes through the same recipe; 300 steps take it far past an untrained model (BLEU ~0)."""
    _, pairs, _, tsv = memo_run
    train(memo_config(tsv, family="lstm", steps=300), tmp_path / "lstm", log=lambda m: None)
    model, tok = load_translator(tmp_path / "lstm")
    r = evaluate_pairs(model, tok, [p.src for p in pairs], [p.tgt for p in pairs], "de", beam=4)
    assert r["bleu"] > 30, r["hypotheses"][:5]


def test_wall_clock_budget_stops_training(memo_run, tmp_path):
    _, _, _, tsv = memo_run
    s = train(memo_config(tsv, steps=100_000, minutes=0.02), tmp_path / "budget", log=lambda m: None)
    assert s["stopped_by_budget"] and s["steps"] < 100_000 and (tmp_path / "budget" / "train_state.pt").is_file()
    # resuming does not grant a fresh budget: the spent one stops it at the first metrics row (log_interval 10)
    again = train(memo_config(tsv, steps=100_000, minutes=0.02), tmp_path / "budget", resume=True,
                  log=lambda m: None)
    assert again["stopped_by_budget"] and again["steps"] == s["steps"] + 10


def test_load_translator_uses_the_weights_translation_json_names(memo_run, tmp_path):
    """`best: averaged` -> averaged/; otherwise the run's final weights."""
    import shutil

    import lmforge
    from lmforge.models import save_model
    run, _, _, _ = memo_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    averaged = lmforge.load(copy / "averaged")
    with torch.no_grad():
        next(averaged.parameters()).add_(1.0)  # so the two sets of weights differ for sure
    save_model(averaged, copy / "averaged")
    summary = json.loads((copy / "translation.json").read_text())
    for best, expect in (("averaged", copy / "averaged"), ("final", copy)):
        (copy / "translation.json").write_text(json.dumps({**summary, "best": best}))
        model, _ = load_translator(copy)
        ref = lmforge.load(expect)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
    assert not torch.equal(next(lmforge.load(copy).parameters()), next(averaged.parameters()))


def test_budget_stop_ends_every_process_under_torchrun(memo_run, tmp_path):
    """The budget is checked on rank 0 (callbacks run there); the other rank must stop at the same step rather
    than wait forever in its next all-reduce."""
    import os
    import signal
    import subprocess
    import sys
    _, _, _, tsv = memo_run
    cfg = tmp_path / "budget.json"
    cfg.write_text(json.dumps(memo_config(tsv, steps=100_000, minutes=0.02).to_dict()))
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "lmforge", "train", str(cfg), "--out", str(tmp_path / "run")],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too, not only torchrun
        proc.communicate()
        raise AssertionError("torchrun did not finish in 300 s: a rank is waiting for the other") from None
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads((tmp_path / "run" / "translation.json").read_text())
    assert summary["stopped_by_budget"] and summary["steps"] < 100_000
