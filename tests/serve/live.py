"""Start a real run directory and a real `lmforge serve` process for the tests."""
import lzma
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

import lmforge
from lmforge.models import build_model, save_model
from lmforge.tokenizers import CharTokenizer, save_tokenizer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_run(path, max_len=128, family="gpt", **shape):
    """A run directory: a random model of `family` + character tokenizer trained on a slice of the bundled KJV."""
    with lzma.open(Path(lmforge.__file__).parent / "data" / "corpora" / "kjv.txt.xz", "rt", encoding="utf-8") as f:
        tok = CharTokenizer.train(f.read(20000))  # no end-of-text token: texts run to max_tokens or a stop
    torch.manual_seed(0)
    save_model(build_model(family, dict(vocab_size=tok.vocab_size, max_len=max_len, **shape)), path)
    save_tokenizer(tok, path)
    return path


def start_server(run, *args):
    """`lmforge serve` in a subprocess on a free local port; returns (process, base URL) once /health answers."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "serve", str(run), "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError("server did not start: " + proc.stdout.read().decode())
        time.sleep(0.2)


