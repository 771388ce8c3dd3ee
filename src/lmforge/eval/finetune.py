"""Scores of a fine-tuned encoder on a labelled task (lmforge.data.finetune): accuracy for a classify head,
entity F1 over BIO tags for a tag head (lmforge.eval.spans, seqeval's default rules), exact match and token F1
for a qa head (SQuAD v1.1's evaluation, lmforge.eval.spans).

    scores = evaluate(model, tokenizer, "wordnet-qa", "test")   # {"exact_match": ..., "f1": ..., "n": ...}

A span is chosen as in BERT's SQuAD fine-tuning (Devlin et al. 2019, sec. 4.2): the context tokens i <= j
with the largest start_i + end_j, at most `max_answer_tokens` long (30, google-research/bert run_squad.py's
max_answer_length); the answer is the context's text from token i's first character to token j's last.
"""
from __future__ import annotations

import torch

from lmforge.data.finetune import (Feature, Task, collate, encode_examples, load_examples, lookup_task, pad_id,
                                   task_tokenizer)
from lmforge.eval.spans import entity_f1, squad_scores


def uses_segments(model) -> bool:
    """Does the model read token type ids? BERT does (segments A and B); DistilBERT has none and refuses them."""
    return getattr(model.config, "n_segments", 0) > 0


def check_head(model, task: Task) -> None:
    """The model must carry the task's head and, for classify/tag, its labels in the same order."""
    cfg = model.config
    head = getattr(cfg, "head", None)
    if head != task.head:
        raise ValueError(f"task {task.name!r} needs a model with head={task.head!r}; this {cfg.family} model has "
                         f"head={head!r}. Fine-tune it for the task first (lmforge train with recipe finetune)")
    if tuple(cfg.labels) != task.labels:
        raise ValueError(f"the model's labels ({len(cfg.labels)}: {', '.join(cfg.labels[:5])}, ...) are not the "
                         f"labels of task {task.name!r} ({len(task.labels)}: {', '.join(task.labels[:5])}, ...): "
                         "it was fine-tuned for another task")


@torch.no_grad()
def forward_all(model, features: list[Feature], pad: int, batch_size: int = 64) -> list[torch.Tensor]:
    """Each feature's head output, unpadded: (n_labels,) for classify, (T, n_labels) for tag, (T, 2) for qa.
    Features are batched in length order, so a batch pads little."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i].ids))
    out: list[torch.Tensor | None] = [None] * len(features)
    segments = uses_segments(model)
    try:
        for k in range(0, len(order), batch_size):
            rows = order[k:k + batch_size]
            ids, mask, types, _ = (t.to(device) for t in collate([features[i] for i in rows], pad))
            res = model(ids, mask, types if segments else None)
            scores = res.sequence_logits if model.config.head == "classify" else res.logits
            for b, i in enumerate(rows):
                out[i] = scores[b].float().cpu() if scores.dim() == 2 else scores[b, :len(features[i].ids)].float().cpu()
    finally:
        model.train(was_training)
    return out


def best_span(scores: torch.Tensor, offsets: list[tuple[int, int]], max_answer_tokens: int = 30) -> tuple[int, int]:
    """(i, j), i <= j < i + max_answer_tokens, both context tokens, maximising start_i + end_j; scores (T, 2).

    Example: start scores [0, 5, 1], end scores [0, 1, 4], every token in the context -> (1, 2).
    """
    T = scores.size(0)
    context = torch.tensor([e > s for s, e in offsets])
    pair = scores[:, 0, None] + scores[None, :, 1]  # (T, T): start i, end j
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    ok = (j >= i) & (j - i < max_answer_tokens) & context[:, None] & context[None, :]
    if not ok.any():
        return -1, -1  # no context token survived truncation
    best = pair.masked_fill(~ok, float("-inf")).argmax().item()
    return divmod(best, T)


def score(task: Task, examples: list[dict], features: list[Feature], outputs: list[torch.Tensor],
          max_answer_tokens: int = 30) -> dict:
    """The task's metrics from the model's outputs (fractions in [0, 1]) and its predictions, one per example."""
    if task.head == "classify":
        pred = [int(o.argmax()) for o in outputs]
        right = sum(p == ex["label"] for p, ex in zip(pred, examples))
        return {"accuracy": right / len(examples), "n": len(examples), "predictions": [task.labels[p] for p in pred]}
    if task.head == "tag":
        pred = []
        for f, o in zip(features, outputs):
            labels = o.argmax(-1).tolist()
            pred.append([task.labels[labels[w]] if w >= 0 else "O" for w in f.words])  # cut-off words: O
        r = entity_f1([ex["tags"] for ex in examples], pred)
        return {"entity_f1": r["f1"], "precision": r["precision"], "recall": r["recall"], "n": len(examples),
                "predictions": pred}
    answers = []
    for ex, f, o in zip(examples, features, outputs):
        i, j = best_span(o, f.offsets, max_answer_tokens)
        answers.append(ex["context"][f.offsets[i][0]:f.offsets[j][1]] if i >= 0 else "")
    r = squad_scores(answers, [ex["answer"] for ex in examples])
    return {"exact_match": r["exact_match"], "f1": r["f1"], "n": r["n"], "predictions": answers}


def evaluate(model, tokenizer, task_name: str, split: str = "test", *, max_len: int = 128, limit: int = 0,
             batch_size: int = 64, examples: list[dict] | None = None) -> dict:
    """Metrics of `model` on one split of a task, with its predictions. limit: score N examples spread evenly over
    the split (every len/N-th); 0 = all."""
    task = lookup_task(task_name)
    check_head(model, task)
    if examples is None:
        examples = load_examples(task, split)
    if 0 < limit < len(examples):  # evenly spread: the splits are in file order, so the first N are one class
        examples = [examples[i * len(examples) // limit] for i in range(limit)]
    if not examples:
        raise ValueError(f"task {task_name!r} has no examples in split {split!r}")
    max_len = min(max_len, model.config.max_len)
    features, n_cut = encode_examples(task, examples, task_tokenizer(tokenizer, max_len, task.pair))
    outputs = forward_all(model, features, pad_id(tokenizer), batch_size)
    return {**score(task, examples, features, outputs), "truncated": n_cut}
