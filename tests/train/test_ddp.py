"""Two processes under torchrun (DDP, gloo on CPU) follow the same loss curve as one process
with the same global batch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SETS = ["--set", "train.max_steps=20", "--set", "train.log_interval=1", "--set", "train.save_interval=0",
        "--set", "train.eval_interval=10", "--set", "model.dropout=0.0", "--set", "train.progress=false"]


def curve(run: Path) -> list[tuple[int, float, float | None]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r.get("val_loss")) for r in rows]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "lmforge", "train", str(TINY), "--out", str(one), *SETS,
                    "--set", "train.batch_size=8"], check=True, env=ENV, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "lmforge", "train", str(TINY), "--out", str(two), *SETS, "--set", "train.batch_size=4"],
                         env=ENV, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "global batch 8 x 32 tokens over 2 processes" in out.stdout
    a, b = curve(one), curve(two)
    assert [r[0] for r in a] == [r[0] for r in b] == list(range(1, 21))
    for (step, la, va), (_, lb, vb) in zip(a, b):
        assert lb == pytest.approx(la, abs=2e-5), f"train loss differs at step {step}"
        assert (va is None) == (vb is None) and (va is None or vb == pytest.approx(va, abs=2e-5))
    assert a[-1][1] < a[0][1]  # and it is a curve that goes down, not a constant
    tokens = [[json.loads(line)["tokens"] for line in (run / "metrics.jsonl").read_text().splitlines()]
              for run in (one, two)]
    assert tokens[0] == tokens[1] == [s * 8 * 32 for s in range(1, 21)]  # both processes' tokens counted


STOP_AND_METRICS = '''
import json, os, sys
import numpy as np, torch
from lmforge.config import TrainConfig
from lmforge.data.sampler import RandomWindows
from lmforge.models import build_model
from lmforge.objectives import LossOutput
from lmforge.train.loop import Trainer

rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
torch.manual_seed(0)
model = build_model("gpt", {"vocab_size": 11, "max_len": 8, "d_model": 8, "n_heads": 2, "n_layers": 1})
tokens = np.random.default_rng(0).integers(0, 11, 500).astype(np.uint16)

def loss_fn(model, batch):
    x, y = batch
    return LossOutput(model(x, targets=y).loss, {"rank": float(rank)})  # differs per process: the row has the mean

def stop_at_3(trainer, row):
    if row["step"] == 3:
        trainer.request_stop("rank 0 says so")

cfg = TrainConfig(max_steps=50, batch_size=2, log_interval=1, dtype="fp32", progress=False, eval_interval=2,
                  eval_steps=1, save_interval=0)
t = Trainer(model, cfg, RandomWindows(tokens, 8, 2, rank=rank, world_size=world),
            RandomWindows(tokens, 8, 2, seed=1, rank=rank, world_size=world), out_dir=sys.argv[1],
            loss_fn=loss_fn, callbacks=[stop_at_3], log=lambda s: None)
t.fit()
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
    json.dump({"step": t.step, "reason": t.stop_reason, "rows": t.metrics}, f)
torch.distributed.destroy_process_group()
'''


def test_a_stop_on_rank_0_ends_every_rank_and_metrics_are_averaged_over_ranks(tmp_path):
    """Callbacks run on rank 0; its stop request reaches rank 1 at the same step (else rank 1 would wait forever in
    the next all-reduce). A metric that differs per process is logged as its mean, like the loss."""
    script = tmp_path / "run.py"
    script.write_text(STOP_AND_METRICS)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), str(tmp_path / "run")], env=ENV, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [json.loads((tmp_path / "run" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["step"] for r in ranks] == [3, 3] and [r["reason"] for r in ranks] == ["rank 0 says so"] * 2
    rows = ranks[0]["rows"]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["rank"] == 0.5 for r in rows)
    assert rows[1]["val_rank"] == 0.5 and "val_rank" not in rows[0]
    untimed = [[{k: v for k, v in r.items() if k not in ("step_s", "elapsed_s")} for r in rank["rows"]] for rank in ranks]
    assert untimed[0] == untimed[1]  # rank 1 computed the same rows (only rank 0 writes them)
