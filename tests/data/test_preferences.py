"""Preference files: ranking samples into pairs (ties dropped), reading with errors that name the line, writing
atomically, the chat-template encoding (the completion mask), and the batches (chosen rows, then rejected)."""
import json

import pytest

from lmforge.data import chat
from lmforge.data.poems import SYSTEM_PROMPT
from lmforge.data.preferences import (Pair, PairBatches, encode_completion, encode_pair, extremes, rank,
                                      rank_all, read_pairs, spaced, write_pairs)
from lmforge.tokenizers.char import CharTokenizer

GOOD = {"prompt": "写一首五言绝句，题为《登鹳雀楼》", "chosen": "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。",
        "rejected": "白日依山尽", "chosen_score": 1.0, "rejected_score": 0.25, "form": "五言绝句"}


def test_rank_keeps_best_and_worst_and_drops_ties():
    p = rank("p", ["a", "b", "c"], [0.5, 1.0, 0.25], form="五言绝句")
    assert (p.chosen, p.rejected, p.chosen_score, p.rejected_score, p.extra) == ("b", "c", 1.0, 0.25, {"form": "五言绝句"})
    assert rank("p", ["a", "b"], [0.75, 0.75]) is None
    assert rank("p", ["a", "b", "c", "d"], [1.0, 0.0, 1.0, 0.0]).chosen == "a"  # the first of equal best
    with pytest.raises(ValueError, match="at least two completions"):
        rank("p", ["a"], [1.0])


def test_rank_all_keeps_every_pair_with_different_scores():
    pairs = rank_all("p", ["a", "b", "c", "d"], [0.5, 1.0, 0.5, 0.0], form="五言绝句")
    assert [(p.chosen, p.rejected, p.chosen_score, p.rejected_score) for p in pairs] == [
        ("b", "a", 1.0, 0.5), ("a", "d", 0.5, 0.0), ("b", "c", 1.0, 0.5), ("b", "d", 1.0, 0.0), ("c", "d", 0.5, 0.0)]
    assert all(p.extra == {"form": "五言绝句"} for p in pairs)  # a and c tie: no pair between them
    assert rank_all("p", ["a", "a", "b"], [0.5, 0.5, 0.0]) == [Pair("p", "a", "b", 0.5, 0.0)]  # one text once
    assert rank_all("p", ["a", "b"], [0.75, 0.75]) == []
    assert rank_all("p", ["a", "b"], [0.25, 0.75]) == [rank("p", ["a", "b"], [0.25, 0.75])]  # K = 2: rank's pair
    with pytest.raises(ValueError, match="at least two completions"):
        rank_all("p", ["a"], [1.0])


def test_extremes_rebuild_each_prompts_best_and_worst_from_all_pairs():
    one = ["a", "b", "c", "d"], [0.5, 1.0, 0.25, 1.0]
    two = ["x", "y", "z"], [0.0, 0.75, 0.0]
    every = rank_all("p", *one, form="五言绝句") + rank_all("q", *two, form="七言绝句")
    assert extremes(every) == [rank("p", *one), rank("q", *two)]  # the first of equal best / worst kept
    assert [p.extra for p in extremes(every)] == [{"form": "五言绝句"}, {"form": "七言绝句"}]
    with pytest.raises(ValueError, match="needs scored pairs"):
        extremes([Pair("p", "a", "b")])


def test_spaced_keeps_at_most_about_limit_evenly():
    assert spaced(list(range(10)), 4) == [0, 3, 6, 9]
    assert spaced(list(range(3)), 4) == [0, 1, 2]  # fewer than the limit: all
    big = spaced(list(range(25841)))
    assert len(big) <= 4096 and big[:2] == [0, 7] and big == list(range(0, 25841, 7))
    with pytest.raises(ValueError, match="limit must be >= 1"):
        spaced([1], 0)


def test_a_file_round_trips(tmp_path):
    pairs = [Pair(**{k: v for k, v in GOOD.items() if k != "form"}, extra={"form": "五言绝句"}),
             Pair("p2", "x", "y")]  # scores are optional (human choices)
    write_pairs(tmp_path / "p.jsonl", pairs)
    assert json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0]) == GOOD
    back = read_pairs(tmp_path / "p.jsonl")
    assert back == pairs and back[0].extra == {"form": "五言绝句"} and back[1].chosen_score is None


