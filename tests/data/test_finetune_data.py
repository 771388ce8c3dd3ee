"""Encoding the WordNet tasks for an encoder: answers map to the tokens that spell them, each word's tag sits on its
first piece, batches pad per batch and depend only on (seed, index)."""
import pytest
import torch

from lmforge.data.finetune import (PaddedBatches, collate, encode_examples, load_examples, lookup_task, pad_id,
                                   task_tokenizer)
from lmforge.tokenizers import CharTokenizer, WordPieceTokenizer


@pytest.fixture(scope="module")
def tok():
    texts = [ex["text"] for ex in load_examples(lookup_task("wordnet-supersense"), "train")[::40]]
    return WordPieceTokenizer.train(texts, 1000)  # small: many words split into several pieces


def test_qa_targets_spell_the_answer_for_every_val_example(tok):
    task = lookup_task("wordnet-qa")
    examples = load_examples(task, "val")
    features, cut = encode_examples(task, examples, task_tokenizer(tok, 128, pair=True))
    assert cut == 0 and len(features) == len(examples) == 4605
    for ex, f in zip(examples, features):
        i, j = f.target
        assert ex["context"][f.offsets[i][0]:f.offsets[j][1]] == ex["answer"], ex
        assert f.type_ids[i] == 1 and f.ids[0] == tok.token_to_id("[CLS]")  # in the context, after [CLS] gloss [SEP]


def test_tags_sit_on_each_words_first_piece(tok):
    task = lookup_task("wordnet-tags")
    ex = {"question": "a dog", "context": "the dachshunds barked", "tokens": ["the", "dachshunds", "barked"],
          "offsets": [(0, 3), (4, 14), (15, 21)], "tags": ["O", "B-TERM", "O"]}
    enc = task_tokenizer(tok, 64, pair=True)
    (f,), cut = encode_examples(task, [ex], enc)
    pieces = enc.encode_full(ex["question"], ex["context"]).tokens
    assert pieces[f.words[1]] == "d" or pieces[f.words[1]].startswith("d")  # "dachshunds" -> d ##ach ...
    assert len(set(f.words)) == 3 and f.words == sorted(f.words)
    assert [f.target[w] for w in f.words] == [0, 1, 0]  # O, B-TERM, O by index in TAGS
    assert sum(t != -100 for t in f.target) == 3  # the other pieces, [CLS], the gloss and [SEP]s are not scored
    assert cut == 0


def test_truncation_cuts_inputs_and_counts_lost_answers(tok):
    task = lookup_task("wordnet-qa")
    ex = {"question": "a long definition " * 10, "context": "words words words words words then dog",
          "answer": "dog", "start": 35, "end": 38}
    (f,), cut = encode_examples(task, [ex], task_tokenizer(tok, 16, pair=True))
    assert len(f.ids) == 16 and cut == 1 and f.target == (-100, -100)


def test_padded_batches_are_a_function_of_the_index(tok):
    task = lookup_task("wordnet-supersense")
    feats, _ = encode_examples(task, load_examples(task, "val")[:100], task_tokenizer(tok, 64, pair=False))
    a = PaddedBatches(feats, 8, pad_id(tok), seed=3)
    b = PaddedBatches(feats, 8, pad_id(tok), seed=3)
    ids, mask, types, targets = a.get(17)
    assert all(torch.equal(x, y) for x, y in zip(a.get(17), b.get(17)))
    assert ids.shape[1] == int(mask.sum(1).max())  # padded to its own longest row
    assert (ids[mask == 0] == pad_id(tok)).all() and targets.shape == (8,)
    epoch0 = torch.cat([a.get(i)[3] for i in range(len(a))])  # one epoch visits each example once
    assert sorted(epoch0.tolist()) == sorted(f.target for f in feats)
    assert PaddedBatches.batch_tokens(a.get(0)) == int(a.get(0)[1].sum())


def test_collate_pads_token_labels_with_minus_100(tok):
    task = lookup_task("wordnet-tags")
    feats, _ = encode_examples(task, load_examples(task, "val")[:4], task_tokenizer(tok, 64, pair=True))
    ids, mask, types, targets = collate(feats, 0)
    assert targets.shape == ids.shape and (targets[mask == 0] == -100).all()


def test_bad_input():
    with pytest.raises(ValueError, match="unknown fine-tuning task 'ner'. Known tasks: wordnet-supersense"):
        lookup_task("ner")
    with pytest.raises(ValueError, match="needs a tokenizer with a template that adds \\[CLS\\] and \\[SEP\\]"):
        task_tokenizer(CharTokenizer.train("abc"), 16, pair=False)
    with pytest.raises(ValueError, match="no examples to batch"):
        PaddedBatches([], 4, 0)
