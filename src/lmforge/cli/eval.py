"""`lmforge eval bleu RUN --data FILE.tsv [--beam 4]` -- BLEU, chrF and placeholder accuracy with sacrebleu.
`lmforge eval wordnet RUN [--split test]` -- a fine-tuned encoder's scores on its WordNet task.
`lmforge eval poems RUN [--n 4] [--temperature 1] [--seed 0]` -- a chat model's poems for the held-out titles
of the poem task (lmforge.data.poems), scored by lmforge.eval.poems: format rate, rhyme rate, mean score.

--data takes any TSV in the bundled format (header domain, en, de|zh) or a bundled pair name
(en-de, en-zh), which means its fixed test split (lmforge.data.translation.TEST_DOMAINS).

Examples:
    lmforge eval bleu runs/en-de --data en-de
    lmforge eval bleu runs/en-zh --data my-messages.tsv --beam 1 --limit 200
    lmforge eval wordnet runs/wn-qa --split test --show 5
    lmforge eval poems runs/sft-poems --n 4 --seed 0 --show 3
"""
from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="metric", metavar="METRIC", required=True)
    p = sub.add_parser("bleu", help="translate a TSV's English column and score it against its de/zh column")
    p.add_argument("run", help="a translation run or model directory")
    p.add_argument("--data", required=True, help="TSV file (domain, en, de|zh) or a bundled pair: en-de, en-zh")
    p.add_argument("--beam", type=int, default=4, help="beam size; 0 = greedy (default 4, Vaswani et al. 2017)")
    p.add_argument("--alpha", type=float, default=0.6, help="length penalty alpha (default 0.6, Wu et al. 2016)")
    p.add_argument("--limit", type=int, default=0, help="score only the first N pairs (0 = all)")
    p.add_argument("--by-length", action="store_true", help="also print BLEU by source-length bucket")
    w = sub.add_parser("wordnet", help="score a fine-tuned encoder on its WordNet task: supersense accuracy, "
                                       "BIO entity F1, QA exact match and F1")
    w.add_argument("run", help="a finetune run, or a model directory with a classify/tag/qa head")
    w.add_argument("--task", choices=["wordnet-supersense", "wordnet-tags", "wordnet-qa"],
                   help="default: the run's data.task, else the one the model's head fits")
    w.add_argument("--split", default="test", choices=["train", "val", "test"])
    w.add_argument("--limit", type=int, default=0, help="score N examples spread evenly over the split (0 = all)")
    w.add_argument("--max-len", type=int, default=0, help="tokens per input (default: the run's data.max_len, else 128)")
    w.add_argument("--batch-size", type=int, default=64)
    w.add_argument("--show", type=int, default=0, help="also print the first N examples with gold and prediction")


    q = sub.add_parser("poems", help="write a poem for each held-out title of the poem task and score its form: "
                                     "lines, characters, punctuation, rhyme")
    q.add_argument("run", help="an SFT (or later) run of the poem task, or a model directory")
    q.add_argument("--split", default="test", choices=["train", "val", "test"], help="whose titles (default test)")
    q.add_argument("--n", type=int, default=4, help="poems per title (default 4)")
    q.add_argument("--temperature", type=float, default=1.0,
                   help="sampling temperature (default 1: the model's own distribution, what RL trains)")
    q.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1 = off)")
    q.add_argument("--seed", type=int, default=0, help="poem j of title i samples with seed + i*n + j (default 0)")
    q.add_argument("--limit", type=int, default=0, help="only the first N titles (0 = all)")
    q.add_argument("--system", default=None, help="system prompt (default: the run's data.system, else the task's)")
    q.add_argument("--show", type=int, default=0, help="also print N sample poems")
    q.add_argument("--json", default="", help="also write the full result (samples included) to this file")


def run(args) -> int:
    if args.metric == "wordnet":
        return run_wordnet(args)
    if args.metric == "poems":
        return run_poems(args)
    from lmforge.data.translation import BUNDLED, read_tsv, split_by_domain
    from lmforge.eval.translation import evaluate_pairs, load_translator

    if args.beam < 0:
        raise ValueError(f"--beam must be >= 0 (0 = greedy), got {args.beam}")
    lang, pairs = read_tsv(args.data)
    if args.data in BUNDLED:
        pairs = split_by_domain(pairs)["test"]
    if args.limit > 0:
        pairs = pairs[: args.limit]
    model, tokenizer = load_translator(args.run)
    r = evaluate_pairs(model, tokenizer, [p.src for p in pairs], [p.tgt for p in pairs], lang, beam=args.beam,
                       alpha=args.alpha, warn=lambda m: print(m, file=sys.stderr))
    ph = r["placeholders"]
    print(f"pairs: {r['n']} (en -> {lang}), {'greedy' if args.beam == 0 else f'beam {args.beam}, alpha {args.alpha}'}")
    print(f"BLEU  {r['bleu']:.2f}   {r['bleu_signature']}")
    print(f"chrF  {r['chrf']:.2f}   {r['chrf_signature']}")
    print(f"placeholder accuracy {100 * ph['accuracy']:.1f}% of {ph['n']} pairs with placeholders" if ph["n"]
          else "placeholder accuracy: no pair has placeholders")
    if args.by_length:
        for b in r["by_length"]:
            print(f"  source {b['bucket']:>6} words: {b['n']:5d} pairs, BLEU {b['bleu']:.2f}")
    return 0


