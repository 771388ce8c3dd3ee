"""lmforge serve --weights int8: the server decodes with the int8 model."""
import httpx
import torch

import lmforge
from lmforge.generate import generate
from lmforge.tokenizers import load_tokenizer
from live import start_server


def test_serve_with_int8_weights_answers_as_the_int8_model(served_run):
    proc, url = start_server(served_run, "--name", "tiny", "--weights", "int8")
    try:
        r = httpx.post(url + "/v1/completions", timeout=120,
                       json={"model": "tiny", "prompt": "And God", "max_tokens": 12, "temperature": 0})
        assert r.status_code == 200, r.text
        text = r.json()["choices"][0]["text"]
    finally:
        proc.terminate()
        proc.wait(10)
    tok = load_tokenizer(served_run)
    model = lmforge.quantize(lmforge.load(served_run).eval(), "int8")
    with torch.no_grad():
        expected = tok.decode([s.token for s in generate(model, tok.encode("And God"), max_new_tokens=12,
                                                         temperature=0)])
    assert text == expected
