"""Sharded training (train.parallel=fsdp, FSDP2 on gloo): 2 processes follow 1 process with the same global
batch, the checkpoint is an ordinary full one, and resuming is exact, from and to unsharded runs too."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import lmforge
from lmforge.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SETS = ["--set", "train.max_steps=20", "--set", "train.log_interval=1", "--set", "train.save_interval=0",
        "--set", "train.eval_interval=10", "--set", "model.dropout=0.0", "--set", "train.progress=false"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
# Gathers and reduce-scatters sum in another order than one process does: fp32 rounding, which 20 AdamW
# steps carry into the weights (measured: losses within 1e-6, weights within 2e-6 on a 2-core AMD EPYC).
LOSS_TOL, WEIGHT_TOL = 2e-5, 2e-5


def curve(run: Path) -> list[tuple[int, float, float | None]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r.get("val_loss")) for r in rows]


def max_weight_difference(a: Path, b: Path) -> float:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert sorted(wa) == sorted(wb)
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


# the open decoders: grouped-query attention (4 query heads, 2 key/value heads), RoPE, SwiGLU, an untied head
LLAMA = ["--set", "model.family=llama", "--set", "model.preset=llama-tiny", "--set", "model.n_heads=4"]


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_two_sharded_processes_match_one_with_the_same_global_batch(tmp_path, family):
    plain, one, two = tmp_path / "plain", tmp_path / "one", tmp_path / "two"
    sets = SETS + (LLAMA if family == "llama" else [])
    subprocess.run([sys.executable, "-m", "lmforge", "train", str(TINY), "--out", str(plain), *sets,
                    "--set", "train.batch_size=8"], check=True, env=ENV, capture_output=True)
    runs = [two]
    if family == "gpt":  # one process, sharded over a group of one (no torchrun): the code path of a one-GPU machine
        out = subprocess.run([sys.executable, "-m", "lmforge", "train", str(TINY), "--out", str(one), *sets,
                              "--set", "train.batch_size=8", "--set", "train.parallel=fsdp"],
                             env=ENV, capture_output=True, text=True, timeout=240)
        assert out.returncode == 0, out.stderr[-3000:]
        runs.append(one)
    out = subprocess.run([*TORCHRUN, "-m", "lmforge", "train", str(TINY), "--out", str(two), *sets,
                          "--set", "train.batch_size=4", "--set", "train.parallel=fsdp"],
                         env=ENV, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "global batch 8 x 32 tokens over 2 processes, model sharded (fsdp)" in out.stdout
    assert json.loads((two / "config.json").read_text())["family"] == family
    a = curve(plain)
    assert a[-1][1] < a[0][1]  # a curve that goes down, not a constant
    for run in runs:
        b = curve(run)
        assert [r[0] for r in b] == [r[0] for r in a] == list(range(1, 21))
        for (step, la, va), (_, lb, vb) in zip(a, b):
            assert lb == pytest.approx(la, abs=LOSS_TOL), f"{run.name}: train loss differs at step {step}"
            assert (va is None) == (vb is None) and (va is None or vb == pytest.approx(va, abs=LOSS_TOL))
        assert max_weight_difference(plain, run) < WEIGHT_TOL

    # an ordinary checkpoint: the same config, every tensor whole, the optimizer state in torch's own format
    assert json.loads((two / "config.json").read_text()) == json.loads((plain / "config.json").read_text())
    sa, sb = (torch.load(r / "train_state.pt", weights_only=True) for r in (plain, two))
    assert sb["optimizer"]["param_groups"] == sa["optimizer"]["param_groups"]
    assert sorted(sb["optimizer"]["state"]) == sorted(sa["optimizer"]["state"])
    for i, s in sa["optimizer"]["state"].items():
        for k in ("exp_avg", "exp_avg_sq"):  # numbered alike: each moment matches the same parameter's
            assert s[k].shape == sb["optimizer"]["state"][i][k].shape
            torch.testing.assert_close(sb["optimizer"]["state"][i][k], s[k], atol=WEIGHT_TOL, rtol=0)
    # and lmforge.load reads it like any run directory
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    torch.testing.assert_close(lmforge.load(two)(ids).logits, lmforge.load(plain)(ids).logits, atol=1e-4, rtol=0)


RESUME = '''
import os, shutil, sys
import numpy as np, torch
from lmforge.config import TrainConfig
from lmforge.data.sampler import RandomWindows
from lmforge.models import build_model
from lmforge.train.loop import Trainer

out = sys.argv[1]
rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
tokens = np.random.default_rng(0).integers(0, 11, 2000).astype(np.uint16)

def trainer(run, parallel, max_steps=6, stop_at=None):
    torch.manual_seed(0)  # the same initial weights in every run
    model = build_model("gpt", {"vocab_size": 11, "max_len": 8, "d_model": 16, "n_heads": 2, "n_layers": 2,
                                "dropout": 0.0})
    cfg = TrainConfig(max_steps=max_steps, batch_size=4 // world, lr=1e-2, warmup_steps=2, log_interval=1,
                      dtype="fp32", progress=False, eval_interval=0, save_interval=0, parallel=parallel)
    stop = [lambda t, row: row["step"] == stop_at and t.request_stop("halfway")] if stop_at else []
    return Trainer(model, cfg, RandomWindows(tokens, 8, 4 // world, rank=rank, world_size=world),
                   out_dir=os.path.join(out, run), callbacks=stop, log=lambda s: None)

def barrier():
    if torch.distributed.is_initialized():
        torch.distributed.barrier()

if sys.argv[2] == "plain":  # one process, unsharded: a checkpoint at step 3
    trainer("plain", "ddp", stop_at=3).fit()
else:  # two processes, sharded
    trainer("straight", "fsdp").fit()
    trainer("halves", "fsdp", stop_at=3).fit()
    if rank == 0:
        shutil.copytree(os.path.join(out, "halves"), os.path.join(out, "halves-at-3"))
    barrier()
    trainer("halves", "fsdp").fit(resume=True)
    if rank == 0:
        shutil.copytree(os.path.join(out, "plain"), os.path.join(out, "plain-then-fsdp"))
    barrier()
    trainer("plain-then-fsdp", "fsdp").fit(resume=True)
    torch.distributed.destroy_process_group()
'''


def test_resume_is_exact_and_checkpoints_move_between_sharded_and_unsharded_runs(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RESUME)
    out = subprocess.run([sys.executable, str(script), str(tmp_path), "plain"], env=ENV, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    out = subprocess.run([*TORCHRUN, str(script), str(tmp_path), "fsdp"], env=ENV, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    straight = tmp_path / "straight"
    # 3 steps, a new Trainer, resume, 3 more == 6 straight, bit for bit (same processes, same sums)
    assert max_weight_difference(straight, tmp_path / "halves") == 0.0
    # a checkpoint of an unsharded run, resumed sharded; and a sharded one resumed by one unsharded process
    assert max_weight_difference(straight, tmp_path / "plain-then-fsdp") < WEIGHT_TOL
    shutil.rmtree(tmp_path / "plain")
    shutil.copytree(tmp_path / "halves-at-3", tmp_path / "plain")  # the script's "plain" run, resumed from it
    script.write_text(RESUME.replace('trainer("plain", "ddp", stop_at=3).fit()',
                                     'trainer("plain", "ddp").fit(resume=True)'))
    out = subprocess.run([sys.executable, str(script), str(tmp_path), "plain"], env=ENV, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert max_weight_difference(straight, tmp_path / "plain") < WEIGHT_TOL
    assert json.loads((tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 6


def test_parallel_must_be_ddp_or_fsdp():
    with pytest.raises(ValueError, match=r"parallel='zero3' is not allowed. Allowed values: 'ddp', 'fsdp'"):
        TrainConfig.from_dict({"parallel": "zero3"})


def test_fsdp_needs_a_blocks_list():
    from lmforge.train.dist import shard

    with pytest.raises(ValueError, match=r"Sequential has none; use train.parallel=ddp"):
        shard(torch.nn.Sequential(torch.nn.Linear(2, 2)), torch.device("cpu"))


def test_the_translation_recipe_refuses_fsdp(tmp_path):
    from lmforge.train.recipes import load_run_config
    from lmforge.train.recipes.translation import run

    cfg = load_run_config(ROOT / "configs" / "translate-en-de.yaml", ["train.parallel=fsdp"])
    with pytest.raises(ValueError, match=r"saves and averages weight snapshots from one process.*use train.parallel=ddp"):
        run(cfg, tmp_path / "run")