def run_wordnet(args) -> int:
    import json
    from pathlib import Path

    import lmforge
    from lmforge.data.finetune import TASKS, load_examples
    from lmforge.eval.finetune import evaluate
    from lmforge.tokenizers import load_tokenizer

    if args.limit < 0 or args.batch_size <= 0:
        raise ValueError("--limit must be >= 0 and --batch-size positive")
    run_dir = Path(args.run)
    model = lmforge.load(run_dir)
    cfg = model.config
    saved = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    task = args.task or saved.get("data", {}).get("task")
    if task is None:  # a converted or copied model directory: the task whose head and labels it carries
        fits = [t.name for t in TASKS.values() if t.head == getattr(cfg, "head", None) and t.labels == tuple(cfg.labels)]
        if not fits:
            raise ValueError(f"{run_dir} has head={getattr(cfg, 'head', None)!r} with labels that fit no WordNet task; "
                             f"pass --task")
        task = fits[0]
    max_len = args.max_len or saved.get("data", {}).get("max_len", 128)
    examples = load_examples(TASKS[task], args.split)
    r = evaluate(model, load_tokenizer(run_dir), task, args.split, max_len=max_len, limit=args.limit,
                 batch_size=args.batch_size, examples=examples)
    spread = f" (every {len(examples) / r['n']:.2f}-th)" if r["n"] < len(examples) else ""
    print(f"{task}, {args.split} split: {r['n']:,} of {len(examples):,} examples{spread}; {cfg.family} "
          f"head={cfg.head}" + (f", {len(cfg.labels)} labels: {', '.join(cfg.labels[:6])}{', ...' if len(cfg.labels) > 6 else ''}"
                               if cfg.labels else "") + f"; {r['truncated']} answers cut by max_len {max_len}")
    if "accuracy" in r:
        print(f"accuracy      {100 * r['accuracy']:.2f}")
    if "entity_f1" in r:
        print(f"entity F1     {100 * r['entity_f1']:.2f}   (precision {100 * r['precision']:.2f}, recall "
              f"{100 * r['recall']:.2f}; BIO chunks as seqeval / conlleval)")
    if "exact_match" in r:
        print(f"exact match   {100 * r['exact_match']:.2f}\nF1            {100 * r['f1']:.2f}   (SQuAD v1.1 token F1)")
    if args.show:
        picked = [examples[i * len(examples) // r["n"]] for i in range(r["n"])] if spread else examples
        for ex, pred in list(zip(picked, r["predictions"]))[:args.show]:
            if "label" in ex:
                print(f"  {ex['text'][:70]!r}: gold {TASKS[task].labels[ex['label']]}, predicted {pred}")
            elif "tags" in ex:
                print(f"  {ex['context'][:70]!r}: gold {' '.join(ex['tags'])}, predicted {' '.join(pred)}")
            else:
                print(f"  Q {ex['question'][:50]!r} C {ex['context'][:60]!r}: gold {ex['answer']!r}, predicted {pred!r}")
    return 0


def run_poems(args) -> int:
    import json
    from pathlib import Path

    import lmforge
    from lmforge.data import poems
    from lmforge.eval.poems import evaluate_poems
    from lmforge.io import atomic_write_json
    from lmforge.tokenizers import load_tokenizer

    if args.n < 1 or args.limit < 0 or args.temperature < 0:
        raise ValueError("--n must be >= 1, --limit >= 0 (0 = all) and --temperature >= 0")
    run_dir = Path(args.run)
    model, tok = lmforge.load(run_dir), load_tokenizer(run_dir)
    saved = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    system = args.system if args.system is not None else saved.get("data", {}).get("system") or poems.SYSTEM_PROMPT
    examples = poems.examples(args.split)
    if args.limit:
        examples = examples[:args.limit]
    r = evaluate_poems(model, tok, examples, n=args.n, temperature=args.temperature, top_p=args.top_p,
                       seed=args.seed, system=system)
    print(f"poems: {r['n']} ({r['titles']} {args.split} titles x {args.n}), temperature {args.temperature}, "
          f"top-p {args.top_p}, seed {args.seed}; {r['seconds']:.1f} s")
    print(f"format rate  {100 * r['format_rate']:.1f}%   (lines, characters and punctuation all right)")
    print(f"rhyme rate   {100 * r['rhyme_rate']:.1f}%   (even lines end in one 中华新韵 group)")
    print(f"mean score   {r['mean_score']:.3f}   distinct-2 {r['distinct_2']:.3f}")
    for form, f in r["by_form"].items():
        print(f"  {form}: {f['n']:3d} poems, format {100 * f['format_rate']:5.1f}%, rhyme {100 * f['rhyme_rate']:5.1f}%, "
              f"score {f['mean_score']:.3f}")
    for s in r["samples"][:args.show]:
        print(f"\n《{s['title']}》 {s['form']}, score {s['score']:.2f}\n{s['text']}")
    if args.json:
        atomic_write_json(Path(args.json), r)
    return 0
