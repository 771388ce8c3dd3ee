"""generate(): cache == recompute, batched == one by one, greedy == Hugging Face, seeds, stops, cancel."""
import threading

import pytest
import torch

from lmforge.generate import Engine, SamplingParams, beam_search, first_divergence, generate
from lmforge.models import build_model

from sampling_modes import MODES  # tests/generate/sampling_modes.py

V = 61


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("gpt", dict(vocab_size=V, max_len=48, d_model=32, n_heads=4, n_layers=2)).eval()
    with torch.no_grad():  # sharpen the random model a little so greedy has no near-ties
        m.tok_emb.weight.mul_(4)
    return m


def run(model, ids, **kw):
    steps = list(generate(model, ids, **kw))
    rows = {}
    for s in steps:
        rows.setdefault(s.row, []).append(s)
    return [rows[r] for r in sorted(rows)]


def assert_same(a, b, tol=1e-4):
    assert [s.token for s in a] == [s.token for s in b]
    for x, y in zip(a, b):
        assert abs(x.raw_logprob - y.raw_logprob) <= tol and abs(x.logprob - y.logprob) <= tol
        assert [t.token for t in x.alternatives] == [t.token for t in y.alternatives]
        assert max(abs(t.raw_prob - u.raw_prob) for t, u in zip(x.alternatives, y.alternatives)) <= tol


@pytest.mark.parametrize("mode", MODES)
def test_cache_on_equals_cache_off(model, mode):
    prompts = [[1, 2, 3, 4, 5], [7, 8]]
    on = run(model, prompts, max_new_tokens=12, seed=3, **MODES[mode])
    off = run(model, prompts, max_new_tokens=12, seed=3, use_cache=False, **MODES[mode])
    for a, b in zip(on, off):
        assert_same(a, b)


@pytest.mark.parametrize("mode", ["greedy", "top_p", "penalties", "no_repeat"])
def test_batched_equals_one_by_one(model, mode):
    prompts = [[1, 2, 3, 4, 5, 6, 7], [9], [10, 11, 12]]
    batched = run(model, prompts, max_new_tokens=10, seed=11, **MODES[mode])
    for r, p in enumerate(prompts):
        (alone,) = run(model, p, max_new_tokens=10, seed=11 + r, **MODES[mode])
        assert_same(batched[r], alone)


def test_rows_joining_and_leaving_mid_batch_match_alone(model):
    """Continuous batching: a row's tokens do not depend on when it joined or who else is running."""
    params = SamplingParams(temperature=0.8, top_k=8)
    engine = Engine(model)
    plan = {0: ([1, 2, 3], 9, 1), 2: ([4, 5, 6, 7, 8, 9, 10, 11], 3, 2), 3: ([12], 6, 3), 6: ([13, 14], 5, 4)}
    seqs, steps = [], {}
    for t in range(40):
        if t in plan:
            prompt, n, seed = plan[t]
            seqs.append((engine.add(prompt, params, max_new_tokens=n, seed=seed), prompt, n, seed))
        for s in engine.step():
            steps.setdefault(s.row, []).append(s)
    assert not engine.active and engine.mask.numel() == 0
    for seq, prompt, n, seed in seqs:
        (alone,) = run(model, prompt, max_new_tokens=n, seed=seed, temperature=0.8, top_k=8)
        assert_same(steps[seq.id], alone)
        assert seq.finish_reason == "length" and len(seq.tokens) == n


def test_greedy_equals_full_recompute_argmax_and_step_fields(model):
    prompt = [5, 4, 3]
    (steps,) = run(model, prompt, max_new_tokens=8, temperature=0, need_weights=True, alternatives=V)
    ids = torch.tensor([prompt + [s.token for s in steps]])
    with torch.no_grad():
        out = model(ids, need_weights=True)
    logp = out.logits[0].log_softmax(-1)
    for i, s in enumerate(steps):
        row = logp[len(prompt) - 1 + i]
        assert s.token == row.argmax().item() and s.rank == 1 and s.prob == 1.0 and s.logprob == 0.0
        assert s.raw_logprob == pytest.approx(row[s.token].item(), abs=1e-5)
        assert s.entropy == pytest.approx(-(row.exp() * row).sum().item(), abs=1e-5)
        assert sum(a.raw_prob for a in s.alternatives) == pytest.approx(1.0, abs=1e-5)
        assert [a.prob for a in s.alternatives].count(1.0) == 1
        q = len(prompt) - 1 + i  # attention of this step's query over the S = q + 1 tokens so far
        assert s.attention.shape == (2, 4, q + 1)
        ref = torch.stack([a[0, :, q, :q + 1] for a in out.attentions])
        torch.testing.assert_close(s.attention, ref, atol=1e-5, rtol=1e-5)


