"""A verifiable reward: does a text have the form of a classical Chinese poem?

Four forms, each a number of lines (句) of a fixed number of characters:

    五言绝句  4 lines x 5      七言绝句  4 lines x 7
    五言律诗  8 lines x 5      七言律诗  8 lines x 7

`score(text, form)` is a pure function of the text; it checks four things and gives partial credit:

- lines_ok: the text splits, at its punctuation and line breaks, into exactly the form's number of lines;
- chars_ok: every line is exactly the form's number of Han characters (nothing else in a line);
- punct_ok: one mark after every line, a pause (，、；：) after the odd lines and a full stop (。！？) after
  the even ones, as printed editions of Tang poems punctuate a couplet ("床前明月光，疑是地上霜。");
- rhyme_ok: the even lines (2, 4, 6, 8: the rhyming positions of 近体诗) end in characters of one
  rhyme group (`rhymes`).

score = (lines_ok + chars + punct_ok + rhyme_ok) / 4, where chars is the fraction of the form's lines
present with the right length (a partial credit, so that a policy learning the form sees progress
before it gets every line right). A real 五言绝句 scores 1.0:

    >>> s = score("白日依山尽，黄河入海流。\\n欲穷千里目，更上一层楼。", "五言绝句")
    >>> s.score, s.lines
    (1.0, ['白日依山尽', '黄河入海流', '欲穷千里目', '更上一层楼'])

Rhyme table. A character's final (韵母) is pypinyin's (PyPI, strict finals: "yan" -> ian, "yu" -> v)
without tone. Finals rhyme when they fall in one of the fourteen groups of 中华新韵 (the modern rhyme
table of the China Poetry Society, 中华诗词学会, 2005), e.g. an/ian/uan/van all rhyme (八寒), and so
do eng/ing/ong/iong (十一庚); the apical "i" of zhi chi shi ri zi ci si is its own group (十三支),
apart from the "i" of li, qi (十二齐). A character with several readings (pypinyin's heteronyms) rhymes
if any reading does. Classical poets rhymed by the medieval 平水韵; some rhymes of theirs no longer
rhyme in Mandarin (e.g. 斜 xie with 家 jia is saved by 斜's reading xia, but not every such pair is):
tests/eval/test_poems.py measures how many real quatrains the table accepts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

# form -> (lines, characters per line)
FORMS = {"五言绝句": (4, 5), "七言绝句": (4, 7), "五言律诗": (8, 5), "七言律诗": (8, 7)}
PAUSE = "，、；："  # after an odd line (the first of a couplet)
STOP = "。！？"  # after an even line (the end of a couplet)
_MARKS = PAUSE + STOP + ",.;:!?"  # ASCII marks also end a line (then punct_ok is False)
_SPLIT = re.compile(f"([{re.escape(_MARKS)}]+|\\s+)")
_HAN = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0003134f]+$")

# 中华新韵 (China Poetry Society, 2005): 14 rhyme groups of Mandarin finals (pypinyin strict spelling: v = ü).
RHYME_GROUPS = {
    "麻": ("a", "ia", "ua"),
    "波": ("o", "e", "uo"),
    "皆": ("ie", "ve"),
    "开": ("ai", "uai"),
    "微": ("ei", "uei"),
    "豪": ("ao", "iao"),
    "尤": ("ou", "iou"),
    "寒": ("an", "ian", "uan", "van"),
    "文": ("en", "in", "uen", "vn"),
    "唐": ("ang", "iang", "uang"),
    "庚": ("eng", "ing", "ong", "iong", "ueng"),
    "齐": ("i", "er", "v"),
    "支": ("-i",),  # the apical vowel of zhi chi shi ri zi ci si
    "姑": ("u",),
}
_GROUP_OF = {f: g for g, finals in RHYME_GROUPS.items() for f in finals}
_APICAL = ("zh", "ch", "sh", "r", "z", "c", "s")


@lru_cache(maxsize=65536)
def _readings(char: str) -> tuple[tuple[str, str], ...]:
    """(initial, final) of each reading pypinyin knows for one character, toneless, strict spelling."""
    from pypinyin import Style, pinyin
    from pypinyin.contrib.tone_convert import to_finals, to_initials

    if len(char) != 1 or not _HAN.match(char):
        return ()
    syllables = pinyin(char, style=Style.NORMAL, heteronym=True, errors=lambda _: [""])[0]
    return tuple((to_initials(s, strict=True), to_finals(s, strict=True)) for s in syllables if s)


def final(char: str) -> str:
    """The final (韵母) of a Han character's most common reading, tone stripped, as pypinyin spells it
    in strict mode ("" for a non-Han character or one pypinyin does not know).

    >>> final("言"), final("雨"), final("花"), final("日")
    ('ian', 'v', 'ua', 'i')
    """
    r = _readings(char)
    return r[0][1] if r else ""


def rhyme_groups(char: str) -> set[str]:
    """The 中华新韵 groups a character's readings fall in: rhyme_groups("家") == {"麻"}; 斜 (xie, xia) gives
    {"皆", "麻"}; 日 (ri) gives {"支"}."""
    out = set()
    for initial, fin in _readings(char):
        fin = "-i" if fin == "i" and initial in _APICAL else fin
        if fin in _GROUP_OF:
            out.add(_GROUP_OF[fin])
    return out


def rhymes(lines: list[str]) -> bool:
    """Do the even lines (2nd, 4th, ...) end in characters of one rhyme group? Needs two even lines at least.

    >>> rhymes(["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"])   # 流 liu, 楼 lou: 尤
    True
    """
    ends = [line[-1] for line in lines[1::2] if line]
    if len(ends) < 2 or len(ends) != len(lines[1::2]):
        return False
    shared = rhyme_groups(ends[0])
    for ch in ends[1:]:
        shared &= rhyme_groups(ch)
    return bool(shared)


@dataclass(frozen=True)
class PoemScore:
    lines_ok: bool
    chars_ok: bool
    punct_ok: bool
    rhyme_ok: bool
    score: float  # in [0, 1]: (lines_ok + fraction of lines of the right length + punct_ok + rhyme_ok) / 4
    lines: list[str] = field(default_factory=list)  # the text's lines, punctuation and spaces removed


def split_lines(text: str) -> tuple[list[str], list[str]]:
    """(lines, the mark after each line: "" where a line ends at a line break or at the end of the text).

    >>> split_lines("春眠不觉晓，处处闻啼鸟。\\n夜来")
    (['春眠不觉晓', '处处闻啼鸟', '夜来'], ['，', '。', ''])
    """
    lines, marks = [], []
    for piece in _SPLIT.split(text.strip()):
        if not piece:
            continue
        if piece.isspace():
            if marks and marks[-1] is None:
                marks[-1] = ""
        elif piece[0] in _MARKS:
            if lines and marks[-1] is None:
                marks[-1] = piece
            else:  # a mark with no line before it (",，" or a text opening with a mark)
                lines.append("")
                marks.append(piece)
        else:
            lines.append(piece)
            marks.append(None)
    return lines, [m or "" for m in marks]


def score(text: str, form: str) -> PoemScore:
    """How well `text` has the shape of `form` (one of FORMS); see the module docstring."""
    if form not in FORMS:
        raise ValueError(f"unknown poem form {form!r}; the forms are {', '.join(FORMS)}")
    n, k = FORMS[form]
    lines, marks = split_lines(text)
    lines_ok = len(lines) == n
    right = [len(line) == k and bool(_HAN.match(line)) for line in lines]
    chars_ok = bool(lines) and all(right)
    chars = sum(right[:n]) / n
    punct_ok = lines_ok and all(m in (PAUSE if i % 2 == 0 else STOP) and len(m) == 1 for i, m in enumerate(marks))
    rhyme_ok = rhymes(lines[:n]) if len(lines) >= 4 else False
    return PoemScore(lines_ok, chars_ok, punct_ok, rhyme_ok, (lines_ok + chars + punct_ok + rhyme_ok) / 4, lines)


# ----------------------------------------------------------------------------------------- a model's poems

def max_new_tokens(form: str) -> int:
    """Room for a poem of `form` in a character-level chat model: its characters and marks, a line break per
    couplet, the end-of-turn marker, and 8 to spare (e.g. 七言律诗: 8 x 8 + 4 + 1 + 8 = 77)."""
    n, k = FORMS[form]
    return n * (k + 1) + n // 2 + 1 + 8


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Distinct-n (Li et al. 2016): distinct n-grams of characters over all n-grams of all texts; 0 if none.

    >>> distinct_n(["春风春风", "春风"])   # bigrams 春风 风春 春风 | 春风: 2 distinct of 4
    0.5
    """
    grams = [t[i:i + n] for t in texts for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def generate_poems(model, tokenizer, examples, *, n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
                   seed: int = 0, system: str | None = None) -> list[list[str]]:
    """n poems for each example's prompt (lmforge.data.poems.Example), sampled in one batch; poem j of example i
    uses seed `seed + i * n + j` (lmforge.generate.generate: row r samples with seed + r), so the texts do not
    depend on the batch. ValueError naming the example when its prompt leaves no room in the model's context."""
    from lmforge.data import chat, poems
    from lmforge.generate import generate

    if n < 1:
        raise ValueError(f"n (poems per title) must be >= 1, got {n}")
    marked = chat.has_markers(tokenizer)
    # the end-of-turn marker ends an answer; so does any other special token (a weak model may write the next
    # turn's role marker): it is not poem text, and as text ("<|user|>") the char tokenizer could not read it back
    stop_ids = [tokenizer.special_tokens[chat.END]] if marked else []
    stop_ids += [i for i in tokenizer.special_tokens.values() if i not in stop_ids]
    prompts, budgets = [], []
    for ex in examples:
        msgs = poems.messages(ex.prompt)
        if system:
            msgs[0] = {"role": "system", "content": system}
        ids = chat.encode(tokenizer, msgs)[0]
        room = model.config.max_len - len(ids)
        if room < 1:
            raise ValueError(f"the prompt for 《{ex.title}》 ({ex.prompt!r}) is {len(ids)} tokens with the system "
                             f"prompt and template, no shorter than the model's context max_len "
                             f"{model.config.max_len}: shorten the system prompt")
        prompts += [ids] * n
        budgets.append(min(room, max_new_tokens(ex.form) if ex.form else room))
    out = [[] for _ in prompts]
    done = [False] * len(prompts)
    steps = generate(model, prompts, max_new_tokens=max(budgets), temperature=temperature, top_p=top_p, seed=seed,
                     eos_token_id=stop_ids or None, alternatives=0)
    for s in steps:
        if done[s.row] or s.token in stop_ids or len(out[s.row]) >= budgets[s.row // n]:
            done[s.row] = True
            continue
        out[s.row].append(s.token)
    texts = [tokenizer.decode(ids) for ids in out]
    if not marked:  # the plain template ends a turn where the next one starts
        texts = [t.split(chat.PLAIN_STOP)[0] for t in texts]
    return [[t.strip() for t in texts[i * n:(i + 1) * n]] for i in range(len(examples))]


def evaluate_poems(model, tokenizer, examples, *, n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
                   seed: int = 0, system: str | None = None) -> dict:
    """Generate n poems per example and score each against the example's form. Returns
    {"n": poems scored, "titles", "format_rate" (lines, characters and punctuation all right), "rhyme_rate",
    "mean_score", "distinct_2", "by_form": {form: {"n", "format_rate", "rhyme_rate", "mean_score"}},
    "samples": [{"title", "form", "text", "score"}]}."""
    import time

    examples = [e for e in examples if e.form]
    if not examples:
        raise ValueError("no examples of a scored form to evaluate")
    t0 = time.perf_counter()
    texts = generate_poems(model, tokenizer, examples, n=n, temperature=temperature, top_p=top_p, seed=seed,
                           system=system)
    rows = [(e, t, score(t, e.form)) for e, ts in zip(examples, texts) for t in ts]

    def summary(rs):
        return {"n": len(rs),
                "format_rate": sum(s.lines_ok and s.chars_ok and s.punct_ok for _, _, s in rs) / len(rs),
                "rhyme_rate": sum(s.rhyme_ok for _, _, s in rs) / len(rs),
                "mean_score": sum(s.score for _, _, s in rs) / len(rs)}

    forms = sorted({e.form for e in examples}, key=list(FORMS).index)
    return {**summary(rows), "titles": len(examples), "distinct_2": distinct_n([t for _, t, _ in rows]),
            "seconds": round(time.perf_counter() - t0, 2),
            "by_form": {f: summary([r for r in rows if r[0].form == f]) for f in forms},
            "samples": [{"title": e.title, "form": e.form, "text": t, "score": s.score} for e, t, s in rows]}
