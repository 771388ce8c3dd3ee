"""`lmforge embed DIR TEXT...`, `--word W --plot PNG` and `lmforge embed DIR --search FILE QUERY` on the real MiniLM
folder."""
import json

import pytest
import torch

import lmforge
from lmforge.cli import main


def test_embed_prints_the_shape_and_vectors(minilm, capsys):
    assert main(["embed", str(minilm), "The sun is shining.", "It is raining.", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "(2, 384) vectors (mean pooling, normalised)"
    rows = [json.loads(line) for line in out[1:]]
    assert [r["text"] for r in rows] == ["The sun is shining.", "It is raining."]
    want = lmforge.embed(minilm, ["The sun is shining.", "It is raining."])
    assert torch.allclose(torch.tensor([r["vector"] for r in rows]), want, atol=1e-6)


def test_search_ranks_the_lines_of_a_file(minilm, tmp_path, capsys):
    docs = tmp_path / "docs.txt"
    docs.write_text("I bought a new car yesterday.\n\nIt is raining and cold outside.\nThe stock market fell sharply.\n")
    assert main(["embed", str(minilm), "--search", str(docs), "what is the weather like?", "--top", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "query: what is the weather like?"
    assert out[1].endswith("It is raining and cold outside.") and len(out) == 3


def test_bad_arguments(minilm, tmp_path, capsys):
    assert main(["embed", str(minilm), "--search", str(tmp_path / "none.txt"), "q"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "nowhere"), "q"]) == 2


RIVER_AND_MONEY = ["I stood upon the bank of the river.", "he sat on the bank of the river and watched the currents",
                   "he cashed a check at the bank", "that bank holds the mortgage on my home"]


def test_plot_of_a_word_in_context(minilm, tmp_path, capsys):
    """--word bank --plot: the printed 2-D points are the PCA of the contextual vectors of "bank"."""
    from lmforge.embedding import contextual_word_vectors
    from lmforge.wordvec import pca

    png = tmp_path / "bank.png"
    assert main(["embed", str(minilm), *RIVER_AND_MONEY, "--word", "bank", "--plot", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "(4, 384) vectors (of 'bank' in each text: last layer, mean over its word pieces)"
    at = out.index(next(line for line in out if line.startswith("PCA: the first two components hold")))
    rows = [line.split(None, 2) for line in out[at + 1:at + 5]]
    points, _, _ = pca(contextual_word_vectors(minilm, RIVER_AND_MONEY, "bank"), 2)
    assert torch.allclose(torch.tensor([[float(x), float(y)] for x, y, _ in rows]), points, atol=1e-3)
    assert [label for _, _, label in rows] == ["I stood upon the bank of the river.",
                                               "he sat on the bank of the river and watched...",
                                               "he cashed a check at the bank", "that bank holds the mortgage on my home"]
    # the first component separates the senses: the river uses on one side, the money uses on the other
    river, money = points[:2, 0], points[2:, 0]
    assert river.max() < money.min() or river.min() > money.max()
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_draws_chinese_labels_with_a_cjk_font(minilm, tmp_path, capsys):
    import warnings

    from lmforge.plots import token_fonts
    if len(token_fonts()["font.family"]) == 1:
        pytest.skip("no CJK font installed (Debian: apt-get install fonts-wqy-microhei; scripts/setup.sh does)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" for each empty box
        assert main(["embed", str(minilm), "我在河边散步。", "我去银行存钱。", "The sun is shining.",
                     "--plot", str(tmp_path / "zh.png")]) == 0
    assert "我在河边散步。" in capsys.readouterr().out


def test_labels_are_cut_around_the_word():
    from lmforge.cli.embed import label
    verse = ("Then I Daniel looked, and, behold, there stood other two, the one on this side of the bank of the "
             "river, and the other on that side of the bank of the river.")
    # at most 30 characters of the text, the word in the middle, cut at spaces: "bank" is the first one
    assert label(verse, "bank", 30) == "...side of the bank of the..."
    assert label(verse, "daniel", 20) == "Then I Daniel..."
    assert label(verse, None, 20) == "Then I Daniel..."
    assert label("short text", "text") == "short text"
    assert label("他去银行取钱，然后在河岸边散步了很久", "银行", 8) == "他去银行取钱，然..."


def test_plot_and_word_bad_arguments(minilm, tmp_path, capsys):
    assert main(["embed", str(minilm), "one text", "--plot", str(tmp_path / "x.png")]) == 2
    assert "at least two texts" in capsys.readouterr().err
    docs = tmp_path / "docs.txt"
    docs.write_text("a bank\n")
    assert main(["embed", str(minilm), "--search", str(docs), "bank", "--word", "bank"]) == 2
    assert "not with --search" in capsys.readouterr().err
    assert main(["embed", str(minilm), "the river bank", "the embankment", "--word", "bank"]) == 2
    assert "does not occur as a whole word in 'the embankment'" in capsys.readouterr().err
