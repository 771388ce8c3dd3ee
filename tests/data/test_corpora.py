"""Bundled corpora: the documented splits hold, partition the text, and never leak across splits."""
import re

import pytest

from lmforge.data.corpora import CORPORA, KJV_TEST_BOOKS, KJV_VAL_BOOKS, kjv_books, load_text, splits


def test_kjv_has_66_books_in_canonical_order():
    books = [b for b, _ in kjv_books(load_text("kjv"))]
    assert len(books) == 66
    assert books[:3] == ["Genesis", "Exodus", "Leviticus"] and books[-1] == "Revelation"
    assert "1 Samuel" in books and "Song of Solomon" in books and "3 John" in books


def test_kjv_split_by_book_partitions_the_text():
    text, s = load_text("kjv"), splits("kjv")
    assert len(s["train"]) + len(s["val"]) + len(s["test"]) == len(text)
    headings = lambda t: {m.group(1) for m in re.finditer(r"^((?:[123] )?[A-Z][A-Za-z ]+) \d+$", t, re.M)}
    assert headings(s["val"]) == set(KJV_VAL_BOOKS)
    assert headings(s["test"]) == set(KJV_TEST_BOOKS)
    assert not headings(s["train"]) & (set(KJV_VAL_BOOKS) | set(KJV_TEST_BOOKS))
    assert s["val"].startswith("Ruth 1\n") and "\n1 In the beginning was the Word" not in s["val"]
    assert "The beginning of the gospel of Jesus Christ" in s["val"]  # Mark 1:1


@pytest.mark.parametrize("name", [c for c in CORPORA if c != "kjv"])
def test_other_corpora_split_without_losing_or_sharing_items(name):
    s = splits(name)
    assert all(s[k] for k in ("train", "val", "test"))
    assert len(s["val"]) < len(s["train"]) and len(s["test"]) < len(s["train"])
    if name.startswith("gettext"):
        # every message row lands in exactly one split
        rows = load_text(name).split("\n")[1:]
        assert sum(x.count("\n") for x in s.values()) == len([r for r in rows if r])


def test_text_file_corpus_splits_90_5_5(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcdefghij" * 100)
    s = splits(str(path))
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (900, 50, 50)
    assert s["train"] + s["val"] + s["test"] == path.read_text()


def test_unknown_corpus_names_the_bundled_ones():
    with pytest.raises(ValueError, match="not a bundled corpus.*kjv"):
        splits("shakespeare")
