"""tokenizer.json reading and writing (lmforge.tokenizers.io): the parts every kind shares.

(Named for the file format: tests/test_io.py already holds the tests of lmforge.io.)
"""
import json

import pytest

from lmforge.tokenizers import (CharTokenizer, Template, Tokenizer, WordPieceTokenizer, from_hf_json,
                                load_tokenizer, save_tokenizer, to_hf_json)

VOCAB = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "<s>": 4, "</s>": 5, "un": 6, "##aff": 7, "##able": 8}


def wordpiece_file(post_processor):
    data = to_hf_json(WordPieceTokenizer(VOCAB))
    data["post_processor"] = post_processor
    return data


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordLevel", "vocab": {"a": 0}}}))
    with pytest.raises(ValueError, match="WordLevel"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="UTF-8"):
        load_tokenizer(tmp_path)
    assert issubclass(CharTokenizer, Tokenizer)
    with pytest.raises(ValueError, match="no 'model' object"):
        from_hf_json({"added_tokens": []})


def test_save_writes_a_json_path_as_given(tmp_path):
    tok = CharTokenizer.train("abc", special_tokens=["<|endoftext|>"])
    assert save_tokenizer(tok, tmp_path / "tok.json") == tmp_path / "tok.json"
    data = json.loads((tmp_path / "tok.json").read_text(encoding="utf-8"))
    assert data == to_hf_json(tok)
    assert data["added_tokens"][0]["content"] == "<|endoftext|>" and data["added_tokens"][0]["special"]
    assert from_hf_json(data).vocab == tok.vocab


def test_template_round_trips_as_template_processing():
    tok = WordPieceTokenizer(VOCAB)
    data = to_hf_json(tok)
    assert data["post_processor"]["type"] == "TemplateProcessing"
    back = from_hf_json(data)
    assert back.template == tok.template == Template.bert()
    assert back.encode_full("unaffable", "un").tokens == ["[CLS]", "un", "##aff", "##able", "[SEP]", "un", "[SEP]"]


def test_bert_roberta_and_sequence_post_processors():
    bert = from_hf_json(wordpiece_file({"type": "BertProcessing", "cls": ["[CLS]", 2], "sep": ["[SEP]", 3]}))
    assert bert.template == Template.bert()
    # <s> and </s> are plain vocabulary entries here, not added tokens: the template makes them special
    roberta = from_hf_json(wordpiece_file({"type": "RobertaProcessing", "cls": ["<s>", 4], "sep": ["</s>", 5]}))
    e = roberta.encode_full("un", "un")
    assert e.tokens == ["<s>", "un", "</s>", "</s>", "un", "</s>"] and e.type_ids == [0] * 6  # <s> A </s></s> B </s>
    seq = {"type": "Sequence", "processors": [{"type": "ByteLevel"},
                                              {"type": "BertProcessing", "cls": ["[CLS]", 2], "sep": ["[SEP]", 3]}]}
    assert from_hf_json(wordpiece_file(seq)).template == Template.bert()
    assert from_hf_json(wordpiece_file({"type": "ByteLevel"})).template is None


def test_unsupported_post_processor_and_mismatched_ids():
    with pytest.raises(ValueError, match="post_processor of type 'Weird'"):
        from_hf_json(wordpiece_file({"type": "Weird"}))
    two_ids = to_hf_json(WordPieceTokenizer(VOCAB))
    two_ids["post_processor"]["special_tokens"]["[CLS]"]["ids"] = [2, 4]
    with pytest.raises(ValueError, match="maps to 2 ids"):
        from_hf_json(two_ids)
    moved = to_hf_json(WordPieceTokenizer(VOCAB))
    moved["added_tokens"][0]["id"] = 7  # [PAD] is 0 in the vocabulary
    with pytest.raises(ValueError, match=r"added token '\[PAD\]' has id 7"):
        from_hf_json(moved)
    unknown = wordpiece_file({"type": "BertProcessing", "cls": ["<cls>", 9], "sep": ["[SEP]", 3]})
    with pytest.raises(ValueError, match="inserts '<cls>', which is not in the vocabulary"):
        from_hf_json(unknown)
