"""lmforge sample RUN_OR_HF_DIR --prompt TEXT [--max-new-tokens --temperature --top-k --seed] [--no-slide]

Print the prompt and a sampled continuation. (`lmforge generate` shows the distributions behind it.)
Longer than the model's context: each time the context fills, the last half of it is kept and
sampling goes on (as nanoGPT's sample.py goes on past block_size); --no-slide stops there instead.
"""
from __future__ import annotations

import argparse
import sys

from lmforge.cli.generate import add_sampling_arguments, encode_prompt, load_run


def add_arguments(p) -> None:
    p.add_argument("run", help="an lmforge run/model directory or a Hugging Face GPT-2 directory (with tokenizer.json)")
    p.add_argument("--prompt", required=True, help="text to continue")
    add_sampling_arguments(p, temperature=0.8, max_new_tokens=200)
    p.add_argument("--slide", action=argparse.BooleanOptionalAction, default=True,
                   help="go on past the model's context, keeping its last half each time it fills (default); "
                        "--no-slide: stop when the context is full")


def run(args) -> int:
    from lmforge.generate import generate
    from lmforge.tokenizers import eos_ids
    from lmforge.tokenizers.stream import TextStream

    model, tok = load_run(args.run)
    ids = encode_prompt(tok, args.prompt)
    stream = TextStream(tok.decode)
    max_len = model.config.max_len
    if args.slide and len(ids) + args.max_new_tokens > max_len:
        print(f"note: prompt + new tokens exceed the model's context of {max_len} tokens: each time it fills, "
              f"the last {max_len // 2} are kept and sampling goes on (--no-slide stops instead)", file=sys.stderr)
    print(args.prompt, end="", flush=True)
    n, last = 0, None
    for last in generate(model, ids, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                         top_k=args.top_k, seed=args.seed, eos_token_id=eos_ids(tok, args.run), slide=args.slide):
        n += 1
        print(stream.push(last.token), end="", flush=True)
    print(stream.flush())
    if last is not None and last.finish_reason == "length" and n < args.max_new_tokens:
        print(f"note: stopped after {n} of {args.max_new_tokens} new tokens: the prompt ({len(ids)} tokens) and "
              f"the text filled the model's context of {max_len} tokens", file=sys.stderr)
    return 0
