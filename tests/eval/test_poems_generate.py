"""A model's poems for held-out titles: generation is deterministic with a seed and does not depend on the
batch, the reported rates are the scorer's, and a prompt that leaves no room is refused by name."""
import pytest
import torch

from lmforge.data import chat, poems
from lmforge.eval.poems import distinct_n, evaluate_poems, generate_poems, max_new_tokens, score
from lmforge.models import build_model
from lmforge.models.gpt.config import GPTConfig
from lmforge.tokenizers import CharTokenizer


@pytest.fixture(scope="module")
def model_and_tok():
    text = "".join(poems.SYSTEM_PROMPT + e.prompt + e.answer + "\n" for e in poems.examples("test"))
    tok = CharTokenizer.train(text, special_tokens=chat.CHAT_SPECIAL_TOKENS)
    torch.manual_seed(0)
    model = build_model("gpt", GPTConfig(vocab_size=tok.vocab_size, max_len=160, d_model=16, n_heads=2, n_layers=1))
    return model.eval(), tok


def test_seeded_and_independent_of_the_batch(model_and_tok):
    model, tok = model_and_tok
    examples = poems.examples("test")[:3]
    a = generate_poems(model, tok, examples, n=2, seed=5)
    assert a == generate_poems(model, tok, examples, n=2, seed=5)
    assert a != generate_poems(model, tok, examples, n=2, seed=6)
    # example 2 alone, with the seed its rows had in the batch (seed + 2 * n)
    assert generate_poems(model, tok, examples[2:], n=2, seed=5 + 4) == a[2:]
    greedy = generate_poems(model, tok, examples[:1], n=3, temperature=0)
    assert greedy[0][0] == greedy[0][1] == greedy[0][2]
    def n_tokens(text):  # characters, a special token counting once
        return len(text) - sum(text.count(m) * (len(m) - 1) for m in chat.CHAT_SPECIAL_TOKENS)
    assert all(n_tokens(t) <= max_new_tokens(e.form) for e, ts in zip(examples, a) for t in ts)


def test_rates_are_the_scorers(model_and_tok):
    model, tok = model_and_tok
    examples = poems.examples("test")[:4]
    r = evaluate_poems(model, tok, examples, n=2, seed=0)
    scores = [score(s["text"], s["form"]) for s in r["samples"]]
    assert r["n"] == 8 and r["titles"] == 4
    assert r["mean_score"] == pytest.approx(sum(s.score for s in scores) / 8)
    assert r["rhyme_rate"] == pytest.approx(sum(s.rhyme_ok for s in scores) / 8)
    assert r["format_rate"] == pytest.approx(sum(s.lines_ok and s.chars_ok and s.punct_ok for s in scores) / 8)
    assert r["distinct_2"] == pytest.approx(distinct_n([s["text"] for s in r["samples"]]))
    assert sum(f["n"] for f in r["by_form"].values()) == 8


def test_a_prompt_that_fills_the_context_is_named(model_and_tok):
    model, tok = model_and_tok
    ex = poems.examples("test")[0]
    with pytest.raises(ValueError, match=rf"the prompt for 《{ex.title}》 .* no shorter than the model's context"):
        generate_poems(model, tok, [ex], system=poems.SYSTEM_PROMPT * 8)
    with pytest.raises(ValueError, match="n \\(poems per title\\) must be >= 1"):
        generate_poems(model, tok, [ex], n=0)
