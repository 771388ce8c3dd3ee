"""The poem scorer on real poems from the bundled corpus, and on the same poems broken one part at a time."""
import pytest
from pypinyin import Style, pinyin

from lmforge.data import poems as P
from lmforge.eval.poems import FORMS, final, rhyme_groups, rhymes, score, split_lines


def poem(title):
    (p,) = [p for p in P.load() if P.clean_title(p["title"]) == title]
    return "\n".join(p["lines"])


GOOD = {"登鹳雀楼": "五言绝句", "江雪": "五言绝句", "春晓": "五言绝句", "相思": "五言绝句", "枫桥夜泊": "七言绝句",
        "题西林壁": "七言绝句", "泊船瓜洲": "七言绝句", "山居秋暝": "五言律诗", "黄鹤楼": "七言律诗"}


@pytest.mark.parametrize("title", GOOD)
def test_known_good_poems_score_one(title):
    s = score(poem(title), GOOD[title])
    assert (s.lines_ok, s.chars_ok, s.punct_ok, s.rhyme_ok, s.score) == (True, True, True, True, 1.0)
    assert len(s.lines) == FORMS[GOOD[title]][0]


def test_broken_poems_lose_the_right_part():
    text = poem("登鹳雀楼")  # 白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。
    # a line missing: 3 lines, each of the right length (3 of 4), the rhyme needs two even lines
    s = score("白日依山尽，黄河入海流。\n欲穷千里目。", "五言绝句")
    assert (s.lines_ok, s.chars_ok, s.punct_ok, s.rhyme_ok) == (False, True, False, False)
    assert s.score == pytest.approx((0 + 3 / 4 + 0 + 0) / 4)
    # one character too many in line 3: only chars suffers
    s = score(text.replace("欲穷千里目", "欲穷千里之目"), "五言绝句")
    assert (s.lines_ok, s.chars_ok, s.punct_ok, s.rhyme_ok) == (True, False, True, True)
    assert s.score == pytest.approx((1 + 3 / 4 + 1 + 1) / 4)
    # a full stop after the odd line, a comma at the end: punctuation only
    s = score(text.replace("尽，", "尽。").replace("楼。", "楼，"), "五言绝句")
    assert (s.lines_ok, s.chars_ok, s.punct_ok, s.rhyme_ok, s.score) == (True, True, False, True, 0.75)
    # line 4 ends in 台 (tai) instead of 楼 (lou): rhyme only
    s = score(text.replace("楼", "台"), "五言绝句")
    assert (s.lines_ok, s.chars_ok, s.punct_ok, s.rhyme_ok, s.score) == (True, True, True, False, 0.75)
    # a 五言绝句 asked for as a 七言绝句: lines, punctuation and rhyme hold, the length does not
    s = score(text, "七言绝句")
    assert (s.lines_ok, s.chars_ok, s.punct_ok, s.rhyme_ok, s.score) == (True, False, True, True, 0.75)
    # the same quatrain twice is 8 lines: a 五言律诗 in shape, but not a 五言绝句
    assert score(text + "\n" + text, "五言律诗").score == 1.0
    assert not score(text + "\n" + text, "五言绝句").lines_ok
    # Latin letters, spaces inside a line, nothing at all
    assert not score(text.replace("白日", "AB"), "五言绝句").chars_ok
    assert score("", "五言绝句").score == 0.0
    assert score("白日依山尽", "五言绝句").score == pytest.approx(1 / 16)


def test_split_lines_keeps_marks_and_line_breaks():
    assert split_lines("春眠不觉晓，处处闻啼鸟。\n夜来") == (["春眠不觉晓", "处处闻啼鸟", "夜来"], ["，", "。", ""])
    assert split_lines("，春") == (["", "春"], ["，", ""])  # a mark with no line: an empty line, which fails chars
    assert split_lines("春眠 不觉晓") == (["春眠", "不觉晓"], ["", ""])


def test_unknown_form_is_a_value_error():
    with pytest.raises(ValueError, match="unknown poem form '五绝'.*五言绝句"):
        score("白日依山尽", "五绝")


def test_final_is_pypinyins_strict_toneless_final():
    for ch in "言雨月安斜家花远微儿日资东风":
        assert final(ch) == pinyin(ch, style=Style.FINALS, strict=True)[0][0]
    assert (final("言"), final("雨"), final("日"), final("a"), final("")) == ("ian", "v", "i", "", "")


def test_rhyme_table():
    assert rhymes(["", "天", "", "眠", "", "船"])  # tian, mian, chuan: an/ian/uan are one group (寒)
    assert rhymes(["", "峰", "", "同", "", "中"])  # feng, tong, zhong: eng/ong (庚)
    assert not rhymes(["", "池", "", "衣"])  # chi (apical -i, 支) vs yi (i, 齐)
    assert rhyme_groups("日") == {"支"} and rhyme_groups("衣") == {"齐"}
    assert rhymes(["", "家", "", "斜"])  # 斜 has the reading xia (pypinyin heteronym) besides xie
    assert not rhymes(["", "楼"])  # one even line is no rhyme
    assert not rhymes(["", "楼", "", "A"])


def test_how_many_real_poems_the_table_accepts():
    """Every poem of the corpus with a scored form has the right lines and characters (form_of found them);
    rhyme is by Mandarin, not by the 平水韵 the poets used, so some classical rhymes fail: measured here
    (絶句: 190 of 201 real poems rhyme; 律诗: 130 of 189). 春望 (深 心 金 簪: 簪 is now zan) and 登高 (哀 回 来 台 杯:
    回 and 杯 are now ei) are two that fail."""
    rhymed = {f: [0, 0] for f in FORMS}
    for p in P.load():
        form = P.form_of(p)
        if form:
            s = score("\n".join(p["lines"]), form)
            assert s.lines_ok and s.chars_ok
            rhymed[form][0] += s.rhyme_ok
            rhymed[form][1] += 1
    assert rhymed == {"五言绝句": [31, 37], "七言绝句": [91, 95], "五言律诗": [66, 93], "七言律诗": [66, 96]}
    assert not score(poem("春望"), "五言律诗").rhyme_ok and not score(poem("登高"), "七言律诗").rhyme_ok


def test_docstring_examples():
    import doctest

    import lmforge.data.poems
    import lmforge.eval.poems
    for mod in (lmforge.eval.poems, lmforge.data.poems):
        assert doctest.testmod(mod).failed == 0
