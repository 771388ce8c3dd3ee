"""Decoding outputs recorded before the one decoding protocol (issue 12): the code may change shape,
what it generates may not. Greedy and beam tokens and seeded samples must equal recorded.json exactly;
the Step numbers (log-probabilities, entropy) to 1e-5.

recorded.json was written by this file on the code before the change (main at c22c4d1):
    LMFORGE_RECORD=1 pytest tests/generate/test_recorded_decoding.py
Do not re-record to make a failing test pass: a difference here is a change in what users get.
"""
import json
import os
from pathlib import Path

import pytest
import torch

from lmforge.generate import Engine, SamplingParams, beam_search, generate
from lmforge.models import build_model

from sampling_modes import MODES  # tests/generate/sampling_modes.py

RECORDED = Path(__file__).with_name("recorded.json")


def gpt(seed, sharpen=True, **shape):
    torch.manual_seed(seed)
    m = build_model("gpt", shape).eval()
    if sharpen:
        with torch.no_grad():
            m.tok_emb.weight.mul_(4)
    return m


def record(steps):
    """Steps -> {row: [[token, rank, logprob, raw_logprob, entropy, finish_reason, [alternatives]], ...]}."""
    rows = {}
    for s in steps:
        rows.setdefault(str(s.row), []).append([s.token, s.rank, round(s.logprob, 6), round(s.raw_logprob, 6),
                                                round(s.entropy, 6), s.finish_reason,
                                                [a.token for a in s.alternatives]])
    return rows


def compute() -> dict:
    out = {}
    a = gpt(0, vocab_size=61, max_len=48, d_model=32, n_heads=4, n_layers=2)
    prompts = [[1, 2, 3, 4, 5], [7, 8], [9, 10, 11, 12, 13, 14, 15]]
    for name, kw in MODES.items():
        out[f"a/{name}"] = record(generate(a, prompts, max_new_tokens=14, seed=3, **kw))
    free = [s.token for s in generate(a, [1, 2], max_new_tokens=15, temperature=0)]
    out["a/eos"] = record(generate(a, [[1, 2], [3]], max_new_tokens=15, temperature=0.8, seed=1, eos_token_id=free[4]))
    out["a/stop"] = record(generate(a, [1, 2], max_new_tokens=15, temperature=0, stop=[[free[6], free[7]]]))
    out["a/context_full"] = record(generate(a, list(range(40)), max_new_tokens=20, temperature=0))
    engine, steps = Engine(a), []  # rows joining and leaving mid-batch
    plan = {0: ([1, 2, 3], 9, 1), 2: ([4, 5, 6, 7, 8, 9, 10, 11], 3, 2), 3: ([12], 6, 3), 6: ([13, 14], 5, 4)}
    for t in range(30):
        if t in plan:
            prompt, n, seed = plan[t]
            engine.add(prompt, SamplingParams(temperature=0.8, top_k=8), max_new_tokens=n, seed=seed)
        steps += engine.step()
    out["a/continuous"] = record(steps)
    for k, eos in ((1, None), (3, None), (4, free[2]), (6, free[5])):
        hyps = beam_search(a, [4, 5], num_beams=k, max_new_tokens=10, eos_token_id=eos)
        out[f"a/beam{k}"] = [[h.tokens, round(h.logprob, 6), round(h.score, 6)] for h in hyps]

    b = gpt(1, sharpen=False, vocab_size=97, max_len=64, d_model=48, n_heads=3, n_layers=3)
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, 97, (3, 6), generator=g).tolist()
    out["b/greedy"] = record(generate(b, prompts, max_new_tokens=40, temperature=0))
    out["b/sample"] = record(generate(b, prompts, max_new_tokens=20, temperature=1.0, seed=0))
    out["b/beam4"] = [[h.tokens, round(h.logprob, 6), round(h.score, 6)]
                      for h in beam_search(b, prompts[0], num_beams=4, max_new_tokens=12)]

    c = gpt(0, vocab_size=37, max_len=16, d_model=32, n_heads=4, n_layers=2)
    out["c/slide_greedy"] = record(generate(c, [1, 2, 3, 4, 5], max_new_tokens=50, temperature=0, slide=True))
    out["c/slide_sample"] = record(generate(c, [[1, 2, 3, 4, 5, 6, 7], [9], [10, 11, 12]], max_new_tokens=40,
                                            temperature=0.9, top_k=10, seed=5, slide=True))
    return out


def assert_close(got, want, path="", tol=1e-5):
    if isinstance(want, float):
        assert got == pytest.approx(want, abs=tol), path
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (x, y) in enumerate(zip(got, want)):
            assert_close(x, y, f"{path}[{i}]", tol)
    elif isinstance(want, dict):
        assert sorted(got) == sorted(want), path
        for k in want:
            assert_close(got[k], want[k], f"{path}/{k}", tol)
    else:
        assert got == want, path


def test_outputs_equal_the_recorded_ones():
    got = json.loads(json.dumps(compute()))  # the same types as read back from the file
    if os.environ.get("LMFORGE_RECORD"):
        RECORDED.write_text(json.dumps(got, indent=None, separators=(",", ":")) + "\n")
    assert_close(got, json.loads(RECORDED.read_text()))
