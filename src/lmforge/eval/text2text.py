"""Scoring a text-to-text model on its tasks (lmforge.data.text2text): each source is decoded (greedy or beam),
then translation tasks get sacrebleu BLEU and chrF (lmforge.eval.translation.score_translations) and the
classification gets exact-match accuracy of the generated program name (T5 scores classification as text the
same way: an answer that is not a class name is wrong).

    >>> accuracy(["git", "bash", "tar"], ["git", "bash", "sed"])
    0.6666666666666666
"""
from __future__ import annotations

from lmforge.data.text2text import LANG

from .translation import decode_sources, score_translations


def accuracy(hyps: list[str], refs: list[str]) -> float:
    if len(hyps) != len(refs) or not refs:
        raise ValueError(f"{len(hyps)} answers for {len(refs)} references: give one answer per example (and >= 1)")
    return sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / len(refs)


def generate(model, tok, sources: list[str], *, beam: int = 0, alpha: float = 0.6, batch_size: int = 32) -> list[str]:
    """Sources (task prefix included) -> decoded outputs. A source is cut to the model's max_len - 1 tokens + </s>."""
    eos, c = tok.special_tokens["</s>"], model.config
    limit = getattr(c, "max_len", None)
    ids = []
    for s in sources:
        x = tok.encode(s, add_special_tokens=False)
        ids.append((x[:limit - 1] if limit else x) + [eos])
    return decode_sources(model, tok, ids, beam=beam, alpha=alpha, batch_size=batch_size)


def evaluate(model, tok, examples, *, beam: int = 0, batch_size: int = 32) -> dict:
    """{task: scores} over examples (lmforge.data.text2text.Example) of any tasks: translation tasks
    {bleu, chrf, signatures, n}, the program task {accuracy, n}; each with a few (source, output, reference)."""
    import time

    import torch

    out = {}
    for task in dict.fromkeys(e.task for e in examples):
        rows = [e for e in examples if e.task == task]
        t = time.perf_counter()
        model.eval()
        with torch.no_grad():
            hyps = generate(model, tok, [e.src for e in rows], beam=beam, batch_size=batch_size)
        refs = [e.tgt for e in rows]
        scores = (score_translations(hyps, refs, LANG[task]) if task in LANG else {"accuracy": accuracy(hyps, refs)})
        out[task] = {**scores, "n": len(rows), "beam": beam, "decode_seconds": round(time.perf_counter() - t, 1),
                     "samples": [[e.src, h, e.tgt] for e, h in list(zip(rows, hyps))[:3]]}
    return out
