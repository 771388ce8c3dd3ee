"""`lmforge embed DIR TEXT...` and `lmforge embed DIR --search FILE QUERY` on the real MiniLM folder."""
import json

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
