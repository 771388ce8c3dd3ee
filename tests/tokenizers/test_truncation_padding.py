"""tokenizer.json's `truncation` and `padding` sections, applied as Hugging Face `tokenizers` applies them:
the real MiniLM file (truncates at 128, pads to a fixed 128) and every strategy / direction on it, compared
with tokenizers.Tokenizer on the bundled English text."""
import copy
import json

import pytest

from lmforge.data.corpora import splits
from lmforge.tokenizers import Encoding, Padding, Truncation, from_hf_json, to_hf_json

hf_tokenizers = pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def minilm_json(minilm):
    return json.loads((minilm / "tokenizer.json").read_text())


@pytest.fixture(scope="module")
def lines():
    """Verses of the held-out KJV books: short and long lines, and a few run together into long inputs."""
    verses = [v for v in splits("kjv")["test"].splitlines() if v.strip()]
    return verses[:40] + [" ".join(verses[i:i + 8]) for i in range(0, 80, 8)]


def both(data: dict):
    return from_hf_json(copy.deepcopy(data)), hf_tokenizers.Tokenizer.from_str(json.dumps(data))


def same(ours: Encoding, ref) -> None:
    assert ours.ids == ref.ids
    assert ours.type_ids == ref.type_ids
    assert ours.attention_mask == ref.attention_mask
    assert ours.tokens == ref.tokens
    assert ours.offsets == [tuple(o) for o in ref.offsets]


def test_minilm_file_truncates_at_128_and_pads_to_128(minilm_json, lines):
    ours, ref = both(minilm_json)
    assert ours.truncation == Truncation(128) and ours.padding == Padding(length=128, pad_token="[PAD]")
    long = " ".join(lines)
    whole = from_hf_json(dict(minilm_json, truncation=None, padding=None))
    assert len(whole.encode(long)) > 1000 and len(whole.encode(lines[0])) < 128  # both sections have work to do
    for text in [long, lines[0], lines[-1]]:
        same(ours.encode_full(text), ref.encode(text))
        assert len(ours.encode(text)) == 128
    for ours_e, ref_e in zip(ours.encode_batch_full(lines), ref.encode_batch(lines)):
        same(ours_e, ref_e)
    assert ours.encode_batch(lines[:3]) == [e.ids for e in ref.encode_batch(lines[:3])]


@pytest.mark.parametrize("strategy", ["LongestFirst", "OnlyFirst", "OnlySecond"])
@pytest.mark.parametrize("direction", ["Right", "Left"])
@pytest.mark.parametrize("max_length", [9, 12, 33])
def test_pairs_every_strategy_and_direction(minilm_json, lines, strategy, direction, max_length):
    data = dict(minilm_json, padding=None,
                truncation={"direction": direction, "max_length": max_length, "strategy": strategy, "stride": 0})
    ours, ref = both(data)
    for a, b in zip(lines[::3], lines[1::3]):
        try:
            expected = ref.encode(a, b)
        except Exception as e:  # the strategy cannot cut enough from the one text it may cut
            assert "too short" in str(e)
            with pytest.raises(ValueError, match="cannot truncate to max_length"):
                ours.encode_full(a, b)
            continue
        same(ours.encode_full(a, b), expected)
        assert len(expected.ids) <= max_length


@pytest.mark.parametrize("padding", [
    {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None},
    {"strategy": "BatchLongest", "direction": "Left", "pad_to_multiple_of": 8},
    {"strategy": {"Fixed": 20}, "direction": "Left", "pad_to_multiple_of": None},  # longer rows stay longer
])
def test_batch_padding(minilm_json, lines, padding):
    data = dict(minilm_json, truncation=None,
                padding=dict(padding, pad_id=0, pad_type_id=0, pad_token="[PAD]"))
    ours, ref = both(data)
    batch = lines[:6] + [(lines[7], lines[8])]
    expected = ref.encode_batch(batch)
    got = ours.encode_batch_full(batch)
    assert len({len(e) for e in got}) == (1 if padding["strategy"] == "BatchLongest" else len({len(e) for e in got}))
    for o, r in zip(got, expected):
        same(o, r)
    same(ours.encode_full(lines[0]), ref.encode(lines[0]))  # one text is its own batch


def test_without_special_tokens_the_whole_budget_is_the_text(minilm_json, lines):
    data = dict(minilm_json, padding=None, truncation={"max_length": 5, "strategy": "LongestFirst", "stride": 0})
    ours, ref = both(data)
    assert ours.encode(lines[1], add_special_tokens=False) == ref.encode(lines[1], add_special_tokens=False).ids
    assert len(ours.encode(lines[1], add_special_tokens=False)) == 5
    with_specials = ours.encode(lines[1])  # [CLS] and [SEP] take 2 of the 5
    assert with_specials == ref.encode(lines[1]).ids and len(with_specials) == 5
    assert with_specials[0] == 101 and with_specials[-1] == 102


def test_sections_survive_a_round_trip_and_load_in_tokenizers(minilm_json, lines):
    ours = from_hf_json(minilm_json)
    ours.truncation = Truncation(16, "OnlyFirst", "Left")
    ours.padding = Padding(None, "Left", 4)
    data = to_hf_json(ours)
    again, ref = from_hf_json(data), hf_tokenizers.Tokenizer.from_str(json.dumps(data))
    assert (again.truncation, again.padding) == (ours.truncation, ours.padding)
    same(again.encode_full(lines[-1]), ref.encode(lines[-1]))
    ours.truncation = ours.padding = None  # switched off: the text is encoded whole
    assert len(ours.encode(" ".join(lines))) > 1000


def test_bad_sections_are_refused(minilm_json):
    with pytest.raises(ValueError, match="truncation strategy 'Shortest' is not one of"):
        from_hf_json(dict(minilm_json, truncation={"max_length": 8, "strategy": "Shortest"}))
    with pytest.raises(ValueError, match="padding strategy 'Longest' is not BatchLongest"):
        from_hf_json(dict(minilm_json, padding={"strategy": "Longest"}))
    tok = from_hf_json(dict(minilm_json, truncation={"max_length": 8, "strategy": "OnlySecond"}))
    with pytest.raises(ValueError, match="OnlySecond needs a pair"):
        tok.encode("a long enough sentence to be cut somewhere")
