"""lmforge sample RUN_OR_HF_DIR --prompt TEXT [--max-new-tokens --temperature --top-k --seed]

Print the prompt and a sampled continuation. (`lmforge generate` shows the distributions behind it.)
"""
from __future__ import annotations

from lmforge.cli.generate import add_sampling_arguments, encode_prompt, eos_ids, load_run


def add_arguments(p) -> None:
    p.add_argument("run", help="an lmforge run/model directory or a Hugging Face GPT-2 directory (with tokenizer.json)")
    p.add_argument("--prompt", required=True, help="text to continue")
    add_sampling_arguments(p, temperature=0.8, max_new_tokens=200)


def run(args) -> int:
    from lmforge.generate import generate
    from lmforge.serve.text import TextStream

    model, tok = load_run(args.run)
    ids = encode_prompt(tok, args.prompt)
    stream = TextStream(tok.decode)
    print(args.prompt, end="", flush=True)
    for s in generate(model, ids, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                      top_k=args.top_k, seed=args.seed, eos_token_id=eos_ids(tok)):
        print(stream.push(s.token), end="", flush=True)
    print(stream.flush())
    return 0
