"""int8 (and bf16) weights for decoding, against fp32: speed, the bandwidth bound, and perplexity.

    python bench/quantize.py --threads 1                 # all three parts
    python bench/quantize.py --only decode --new 128     # or: linear, perplexity
    python bench/quantize.py --only perplexity --run runs/kjv-char

1. linear: one decoding row (and a 32-token prompt) through every matrix of GPT-2-124M (49 products, more
   bytes than the caches hold), fp32 F.linear against each int8 product lmforge.kernels.int8 can choose
   from (dequantize + F.linear, torch's _weight_int8pack_mm, lmforge's AVX2 kernel and its dequantize),
   interleaved; and which one lmforge.kernels.int8 chose by timing.
2. decode: tokens/s of lmforge.generate (greedy, 32-token prompt, as `lmforge generate --weights ...` runs it:
   huge-page weights, the CPU fast paths) on the GPT-2-124M shape (random weights: speed does not depend on
   them), fp32 vs int8 (vs bf16 with --bf16 or where the CPU has native bf16: without it, bf16 products are
   ~100x slower), interleaved rounds. Each as a fraction of its bandwidth bound: read bandwidth (a plain
   sum over a 1 GiB tensor, this run) / the weight bytes a step reads (every linear weight, the head, norms
   and biases; one row of the embedding tables, not counted).
3. perplexity: exp(mean cross-entropy) on the bundled KJV validation books of a trained run, fp32 vs int8
   vs bf16 (non-overlapping windows of the model's context), and how many of 64 greedy tokens after the first
   32 validation tokens equal fp32's. Without --run, a small one is trained first
   with `lmforge train configs/kjv-char.yaml` for --train-steps steps (a minute or two).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from common import (  # bench/common.py
    cpu_has_native_bf16, interleaved, machine, machine_line, ratio, read_bandwidth, set_threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GPT2_MATRICES = [(2304, 768), (768, 768), (3072, 768), (768, 3072)] * 12 + [(50257, 768)]  # qkv, out, fc1, fc2; head


def bytes_per_token(model) -> int:
    """Bytes of the weights one decoding step reads: every parameter and buffer but the embedding tables, which
    are read one row at a time, unless a tied head reads the whole table (fp32 GPT-2: the token table is the
    head; int8 / bf16: the head has its own copy, counted as a layer's weight)."""
    from lmforge.nn.heads import LMHead
    tied = {id(m.embedding[0]) for m in model.modules() if isinstance(m, LMHead) and m.proj is None}
    looked_up = {id(t) for m in model.modules() if isinstance(m, torch.nn.Embedding) and id(m) not in tied
                 for t in m.parameters()}
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()] if id(t) not in looked_up}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def bench_linear(rounds: int, rows: int) -> dict:
    from lmforge.kernels import int8
    from lmforge.nn.quant import quantize_int8
    torch.manual_seed(0)
    weights = [torch.randn(s) * 0.02 for s in GPT2_MATRICES]
    quantized = [quantize_int8(w) for w in weights]
    x = {k: torch.randn(rows, k) for k in (768, 3072)}
    steps = {"fp32 F.linear": lambda: [F.linear(x[w.shape[1]], w) for w in weights]}
    for name, f in int8.candidates(x[768]).items():
        steps[f"int8 {name}"] = lambda f=f: [f(x[q.shape[1]], q, s) for q, s in quantized]
    times = interleaved(steps, rounds=rounds, iters=1, warmup=1, log=None)
    int8._chosen.clear()
    for q, s in quantized:  # what the timing choice picks for each GPT-2 matrix
        int8.int8_linear(x[q.shape[1]], q, s)
    fp32 = times["fp32 F.linear"]
    return {"rows": rows, "ms_per_pass": {k: round(min(v) * 1e3, 2) for k, v in times.items()},
            "speed_vs_fp32": {k: round(ratio(v, fp32)["best"], 2) for k, v in times.items()},
            "chosen": sorted({f"{k[1]}x{k[2]}: {v}" for k, v in int8.choices().items()})}


