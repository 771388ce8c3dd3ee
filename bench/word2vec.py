"""Skip-gram word2vec: lmforge.wordvec (PyTorch) against gensim's Word2Vec (C), same text, same settings.

    python bench/word2vec.py [--epochs 5] [--dim 100]      # needs gensim (pip install -e '.[dev]')

Text: the training split of the bundled King James Bible (lower-cased words, one sentence per verse line).
Both: skip-gram, 5 negatives, window 5, min_count 5, sample 1e-3, lr 0.025 falling linearly, one thread
(gensim workers=1, torch.set_num_threads(1)), trained one after the other in this process.
Quality: for every vocabulary word with a WordNet synonym in the vocabulary, is one of its synonyms among
its 10 nearest neighbours (cosine)? Synonyms are the one-word lemmas sharing a synset (lmforge.data.wordnet).
"""
from __future__ import annotations

import argparse
import datetime
import time

import torch
from common import cpu_model_and_flags

from lmforge.data.corpora import splits
from lmforge.data.wordnet import synonyms
from lmforge.wordvec import WordVectors, synonym_hit_rate, tokenize, train_word2vec

PROBES = ("god", "king", "water", "bread", "sword", "light", "spring", "bank")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--dim", type=int, default=100)
    args = ap.parse_args(argv)
    from gensim.models import Word2Vec
    import gensim
    torch.set_num_threads(1)
    model, flags = cpu_model_and_flags()
    print(f"# word2vec, {datetime.date.today()}, {model} ({' '.join(flags)}), torch {torch.__version__} "
          f"(cpu capability {torch.backends.cpu.get_cpu_capability()}), gensim {gensim.__version__}, one thread each")
    sents = tokenize(splits("kjv")["train"])
    syn = synonyms()
    print(f"# text: {len(sents)} sentences, {sum(map(len, sents))} words; {args.epochs} epochs, dim {args.dim}\n")
    settings = dict(window=5, negative=5, min_count=5, sample=1e-3, epochs=args.epochs)

    t = time.perf_counter()
    ours = train_word2vec(sents, dim=args.dim, lr=0.025, seed=0, **settings)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ref = Word2Vec(sents, vector_size=args.dim, sg=1, hs=0, alpha=0.025, min_alpha=0.0001, workers=1, seed=0,
                   **settings)
    t_ref = time.perf_counter() - t
    theirs = WordVectors(list(ref.wv.index_to_key), torch.tensor(ref.wv.vectors))

    q_ours, q_ref = synonym_hit_rate(ours, syn), synonym_hit_rate(theirs, syn)
    print("| | lmforge.wordvec | gensim |")
    print("|---|---|---|")
    print(f"| vocabulary | {len(ours.words)} | {len(theirs.words)} |")
    print(f"| synonym in top 10 | {100 * q_ours['rate']:.1f}% ({q_ours['hits']}/{q_ours['n']}) | "
          f"{100 * q_ref['rate']:.1f}% ({q_ref['hits']}/{q_ref['n']}) |")
    print(f"| training time (s) | {t_ours:.1f} | {t_ref:.1f} |")
    print(f"| time ratio (ours / gensim) | {t_ours / t_ref:.2f}x | 1x |\n")
    for w in PROBES:
        if w in ours.index and w in theirs.index:
            print(f"{w:7s} ours:   {', '.join(x for x, _ in ours.most_similar(w, 6))}")
            print(f"{'':7s} gensim: {', '.join(x for x, _ in theirs.most_similar(w, 6))}")


if __name__ == "__main__":
    main()
