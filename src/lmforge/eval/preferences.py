"""Preference pairs from an SFT run, ranked by the verifiable poem scorer (issue 15: the reward model's and
DPO's data).

For each prompt of a split (lmforge.data.poems.examples), sample `samples` answers from the SFT model in its
chat template (lmforge.eval.poems.generate_poems), score each with lmforge.eval.poems.score against the prompt's
form, and keep (best, worst) as (chosen, rejected); prompts whose samples tie are dropped
(lmforge.data.preferences.rank). Stiennon et al. 2020 (sec. 3.1) compare samples of the current policy the same
way, with human labellers where we have the scorer.

    pairs, stats = make_pairs("runs/sft-poems", split="train", samples=2, seed=0)
    write_pairs("runs/pairs-train.jsonl", pairs)

or from the shell (lmforge.cli.pairs):  lmforge pairs runs/sft-poems --split train --out runs/pairs-train.jsonl
"""
from __future__ import annotations

from pathlib import Path


PAIRINGS = ("extremes", "all")  # a prompt's (best, worst) only; or every pair with different scores


def make_pairs(run: str | Path, split: str = "train", *, samples: int = 2, phrasings: int = 1, limit: int = 0,
               temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 32,
               pairing: str = "extremes", progress: bool = False):
    """(pairs, stats) from an SFT run on one split's prompts (see the module docstring). limit > 0: the first
    `limit` prompts. Answer j to prompt i is sampled with seed `seed + i * samples + j` whatever batch_size (the
    prompts generated together). stats: prompts, samples, pairs, ties (prompts dropped), mean_score (over every
    sample), chosen_score and rejected_score (means over the pairs kept), empty (answers that were only the
    end-of-turn marker: they score 0 but cannot be a side of a pair; a prompt left with fewer than two answers
    counts as a tie). pairing "all": every pair of a prompt's answers whose scores differ (rank_all) instead of
    its (best, worst); the pairs then share answers, and `pairs` counts them all."""
    import lmforge
    from lmforge.data.poems import examples
    from lmforge.data.preferences import rank, rank_all, run_system_prompt
    from lmforge.eval.poems import generate_poems, score
    from lmforge.tokenizers import load_tokenizer

    if samples < 2:
        raise ValueError(f"samples must be >= 2 (a pair compares two answers to one prompt), got {samples}")
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {', '.join(PAIRINGS)}, got {pairing!r}")
    if limit < 0 or batch_size < 1:
        raise ValueError(f"limit must be >= 0 (0 = every prompt) and batch_size >= 1, got {limit} and {batch_size}")
    run = Path(run)
    model, tok, system = lmforge.load(run), load_tokenizer(run), run_system_prompt(run)
    chosen_examples = [e for e in examples(split, phrasings=phrasings) if e.form]
    if limit:
        chosen_examples = chosen_examples[:limit]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(chosen_examples), desc="sample", unit="prompt", dynamic_ncols=True)
    model.eval()
    pairs, all_scores, empty, paired = [], [], 0, 0  # paired: prompts that gave at least one pair
    for start in range(0, len(chosen_examples), batch_size):
        chunk = chosen_examples[start:start + batch_size]
        answers = generate_poems(model, tok, chunk, n=samples, temperature=temperature, top_p=top_p,
                                 seed=seed + start * samples, system=system)
        for ex, texts in zip(chunk, answers):
            scores = [score(t, ex.form).score for t in texts]
            all_scores += scores
            empty += sum(not t for t in texts)
            kept = [(t, s) for t, s in zip(texts, scores) if t]  # a preference file has no empty side
            if len(kept) < 2:
                continue
            before = len(pairs)
            if pairing == "all":
                pairs += rank_all(ex.prompt, *map(list, zip(*kept)), form=ex.form, title=ex.title)
            else:
                pair = rank(ex.prompt, *map(list, zip(*kept)), form=ex.form, title=ex.title)
                pairs += [pair] if pair is not None else []
            paired += len(pairs) > before
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    stats = {"run": str(run), "split": split, "prompts": len(chosen_examples), "samples": len(all_scores),
             "pairs": len(pairs), "ties": len(chosen_examples) - paired,
             "empty": empty, "pairing": pairing, "mean_score": mean(all_scores),
             "chosen_score": mean([p.chosen_score for p in pairs]),
             "rejected_score": mean([p.rejected_score for p in pairs]),
             "temperature": temperature, "top_p": top_p, "seed": seed}
    return pairs, stats