def bench_decode(rounds: int, new: int, kinds: list[str]) -> dict:
    import lmforge
    from lmforge.generate import generate
    from lmforge.models import build_model
    torch.manual_seed(0)
    fp32 = build_model("gpt", "gpt2").eval()
    models = {"fp32": fp32}
    for kind in kinds[1:]:
        models[kind] = lmforge.quantize(copy.deepcopy(fp32), kind)
    prompt = torch.randint(0, 50257, (32,)).tolist()
    tokens = {}

    def step(kind):
        def run():
            tokens[kind] = [s.token for s in generate(models[kind], prompt, max_new_tokens=new, temperature=0,
                                                      huge_pages=True)]
        return run

    times = interleaved({k: step(k) for k in models}, rounds=rounds, iters=1, warmup=1, log=None)
    bw = read_bandwidth(tensors=2)
    out = {"read_GBps": round(bw / 1e9, 1), "new_tokens": new}
    for kind, model in models.items():
        nbytes = bytes_per_token(model)
        tok_s = new / min(times[kind])
        out[kind] = {"tok_s": round(tok_s, 2), "MB_per_token": round(nbytes / 1e6, 1),
                     "bound_tok_s": round(bw / nbytes, 1), "fraction_of_bound": round(tok_s * nbytes / bw, 3),
                     "vs_fp32": round(ratio(times[kind], times["fp32"])["best"], 2),
                     "vs_fp32_median_round": round(ratio(times[kind], times["fp32"])["median"], 2),
                     "same_greedy_tokens_as_fp32": sum(a == b for a, b in zip(tokens[kind], tokens["fp32"]))}
    return out


def train_run(steps: int) -> Path:
    out = Path(tempfile.mkdtemp()) / "kjv-char"
    cmd = [sys.executable, "-m", "lmforge", "train", str(ROOT / "configs" / "kjv-char.yaml"), "--out", str(out),
           "--set", f"train.max_steps={steps}", "--set", f"train.eval_interval={steps}",
           "--set", f"train.save_interval={steps}"]
    print("training:", " ".join(cmd[2:]), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def perplexity(model, ids: torch.Tensor, window: int) -> float:
    """exp(mean next-token cross-entropy) over non-overlapping windows of `window` + 1 tokens."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, ids.numel() - 1, window):
            chunk = ids[i:i + window + 1]
            if chunk.numel() < 2:
                break
            logits = model(chunk[None, :-1]).logits[0]
            total += F.cross_entropy(logits, chunk[1:], reduction="sum").item()
            count += chunk.numel() - 1
    return math.exp(total / count)


def bench_perplexity(run: Path | None, steps: int) -> dict:
    import lmforge
    from lmforge.data.corpora import splits
    from lmforge.generate import generate
    from lmforge.kernels import accelerate
    from lmforge.tokenizers import load_tokenizer
    run = run or train_run(steps)
    tok = load_tokenizer(run)
    ids = torch.tensor(tok.encode(splits("kjv")["val"]))
    out = {"run": str(run), "val_tokens": ids.numel()}
    greedy = {}
    for kind in ("fp32", "int8", "bf16"):
        model = accelerate(lmforge.quantize(lmforge.load(run).eval(), kind))  # the products decoding uses
        out[kind] = round(perplexity(model, ids, model.config.max_len), 4)
        greedy[kind] = [s.token for s in generate(model, ids[:32].tolist(), max_new_tokens=64, temperature=0)]
    for kind in ("int8", "bf16"):  # greedy continuation of the first 32 validation tokens, 64 steps
        out[f"{kind}_same_greedy_tokens_of_64"] = sum(a == b for a, b in zip(greedy[kind], greedy["fp32"]))
    out["int8_vs_fp32"] = round(out["int8"] / out["fp32"] - 1, 5)
    out["bf16_vs_fp32"] = round(out["bf16"] / out["fp32"] - 1, 5)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["linear", "decode", "perplexity"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--new", type=int, default=128, help="new tokens per decode (default 128)")
    p.add_argument("--bf16", action="store_true", help="decode with bf16 weights too (slow without native bf16)")
    p.add_argument("--run", type=Path, help="a trained run for the perplexity part (default: train one)")
    p.add_argument("--train-steps", type=int, default=600)
    args = p.parse_args()
    set_threads(args.threads)
    info = machine()
    print(machine_line(info), flush=True)
    results = {"machine": info}
    if args.only in (None, "linear"):
        results["linear"] = [bench_linear(args.rounds, rows) for rows in (1, 32)]  # a decoding step; a prompt
        print(json.dumps({"linear": results["linear"]}, indent=1), flush=True)
    if args.only in (None, "decode"):
        kinds = ["fp32", "int8"] + (["bf16"] if args.bf16 or cpu_has_native_bf16() else [])
        results["decode"] = bench_decode(args.rounds, args.new, kinds)
        print(json.dumps({"decode": results["decode"]}, indent=1), flush=True)
    if args.only in (None, "perplexity"):
        results["perplexity"] = bench_perplexity(args.run, args.train_steps)
        print(json.dumps({"perplexity": results["perplexity"]}, indent=1), flush=True)


if __name__ == "__main__":
    main()
