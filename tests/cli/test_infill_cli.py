"""`lmforge infill RUN TEXT`: the filled text, `--show probs` with the same Step rows as `lmforge generate`,
--trace, and the texts it refuses, on an untrained GLM saved with a character tokenizer here."""
import json

import pytest
import torch

from lmforge.cli import main
from lmforge.data.blank import SPECIAL_TOKENS
from lmforge.generate import infill
from lmforge.models import build_model, save_model
from lmforge.tokenizers import CharTokenizer, save_tokenizer

POEM = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("glm-run")
    tok = CharTokenizer.train(POEM, special_tokens=list(SPECIAL_TOKENS))
    torch.manual_seed(0)
    model = build_model("glm", {"vocab_size": tok.vocab_size, "max_len": 64, "d_model": 32, "n_heads": 2,
                                "n_layers": 1})
    with torch.no_grad():
        model.tok_emb.weight[5] *= 3  # <eop> likely: blanks close by themselves
    save_model(model, d)
    save_tokenizer(tok, d)
    return d, tok, model.eval()


def test_filled_text_and_probs(run_dir, capsys, tmp_path):
    d, tok, model = run_dir
    text = "床前明月光，[MASK]。举头望明月，[MASK]。"
    ids = tok.encode(text, split_special=True)
    fills = infill(model, ids, max_tokens=4)
    want = text.replace("[MASK]", tok.decode(fills[0].tokens), 1).replace("[MASK]", tok.decode(fills[1].tokens), 1)
    assert main(["infill", str(d), text, "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == want
    trace = tmp_path / "steps.jsonl"
    assert main(["infill", str(d), text, "--max-new-tokens", "4", "--show", "probs", "--alternatives", "3",
                 "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "blank 1: [MASK] at token 6" in out and "blank 2: [MASK] at token" in out
    assert out.splitlines()[-1] == want
    records = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    steps = [s for f in fills for s in f.steps]
    assert [r["token"] for r in records] == [s.token for s in steps]
    assert [r["blank"] for r in records] == [f.blank for f in fills for _ in f.steps]
    assert all(len(r["alternatives"]) == 3 for r in records)
    for s in steps:  # one row per step, as `lmforge generate --show probs` prints it
        assert f"{s.raw_prob:>8.3f} {s.rank:>5} {s.entropy:>7.2f}" in out


@pytest.mark.parametrize("text, message", [
    ("床前明月光", "the text has no \\[MASK\\]"),
    ("[MASK]", "a blank needs text around it"),
    ("[MASK][MASK]", "a blank needs text around it"),
    ("床[MASK]前[MASK]月[MASK]" + "光" * 55, "3 blanks in a prompt of 61 tokens need at least 67 positions"),
    ("床前明月光[XMASK]", "the text has no"),
    ("床前明月光，[MASK]。天", "character '天'"),
])
def test_refused_texts(run_dir, capsys, text, message):
    d, _, _ = run_dir
    assert main(["infill", str(d), text]) == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)


def test_a_run_that_does_not_fill_blanks(tmp_path, capsys):
    tok = CharTokenizer.train(POEM)
    save_model(build_model("gpt", {"vocab_size": tok.vocab_size, "max_len": 32, "d_model": 32, "n_heads": 2,
                                   "n_layers": 1}), tmp_path)
    save_tokenizer(tok, tmp_path)
    assert main(["infill", str(tmp_path), "床前[MASK]光"]) == 2
    assert "infill needs a blank-infilling model" in capsys.readouterr().err
