"""Training throughput (tokens/s of forward + backward + AdamW step): lmforge GPT vs nanoGPT vs HF GPT-2 vs litgpt.

Shape: nanoGPT's CPU recipe for shakespeare-char (README "I only have a macbook": n_layer=4, n_head=4,
n_embd=128, block_size=64, batch_size=12, dropout=0.0), vocab 65 (shakespeare-char's character set).
Every contender gets the same shape, dtype, threads, random token batches, loss (mean cross-entropy over
all B*T next-token targets) and AdamW hyper-parameters (nanoGPT's shakespeare-char settings: lr 1e-3,
betas (0.9, 0.99), weight decay 0.1 on 2-D tensors only, as in nanoGPT's configure_optimizers).
AdamW implementation (--optimizer): "shipped" (default) gives each contender what its own training code
uses on this device: lmforge's trainer uses torch's fused AdamW (lmforge.train.optim.build_optimizer);
nanoGPT (fused only on CUDA), the HF Trainer ("adamw_torch") and litgpt's pretrain script construct
torch.optim.AdamW without `fused`, which on CPU is a Python loop over the tensors. "loop" and "fused"
give every contender the same implementation, to compare the models alone.

Contenders (all in train mode, dropout 0):
  ours      lmforge.models.gpt.GPT, GELU-tanh, tied head (GPT-2)
  nanogpt   nanoGPT's model.py (karpathy/nanoGPT), restated op for op in bench/nanogpt_model.py (not on PyPI):
            LayerNorm with bias, fused c_attn, scaled_dot_product_attention(is_causal=True), exact erf GELU,
            tied wte/lm_head, learned wpe; bias=True (its GPTConfig default; its train.py sets bias=False)
  hf        transformers.GPT2LMHeadModel, all dropouts 0, attn_implementation="sdpa", GELU-tanh ("gelu_new")
  litgpt    litgpt.model.GPT with litgpt.Config(n_layer=4, n_head=4, n_embd=128, block_size=64,
            vocab_size=65, padded_vocab_size=65, bias=True, norm_class_name="LayerNorm",
            mlp_class_name="GptNeoxMLP", intermediate_size=512, gelu_approximate="tanh",
            parallel_residual=False, rotary_percentage=0.0). litgpt has no learned absolute positions and
            no weight tying, so the closest it gets to GPT-2 is no positional encoding at all (RoPE on 0 of
            the head dimensions); its head is an untied 128x65 linear. Both make it do slightly *less* work.
  X-compiled  model X wrapped in torch.compile (inductor; --compile lists them, default ours): what
            lmforge's `train.compile: true` does. The first step's wall time is printed as the compile
            time; by default inductor gets a fresh, empty cache directory, so that is the cold cost a first
            run pays (--warm-inductor-cache: the user's cache, as a second run would find it).
  ours-bf16 ours under torch.autocast(bfloat16); default only where the hardware runs bf16 natively.

    python bench/train_throughput.py                 # CPU, 2 threads, fp32 for all + ours in bf16
    python bench/train_throughput.py --models ours,nanogpt,hf --optimizer fused --threads 1
    python bench/train_throughput.py --device cuda   # a GPU: fp32 and bf16 for every model
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from common import cpu_has_native_bf16, interleaved, machine, machine_line, ratio, set_threads, summary, sync

SHAPE = dict(n_layers=4, n_heads=4, d_model=128, block=64, batch=12, vocab=65)


def build_ours(s):
    from lmforge import kernels
    from lmforge.models import build_model
    model = build_model("gpt", dict(vocab_size=s["vocab"], max_len=s["block"], d_model=s["d_model"],
                                    n_heads=s["n_heads"], n_layers=s["n_layers"], dropout=0.0))
    return kernels.accelerate(model)  # as lmforge's Trainer runs a model on CPU: each fast path where it timed faster


def build_hf(s):
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(vocab_size=s["vocab"], n_positions=s["block"], n_embd=s["d_model"], n_layer=s["n_layers"],
                     n_head=s["n_heads"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel._from_config(cfg, attn_implementation="sdpa")


def build_nanogpt(s):
    from nanogpt_model import NanoGPT, NanoGPTConfig
    return NanoGPT(NanoGPTConfig(block_size=s["block"], vocab_size=s["vocab"], n_layer=s["n_layers"],
                                 n_head=s["n_heads"], n_embd=s["d_model"], dropout=0.0, bias=True))


def build_litgpt(s):
    from litgpt.config import Config
    from litgpt.model import GPT
    cfg = Config(name="bench-gpt", n_layer=s["n_layers"], n_head=s["n_heads"], n_embd=s["d_model"],
                 block_size=s["block"], vocab_size=s["vocab"], padded_vocab_size=s["vocab"], bias=True,
                 norm_class_name="LayerNorm", norm_eps=1e-5, mlp_class_name="GptNeoxMLP",
                 intermediate_size=4 * s["d_model"], gelu_approximate="tanh", parallel_residual=False,
                 rotary_percentage=0.0)
    return GPT(cfg)


BUILDERS = {"ours": build_ours, "nanogpt": build_nanogpt, "hf": build_hf, "litgpt": build_litgpt}


def logits_loss(name: str):
    """Each library's natural forward; the loss is the same mean cross-entropy for all."""
    if name == "ours":
        return lambda m, x, y: m(x, targets=y).loss  # F.cross_entropy inside the model
    if name == "nanogpt":
        return lambda m, x, y: m(x, y)[1]  # nanoGPT's forward(idx, targets) -> (logits, loss)
    get = (lambda m, x: m(input_ids=x).logits) if name == "hf" else (lambda m, x: m(x))
    return lambda m, x, y: (lambda z: F.cross_entropy(z.reshape(-1, z.size(-1)), y.reshape(-1)))(get(m, x))


