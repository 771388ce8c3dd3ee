"""The poem-line infilling task on the bundled poems: blanks rebuild their poem, the real line scores 1 everywhere,
no held-out line reaches the pretraining text, and each filler equals a plain loop written out here."""
import pytest
import torch

from lmforge.data import poems as P
from lmforge.eval.infill import (HAN, MAX_LINE, Blank, blanks, fill_blank, fill_left, fill_masked, held_out_poems,
                                 pretraining_text, render, score, summarize, verses)
from lmforge.models import build_model
from lmforge.tokenizers import CharTokenizer

SPECIALS = ("<pad>", "[MASK]", "[sMASK]", "[gMASK]", "<sop>", "<eop>")


def poem(title):
    (p,) = [p for p in P.load() if P.clean_title(p["title"]) == title]
    return p


def test_a_quatrain_by_hand():
    b = blanks([poem("登鹳雀楼")])  # 白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。 (held out: test split)
    assert [x.answer for x in b] == ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]
    assert [x.rhyme_slot for x in b] == [False, True, False, True]  # 流 liu, 楼 lou: the 尤 group
    assert b[1].left == "登鹳雀楼\n王之涣\n白日依山尽，"
    assert b[1].right == "。\n欲穷千里目，更上一层楼。\n\n"
    assert score(b[3], "更上一层楼") == {"char_acc": 1.0, "exact_len": True, "rhyme": True}
    assert score(b[3], "更上一层台") == {"char_acc": 0.8, "exact_len": True, "rhyme": False}  # 台 tai: 开, not 尤
    assert score(b[3], "") == {"char_acc": 0.0, "exact_len": False, "rhyme": False}
    assert score(b[0], "白日依山尽了")["rhyme"] is None and score(b[0], "白日依山尽了")["char_acc"] == 1.0


def test_held_out_blanks_rebuild_their_poems_and_the_answers_score_one():
    held = held_out_poems()
    assert held and all(p["collection"] == "tang300" for p in held)
    train_titles = {p["title"] for p in P.split("train")}
    assert not any(p["title"] in train_titles for p in held)  # split by poem (titles kept together)
    bl = blanks(held)
    assert len(bl) > 500 and all(HAN.match(b.answer) for b in bl)
    for b in bl:
        assert b.left + b.answer + b.right == render(b.poem)
        assert b.right[0] in "，。！？；：、"  # the mark after the line stays in the context
    s = summarize(bl, [b.answer for b in bl])
    assert (s["char_acc"], s["exact_len"], s["exact"], s["rhyme"]) == (1.0, 1.0, 1.0, 1.0)
    assert s["n"] == len(bl) and 0 < s["n_rhyme"] < s["n"] / 2


def test_verses_offsets_point_into_the_rendered_poem():
    for p in P.load()[:50]:
        text = render(p)
        assert all(text[at:at + len(v)] == v for at, v, _ in verses(p))


def test_window_keeps_the_text_next_to_the_blank():
    b = Blank({}, 0, "甲乙丙丁戊己庚", "天", "子丑寅", False)
    assert b.window(100) == ("甲乙丙丁戊己庚", "子丑寅")
    assert b.window(4) == ("己庚", "子丑")  # half each
    assert b.window(6) == ("戊己庚", "子丑寅")
    assert b.window(9) == ("乙丙丁戊己庚", "子丑寅")  # the short right side gives the rest to the left
    with pytest.raises(ValueError, match="at least 1"):
        b.window(0)


def test_summarize_refuses_mismatched_inputs():
    bl = blanks([poem("登鹳雀楼")])
    with pytest.raises(ValueError, match="one fill per blank"):
        summarize(bl, ["白日依山尽"])
    with pytest.raises(ValueError, match="no blanks"):
        summarize([], [])


@pytest.mark.slow
def test_pretraining_text_holds_no_held_out_line():
    text = pretraining_text(poem_repeats=1)
    held = [v for p in held_out_poems() + P.split("val") + P.split("test") for _, v, _ in verses(p)
            if len(v) >= 4 and HAN.match(v)]
    assert not [v for v in held if v in text]
    assert render(P.split("train")[0]) in text
    with pytest.raises(ValueError, match="poem_repeats"):
        pretraining_text(-1)


