"""Parallel data: the bundled gettext pairs split by program, TSV reading and its errors, token batches, placeholders."""
import lzma

import pytest
import torch

from lmforge.data.translation import (TEST_DOMAINS, VAL_DOMAINS, Pair, TokenBatches, placeholders, read_tsv,
                                      split_by_domain)
from lmforge.eval.translation import placeholder_accuracy


def test_bundled_split_is_by_program_and_fixed():
    for name, lang in (("en-de", "de"), ("en-zh", "zh")):
        got, pairs = read_tsv(name)
        assert got == lang
        s = split_by_domain(pairs)
        assert {p.domain for p in s["test"]} <= set(TEST_DOMAINS) and {p.domain for p in s["val"]} <= set(VAL_DOMAINS)
        assert not {p.domain for p in s["train"]} & (set(TEST_DOMAINS) | set(VAL_DOMAINS))
        train_src = {p.src for p in s["train"]}
        assert not any(p.src in train_src for p in s["test"] + s["val"])  # no English sentence seen in training
        assert 2000 < len(s["test"]) < 3000 and 500 < len(s["val"]) < 1000 and len(s["train"]) > 30_000


def test_reads_xz_and_plain_tsv(tmp_path):
    text = "domain\ten\tzh\nfoo\tOpen %s\t打开 %s\n"
    (tmp_path / "a.tsv").write_text(text)
    (tmp_path / "a.tsv.xz").write_bytes(lzma.compress(text.encode()))
    for f in ("a.tsv", "a.tsv.xz"):
        assert read_tsv(tmp_path / f) == ("zh", [Pair("foo", "Open %s", "打开 %s")])


@pytest.mark.parametrize("content,message", [
    ("domain\ten\n", "header must be"),  # missing column
    ("domain\ten\tfr\nx\ta\tb\n", "unknown language column 'fr'"),
    ("domain\ten\tde\nx\ta\tb\n\nx\tc\td\n", "line 3: empty line"),
    ("domain\ten\tde\nx\ta\n", "line 2: expected 3 tab-separated columns"),
    ("domain\ten\tde\nx\t\tb\n", "line 2: the en or de column is empty"),
    ("domain\ten\tde\n", "no pairs"),
])
def test_bad_tsv_errors(tmp_path, content, message):
    (tmp_path / "bad.tsv").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_tsv(tmp_path / "bad.tsv")


def test_missing_file_names_the_bundled_pairs(tmp_path):
    with pytest.raises(FileNotFoundError, match="en-de, en-zh"):
        read_tsv(tmp_path / "nope.tsv")


def test_token_batches_respect_the_budget_and_are_pure():
    torch.manual_seed(0)
    ex = [([5] * n + [2], [1] + [6] * m + [2]) for n, m in torch.randint(1, 30, (500, 2)).tolist()]
    b = TokenBatches(ex, max_tokens=256, seed=3)
    seen, real = 0, 0
    for i in range(len(b)):
        src, tgt, targets = b.get(i)
        real += b.batch_tokens((src, tgt, targets))
        assert src.size(0) * max(src.size(1), tgt.size(1) + 1) <= 256
        assert torch.equal(targets[:, :-1][tgt[:, 1:] != 0], tgt[:, 1:][tgt[:, 1:] != 0])  # shifted by one
        assert ((targets == -100) == (tgt == 0)).all() and (tgt[:, 0] == 1).all()
        seen += src.size(0)
    assert seen == 500  # an epoch visits every pair once
    assert real == b.tokens() == sum(len(s) + len(t) - 1 for s, t in ex)  # the trainer's count: no padding
    assert all(torch.equal(x, y) for x, y in zip(b.get(7), TokenBatches(ex, 256, seed=3).get(7)))
    with pytest.raises(ValueError, match="no translation pairs"):
        TokenBatches([], 256)


def test_placeholders():
    assert placeholders("%s: %1$d of %-5.2lf, 100%% <b>bold</b>\\n") == ["%s", "%1$d", "%-5.2lf", "%%", "<b>", "</b>", "\\n"]
    assert placeholders("no placeholders here") == []
    acc = placeholder_accuracy(["Datei %s fehlt", "%d Dateien", "kein"], ["Datei %s nicht gefunden", "%s Dateien", "nichts"])
    assert acc == {"accuracy": 0.5, "n": 2}  # the third pair has no placeholder and does not count
