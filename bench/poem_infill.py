"""The measured point of GLM: fill a removed line of a held-out Tang poem (lmforge.eval.infill).

Three character-level models of one shape (4 layers, 4 heads, width 64, d_ff 256, no dropout)
and one vocabulary (the characters seen --min-count times in the pretraining text, so every character of the
train poems, the rest <unk>; lmforge.data.blank's special tokens first) are
pretrained on the same Chinese text (lmforge.eval.infill.pretraining_text: zh-prose's train split without the
items that quote a held-out line, plus the train poems repeated --poem-repeats times) with the same optimizer
(AdamW, peak lr --lr, 50 warmup steps then cosine), batch (16 windows of 64 characters) and training time:

- gpt  (family gpt, objective of recipe `lm`):   next character; fills from the left context only.
- bert (family bert, head mlm, recipe `mlm`'s loss without next-sentence pairs): BERT's 15% masking of each
  window; told the line's length, fills its [MASK]s in one pass and, as a second row, iteratively.
- glm  (family glm, recipe `blank`'s objective): blank infilling of each window; sees both sides, writes
  until <eop>. Its [sMASK] rows cut out whole sentences, and here a sentence ends at "，" too: a poem's line
  (句) ends in "，" or "。", so the sentence-level objective (Du et al. 2022 sec. 2.2) cuts out lines. It fills
  each hole twice: marked [MASK] (the short-span blank) and [sMASK] (the sentence blank), two rows.

Equal time under the same load: the three train in one process, interleaved step by step -- the next step
always goes to the model that has trained least so far -- so a busy machine slows them alike. Each model's
learning rate follows a cosine over its own share of the budget (a schedule in wall-clock time, not steps:
the step count is not known in advance). Then every line of every held-out Tang poem is removed in turn and
filled greedily with at most --context characters of the poem around it (all of it to the left for the GPT),
and each model's teacher-forced probability of the real line is read too (lmforge.eval.infill.line_likelihood:
nats per character, and how often the real character is the model's first choice).

    OMP_NUM_THREADS=1 python bench/poem_infill.py                     # 3 x 7 minutes of training, then ~1 of filling
    OMP_NUM_THREADS=1 python bench/poem_infill.py --reuse             # fill again with the saved runs
    OMP_NUM_THREADS=1 python bench/poem_infill.py --minutes 0.2 --runs /tmp/pf --plot /tmp/pf.png   # a smoke run

Writes RUNS/<model>/ (lmforge run directories: lmforge.load reads them), RUNS/results.json, and the plot.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from common import machine, machine_line, set_threads

ROOT = Path(__file__).resolve().parent.parent
SHAPE = dict(d_model=64, n_heads=4, n_layers=4, d_ff=256, dropout=0.0)  # for all three; small, as minutes of a shared
# CPU core train few steps (a width of 128 took 3x the time a step and learned less in the same minutes); no dropout:
# minutes of training see the prose less than once (nanoGPT's CPU recipe: "nothing to regularise")
SPECIALS = ("<pad>", "[MASK]", "[sMASK]", "[gMASK]", "<sop>", "<eop>")  # lmforge.models.glm's ids 0..5
UNK = "<unk>"
MODELS = ("gpt", "bert", "glm")


class TimeCosine:
    """Learning rate at a step: linear warmup over `warmup` steps, then a cosine from `lr` to `min_lr` over the
    fraction of `budget_s` this model has trained (`spent()`), so a run cut by time still decays fully."""

    def __init__(self, lr: float, min_lr: float, warmup: int, budget_s: float, spent):
        self.lr, self.min_lr, self.warmup, self.budget_s, self.spent = lr, min_lr, warmup, budget_s, spent
        self.name = "cosine over wall-clock time"  # what a checkpoint records

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / (self.warmup + 1)
        frac = min(1.0, self.spent() / self.budget_s)
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * frac)) * (self.lr - self.min_lr)


class MaskedWindows:
    """BERT's masked-LM batches over random windows: (inputs, attention, segments, labels, no NSP labels);
    a pure function of the batch index, as lmforge.train.recipes.mlm's PairBatches."""

    def __init__(self, windows, *, mask_id: int, vocab_size: int, special_ids, seed: int):
        self.windows, self.mask_id, self.vocab_size = windows, mask_id, vocab_size
        self.special_ids, self.seed = list(special_ids), seed

    def get(self, index: int):
        from lmforge.data.corruption import mask_tokens

        x, _ = self.windows.get(index)
        g = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, index, 1]).integers(2**62)))
        inputs, labels = mask_tokens(x, mask_id=self.mask_id, vocab_size=self.vocab_size,
                                     special_ids=self.special_ids, generator=g)
        return inputs, torch.ones_like(x), torch.zeros_like(x), labels, torch.zeros(0, dtype=torch.long)


