"""BLEU and chrF through sacrebleu on pairs whose scores are known by hand; BLEU by source length."""
import pytest

from lmforge.eval.translation import bleu_by_length, score_translations


def test_sacrebleu_on_known_pairs():
    # every n-gram of the hypothesis matches; brevity penalty exp(1 - 7/6) -> BLEU 84.65
    r = score_translations(["the cat sat on the mat"], ["the cat sat on the mat today"], "de")
    assert abs(r["bleu"] - 100 * 2.718281828 ** (1 - 7 / 6)) < 0.01
    assert "tok:13a" in r["bleu_signature"] and "nrefs:1" in r["bleu_signature"]
    assert score_translations(["x y z"], ["x y z"], "de")["chrf"] == 100.0
    # Chinese needs the zh tokenizer: 13a sees one "word" per sentence and scores 0
    zh = score_translations(["我爱他们"], ["我爱你们"], "zh")
    assert zh["bleu"] > 0 and "tok:zh" in zh["bleu_signature"]
    assert score_translations(["我爱他们"], ["我爱你们"], "de")["bleu"] == 0.0
    with pytest.raises(ValueError, match="pair up"):
        score_translations(["a"], [], "de")


def test_bleu_by_length_buckets():
    srcs = ["one two", "a b c d e f g"]
    out = bleu_by_length(srcs, ["w x y z", "p q r s"], ["w x y z", "p q r t"], "de")
    assert [(b["bucket"], b["n"]) for b in out] == [("1-5", 1), ("6-10", 1)] and round(out[0]["bleu"], 6) == 100.0
