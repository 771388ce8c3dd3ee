"""Translation outputs recorded before the one decoding protocol (issue 12): greedy and beam 4 on the
tiny random encoder-decoders of tests/generate/test_seq2seq.py and on the memorising run of tests/conftest.py must
equal recorded-random.json and recorded-memo.json exactly.

The files were written by this file on the code before the change (main at c22c4d1):
    LMFORGE_RECORD=1 pytest tests/translation/test_recorded_translations.py   (now tests/generate/)
Do not re-record to make a failing test pass: a difference here is a change in what users get.
"""
import json
import os
from pathlib import Path

import torch

from lmforge.generate.seq2seq import beam_search, greedy
from lmforge.models import build_model

RECORDED = Path(__file__).parent  # recorded-random.json, recorded-memo.json
EXTRA = ["Open the file", "File not found", "Save changes before closing?", "invalid argument"]


def tiny(family):
    torch.manual_seed(3)
    preset = {"transformer": dict(vocab_size=40, max_len=64, d_model=32, n_heads=2, n_layers=1, d_ff=64, dropout=0.0),
              "lstm": dict(vocab_size=40, max_len=64, d_model=32, n_layers=1, dropout=0.0)}[family]
    return build_model(family, preset).eval()


def random_models() -> dict:
    out = {}
    for family in ("transformer", "lstm"):
        model = tiny(family)
        src = torch.randint(3, 40, (6, 9))
        src[2, 5:] = 0  # a padded row
        src[4, 3:] = 0
        out[f"{family}/greedy20"] = greedy(model, src, max_new_tokens=20)
        out[f"{family}/beam4_20"] = beam_search(model, src, beam=4, max_new_tokens=20)
        out[f"{family}/greedy"] = greedy(model, src)  # default limit: source length + 50, at most max_len
        eos_bias = torch.zeros(40)
        eos_bias[2] = 3.0  # </s> a real candidate: hypotheses end inside the limit
        hook = model.lm_head.register_forward_hook(lambda module, inputs, logits: logits + eos_bias)
        src = torch.randint(3, 40, (8, 7))
        src[1, 4:] = 0
        out[f"{family}/eos/greedy"] = greedy(model, src, max_new_tokens=12)
        for k, alpha in ((1, 0.6), (2, 1.0), (4, 0.6), (5, 0.0)):
            out[f"{family}/eos/beam{k}_{alpha}"] = beam_search(model, src, beam=k, alpha=alpha, max_new_tokens=12)
        out[f"{family}/eos/beam4"] = beam_search(model, src, beam=4)
        hook.remove()
        out.update(scaled(family))
    return out


def scaled(family) -> dict:
    """Random weights x3 and a </s> bias: outputs that vary, end at different lengths, and where beam
    search and greedy disagree (the plain tiny models above mostly repeat one token)."""
    out = {}
    torch.manual_seed(5)
    preset = {"transformer": dict(vocab_size=60, max_len=64, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0),
              "lstm": dict(vocab_size=60, max_len=64, d_model=32, n_layers=2, dropout=0.0)}[family]
    model = build_model(family, preset).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
    src = torch.randint(3, 60, (8, 11))
    src[1, 4:] = 0
    src[5, 7:] = 0
    for bias in (1.0, 2.0):
        eos_bias = torch.zeros(60)
        eos_bias[2] = bias
        hook = model.lm_head.register_forward_hook(lambda module, inputs, logits: logits + eos_bias)
        out[f"{family}/scaled{bias}/greedy"] = greedy(model, src, max_new_tokens=16)
        for k in (1, 2, 4):
            out[f"{family}/scaled{bias}/beam{k}"] = beam_search(model, src, beam=k, max_new_tokens=16)
        out[f"{family}/scaled{bias}/beam4_default_limit"] = beam_search(model, src, beam=4)
        hook.remove()
    return out


def memo(memo_run) -> dict:
    from lmforge.eval.translation import load_translator, translate
    run, pairs, _, _ = memo_run
    model, tok = load_translator(run)
    srcs = [p.src for p in pairs] + EXTRA
    return {"memo/greedy": translate(model, tok, srcs, beam=0), "memo/beam4": translate(model, tok, srcs, beam=4),
            "memo/beam4_batch5": translate(model, tok, srcs, beam=4, batch_size=5)}


def check(got: dict, name: str):
    got = json.loads(json.dumps(got))
    path = RECORDED / f"recorded-{name}.json"
    if os.environ.get("LMFORGE_RECORD"):
        path.write_text(json.dumps(got, ensure_ascii=False, separators=(",", ":")) + "\n")
    want = json.loads(path.read_text())
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key


def test_random_models_decode_as_recorded():
    check(random_models(), "random")


def test_memorising_run_translates_as_recorded(memo_run):
    check(memo(memo_run), "memo")
