"""The text-to-text tasks on the gettext pairs: prefixes, the split by program (translation) and by message
(classification), and no held-out message in any training data."""
import pytest

from lmforge.data import text2text as t2t
from lmforge.data.translation import TEST_DOMAINS, VAL_DOMAINS


def test_prefixes_are_t5s_and_targets_are_text():
    de = t2t.examples("en-de", "train")[0]
    assert de.src.startswith("translate English to German: ") and de.task == "en-de"
    assert t2t.examples("en-zh", "test")[0].src.startswith("translate English to Chinese: ")
    p = t2t.examples("program", "test")[0]
    assert p.src.startswith("which program: ") and p.tgt in t2t.programs()


def test_classification_holds_out_messages_of_training_programs():
    classes = set(t2t.programs())
    assert len(classes) >= 20 and not classes & set(TEST_DOMAINS + VAL_DOMAINS)  # programs seen in training
    split = {s: {e.src for e in t2t.examples("program", s)} for s in ("train", "val", "test")}
    assert not (split["train"] & split["test"]) and not (split["train"] & split["val"])
    assert 0.03 < len(split["test"]) / sum(map(len, split.values())) < 0.07  # 1 in 20
    assert {e.tgt for e in t2t.examples("program", "test")} <= classes
    held = t2t.held_out_messages()
    prefix = len(t2t.PREFIXES["en-de"])
    for task in ("en-de", "en-zh"):
        assert not {e.src[len(t2t.PREFIXES[task]):] for e in t2t.examples(task, "train")} & held
    assert not set(t2t.pretraining_texts()) & held
    assert prefix and t2t.message_split("Copy %s to %s") == t2t.message_split("Copy %s to %s")  # stable


def test_translation_test_split_is_by_program():
    from lmforge.data.translation import read_tsv, split_by_domain
    test = split_by_domain(read_tsv("en-de")[1])["test"]
    assert [e.tgt for e in t2t.examples("en-de", "test")] == [p.tgt for p in test]


def test_bad_input():
    with pytest.raises(ValueError, match="unknown text-to-text task"):
        t2t.examples("en-fr", "train")
    with pytest.raises(ValueError, match="split must be"):
        t2t.examples("en-de", "dev")
    with pytest.raises(ValueError, match="min_messages"):
        t2t.programs(0)
