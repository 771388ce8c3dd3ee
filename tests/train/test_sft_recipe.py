"""The sft recipe: the loss is on the assistant's tokens only (checked token by token and against the
cross-entropy written out), long examples are refused by name, bad configs are ValueErrors."""
import pytest
import torch
import torch.nn.functional as F

from lmforge.data import chat, poems
from lmforge.models import build_model
from lmforge.models.gpt.config import GPTConfig
from lmforge.tokenizers import CharTokenizer
from lmforge.train.recipes import run_config
from lmforge.train.recipes.sft import ChatBatches, encode_examples, load_init, targets


def tokenizer():
    text = "".join(poems.SYSTEM_PROMPT + e.prompt + e.answer + "\n" for e in poems.examples("test", 4, free=True))
    return CharTokenizer.train(text, special_tokens=chat.CHAT_SPECIAL_TOKENS)


def test_targets_shift_and_mask():
    assert targets([7, 8, 9, 4], [0, 0, 1, 1]) == [-100, 9, 4, -100]


def test_batches_learn_the_assistant_tokens_only_token_by_token():
    tok = tokenizer()
    examples = poems.examples("test")[:3]
    encoded = encode_examples(examples, tok, max_len=512)
    ids, tgt = ChatBatches(encoded, batch_size=3, shuffle=False).get(0)
    assistant = tok.special_tokens["<|assistant|>"]
    for b, ex in enumerate(examples):
        row, t = ids[b].tolist(), tgt[b].tolist()
        n = len(encoded[b][0])
        start = row.index(assistant)  # the last prompt token; the answer starts after it
        answer = tok.encode(ex.answer) + [tok.special_tokens["<|end|>"]] + tok.encode("\n")
        for pos in range(len(row)):
            if start <= pos < n - 1:  # position pos predicts row[pos + 1], a token of the answer
                assert t[pos] == row[pos + 1] == answer[pos - start]
            else:  # system prompt, user prompt, the last token, padding: not scored
                assert t[pos] == -100
        assert all(x == 0 for x in row[n:])  # right padding


def test_loss_is_the_cross_entropy_of_the_answer_tokens():
    tok = tokenizer()
    encoded = encode_examples(poems.examples("test")[:4], tok, max_len=512)
    ids, tgt = ChatBatches(encoded, batch_size=4, shuffle=False).get(0)
    torch.manual_seed(0)
    model = build_model("gpt", GPTConfig(vocab_size=tok.vocab_size, max_len=256, d_model=16, n_heads=2, n_layers=1))
    loss = model(ids, targets=tgt).loss
    logits = model(ids).logits
    picked = [(b, p) for b in range(4) for p in range(ids.shape[1]) if tgt[b, p] != -100]
    by_hand = torch.stack([F.cross_entropy(logits[b, p], tgt[b, p]) for b, p in picked]).mean()
    assert torch.allclose(loss, by_hand, atol=1e-6)
    assert len(picked) == sum(sum(m) for _, m in encoded)  # every answer token, each predicted from the one before


def test_an_example_longer_than_the_context_is_named():
    tok = tokenizer()
    examples = poems.examples("test")
    lengths = [len(poems.encode(e, tok)[0]) for e in examples]
    max_len = max(lengths) - 1
    i = next(i for i, n in enumerate(lengths) if n > max_len)  # the first example that does not fit
    with pytest.raises(ValueError, match=rf"example {i} \(《{examples[i].title}》, prompt '写一首.*》'\) is {lengths[i]} "
                                         rf"tokens in the chat template .* longer than the model's context "
                                         rf"max_len {max_len}"):
        encode_examples(examples, tok, max_len=max_len)
    kept = encode_examples(examples, tok, max_len=max_len, skip_long=True)
    assert len(kept) == sum(n <= max_len for n in lengths) < len(examples)
    with pytest.raises(ValueError, match=r"example 0 .*cannot be encoded: character"):
        encode_examples(examples, CharTokenizer.train("abc", special_tokens=chat.CHAT_SPECIAL_TOKENS), max_len=512)


def test_config_errors(tmp_path):
    cfg = run_config({"recipe": {"name": "sft"}, "train": {"max_steps": 2}})
    assert cfg.NAME == "sft" and cfg.data.phrasings == 4
    with pytest.raises(ValueError, match="phrasings must be 1 to 4"):
        run_config({"recipe": "sft", "data": {"phrasings": 9}})
    with pytest.raises(ValueError, match="recipe.init is empty"):
        load_init("", {})
    with pytest.raises(ValueError, match="is not a directory"):
        load_init(str(tmp_path / "nope"), {})
    with pytest.raises(ValueError, match="trains decoder models; family 'bert'"):
        run_config({"recipe": "sft", "model": {"family": "bert"}})
