"""The poem task's data: the split by poem, the forms, the examples and their chat rendering."""
import pytest

from lmforge.data import chat
from lmforge.data import poems as P
from lmforge.tokenizers import CharTokenizer


def test_split_is_by_poem_stable_and_disjoint_by_title():
    parts = {s: P.split(s) for s in P.SPLITS}
    assert [len(parts[s]) for s in P.SPLITS] == [326, 41, 41]
    ids = {s: {id(p) for p in parts[s]} for s in P.SPLITS}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    titles = {s: {P.clean_title(p["title"]) for p in parts[s]} for s in P.SPLITS}
    assert not (titles["train"] & titles["test"]) and not (titles["train"] & titles["val"])
    # stable: the same titles every time (the split is seeded, not drawn at import)
    assert "登鹳雀楼" in titles["test"] and "枫桥夜泊" in titles["val"] and "春晓" in titles["train"]
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        P.split("dev")


def test_form_of_and_titles():
    by_title = {P.clean_title(p["title"]): p for p in P.load()}
    assert P.form_of(by_title["春晓"]) == "五言绝句" and P.form_of(by_title["黄鹤楼"]) == "七言律诗"
    assert P.form_of(by_title["梦李白・其二"]) is None  # 16 lines: 古体诗
    assert P.clean_title("题目:《塞上") == "塞上" and P.clean_title("题目:《春居杂兴》二首") == "春居杂兴二首"
    assert sum(P.form_of(p) is not None for p in P.load()) == 321


def test_examples_and_render():
    test = P.examples("test")
    assert len(test) == 25 and all(e.form for e in test)
    (e,) = [e for e in test if e.title == "登鹳雀楼"]
    assert e.prompt == "写一首五言绝句，题为《登鹳雀楼》" and e.answer == "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。"
    train4 = P.examples("train", phrasings=4, free=True)
    assert len(train4) == 4 * 262 + 64 and {x.prompt for x in train4 if x.title == "春晓"} == {
        "写一首五言绝句，题为《春晓》", "以《春晓》为题，写一首五言绝句。", "请作五言绝句一首，题目是《春晓》。",
        "题目：《春晓》\n体裁：五言绝句"}
    with pytest.raises(ValueError, match="phrasings must be between 1 and 4"):
        P.examples("train", phrasings=5)
    tok = CharTokenizer.train("".join(x.prompt + x.answer for x in test) + P.SYSTEM_PROMPT,
                              special_tokens=chat.CHAT_SPECIAL_TOKENS)
    assert P.render(e, tok) == (f"<|system|>{P.SYSTEM_PROMPT}<|end|>\n<|user|>{e.prompt}<|end|>\n"
                                f"<|assistant|>{e.answer}<|end|>\n")
    assert P.render(e.prompt, tok) == f"<|system|>{P.SYSTEM_PROMPT}<|end|>\n<|user|>{e.prompt}<|end|>\n<|assistant|>"
    plain = CharTokenizer.train("x")
    assert P.render("写诗", plain) == f"System: {P.SYSTEM_PROMPT}\n\nUser: 写诗\n\nAssistant:"


def test_encode_masks_the_answer_token_by_token():
    e = P.examples("test")[0]
    tok = CharTokenizer.train(e.prompt + e.answer + P.SYSTEM_PROMPT + "\n", special_tokens=chat.CHAT_SPECIAL_TOKENS)
    ids, mask = P.encode(e, tok)
    assert tok.decode(ids) == P.render(e, tok)
    # learned: the answer's characters, its <|end|> and the newline after it; nothing else
    learned = [t for t, m in zip(ids, mask) if m]
    assert learned == tok.encode(e.answer) + [tok.special_tokens["<|end|>"]] + tok.encode("\n")
    head = len(ids) - len(learned)
    assert mask == [0] * head + [1] * len(learned)
    assert ids[head - 1] == tok.special_tokens["<|assistant|>"]


def test_pretraining_text_holds_only_train_poems():
    text = P.pretraining_text("train")
    assert "白日依山尽" not in text and "春眠不觉晓" in text
