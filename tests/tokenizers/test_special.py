"""Where generation stops: the end-of-text tokens of every convention lmforge reads."""
from tok_corpora import sample

from lmforge.data import chat
from lmforge.tokenizers import END_OF_TEXT_TOKENS, BPETokenizer, CharTokenizer, UnigramTokenizer, eos_ids


def test_eos_ids_are_the_end_tokens_the_tokenizer_has():
    assert eos_ids(CharTokenizer.train("abc")) == []  # none: generation runs to its length limit
    gpt = BPETokenizer.train(["In the beginning"], 256 + 1, special_tokens=["<|endoftext|>"])
    assert eos_ids(gpt) == [0]
    t5 = UnigramTokenizer.train(sample("kjv", 50), 300)  # <pad> </s> <unk>: </s> is id 1
    assert eos_ids(t5) == [1]
    both = CharTokenizer.train("abc", special_tokens=["<|end|>", "<pad>", "<|endoftext|>"])
    assert eos_ids(both) == [2, 0]  # in END_OF_TEXT_TOKENS' order
    llama3 = CharTokenizer.train("abc", special_tokens=["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"])
    assert eos_ids(llama3) == [2, 1]  # a chat turn ends at <|eot_id|>, a plain text at <|end_of_text|>
    qwen2 = CharTokenizer.train("abc", special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    assert eos_ids(qwen2) == [0, 2]


def test_the_chat_templates_end_of_turn_stops_generation():
    # the chat template (lmforge.data.chat) defines its markers; generation must stop at its end of turn
    assert chat.END == chat.CHAT_SPECIAL_TOKENS[-1] and chat.END in END_OF_TEXT_TOKENS
    tok = CharTokenizer.train("Hello.", special_tokens=chat.CHAT_SPECIAL_TOKENS)
    assert eos_ids(tok) == [tok.special_tokens[chat.END]]
    assert not set(chat.MARKERS.values()) & set(END_OF_TEXT_TOKENS)  # a role marker never ends a text


def test_a_model_directorys_generation_config_adds_its_end_of_generation_ids(tmp_path):
    import json

    import pytest
    tok = CharTokenizer.train("abc", special_tokens=["<|endoftext|>"])
    assert eos_ids(tok, tmp_path) == [0]  # no generation_config.json
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [3, 0, 2]}))
    assert eos_ids(tok, tmp_path) == [0, 3, 2]
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    assert eos_ids(tok, tmp_path) == [0, 2]
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": "</s>"}))
    with pytest.raises(ValueError, match="eos_token_id must be a token id or a list of them"):
        eos_ids(tok, tmp_path)