def adamw(model: torch.nn.Module, fused: bool) -> torch.optim.AdamW:
    """nanoGPT's configure_optimizers: decay 2-D tensors, not biases/norms; shakespeare-char hyper-parameters."""
    from lmforge.train.optim import param_groups  # the same p.dim() >= 2 rule
    return torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.99), fused=fused or None)


OPTIMIZER_NOTE = {"shipped": "as each project ships it (ours fused, the references torch's default)",
                  "loop": "torch's default for every contender (for-loop on CPU)", "fused": "fused for every contender"}


def make_step(name: str, dtype: str, device: str, batches, optimizer: str, compiled: bool = False):
    torch.manual_seed(0)
    model = BUILDERS[name](SHAPE).to(device).train()
    if name == "ours" and torch.device(device).type == "cpu":
        from lmforge.kernels import accelerate
        accelerate(model)  # as lmforge's Trainer does on CPU (products where oneDNN timed faster here)
    fused = optimizer == "fused" or (optimizer == "shipped" and name == "ours")
    opt = adamw(model, fused)
    fwd = logits_loss(name)
    if compiled:  # the module compiled, the optimizer not (lmforge's train.compile; nanoGPT's --compile=True)
        model = torch.compile(model)
    amp = (lambda: torch.autocast(device.split(":")[0], dtype=torch.bfloat16)) if dtype == "bf16" \
        else contextlib.nullcontext
    i = [0]

    def step():
        x, y = batches[i[0] % len(batches)]
        i[0] += 1
        with amp():
            loss = fwd(model, x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step, sum(p.numel() for p in model.parameters())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads, the same for every contender")
    ap.add_argument("--models", default="ours,nanogpt,hf,litgpt")
    ap.add_argument("--compile", default="ours",
                    help="comma list of --models also run under torch.compile (as X-compiled); '' for none")
    ap.add_argument("--warm-inductor-cache", action="store_true",
                    help="let inductor use its usual on-disk cache (default: a fresh one, the cold compile time)")
    ap.add_argument("--dtypes", default=None,
                    help="comma list of fp32,bf16 for every model; default: fp32 for all, plus bf16 for ours where "
                         "bf16 is native (CPU with AVX512-BF16/AMX) and bf16 for all on a GPU")
    ap.add_argument("--optimizer", choices=["shipped", "loop", "fused"], default="shipped",
                    help="AdamW implementation: each contender's own training code's choice (default), or the "
                         "same for all (loop: torch's default on CPU; fused)")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--iters", type=int, default=10, help="timed steps per contender per round")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before each contender's round")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    set_threads(args.threads)
    cuda = args.device.startswith("cuda")
    models = args.models.split(",")
    missing = []
    for name in list(models):
        try:
            BUILDERS[name](dict(SHAPE, n_layers=1))
        except ImportError as e:
            missing.append(f"{name} ({e.name} not installed: see bench/requirements.txt)")
            models.remove(name)
    if args.dtypes:
        contenders = [(m, d) for d in args.dtypes.split(",") for m in models]
    else:
        contenders = [(m, "fp32") for m in models]
        if cuda:
            contenders += [(m, "bf16") for m in models]
        elif cpu_has_native_bf16() and "ours" in models:
            contenders.append(("ours", "bf16"))
    compiled = [m for m in args.compile.split(",") if m]
    for m in compiled:
        if m not in BUILDERS:
            ap.error(f"--compile {m}: not a model; choose among {', '.join(BUILDERS)}")
    # each compiled model right after its eager self, in every dtype it runs in
    contenders = [(m, d, c) for m, d in contenders for c in ((False, True) if m in compiled else (False,))]
    inductor_cache = None
    if compiled and not args.warm_inductor_cache:
        inductor_cache = tempfile.mkdtemp(prefix="inductor-cold-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = inductor_cache  # read when inductor first compiles

    g = torch.Generator().manual_seed(0)
    B, T, V = SHAPE["batch"], SHAPE["block"], SHAPE["vocab"]
    batches = [(torch.randint(0, V, (B, T), generator=g).to(args.device),
                torch.randint(0, V, (B, T), generator=g).to(args.device)) for _ in range(8)]
    steps, nparams, compile_s = {}, {}, {}
    for m, d, c in contenders:
        key = m + ("-compiled" if c else "") + ("" if d == "fp32" else f"-{d}")
        steps[key], nparams[key] = make_step(m, d, args.device, batches, args.optimizer, c)
        if c:  # the first call compiles the forward and the backward graphs
            t = time.perf_counter()
            steps[key]()
            sync(args.device)
            compile_s[key] = time.perf_counter() - t
            print(f"{key}: first step (compilation) {compile_s[key]:.1f} s", file=sys.stderr)
    if inductor_cache:
        shutil.rmtree(inductor_cache, ignore_errors=True)

    info = machine(args.device)
    print(machine_line(info), file=sys.stderr)
    times = interleaved(steps, rounds=args.rounds, iters=args.iters, warmup=args.warmup, device=args.device,
                        log=lambda s: print(s, file=sys.stderr))
    tokens = B * T
    res = {"machine": info, "shape": SHAPE, "optimizer": args.optimizer, "params": nparams,
           "tokens_per_s": {k: summary(v, tokens) for k, v in times.items()}, "ratios": {},
           "compile_s": compile_s, "inductor_cache": "warm (user's)" if args.warm_inductor_cache else "cold (fresh)",
           "skipped": missing}
    dtype_of = {k: (k.split("-bf16")[0], "-bf16" if k.endswith("-bf16") else "") for k in times}
    ours = [k for k, (b, _) in dtype_of.items() if b.startswith("ours")]
    for k, (base, suffix) in dtype_of.items():  # every ours variant against every reference of the same dtype
        if not base.startswith("ours"):
            for o in ours:
                if dtype_of[o][1] == suffix:
                    res["ratios"][f"{o} / {k}"] = ratio(times[o], times[k])
    for o in ours:  # ours' variants against plain ours
        if o != "ours" and "ours" in times:
            res["ratios"][f"{o} / ours"] = ratio(times[o], times["ours"])

    print(f"\nTraining throughput, {B}x{T} tokens/step, {args.device}, "
          f"AdamW {OPTIMIZER_NOTE[args.optimizer]} -- {machine_line(info)}\n")
    print("| contender | params | tokens/s best | median | worst | spread |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, s in res["tokens_per_s"].items():
        print(f"| {k} | {nparams[k]:,} | {s['best']:,.0f} | {s['median']:,.0f} | {s['worst']:,.0f} | "
              f"{s['spread'] * 100:.0f}% |")
    print("\n| ratio (speed) | best vs best | per-round median | per-round min..max |")
    print("|---|---:|---:|---:|")
    for k, r in res["ratios"].items():
        print(f"| {k} | {r['best']:.2f}x | {r['median']:.2f}x | {r['min']:.2f}..{r['max']:.2f}x |")
    for k, sec in compile_s.items():
        print(f"\n{k}: compilation (the first step) took {sec:.1f} s, inductor cache {res['inductor_cache']}")
    for m in missing:
        print(f"\nskipped: {m}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
