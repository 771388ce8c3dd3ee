"""The one Engine and beam search on encoder-decoder models (the prompt is the source, the Steps are the
target): the same invariants as for the GPT (cache == recompute, batched == alone, rows joining mid-batch
== alone, seeds, eos/stop/length, cancel), the Step numbers against a full forward, cross-attention."""
import threading

import pytest
import torch

from lmforge.generate import Engine, SamplingParams, beam_search, generate
from lmforge.generate.seq2seq import greedy
from lmforge.models import build_model
from lmforge.models.protocol import DecodingModel

V = 60
FAMILIES = ["transformer", "lstm"]
SOURCES = [[5, 6, 7, 8, 9, 2], [10, 11, 2], [12, 13, 14, 15, 16, 17, 18, 19, 2]]


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    torch.manual_seed(5)
    shape = {"transformer": dict(n_heads=4, n_layers=2, d_ff=64), "lstm": dict(n_layers=2)}[request.param]
    m = build_model(request.param, dict(vocab_size=V, max_len=32, d_model=32, dropout=0.0, **shape)).eval()
    with torch.no_grad():  # random weights x3: outputs that vary from token to token, fewer near-ties
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
    return m


def rows(steps):
    out = {}
    for s in steps:
        out.setdefault(s.row, []).append(s)
    return [out[r] for r in sorted(out)]


def assert_same(a, b, tol=1e-4):
    assert [s.token for s in a] == [s.token for s in b]
    for x, y in zip(a, b):
        assert abs(x.raw_logprob - y.raw_logprob) <= tol and abs(x.logprob - y.logprob) <= tol
        assert [t.token for t in x.alternatives] == [t.token for t in y.alternatives]


MODES = {"greedy": dict(temperature=0), "top_p": dict(temperature=1.2, top_p=0.8),
         "penalties": dict(temperature=0.9, repetition_penalty=1.3, frequency_penalty=0.5),
         "no_repeat": dict(temperature=0, no_repeat_ngram_size=2, banned_tokens=[3])}


def test_the_three_families_implement_the_protocol(model):
    gpt = build_model("gpt", dict(vocab_size=V, max_len=32, d_model=32, n_heads=4, n_layers=1))
    assert isinstance(model, DecodingModel) and isinstance(gpt, DecodingModel)
    assert model.decoder_start == model.config.bos_id and gpt.decoder_start is None


@pytest.mark.parametrize("mode", MODES)
def test_cache_on_equals_off_and_batched_equals_alone(model, mode):
    batched = rows(generate(model, SOURCES, max_new_tokens=10, seed=7, **MODES[mode]))
    off = rows(generate(model, SOURCES, max_new_tokens=10, seed=7, use_cache=False, **MODES[mode]))
    for r, src in enumerate(SOURCES):
        (alone,) = rows(generate(model, src, max_new_tokens=10, seed=7 + r, **MODES[mode]))
        assert_same(batched[r], alone)
        assert_same(off[r], alone)


def test_rows_joining_and_leaving_mid_batch_match_alone(model):
    """Continuous batching: sources of other lengths, decoders at other positions (left-padded)."""
    params = SamplingParams(temperature=0.8, top_k=8)
    engine = Engine(model)
    plan = {0: (SOURCES[0], 9, 1), 2: (SOURCES[2], 3, 2), 3: (SOURCES[1], 6, 3), 6: ([20, 21, 2], 5, 4)}
    seqs, steps = [], {}
    for t in range(30):
        if t in plan:
            src, n, seed = plan[t]
            seqs.append((engine.add(src, params, max_new_tokens=n, seed=seed), src, n, seed))
        for s in engine.step():
            steps.setdefault(s.row, []).append(s)
    assert not engine.active and engine.mask.numel() == 0
    for seq, src, n, seed in seqs:
        (alone,) = rows(generate(model, src, max_new_tokens=n, seed=seed, temperature=0.8, top_k=8))
        assert_same(steps[seq.id], alone)
        assert seq.finish_reason == "length" and len(seq.tokens) == n


