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