def contenders(names, tok, tokens: np.ndarray, args):
    """name -> (model, train batches, loss_fn) for the models to train."""
    from lmforge.data.sampler import RandomWindows
    from lmforge.models import build_model
    from lmforge.objectives import bert_pretraining_loss

    windows = RandomWindows(tokens, args.block, args.batch, seed=args.seed)
    out = {}
    for name in names:
        torch.manual_seed(args.seed)
        if name == "gpt":
            out[name] = (build_model("gpt", dict(vocab_size=tok.vocab_size, max_len=args.block, **SHAPE)), windows, None)
        elif name == "bert":
            model = build_model("bert", dict(vocab_size=tok.vocab_size, max_len=args.block, head="mlm", pooler=False,
                                             **SHAPE))
            batches = MaskedWindows(windows, mask_id=tok.special_tokens["[MASK]"], vocab_size=tok.vocab_size,
                                    special_ids=tok.special_tokens.values(), seed=args.seed)
            out[name] = (model, batches, bert_pretraining_loss)
        elif name == "glm":
            out[name] = glm_contender(tok, tokens, args)
    return out


def glm_contender(tok, tokens, args):
    """GLM with the `blank` recipe's rows and loss (its default objective mix) over the same text; its context
    holds a window and, per span, a blank token and a <sop>."""
    from lmforge.data.blank import BlankTokens
    from lmforge.models import build_model
    from lmforge.train.recipes.blank import BlankBatches, BlankDataConfig, blank_loss

    data = BlankDataConfig(block_size=args.block, sentence_ends="，。！？；!?\n")  # a poem's line is a sentence
    s = tok.special_tokens
    bt = BlankTokens.from_vocab(s)
    ids = dict(pad_id=s["<pad>"], mask_id=bt.mask, smask_id=bt.smask, gmask_id=bt.gmask, sop_id=bt.sop, eop_id=bt.eop)
    # part A + part B = the window + 2 tokens per span (its blank in A, its <sop> in B); at most ceil(ratio * n)
    # spans, each covering a token at least
    shape = {**SHAPE, "max_len": args.block + 2 * math.ceil(data.ratio * args.block)}
    model = build_model("glm", dict(vocab_size=tok.vocab_size, **shape, **ids))
    ends = [tok.vocab[c] for c in data.sentence_ends if c in tok.vocab]
    batches = BlankBatches(tokens, args.batch, block_size=args.block, blank_tokens=bt, pad_id=ids["pad_id"], data=data,
                           sentence_end_ids=ends, seed=args.seed)
    return model, batches, blank_loss