def test_greedy_steps_against_a_full_forward_with_cross_attention(model):
    src = SOURCES[0]
    (steps,) = rows(generate(model, src, max_new_tokens=8, temperature=0, need_weights=True, alternatives=V))
    tgt = [model.config.bos_id] + [s.token for s in steps[:-1]]
    with torch.no_grad():
        out = model(torch.tensor([src]), torch.tensor([tgt]), need_weights=True)
    logp = out.logits[0].log_softmax(-1)
    for i, s in enumerate(steps):
        assert s.token == logp[i].argmax().item() and s.rank == 1 and s.prob == 1.0
        assert s.raw_logprob == pytest.approx(logp[i, s.token].item(), abs=1e-4)
        assert s.entropy == pytest.approx(-(logp[i].exp() * logp[i]).sum().item(), abs=1e-4)
        ref = torch.stack([a[0, :, i] for a in out.cross_attentions])  # (n_layers, nh, S): query i over the source
        assert s.cross_attention.shape == ref.shape and ref.shape[-1] == len(src)
        torch.testing.assert_close(s.cross_attention, ref, atol=1e-4, rtol=1e-4)
        if out.attentions is not None:  # the Transformer's decoder self-attention over <s> + the target so far
            torch.testing.assert_close(s.attention, torch.stack([a[0, :, i, :i + 1] for a in out.attentions]),
                                       atol=1e-4, rtol=1e-4)
        else:
            assert s.attention is None  # the LSTM has none


def test_generate_greedy_is_seq2seq_greedy_and_beam_one(model):
    src = torch.zeros(3, 9, dtype=torch.long)
    for r, s in enumerate(SOURCES):
        src[r, :len(s)] = torch.tensor(s)
    eos = 7  # a frequent token of these models, so rows end at different steps
    expected = []
    for s in SOURCES:
        toks = [st.token for st in generate(model, s, max_new_tokens=12, temperature=0, eos_token_id=eos)]
        expected.append(toks)
        assert beam_search(model, s, num_beams=1, max_new_tokens=12, eos_token_id=eos)[0].tokens == toks
    model.config.eos_id, old = eos, model.config.eos_id
    try:
        assert greedy(model, src, max_new_tokens=12) == [t[:-1] if t[-1] == eos else t for t in expected]
    finally:
        model.config.eos_id = old


def test_eos_stop_length_seeds_and_cancel(model):
    free = [s.token for s in generate(model, SOURCES[0], max_new_tokens=12, temperature=0)]
    steps = list(generate(model, SOURCES[0], max_new_tokens=12, temperature=0, eos_token_id=free[3]))
    assert [s.token for s in steps] == free[:free.index(free[3]) + 1] and steps[-1].finish_reason == "eos"
    steps = list(generate(model, SOURCES[0], max_new_tokens=12, temperature=0, stop=[[free[5], free[6]]]))
    assert steps[-1].finish_reason == "stop" and [s.token for s in steps[-2:]] == free[5:7]
    # the decoder's max_len (32) bounds the target: <s> and every new token but the last
    steps = list(generate(model, SOURCES[0], max_new_tokens=100, temperature=0))
    assert len(steps) == 32 and steps[-1].finish_reason == "length"
    a, b, c = ([s.token for s in generate(model, SOURCES[1], max_new_tokens=15, seed=k)] for k in (1, 1, 2))
    assert a == b and a != c
    cancel = threading.Event()
    seen = []
    for s in generate(model, SOURCES[1], max_new_tokens=20, cancel=cancel):
        seen.append(s)
        if len(seen) == 3:
            cancel.set()
    assert len(seen) == 3


def test_bad_input_is_refused(model):
    with pytest.raises(ValueError, match="slide applies to decoder-only models"):
        generate(model, SOURCES[0], slide=True)
    with pytest.raises(ValueError, match="source is 33 tokens but the encoder reads at most max_len = 32"):
        generate(model, list(range(3, 36)))
    with pytest.raises(ValueError, match="source is empty"):
        generate(model, [])
    with pytest.raises(ValueError, match=r"source has token id 60; token ids must be in \[0, 59\]"):
        beam_search(model, [5, 60])
