"""Bag-of-words logistic-regression baselines for the three WordNet tasks (lmforge.data.wordnet).

    python bench/wordnet_baselines.py            # needs scikit-learn and seqeval (pip install -e '.[dev]')

- supersense: definition -> 45 lexicographer files. Word unigrams and bigrams (counts), multinomial
  logistic regression. Accuracy.
- tags: each token classified O / B-TERM / I-TERM on its own from hand-made features: the word, lowercased,
  its 2- and 3-letter suffixes, its shape (capitalised, digit, punctuation), whether it occurs in the gloss
  (the defined word rarely does), and the lowercased previous and next words. Entity F1 (seqeval and ours).
- qa: the tagger's first predicted term, mapped back to characters, is the answer. Exact match / F1 (SQuAD).

Hyperparameters are fixed (C=1, no tuning on val); val and test are both printed.
"""
from __future__ import annotations

import datetime
import time

from common import cpu_model_and_flags

from lmforge.data.wordnet import load_task, word_tokens
from lmforge.eval.spans import chunks, entity_f1, squad_scores


def supersense(splits=("val", "test")) -> dict:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    train, _ = load_task("supersense", "train")
    vec = CountVectorizer(ngram_range=(1, 2), min_df=2)
    X = vec.fit_transform([ex["text"] for ex in train])
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(X, [ex["label"] for ex in train])
    out = {}
    for split in splits:
        data, _ = load_task("supersense", split)
        pred = clf.predict(vec.transform([ex["text"] for ex in data]))
        out[split] = {"accuracy": sum(int(p == ex["label"]) for p, ex in zip(pred, data)) / len(data), "n": len(data)}
    return out


def token_features(ex: dict) -> list[dict]:
    """One feature dict per token of a tags example (see the module docstring)."""
    gloss = {t.lower() for t, _, _ in word_tokens(ex["question"])}
    toks = ex["tokens"]
    feats = []
    for i, tok in enumerate(toks):
        low = tok.lower()
        feats.append({
            "w=" + tok: 1, "lower=" + low: 1, "suf2=" + low[-2:]: 1, "suf3=" + low[-3:]: 1,
            "title": int(tok[:1].isupper()), "digit": int(tok.isdigit()), "punct": int(not tok[:1].isalnum()),
            "in_gloss": int(low in gloss),
            "prev=" + (toks[i - 1].lower() if i else "<s>"): 1,
            "next=" + (toks[i + 1].lower() if i + 1 < len(toks) else "</s>"): 1,
        })
    return feats


def tagger(splits=("val", "test")) -> dict:
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    train, _ = load_task("tags", "train")
    vec = DictVectorizer()
    X = vec.fit_transform([f for ex in train for f in token_features(ex)])
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(X, [t for ex in train for t in ex["tags"]])
    out = {}
    for split in splits:
        data, _ = load_task("tags", split)
        flat = clf.predict(vec.transform([f for ex in data for f in token_features(ex)]))
        preds, i = [], 0
        for ex in data:
            preds.append(list(flat[i:i + len(ex["tags"])]))
            i += len(ex["tags"])
        true = [ex["tags"] for ex in data]
        ours = entity_f1(true, preds)
        try:
            from seqeval.metrics import f1_score
            seq = f1_score(true, preds, zero_division=0)
        except ImportError:
            seq = float("nan")
        answers, gold = [], []
        for ex, p in zip(data, preds):
            found = chunks(p)
            if found:
                _, a, b = found[0]
                answers.append(ex["context"][ex["offsets"][a][0]:ex["offsets"][b - 1][1]])
            else:
                answers.append("")
            tc = chunks(ex["tags"])[0]
            gold.append(ex["context"][ex["offsets"][tc[1]][0]:ex["offsets"][tc[2] - 1][1]])
        out[split] = {"entity_f1": ours["f1"], "seqeval_f1": seq, "n": len(data), **squad_scores(answers, gold)}
    return out


def main() -> None:
    import sklearn
    import torch
    model, flags = cpu_model_and_flags()
    print(f"# WordNet 3.0 baselines, {datetime.date.today()}, {model} ({' '.join(flags)}), "
          f"torch cpu capability {torch.backends.cpu.get_cpu_capability()}, scikit-learn {sklearn.__version__}")
    t = time.time()
    ss = supersense()
    tg = tagger()
    print(f"# {time.time() - t:.0f} s\n")
    print("| task | metric | val | test |")
    print("|---|---|---|---|")
    print(f"| supersense (45 classes) | accuracy | {100 * ss['val']['accuracy']:.1f} | {100 * ss['test']['accuracy']:.1f} |")
    print(f"| tags (BIO) | entity F1 (ours) | {100 * tg['val']['entity_f1']:.1f} | {100 * tg['test']['entity_f1']:.1f} |")
    print(f"| tags (BIO) | entity F1 (seqeval) | {100 * tg['val']['seqeval_f1']:.1f} | "
          f"{100 * tg['test']['seqeval_f1']:.1f} |")
    print(f"| qa (first tagged span) | exact match | {100 * tg['val']['exact_match']:.1f} | "
          f"{100 * tg['test']['exact_match']:.1f} |")
    print(f"| qa (first tagged span) | F1 | {100 * tg['val']['f1']:.1f} | {100 * tg['test']['f1']:.1f} |")
    print(f"\nexamples: supersense val {ss['val']['n']} test {ss['test']['n']}; "
          f"qa/tags val {tg['val']['n']} test {tg['test']['n']}")


if __name__ == "__main__":
    main()
