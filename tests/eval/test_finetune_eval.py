"""Choosing an answer span (BERT's SQuAD rule) and scoring predictions per head."""
import pytest
import torch

from lmforge.data.finetune import Feature, lookup_task
from lmforge.eval.finetune import best_span, score

ALL = [(0, 1), (2, 3), (4, 5)]  # three context tokens


def test_best_span_textbook():
    scores = torch.tensor([[0.0, 0.0], [5.0, 1.0], [1.0, 4.0]])  # start [0, 5, 1], end [0, 1, 4]
    assert best_span(scores, ALL) == (1, 2)  # 5 + 4
    # the end must not come before the start: the best end (token 0) is out of reach from start 1
    assert best_span(torch.tensor([[0.0, 9.0], [5.0, 0.0], [0.0, 1.0]]), ALL) == (0, 0)
    assert best_span(scores, ALL, max_answer_tokens=1) == (1, 1)  # 5 + 1 beats 1 + 4
    assert best_span(scores, [(0, 0), (0, 0), (4, 5)]) == (2, 2)  # only context tokens are answers
    assert best_span(scores, [(0, 0)] * 3) == (-1, -1)


def test_score_per_head():
    ss = lookup_task("wordnet-supersense")
    r = score(ss, [{"label": 3}, {"label": 5}], [Feature([], [], 3)] * 2, [torch.eye(45)[3], torch.eye(45)[3]])
    assert r["accuracy"] == 0.5 and r["predictions"] == ["noun.Tops", "noun.Tops"]
    tags = lookup_task("wordnet-tags")
    ex = {"tags": ["O", "B-TERM", "I-TERM"]}
    f = Feature([0] * 5, [0] * 5, [], words=[1, 2, -1])  # the third word was cut off: predicted O
    out = torch.zeros(5, 3)
    out[1, 1] = out[2, 2] = 1  # word 0 (token 1) B-TERM, word 1 (token 2) I-TERM: one word too early
    r = score(tags, [ex], [f], [out])
    assert r["predictions"] == [["B-TERM", "I-TERM", "O"]] and r["entity_f1"] == 0.0  # wrong span: no credit
    qa = lookup_task("wordnet-qa")
    ex = {"context": "the dog barked", "answer": "dog"}
    f = Feature([0] * 4, [0] * 4, (1, 1), offsets=[(0, 0), (0, 3), (4, 7), (8, 14)])
    out = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 3.0], [0.0, 1.0]])
    r = score(qa, [ex], [f], [out])
    assert r["predictions"] == ["dog"] and r["exact_match"] == 1.0 == r["f1"]


@pytest.mark.parametrize("head", ["classify", "tag", "qa"])
def test_a_model_with_another_head_is_refused(head):
    from lmforge.eval.finetune import check_head
    from lmforge.models import build_model
    labels = {"classify": ["a", "b"], "tag": ["O", "B-TERM", "I-TERM"], "qa": []}[head]
    model = build_model("bert", dict(vocab_size=30, max_len=16, d_model=16, n_heads=2, n_layers=1, head=head,
                                     labels=labels, pooler=head == "classify"))
    task = lookup_task("wordnet-supersense")
    with pytest.raises(ValueError, match="wordnet-supersense" if head == "classify" else "needs a model with head='classify'"):
        check_head(model, task)