def test_sampled_step_probabilities_are_the_processed_distribution(model):
    (steps,) = run(model, [1, 2], max_new_tokens=6, temperature=0.5, top_k=4, seed=0, alternatives=V)
    for s in steps:
        kept = [a for a in s.alternatives if a.removed_by is None]
        assert len(kept) == 4 and s.removed == {"top_k": V - 4}
        assert sum(a.prob for a in kept) == pytest.approx(1.0, abs=1e-5)
        raw = torch.tensor([a.raw_prob for a in kept]).log() / 0.5  # temperature 0.5 on the kept raw probs
        torch.testing.assert_close(torch.tensor([a.prob for a in kept]), raw.softmax(-1), atol=1e-5, rtol=1e-4)
        assert s.token in [a.token for a in kept] and s.rank <= 4


def test_greedy_matches_hugging_face_generate(tmp_path):
    transformers = pytest.importorskip("transformers")
    from lmforge.convert.hf import save_hf
    torch.manual_seed(1)
    ours = build_model("gpt", dict(vocab_size=97, max_len=64, d_model=48, n_heads=3, n_layers=3)).eval()
    save_hf(ours, tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    prompts = torch.randint(0, 97, (3, 6))
    with torch.no_grad():
        ref = hf.generate(prompts, max_new_tokens=40, do_sample=False, pad_token_id=0, eos_token_id=None)[:, 6:]
    for r, p in enumerate(prompts):
        assert [s.token for s in generate(ours, p, max_new_tokens=40, temperature=0)] == ref[r].tolist()


def test_same_seed_same_tokens_and_regenerate_diverges(model):
    a = [s.token for s in generate(model, [1, 2, 3], max_new_tokens=20, seed=42)]
    b = [s.token for s in generate(model, [1, 2, 3], max_new_tokens=20, seed=42)]
    c = [s.token for s in generate(model, [1, 2, 3], max_new_tokens=20, seed=43)]
    assert a == b and a != c
    i = first_divergence(a, c)
    assert a[:i] == c[:i] and a[i] != c[i]
    assert first_divergence([5, 6, 7], [5, 6, 9]) == 2 and first_divergence([5, 6], [5, 6, 7]) == 2
    assert first_divergence([1], [1]) is None


def test_eos_stop_sequences_and_length(model):
    free = [s.token for s in generate(model, [1, 2], max_new_tokens=15, temperature=0)]
    eos = free[4]
    steps = list(generate(model, [1, 2], max_new_tokens=15, temperature=0, eos_token_id=eos))
    assert [s.token for s in steps] == free[:free.index(eos) + 1] and steps[-1].finish_reason == "eos"
    steps = list(generate(model, [1, 2], max_new_tokens=15, temperature=0, stop=[[free[6], free[7]]]))
    assert len(steps) <= 8 and steps[-1].finish_reason == "stop" and [s.token for s in steps[-2:]] == free[6:8]
    steps = list(generate(model, [1, 2], max_new_tokens=5, temperature=0))
    assert len(steps) == 5 and steps[-1].finish_reason == "length" and all(s.finish_reason is None for s in steps[:-1])
    # the context (max_len 48) caps generation: 45-token prompt -> 3 new tokens
    steps = list(generate(model, list(range(45)), max_new_tokens=50, temperature=0))
    assert len(steps) == 3 and steps[-1].finish_reason == "length"


def test_leaving_the_loop_stops_and_cancel_stops_within_one_step(model):
    it = generate(model, [1, 2], max_new_tokens=40)
    assert [next(it).index for _ in range(3)] == [0, 1, 2]
    it.close()  # streaming consumer went away: nothing more is computed

    cancel, seen, at_cancel = threading.Event(), [], []
    got_three = threading.Event()

    def consume():
        for s in generate(model, [1, 2], max_new_tokens=40, cancel=cancel):
            seen.append(s.index)
            if len(seen) == 3:
                got_three.set()
                while not cancel.is_set():  # hold the stream here until the other thread cancels
                    cancel.wait(0.01)

    t = threading.Thread(target=consume)
    t.start()
    assert got_three.wait(30)
    at_cancel.append(len(seen))
    cancel.set()
    t.join(30)
    assert not t.is_alive() and len(seen) <= at_cancel[0] + 1 < 40


@pytest.mark.parametrize("kwargs, match", [
    (dict(ids=[]), "prompt is empty"),
    (dict(ids=list(range(48))), r"prompt is 48 tokens but the model's context \(max_len\) is 48"),
    (dict(max_new_tokens=0), r"max_new_tokens must be an integer >= 1, got 0"),
    (dict(top_k=-1), r"top_k must be an integer >= 0"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(temperature=-1), r"temperature must be >= 0"),
    (dict(stop="\n\n"), "stop must be a list of token-id sequences"),
    (dict(stop=[[]]), "stop must be a list of token-id sequences"),
    (dict(ids=[1, 99]), r"token id 99; token ids must be in \[0, 60\]"),
])
def test_bad_input_is_refused_with_the_parameter_and_range(model, kwargs, match):
    kwargs = {"ids": [1, 2], **kwargs}
    with pytest.raises(ValueError, match=match):
        generate(model, **kwargs)


def test_beam_search(model):
    greedy = [s.token for s in generate(model, [1, 2, 3], max_new_tokens=6, temperature=0)]
    assert beam_search(model, [1, 2, 3], num_beams=1, max_new_tokens=6)[0].tokens == greedy
    # enough beams to be exhaustive over 3 steps (61 ** 2 prefixes): equals brute force
    small = build_model("gpt", dict(vocab_size=6, max_len=16, d_model=16, n_heads=2, n_layers=1)).eval()
    best = beam_search(small, [1, 2], num_beams=36, max_new_tokens=3)[0]
    with torch.no_grad():
        seqs = torch.cartesian_prod(*[torch.arange(6)] * 3)  # (216, 3)
        ids = torch.cat([torch.tensor([[1, 2]]).expand(216, 2), seqs], dim=1)
        logp = small(ids).logits.log_softmax(-1)[:, 1:-1].gather(-1, seqs[..., None]).squeeze(-1).sum(-1)
    assert best.tokens == seqs[logp.argmax()].tolist() and best.logprob == pytest.approx(logp.max().item(), abs=1e-4)
    on = beam_search(model, [4, 5], num_beams=4, max_new_tokens=8, eos_token_id=greedy[2])
    off = beam_search(model, [4, 5], num_beams=4, max_new_tokens=8, eos_token_id=greedy[2], use_cache=False)
    assert [h.tokens for h in on] == [h.tokens for h in off]
    assert [h.score for h in on] == sorted([h.score for h in on], reverse=True)


def test_processors_take_effect_in_the_engine(model):
    """Not only cache == no cache: each processor changes what is generated, as it says."""
    prompt = [1, 2, 3, 4, 5]
    banned = [s.token for s in generate(model, prompt, max_new_tokens=30, temperature=1.0, seed=0)]
    top = max(set(banned), key=banned.count)  # the token this model samples most
    out = [s.token for s in generate(model, prompt, max_new_tokens=30, temperature=1.0, seed=0, banned_tokens=[top])]
    assert top not in out
    assert {s.token for s in generate(model, prompt, max_new_tokens=8, temperature=0, logit_bias={7: 100.0})} == {7}
    out = [s.token for s in generate(model, prompt, max_new_tokens=30, temperature=0, no_repeat_ngram_size=2)]
    grams = list(zip(prompt + out, (prompt + out)[1:]))
    assert len(grams) == len(set(grams))  # no bigram twice, the prompt's included
    greedy = [s.token for s in generate(model, prompt, max_new_tokens=30, temperature=0)]
    out = [s.token for s in generate(model, prompt, max_new_tokens=30, temperature=0, presence_penalty=2.0,
                                     frequency_penalty=2.0)]
    # counts are updated every step: each repeat costs 2 more, so no token comes back as often as in greedy
    assert max(map(out.count, out)) < max(map(greedy.count, greedy))


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_batched_engine_packs_its_weights_and_gives_the_same_tokens():
    """A batch of 4 rows on a model with 384-wide matrices: the Engine keeps packed weight copies
    (lmforge.kernels.packed) and greedy tokens equal those computed without packing."""
    from lmforge.kernels import set_packing
    from lmforge.kernels.tune import forced
    torch.manual_seed(0)
    big = build_model("gpt", dict(vocab_size=50, max_len=64, d_model=384, n_heads=6, n_layers=1)).eval()
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]]

    def run():
        engine = Engine(big)
        rows = [engine.add(p, SamplingParams(temperature=0), max_new_tokens=12) for p in prompts]
        while engine.active:
            engine.step()
        return [r.tokens for r in rows], engine

    with forced("packed"):  # as where packing is timed fastest
        packed, engine = run()
    assert len(engine.packs) > 0 and all(entry[3] is not None for entry in engine.packs.values())
    set_packing(False)
    try:
        plain, engine = run()
    finally:
        set_packing(True)
    assert len(engine.packs) == 0 and packed == plain
