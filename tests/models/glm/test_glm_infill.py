"""lmforge.generate.infill on the glm family: Step records like every family's, the first blank exactly as the
one Engine writes it, cache on == off, later blanks after earlier ones, and the prompts it refuses."""
import pytest
import torch

from lmforge.generate import Step, filled, generate, infill
from lmforge.models import build_model

M, S, G, SOP, EOP = 1, 2, 3, 4, 5


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("glm", "glm-tiny").eval()
    with torch.no_grad():  # make <eop> likely after a few tokens, so that blanks close by themselves
        m.tok_emb.weight[EOP] *= 4
    return m


def test_first_blank_is_what_the_engine_writes(model):
    ids = [10, 11, M, 13, 14, 15, M, 17]
    fills = infill(model, ids, max_tokens=6, temperature=0.9, seed=7)
    assert all(isinstance(s, Step) for f in fills for s in f.steps)
    steps = list(generate(model, ids, max_new_tokens=len(fills[0].steps), temperature=0.9, seed=7))
    assert [s.token for s in steps] == [s.token for s in fills[0].steps]
    assert [s.raw_prob for s in steps] == pytest.approx([s.raw_prob for s in fills[0].steps], abs=1e-6)


def test_cache_on_equals_off_and_greedy_is_argmax(model):
    ids = [20, M, 22, 23, M, 25, 26, S]
    on = infill(model, ids, max_tokens=5)
    off = infill(model, ids, max_tokens=5, use_cache=False)
    assert [(f.tokens, f.finish_reason) for f in on] == [(f.tokens, f.finish_reason) for f in off]
    for f_on, f_off in zip(on, off):
        assert [s.raw_prob for s in f_on.steps] == pytest.approx([s.raw_prob for s in f_off.steps], abs=1e-5)
    assert all(s.rank == 1 for f in on for s in f.steps)
    assert len(on) == 3 and [f.position for f in on] == [1, 4, 7]
    for f in on:
        assert f.finish_reason in ("eop", "length") and len(f.tokens) <= 5
        assert (f.steps[-1].token == EOP) == (f.finish_reason == "eop")
    assert filled(ids, on) == [20, *on[0].tokens, 22, 23, *on[1].tokens, 25, 26, *on[2].tokens]


def test_later_blank_reads_the_earlier_fills(model):
    """Blank 2's first distribution after blank 1 is filled equals decoding with that fill fed by hand."""
    ids = [10, M, 12, M, 14]
    fills = infill(model, ids, max_tokens=3)
    with torch.inference_mode():
        state, out = model.prefill([ids])
        for t in fills[0].tokens + [EOP]:
            out = model.decode_step(state, torch.tensor([[t]]))
    assert fills[1].steps[0].raw_prob == pytest.approx(out.logits[0].softmax(-1)[fills[1].steps[0].token].item(),
                                                       abs=1e-5)


def test_refused_prompts(model):
    with pytest.raises(ValueError, match="the prompt has no blank"):
        infill(model, [10, 11, 12])
    with pytest.raises(ValueError, match="a blank needs text around it"):
        infill(model, [M])
    with pytest.raises(ValueError, match="a blank needs text around it"):
        infill(model, [M, G])
    with pytest.raises(ValueError, match="50 blanks in a prompt of 100 tokens need at least 200 positions"):
        infill(model, [10, M] * 50)
    with pytest.raises(ValueError, match="token ids must be in"):
        infill(model, [10, M, 999])
    with pytest.raises(ValueError, match="does not fill blanks"):
        infill(build_model("gpt", "gpt-tiny"), [10, M])


def test_a_full_context_closes_the_blanks(model):
    ids = [10] * 120 + [M, 11, M]  # 123 + <sop> = 124 of 128 positions: 4 left for part B
    fills = infill(model, ids, max_tokens=32)
    assert fills[-1].finish_reason == "length"
    assert sum(len(f.steps) for f in fills) + len(fills) - 1 <= 128 - 124 + 1
