"""spiece.model (T5's SentencePiece file) read without the sentencepiece package; sentencepiece is the reference
(a model trained in-process on bundled text), the tests skip without it."""
import json

import pytest

from lmforge.tokenizers import load_tokenizer
from lmforge.tokenizers.sentencepiece import load_spiece, read_spiece
from tok_corpora import sample


def _train(tmp_path, name, **kw):
    spm = pytest.importorskip("sentencepiece")
    lines = sample("gettext-en-de", 300) + sample("kjv", 200)
    (tmp_path / "corpus.txt").write_text("\n".join(lines), encoding="utf-8")
    # T5's ids: <pad> 0, </s> 1, <unk> 2, no <s> (HF T5Tokenizer)
    spm.SentencePieceTrainer.train(input=str(tmp_path / "corpus.txt"), model_prefix=str(tmp_path / name),
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, **{"character_coverage": 1.0, **kw},
                                   minloglevel=2)
    return spm.SentencePieceProcessor(model_file=str(tmp_path / f"{name}.model")), lines


@pytest.mark.parametrize("kw", [dict(vocab_size=400), dict(vocab_size=400, byte_fallback=True,
                                                           character_coverage=0.98)])
def test_spiece_model_encodes_as_sentencepiece(tmp_path, kw):
    sp, lines = _train(tmp_path, "spiece", **kw)
    tok = load_spiece(tmp_path / "spiece.model", extra_ids=3)
    assert tok.vocab_size == sp.get_piece_size() + 3
    assert [tok.token_to_id(f"<extra_id_{i}>") for i in range(3)] == [402, 401, 400]  # from the end, as T5
    eos = tok.token_to_id("</s>")
    assert (tok.token_to_id("<pad>"), eos, tok.token_to_id("<unk>")) == (0, 1, 2)
    odd = "".join(f"a{c}b " for c in "\t\n\r\x01\x0b\x0c\x1f\x7f\x85\u200b\u00a0\u3000\u2028\u2029\ufeff\u200c\u200e\u200d\u00ad")
    texts = lines[::7] + ["Ünïcödé  spaces   and ½ ﬁ ligatures", "漢字 unseen ✓", odd]
    for text in texts:
        assert tok.encode(text) == sp.encode(text) + [eos], text  # T5 ends every sequence with </s>
    ids = tok.encode("The file <extra_id_0> was not found", split_special=True)  # sentinels as one token each
    assert 402 in ids and tok.decode(sp.encode("was not found")) == "was not found"


def test_t5_directory_without_tokenizer_json(tmp_path):
    _train(tmp_path, "spiece", vocab_size=300)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"extra_ids": 5}))
    tok = load_tokenizer(tmp_path)
    assert tok.vocab_size == 305 and tok.token_to_id("<extra_id_4>") == 300
    # a tokenizer.json with SentencePiece's precompiled character map (HF's converted T5 files): spiece.model wins
    (tmp_path / "tokenizer.json").write_text(json.dumps({"normalizer": {"type": "Precompiled"}, "model": {}}))
    assert load_tokenizer(tmp_path).vocab_size == 305


def test_not_a_unigram_spiece_file_is_a_clear_error(tmp_path):
    _train(tmp_path, "bpe", vocab_size=300, model_type="bpe")
    with pytest.raises(ValueError, match="SentencePiece bpe model; lmforge reads Unigram"):
        load_spiece(tmp_path / "bpe.model")
    (tmp_path / "junk.model").write_bytes(b"\x0a\xff\xff")
    with pytest.raises(ValueError, match="not a SentencePiece model file"):
        load_spiece(tmp_path / "junk.model")
    assert read_spiece((tmp_path / "bpe.model").read_bytes())["model_type"] == 2
