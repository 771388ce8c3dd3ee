"""lmforge sample RUN_OR_HF_DIR --prompt TEXT [--max-new-tokens --temperature --top-k --seed]

Print the prompt and a sampled continuation. (`lmforge generate` shows the distributions behind it.)
"""
from __future__ import annotations

import sys

from lmforge.cli.generate import add_sampling_arguments, encode_prompt, eos_ids, load_run


def add_arguments(p) -> None:
    p.add_argument("run", help="an lmforge run/model directory or a Hugging Face GPT-2 directory (with tokenizer.json)")
    p.add_argument("--prompt", required=True, help="text to continue")
    add_sampling_arguments(p, temperature=0.8, max_new_tokens=200)


def run(args) -> int:
    from lmforge.generate import generate
    from lmforge.tokenizers.stream import TextStream

    model, tok = load_run(args.run)
    ids = encode_prompt(tok, args.prompt)
    stream = TextStream(tok.decode)
    print(args.prompt, end="", flush=True)
    n, last = 0, None
    for last in generate(model, ids, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                         top_k=args.top_k, seed=args.seed, eos_token_id=eos_ids(tok)):
        n += 1
        print(stream.push(last.token), end="", flush=True)
    print(stream.flush())
    if last is not None and last.finish_reason == "length" and n < args.max_new_tokens:
        max_len = model.config.max_len
        print(f"note: stopped after {n} of {args.max_new_tokens} new tokens: the prompt ({len(ids)} tokens) and "
              f"the text filled the model's context of {max_len} tokens", file=sys.stderr)
    return 0
