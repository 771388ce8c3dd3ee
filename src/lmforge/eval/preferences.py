"""Preference pairs from an SFT run, ranked by the verifiable poem scorer (issue 15: the reward model's and
DPO's data).

For each prompt of a split (lmforge.data.poems.examples), sample `samples` answers from the SFT model in its
chat template, score each with lmforge.eval.poems.score against the prompt's form, and keep (best, worst) as
(chosen, rejected); prompts whose samples tie are dropped (lmforge.data.preferences.rank). Stiennon et al. 2020
(sec. 3.1) compare samples of the current policy the same way, with human labellers where we have the scorer.

    pairs, stats = make_pairs("runs/poems-sft", split="train", samples=2, seed=0)
    write_pairs("runs/pairs-train.jsonl", pairs)

or from the shell (lmforge.cli.pairs):  lmforge pairs runs/poems-sft --split train --out runs/pairs-train.jsonl
"""
from __future__ import annotations

from pathlib import Path


def sample_completions(model, tok, prompts: list[str], samples: int, *, temperature: float = 1.0,
                       top_p: float = 1.0, max_new_tokens: int = 96, seed: int = 0, batch_size: int = 64,
                       progress: bool = False) -> list[list[str]]:
    """`samples` answers to each prompt (user messages, put in the chat template with the task's system prompt),
    -> one list of texts per prompt. Row r of the whole job (prompt r // samples, sample r % samples) draws with
    its own generator seeded seed + r, so the result does not depend on batch_size. Generation stops at the end-of-
    turn marker (not part of the text) or after max_new_tokens."""
    import torch

    from lmforge.data.chat import END
    from lmforge.data.preferences import prompt_ids
    from lmforge.generate import generate

    if samples < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"samples, batch_size and max_new_tokens must be >= 1, got {samples}, {batch_size}, "
                         f"{max_new_tokens}")
    end = tok.special_tokens.get(END)
    rows = [prompt_ids(tok, p) for p in prompts for _ in range(samples)]
    texts: list[str] = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(rows), desc="sample", unit="answer", dynamic_ncols=True)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            out: list[list[int]] = [[] for _ in chunk]
            for step in generate(model, chunk, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                 eos_token_id=end, seed=seed + start, alternatives=0):
                if step.token != end:
                    out[step.row].append(step.token)
            texts += [tok.decode(ids, skip_special_tokens=True) for ids in out]
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return [texts[i * samples:(i + 1) * samples] for i in range(len(prompts))]


def make_pairs(run: str | Path, split: str = "train", *, samples: int = 2, phrasings: int = 1, limit: int = 0,
               temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 96, seed: int = 0,
               batch_size: int = 64, progress: bool = False):
    """(pairs, stats) from an SFT run on one split's prompts (see the module docstring). limit > 0: the first
    `limit` prompts. stats: prompts, samples, pairs, ties (prompts dropped), mean_score (over every sample),
    chosen_score and rejected_score (means over the pairs kept)."""
    import lmforge
    from lmforge.data.poems import examples
    from lmforge.data.preferences import rank
    from lmforge.eval.poems import score
    from lmforge.tokenizers import load_tokenizer

    if samples < 2:
        raise ValueError(f"samples must be >= 2 (a pair compares two answers to one prompt), got {samples}")
    if limit < 0:
        raise ValueError(f"limit must be >= 0 (0 = every prompt), got {limit}")
    run = Path(run)
    model, tok = lmforge.load(run), load_tokenizer(run)
    chosen_examples = examples(split, phrasings=phrasings)
    if limit:
        chosen_examples = chosen_examples[:limit]
    answers = sample_completions(model, tok, [e.prompt for e in chosen_examples], samples, temperature=temperature,
                                 top_p=top_p, max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size,
                                 progress=progress)
    pairs, all_scores = [], []
    for ex, texts in zip(chosen_examples, answers):
        scores = [score(t, ex.form).score for t in texts]
        all_scores += scores
        pair = rank(ex.prompt, texts, scores, form=ex.form, title=ex.title)
        if pair is not None:
            pairs.append(pair)
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    stats = {"run": str(run), "split": split, "prompts": len(chosen_examples), "samples": len(all_scores),
             "pairs": len(pairs), "ties": len(chosen_examples) - len(pairs), "mean_score": mean(all_scores),
             "chosen_score": mean([p.chosen_score for p in pairs]),
             "rejected_score": mean([p.rejected_score for p in pairs]),
             "temperature": temperature, "top_p": top_p, "seed": seed}
    return pairs, stats
