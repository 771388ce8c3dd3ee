"""generate(slide=True): past the model's context, keep the last half and go on."""
import pytest
import torch

from lmforge.generate import generate
from lmforge.models import build_model

V, MAX_LEN = 37, 16


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("gpt", dict(vocab_size=V, max_len=MAX_LEN, d_model=32, n_heads=4, n_layers=2)).eval()
    with torch.no_grad():
        m.tok_emb.weight.mul_(4)  # fewer near-ties for greedy
    return m


def reference(model, prompt, n):
    """The rule written out: a full forward over the window for every token; when prompt + new tokens
    fill max_len, the window restarts at the last max_len // 2 tokens."""
    seq, start = list(prompt), 0
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([seq[start:]])).logits[0, -1]
            seq.append(int(logits.argmax()))
            if len(seq) - start >= MAX_LEN:
                start = len(seq) - MAX_LEN // 2
    return seq[len(prompt):]


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_past_the_context_follows_the_window_rule(model, use_cache):
    prompt = [1, 2, 3, 4, 5]
    steps = list(generate(model, prompt, max_new_tokens=50, temperature=0, slide=True, use_cache=use_cache))
    assert len(steps) == 50 > MAX_LEN
    assert [s.token for s in steps] == reference(model, prompt, 50)
    assert [s.index for s in steps] == list(range(50)) and steps[-1].finish_reason == "length"


def test_without_slide_the_context_ends_the_row(model):
    steps = list(generate(model, [1, 2, 3, 4, 5], max_new_tokens=50, temperature=0))
    assert len(steps) == MAX_LEN - 5 and steps[-1].finish_reason == "length"


def test_sliding_rows_in_a_batch_match_alone_and_seeds_reproduce(model):
    prompts = [[1, 2, 3, 4, 5, 6, 7], [9], [10, 11, 12]]
    kw = dict(max_new_tokens=40, temperature=0.9, top_k=10, seed=5, slide=True)
    batched = list(generate(model, prompts, **kw))
    for r, p in enumerate(prompts):
        alone = [s.token for s in generate(model, p, **{**kw, "seed": 5 + r})]
        assert [s.token for s in batched if s.row == r] == alone
        assert len(alone) == 40
    assert [s.token for s in generate(model, prompts[0], **kw)] == [s.token for s in generate(model, prompts[0], **kw)]
