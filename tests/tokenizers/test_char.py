"""Character tokenizer: the interface the training pipeline builds on."""
import pytest

from lmforge.tokenizers import CharTokenizer, load_tokenizer, save_tokenizer


def test_vocab_is_sorted_characters_and_round_trips():
    tok = CharTokenizer.train(["In the beginning", "God created"])
    assert list(tok.vocab) == sorted(set("In the beginningGod created"))
    assert tok.vocab_size == len(set("In the beginningGod created"))
    ids = tok.encode("In the beginning")
    assert ids == [sorted(set("In the beginningGod created")).index(c) for c in "In the beginning"]
    assert tok.decode(ids) == "In the beginning"
    assert tok.encode_batch(["God", "In"]) == [tok.encode("God"), tok.encode("In")]
    assert tok.offsets("God") == [(0, 1), (1, 2), (2, 3)]
    assert tok.token_to_id("G") == 1 and tok.id_to_token(1) == "G" and tok.token_to_id("z") is None


def test_unknown_character_raises_or_maps_to_unk():
    tok = CharTokenizer.train("abc")
    with pytest.raises(ValueError, match=r"'z'.*U\+007A"):
        tok.encode("abz")
    tok = CharTokenizer.train("abc", special_tokens=["<pad>"], unk_token="<unk>")
    assert tok.vocab == {"<pad>": 0, "<unk>": 1, "a": 2, "b": 3, "c": 4}
    assert tok.encode("azb") == [2, 1, 3]
    assert tok.decode([2, 1, 3]) == "a<unk>b"
    assert tok.decode([0, 2], skip_special_tokens=True) == "a"


def test_special_tokens_are_split_only_when_asked():
    tok = CharTokenizer.train("ab<|>", special_tokens=["<|endoftext|>"])
    assert tok.encode("a<|endoftext|>b", split_special=True) == [tok.vocab["a"], 0, tok.vocab["b"]]
    with pytest.raises(ValueError, match="'e'"):  # off by default: the text is plain characters
        tok.encode("a<|endoftext|>b")


def test_save_and_load_round_trip(tmp_path):
    tok = CharTokenizer.train("hello world\n", special_tokens=["<|endoftext|>"])
    path = save_tokenizer(tok, tmp_path)
    assert path == tmp_path / "tokenizer.json"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    for where in (tmp_path, path):
        tok2 = load_tokenizer(where)
        assert isinstance(tok2, CharTokenizer)
        assert tok2.vocab == tok.vocab and tok2.special_tokens == tok.special_tokens
        assert tok2.encode("hello\nworld") == tok.encode("hello\nworld")


def test_file_loads_in_hugging_face_tokenizers(tmp_path):
    hf = pytest.importorskip("tokenizers")
    tok = CharTokenizer.train("héllo wörld\n\t汉字")
    save_tokenizer(tok, tmp_path)
    ref = hf.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    text = "wörld hé\n\t汉"
    enc = ref.encode(text)
    assert enc.ids == tok.encode(text)
    assert enc.offsets == tok.offsets(text)
    assert ref.decode(enc.ids) == text


def test_bad_input():
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.train(["", ""])
    with pytest.raises(ValueError, match="bytes"):
        CharTokenizer.train(b"abc")
    tok = CharTokenizer.train("abc")
    with pytest.raises(ValueError, match="str"):
        tok.encode(b"abc")
    with pytest.raises(ValueError, match="id 7"):
        tok.decode([7])
