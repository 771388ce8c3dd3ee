import lzma
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lmforge
from lmforge.models import build_model, save_model
from lmforge.tokenizers import CharTokenizer

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def served_run(tmp_path_factory):
    """A run directory: random GPT + character tokenizer trained on a slice of the bundled KJV."""
    path = tmp_path_factory.mktemp("run")
    with lzma.open(Path(lmforge.__file__).parent / "data" / "corpora" / "kjv.txt.xz", "rt", encoding="utf-8") as f:
        tok = CharTokenizer.train(f.read(20000))  # no end-of-text token: texts run to max_tokens or a stop
    torch.manual_seed(0)
    save_model(build_model("gpt", dict(vocab_size=tok.vocab_size, max_len=128, d_model=64, n_heads=4, n_layers=2)),
               path)
    tok.save(path)
    return path


@pytest.fixture(scope="session")
def server(served_run):
    """The real server: `lmforge serve` in a subprocess on a free local port. Yields its base URL."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "serve", str(served_run), "--port", str(port),
                             "--name", "tiny", "--max-tokens", "100", "--max-concurrent", "12", "--max-body", "20000"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() < deadline, "server did not start within 60 s"
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)
