"""A Hugging Face classifier's class names (config.json's num_labels, id2label, label2id) <-> lmforge's `labels`,
for every family with classification heads (BERT, DistilBERT). No torch import.

    >>> labels_from_hf({"id2label": {"1": "PER", "0": "O"}})
    ('O', 'PER')
    >>> labels_from_hf({"num_labels": 3})
    ('LABEL_0', 'LABEL_1', 'LABEL_2')
"""
from __future__ import annotations


def labels_from_hf(hf: dict) -> tuple[str, ...]:
    """The class names in index order: id2label (its keys are strings in the file); without it, num_labels
    names LABEL_0, LABEL_1, ... as transformers does."""
    id2label = hf.get("id2label")
    if not id2label:
        return tuple(f"LABEL_{i}" for i in range(hf.get("num_labels", 2)))
    try:
        table = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f"config.json's id2label must map 0, 1, ... to class names, got {id2label!r}") from None
    if sorted(table) != list(range(len(table))):
        raise ValueError(f"config.json's id2label keys are {sorted(table)}; they must be 0..{len(table) - 1}")
    return tuple(table[i] for i in range(len(table)))


def labels_to_hf(labels: tuple[str, ...]) -> dict:
    """{"num_labels", "id2label", "label2id"} as transformers writes them."""
    return {"num_labels": len(labels), "id2label": {str(i): x for i, x in enumerate(labels)},
            "label2id": {x: i for i, x in enumerate(labels)}}