def train_interleaved(runs: dict, tok, args) -> dict:
    """Train every contender for args.minutes of its own step time, one step at a time, always stepping the
    one that has trained least; save each as a run directory. Returns name -> {"steps", "seconds"}."""
    from lmforge.config import TrainConfig
    from lmforge.train.loop import Trainer

    budget = args.minutes * 60
    spent = {name: 0.0 for name in runs}
    cpu = {name: 0.0 for name in runs}  # CPU time of the same steps: the share of a core each model got
    trainers = {}
    for name, (model, batches, loss_fn) in runs.items():
        cfg = TrainConfig(max_steps=10**9, batch_size=args.batch, lr=args.lr, min_lr=args.lr / 10, warmup_steps=50,
                          weight_decay=0.1, beta2=0.99, seed=args.seed, dtype="fp32", progress=False,
                          save_interval=0, eval_interval=0)
        tr = Trainer(model, cfg, batches, out_dir=args.runs / name, tokenizer=tok, loss_fn=loss_fn,
                     run_config={"bench": "poem_infill", "model": name, "minutes": args.minutes, "lr": args.lr,
                                 "batch": args.batch, "block": args.block, "poem_repeats": args.poem_repeats,
                                 "min_count": args.min_count},
                     log=lambda msg: None)
        tr.schedule = TimeCosine(args.lr, args.lr / 10, 50, budget, lambda n=name: spent[n])
        tr.bf16  # fp32: decided without timing
        trainers[name] = tr
    losses = {name: [] for name in runs}
    diverged: set[str] = set()
    t_start = time.perf_counter()
    while True:
        left = [n for n in runs if spent[n] < budget]
        if not left:
            break
        name = min(left, key=lambda n: spent[n])
        tr = trainers[name]
        t0, c0 = time.perf_counter(), time.process_time()
        out = tr.train_step()
        spent[name] += time.perf_counter() - t0
        cpu[name] += time.process_time() - c0
        if not math.isfinite(out["loss"]):  # that model stops; the others go on (its row says so)
            print(f"  {name}: loss {out['loss']} at step {tr.step}: diverged, stopped (lower --lr)", flush=True)
            diverged.add(name)
            spent[name] = budget
            continue
        losses[name].append(out["loss"])
        if tr.step % 50 == 0:
            row = {"step": tr.step, "loss": round(sum(losses[name][-50:]) / len(losses[name][-50:]), 4),
                   "lr": tr.schedule(tr.step - 1), "elapsed_s": round(spent[name], 1)}
            tr.metrics.append(row)
            if tr.step % 500 == 0:
                print(f"  {name} step {tr.step}: loss {row['loss']:.3f}, {spent[name]:.0f} s "
                      f"(wall {time.perf_counter() - t_start:.0f} s)", flush=True)
    result = {}
    for name, tr in trainers.items():
        tr.cfg.max_steps = tr.step  # what the run did (config records it)
        tr.save()
        result[name] = {"diverged": name in diverged, "steps": tr.step, "seconds": round(spent[name], 1), "cpu_seconds": round(cpu[name], 1),
                        "final_loss": round(sum(losses[name][-50:]) / len(losses[name][-50:]), 4),
                        "parameters": sum(p.numel() for p in tr.model.parameters())}
        (args.runs / name / "bench.json").write_text(json.dumps(result[name], indent=1))
    return result


def fill_all(name: str, model, tok, blank_list, args) -> dict[str, list[str]]:
    """The rows a model gives: row label -> one fill per blank."""
    from lmforge.eval.infill import fill_blank, fill_left, fill_masked

    model.eval()
    if name == "gpt":
        return {"GPT (left context)": fill_left(model, tok, blank_list, args.context)}
    if name == "bert":
        return {"BERT MLM, told the length, one pass": fill_masked(model, tok, blank_list, args.context, iterative=False),
                "BERT MLM, told the length, iterative": fill_masked(model, tok, blank_list, args.context, iterative=True)}
    return {"GLM (both sides), hole marked [MASK]": fill_blank(model, tok, blank_list, args.context),
            "GLM (both sides), hole marked [sMASK]": fill_blank(model, tok, blank_list, args.context, blank="[sMASK]")}