@pytest.mark.parametrize("bad, message", [
    ({k: v for k, v in GOOD.items() if k != "rejected"}, "line 2: no 'rejected': a pair needs prompt, chosen, rejected"),
    ({**GOOD, "chosen": "  "}, "line 2: 'chosen' is empty"),
    ({**GOOD, "prompt": None}, "line 2: 'prompt' is NoneType"),
    ({**GOOD, "rejected": GOOD["chosen"]}, "line 2: chosen and rejected are the same text"),
    ({**GOOD, "chosen_score": 0.0}, "line 2: chosen_score 0.0 is below rejected_score 0.25: the sides are swapped"),
    ({**GOOD, "chosen_score": float("nan")}, "line 2: 'chosen_score' is nan; a score must be a finite number"),
    ({k: v for k, v in GOOD.items() if k != "rejected_score"}, "line 2: only 'chosen_score' is given"),
    ([1, 2], "line 2: expected an object"),
])
def test_a_bad_line_is_named(tmp_path, bad, message):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(GOOD, ensure_ascii=False) + "\n" + json.dumps(bad, ensure_ascii=False) + "\n")
    with pytest.raises(ValueError, match=f"p.jsonl {message}".replace("(", r"\(").replace(")", r"\)")):
        read_pairs(path)


def test_broken_json_empty_and_missing_files(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n{\"prompt\": \"x\", \n")
    with pytest.raises(ValueError, match="p.jsonl line 3: not valid JSON"):
        read_pairs(path)
    path.write_text("\n")
    with pytest.raises(ValueError, match="holds no pairs"):
        read_pairs(path)
    with pytest.raises(FileNotFoundError, match="lmforge pairs RUN --out"):
        read_pairs(tmp_path / "none.jsonl")


def chat_tokenizer():
    return CharTokenizer.train(SYSTEM_PROMPT + GOOD["prompt"] + GOOD["chosen"], special_tokens=chat.CHAT_SPECIAL_TOKENS)


def test_the_completion_mask_covers_the_answer_and_its_end_marker():
    tok = chat_tokenizer()
    ids, mask = encode_completion(tok, GOOD["prompt"], "白日")
    # the SFT encoding of the same conversation, minus the newline after the last <|end|>
    sft_ids, sft_mask = chat.encode(tok, [{"role": "system", "content": SYSTEM_PROMPT},
                                          {"role": "user", "content": GOOD["prompt"]},
                                          {"role": "assistant", "content": "白日"}], add_generation_prompt=False)
    assert ids == sft_ids[:-1] and mask == sft_mask[:-1]
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "白日<|end|>"
    assert tok.decode(ids[:mask.index(1)]).endswith("<|assistant|>")
    (c, cm), (r, rm) = encode_pair(tok, Pair(GOOD["prompt"], "白日", "黄河入"))
    assert (c, cm) == (ids, mask) and sum(rm) == 4 and len(r) == len(c) + 1
    with pytest.raises(ValueError, match="no chat markers"):
        encode_completion(CharTokenizer.train("abc"), "a", "b")


def test_batches_hold_chosen_rows_then_rejected_rows_right_padded():
    enc = [(([1, 2, 3], [0, 1, 1]), ([1, 4], [0, 1])), (([5, 6], [0, 1]), ([5, 7, 8, 9], [0, 1, 1, 1]))]
    ids, mask, comp = PairBatches(enc, 2, pad_id=0, shuffle=False).get(0)
    assert ids.tolist() == [[1, 2, 3, 0], [5, 6, 0, 0], [1, 4, 0, 0], [5, 7, 8, 9]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert comp.tolist() == [[0, 1, 1, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 1, 1]]
    shuffled = PairBatches(enc * 3, 2, seed=3)
    assert [shuffled.get(i)[0].tolist() for i in range(6)] == [PairBatches(enc * 3, 2, seed=3).get(i)[0].tolist()
                                                               for i in range(6)]  # a pure function of (seed, i)
    assert sorted(sum((shuffled.rows(i) for i in range(3)), [])) == list(range(6))  # an epoch sees every pair once
    with pytest.raises(ValueError, match="fewer than one batch"):
        PairBatches(enc, 4)
