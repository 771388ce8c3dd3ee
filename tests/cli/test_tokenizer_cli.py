"""`lmforge tokenizer train|encode|compare` and its errors."""
import pytest

from lmforge.cli import main
from lmforge.tokenizers import load_tokenizer

TEXT = "In the beginning God created the heaven and the earth.\nAnd the earth was without form, and void.\n"


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "unigram", "char"])
def test_train_then_encode(kind, tmp_path, capsys):
    (tmp_path / "c.txt").write_text(TEXT * 3, encoding="utf-8")
    assert main(["tokenizer", "train", "--kind", kind, "--vocab-size", "300", str(tmp_path / "c.txt"),
                 "--out", str(tmp_path / "tok")]) == 0
    tok = load_tokenizer(tmp_path / "tok")
    assert tok.decode(tok.encode("the earth", add_special_tokens=False), skip_special_tokens=True).strip() == "the earth"
    assert main(["tokenizer", "encode", str(tmp_path / "tok"), "the earth"]) == 0
    out = capsys.readouterr().out
    assert "token" in out and "offsets" in out and "tokens, 9 characters" in out


def test_compare_shows_every_kind(capsys):
    assert main(["tokenizer", "compare", "wonderful", "--lines", "300", "--vocab-size", "400"]) == 0
    out = capsys.readouterr().out
    for kind in ("bpe", "wordpiece", "unigram", "char"):
        assert f"\n{kind} " in out


@pytest.mark.parametrize("args,message", [
    (["--kind", "xx"], "unknown tokenizer kind 'xx'"),
    (["--kind", "bpe", "--vocab-size", "10"], "smaller than the base alphabet"),
    (["--kind", "wordpiece", "--vocab-size", "10"], "smaller than the alphabet"),
])
def test_train_errors(args, message, tmp_path, capsys):
    (tmp_path / "c.txt").write_text(TEXT, encoding="utf-8")
    assert main(["tokenizer", "train", *args, str(tmp_path / "c.txt"), "--out", str(tmp_path / "t")]) == 2
    assert message in capsys.readouterr().err


def test_bad_files(tmp_path, capsys):
    (tmp_path / "bad.txt").write_bytes(b"abc\xff\xfe")
    (tmp_path / "empty.txt").write_text("\n\n")
    assert main(["tokenizer", "train", "--kind", "char", str(tmp_path / "bad.txt"), "--out", str(tmp_path)]) == 2
    assert "not valid UTF-8" in capsys.readouterr().err
    assert main(["tokenizer", "train", "--kind", "bpe", str(tmp_path / "empty.txt"), "--out", str(tmp_path)]) == 2
    assert "contain no text" in capsys.readouterr().err
    assert main(["tokenizer", "encode", str(tmp_path / "nothing"), "x"]) == 2
    assert "no tokenizer.json" in capsys.readouterr().err