# ------------------------------------------------------------------------------------------ fillers
@pytest.fixture(scope="module")
def setup():
    ps = [poem("登鹳雀楼"), poem("江雪"), poem("春晓"), poem("相思")]
    tok = CharTokenizer.train("".join(render(p) for p in ps), special_tokens=SPECIALS, unk_token="<unk>")
    return tok, blanks(ps)


def test_fill_left_is_greedy_decoding_up_to_the_first_non_han_character(setup):
    tok, bl = setup
    torch.manual_seed(0)
    gpt = build_model("gpt", dict(vocab_size=tok.vocab_size, max_len=128, d_model=32, n_heads=2, n_layers=2)).eval()
    fills = fill_left(gpt, tok, bl, budget=40)
    assert any(fills)  # the comparison below is not of empty strings only
    for b, fill in zip(bl, fills):
        ids = tok.encode(b.left[-40:])
        written = ""
        for _ in range(MAX_LINE):  # the plain loop: whole context every step, argmax, stop at a non-Han token
            with torch.no_grad():
                nxt = int(gpt(torch.tensor([ids])).logits[0, -1].argmax())
            t = tok.inv_vocab[nxt]
            if not HAN.match(t):
                break
            written += t
            ids.append(nxt)
        assert fill == written


def test_fill_masked_one_pass_and_iterative_by_hand(setup):
    tok, bl = setup
    torch.manual_seed(0)
    bert = build_model("bert", dict(vocab_size=tok.vocab_size, max_len=128, d_model=32, n_heads=2, n_layers=2,
                                    head="mlm", pooler=False)).eval()
    special = sorted(tok.special_tokens.values())
    one = fill_masked(bert, tok, bl, budget=30, iterative=False, batch_size=3)  # batches of 3: padding in play
    it = fill_masked(bert, tok, bl, budget=30, iterative=True, batch_size=5)
    for b, f1, fi in zip(bl, one, it):
        left, right = b.window(30)
        ids = tok.encode(left) + [tok.special_tokens["[MASK]"]] * len(b.answer) + tok.encode(right)
        at = list(range(len(tok.encode(left)), len(tok.encode(left)) + len(b.answer)))
        with torch.no_grad():
            logits = bert(torch.tensor([ids])).logits[0]
        logits[:, special] = float("-inf")
        assert f1 == tok.decode(logits[at].argmax(-1).tolist())
        todo = list(at)
        while todo:  # Mask-Predict, one position a pass: the most confident masked position is fixed
            with torch.no_grad():
                logits = bert(torch.tensor([ids])).logits[0]
            logits[:, special] = float("-inf")
            prob, best = logits.softmax(-1).max(-1)
            k = max(todo, key=lambda j: float(prob[j]))
            ids[k] = int(best[k])
            todo.remove(k)
        assert fi == tok.decode([ids[j] for j in at])
        assert len(f1) == len(fi) == len(b.answer)


def test_fill_blank_is_glm_infill_one_prompt_at_a_time(setup, monkeypatch):
    """The batched fill (through generate) equals lmforge.generate.infill's, prompt by prompt, cut at the first
    non-Han token (infill stops only at <eop>)."""
    from lmforge.generate.infill import infill

    tok, bl = setup
    s = tok.special_tokens
    torch.manual_seed(1)  # a random tied GLM mostly repeats <sop>; this seed writes Han characters in some blanks
    glm = build_model("glm", dict(vocab_size=tok.vocab_size, max_len=96, d_model=32, n_heads=2, n_layers=2,
                                  pad_id=s["<pad>"], mask_id=s["[MASK]"], smask_id=s["[sMASK]"],
                                  gmask_id=s["[gMASK]"], sop_id=s["<sop>"], eop_id=s["<eop>"])).eval()
    import lmforge.generate
    real, sent = lmforge.generate.generate, []
    # the prompts fill_blank decodes: with this seed both blanks happen to give the same fills, so the blank
    # token in every prompt is what shows `blank` was used
    monkeypatch.setattr(lmforge.generate, "generate", lambda model, prompts, **kw: sent.append(prompts) or real(
        model, prompts, **kw))
    for blank in ("[MASK]", "[sMASK]"):  # the hole marked by the span blank or the sentence blank
        sent.clear()
        fills = fill_blank(glm, tok, bl, budget=40, blank=blank)
        assert any(fills)
        assert sent and all(s[blank] in p for prompts in sent for p in prompts)
        for b, fill in zip(bl, fills):
            left, right = b.window(40)
            (one,) = infill(glm, tok.encode(left) + [s[blank]] + tok.encode(right), max_tokens=MAX_LINE)
            text = ""
            for t in one.tokens:
                if not HAN.match(tok.inv_vocab[t]):
                    break
                text += tok.inv_vocab[t]
            assert fill == text
    with pytest.raises(ValueError, match=r"blank must be \[MASK\] or \[sMASK\]"):
        fill_blank(glm, tok, bl, budget=40, blank="[gMASK]")