def plot(results: dict, path: Path, meta: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("char_acc", "characters right"), ("exact_len", "length right"), ("rhyme", "rhyme kept")]
    rows = list(results)
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        vals = [results[row]["scores"][m] for m, _ in metrics]
        bars = ax.bar([j + (i - (len(rows) - 1) / 2) * width for j in range(len(metrics))], vals, width, label=row)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(metrics)), [label for _, label in metrics])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of held-out lines")
    n = results[rows[0]]["scores"]
    ax.set_title(f"Fill a removed line of a held-out Tang poem ({n['n']} lines, {n['n_rhyme']} rhyme slots);\n"
                 f"same shape, vocabulary, text and training time ({meta['minutes']:g} min each, 1 CPU thread)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=7.0, help="training wall-clock time of each model")
    ap.add_argument("--models", default=",".join(MODELS), help="which of gpt,bert,glm")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "poem-infill")
    ap.add_argument("--reuse", action="store_true", help="load RUNS/<model> where it exists instead of training")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--block", type=int, default=64, help="characters per training window")
    ap.add_argument("--poem-repeats", type=int, default=60,
                    help="copies of the train poems in the text (60: about 70%% of it)")
    ap.add_argument("--min-count", type=int, default=5, help="rarer characters are <unk>")
    ap.add_argument("--context", type=int, default=48, help="characters of the poem around the blank (<= block - 16)")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "poem-infill.png")
    ap.add_argument("--samples", type=int, default=6, help="sample fills printed (rhyme slots of short poems)")
    args = ap.parse_args()
    set_threads(args.threads)

    from lmforge.eval.infill import MAX_LINE, blanks, held_out_poems, line_likelihood, pretraining_text, summarize
    from lmforge.models import load_model
    from lmforge.tokenizers import CharTokenizer, load_tokenizer

    if args.context > args.block - MAX_LINE:
        raise SystemExit(f"--context {args.context} leaves no room in a window of {args.block} for the line written "
                         f"({MAX_LINE} characters at most): use --context <= {args.block - MAX_LINE}")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    bad = [n for n in names if n not in MODELS]
    if bad:
        raise SystemExit(f"unknown model(s) {', '.join(bad)}: choose from {', '.join(MODELS)}")
    info = machine()
    print(machine_line(info), flush=True)
    text = pretraining_text(args.poem_repeats)
    counts = collections.Counter(text)
    tok = CharTokenizer.train("".join(sorted(c for c, n in counts.items() if n >= args.min_count)),
                              special_tokens=SPECIALS, unk_token=UNK)
    blank_list = blanks(held_out_poems())
    print(f"pretraining text: {len(text):,} characters, vocabulary {tok.vocab_size}; held-out: {len(blank_list)} lines "
          f"of {len(held_out_poems())} Tang poems, {sum(b.rhyme_slot for b in blank_list)} in rhyme slots", flush=True)

    reuse = [n for n in names if args.reuse and (args.runs / n / "model.safetensors").is_file()]
    for n in reuse:
        if load_tokenizer(args.runs / n).vocab != tok.vocab:
            raise SystemExit(f"{args.runs / n} was trained with another vocabulary; train it again (drop --reuse)")
    train = [n for n in names if n not in reuse]
    trained = {}
    if train:
        tokens = np.asarray(tok.encode(text), dtype=np.int32)
        print(f"training {', '.join(train)} for {args.minutes:g} min each, interleaved", flush=True)
        trained = train_interleaved(contenders(train, tok, tokens, args), tok, args)
    results = {}
    for n in names:
        model = load_model(args.runs / n)
        record = trained.get(n) or json.loads((args.runs / n / "bench.json").read_text())
        if record.get("diverged"):
            print(f"{n}: diverged in training, not evaluated", flush=True)
            continue
        t0 = time.perf_counter()
        for row, fills in fill_all(n, model, tok, blank_list, args).items():
            blank = "[sMASK]" if "[sMASK]" in row else "[MASK]"  # the GLM row's hole; the others ignore it
            real = line_likelihood(n, model, tok, blank_list, args.context, blank=blank)  # teacher-forced
            results[row] = {"model": n, **record, "scores": {**summarize(blank_list, fills), "real_line": real},
                            "fills": fills}
        print(f"{n}: filled in {time.perf_counter() - t0:.0f} s", flush=True)

    meta = {"machine": info, "minutes": args.minutes, "lr": args.lr, "batch": args.batch, "block": args.block,
            "poem_repeats": args.poem_repeats, "min_count": args.min_count, "context": args.context, "vocab_size": tok.vocab_size,
            "shape": SHAPE, "n_blanks": len(blank_list)}
    args.runs.mkdir(parents=True, exist_ok=True)
    (args.runs / "results.json").write_text(json.dumps({"meta": meta, "results": results}, ensure_ascii=False, indent=1))
    plot(results, args.plot, meta)

    print(f"\n| model | parameters | steps in {args.minutes:g} min | characters right | length right | whole line right "
          f"| rhyme kept ({results[next(iter(results))]['scores']['n_rhyme']} slots) "
          f"| real line: nats per character | real line: characters top-1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row, r in results.items():
        s = r["scores"]
        print(f"| {row} | {r['parameters'] / 1e6:.2f}M | {r['steps']:,} | {s['char_acc']:.3f} | {s['exact_len']:.3f} | "
              f"{s['exact']:.3f} | {s['rhyme']:.3f} | {s['real_line']['nats_per_char']:.2f} | "
              f"{s['real_line']['top1']:.3f} |")
    print(f"(a uniform guess over the vocabulary: {math.log(tok.vocab_size):.2f} nats per character)")
    print("\nsamples (rhyme slots of quatrains):")
    picks = [i for i, b in enumerate(blank_list) if b.rhyme_slot and len(b.poem["lines"]) == 2][:args.samples]
    for i in picks:
        b = blank_list[i]
        print(f"  {b.poem['title']}: {''.join(b.poem['lines'])}\n    real: {b.answer}  " +
              "  ".join(f"{r['model']}{'-iter' if 'iterative' in row else ''}: {r['fills'][i] or '(empty)'}"
                        for row, r in results.items()))
    print(f"\nplot: {args.plot}; results: {args.runs / 'results.json'}")


if __name__ == "__main__":
    main()
