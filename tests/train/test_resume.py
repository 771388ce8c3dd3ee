"""`--resume` after a real SIGKILL gives the same final weights as an uninterrupted run, bit for bit."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # same thread count in every run: same float summation order
SETS = ["--set", "train.max_steps=60", "--set", "train.save_interval=10", "--set", "train.progress=false"]


def lmforge(*args: str) -> list[str]:
    return [sys.executable, "-m", "lmforge", *args]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run(lmforge("train", str(TINY), "--out", str(full), *SETS), check=True, env=ENV, capture_output=True)

    proc = subprocess.Popen(lmforge("train", str(TINY), "--out", str(cut), *SETS), env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for line in proc.stdout:
        if line.startswith("checkpoint: step 20 "):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(cut / "train_state.pt", weights_only=True)["step"]
    assert 20 <= killed_at < 60, "the run must have been killed mid-way"

    out = subprocess.run(lmforge("train", "--resume", "--out", str(cut), "--set", "train.progress=false"),
                         check=True, env=ENV, capture_output=True, text=True)
    assert f"resumed from {cut} at step {killed_at}" in out.stdout

    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"tensor {k} differs after resume"
    sa = torch.load(full / "train_state.pt", weights_only=True)
    sb = torch.load(cut / "train_state.pt", weights_only=True)
    assert sa["step"] == sb["step"] == 60 and sa["data"] == sb["data"]
    for pid, st in sa["optimizer"]["state"].items():
        for k, v in st.items():
            assert torch.equal(v, sb["optimizer"]["state"][pid][k]), f"optimizer {k} of param {pid} differs"
    assert losses(full) == losses(cut)  # the metrics file too: no duplicated or missing rows


def losses(run: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("loss"), r.get("val_loss")) for r in rows]