def test_line_likelihood_is_each_models_own_loss_on_the_real_line(setup):
    """The teacher-forced reading equals the loss each family computes itself (its `targets` path) when only the
    real line is scored: GPT's next-token loss on the line after the left side, BERT's masked-LM loss at the
    line's [MASK]s, GLM's part-B loss less its <eop> term."""
    import math

    from lmforge.data.blank import BlankTokens, build
    from lmforge.eval.infill import line_likelihood

    tok, bl = setup
    s = tok.special_tokens
    torch.manual_seed(0)
    gpt = build_model("gpt", dict(vocab_size=tok.vocab_size, max_len=128, d_model=32, n_heads=2, n_layers=2)).eval()
    bert = build_model("bert", dict(vocab_size=tok.vocab_size, max_len=128, d_model=32, n_heads=2, n_layers=2,
                                    head="mlm", pooler=False)).eval()
    glm = build_model("glm", dict(vocab_size=tok.vocab_size, max_len=96, d_model=32, n_heads=2, n_layers=2,
                                  pad_id=s["<pad>"], mask_id=s["[MASK]"], smask_id=s["[sMASK]"],
                                  gmask_id=s["[gMASK]"], sop_id=s["<sop>"], eop_id=s["<eop>"])).eval()
    b = bl[1]
    answer = tok.encode(b.answer)
    n = len(answer)
    with torch.no_grad():
        left = tok.encode(b.left[-40:])
        ids = torch.tensor([left + answer])
        targets = torch.full_like(ids, -100)
        targets[0, len(left) - 1:-1] = torch.tensor(answer)
        want_gpt = float(gpt(ids, targets).loss)
        l, r = b.window(40)
        a, c = tok.encode(l), tok.encode(r)
        ids = torch.tensor([a + [s["[MASK]"]] * n + c])
        labels = torch.full_like(ids, -100)
        labels[0, len(a):len(a) + n] = torch.tensor(answer)
        want_bert = float(bert(ids, torch.ones_like(ids), targets=labels).loss)
        row = build(a + answer + c, [(len(a), len(a) + n)], BlankTokens.from_vocab(s), kind="smask")
        t = lambda xs: torch.tensor([xs])  # noqa: E731
        out = glm(t(row.ids), t(row.targets), positions=t(row.positions), block_positions=t(row.block_positions),
                  prefix_len=torch.tensor([row.prefix_len]))
        eop = -float(out.logits[0, -1].float().log_softmax(-1)[s["<eop>"]])  # the last part-B target
    assert line_likelihood("gpt", gpt, tok, [b], 40)["nats_per_char"] == pytest.approx(want_gpt, rel=1e-5)
    assert line_likelihood("bert", bert, tok, [b], 40)["nats_per_char"] == pytest.approx(want_bert, rel=1e-5)
    got = line_likelihood("glm", glm, tok, [b], 40, blank="[sMASK]")
    assert got["nats_per_char"] * n + eop == pytest.approx(float(out.loss) * (n + 1), rel=1e-5)
    assert got["chars"] == n and 0.0 <= got["top1"] <= 1.0
    # an untrained model is near a uniform guess over the vocabulary; the whole list averages per character
    every = line_likelihood("gpt", gpt, tok, bl, 40)
    assert every["chars"] == sum(len(x.answer) for x in bl)
    assert abs(every["nats_per_char"] - math.log(tok.vocab_size)) < 1.0
    with pytest.raises(ValueError, match="kind must be gpt, bert or glm"):
        line_likelihood("t5", gpt, tok, [b], 40)
    with pytest.raises(ValueError, match="budget must be >= 1"):
        line_likelihood("gpt", gpt, tok, [b], 0)
    with pytest.raises(ValueError, match="blank must be"):
        line_likelihood("glm", glm, tok, [b], 40, blank="[gMASK]")
