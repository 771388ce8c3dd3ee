"""lmforge serve RUN [--host 127.0.0.1] [--port 8000]: OpenAI-compatible API + the web explorer at /."""
from __future__ import annotations

from pathlib import Path

from lmforge.cli.generate import add_weights_argument, load_run
from lmforge.data.hf_chat import load_chat_template
from lmforge.tokenizers import eos_ids


def add_arguments(p) -> None:
    p.add_argument("run", help="an lmforge run/model directory or a Hugging Face directory (with tokenizer.json; "
                               "/v1/chat/completions uses its chat_template when it has one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--name", default=None, help="model id clients pass as `model` (default: the directory name)")
    p.add_argument("--max-tokens", type=int, default=1024, help="cap on max_tokens per request (default 1024)")
    p.add_argument("--max-concurrent", type=int, default=32, help="requests generating at once; more get HTTP 429")
    p.add_argument("--max-body", type=int, default=1 << 20, help="largest request body in bytes (default 1 MiB)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for the model (default: torch's choice, one per core). On a small machine "
                        "fewer can be faster: the HTTP side needs a core too (2 cores: --threads 1 measured "
                        "1.2-2x the tokens/s, BENCHMARKS.md)")
    p.add_argument("--no-pack", action="store_true",
                   help="batched decoding on CPU keeps a oneDNN-packed copy of each weight where that timed faster "
                        "(1.3-2.5x at 3-32 rows on a Zen 4, but the weights are held twice); this turns that off to "
                        "save the memory")
    add_weights_argument(p)


def run(args) -> int:
    try:
        import uvicorn

        from lmforge.serve.app import Limits, create_app
    except ImportError as e:
        raise ValueError(f"lmforge serve needs the serve extra ({e.name} is missing): pip install 'lmforge[serve]'") from None
    for name in ("max_tokens", "max_concurrent", "max_body", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.threads is not None:
        import torch
        torch.set_num_threads(args.threads)
    if args.no_pack:
        from lmforge.kernels import set_packing
        set_packing(False)
    model, tok = load_run(args.run, args.weights)
    template = load_chat_template(args.run)  # a syntax error in it stops here, before the server starts
    name = args.name or Path(args.run).resolve().name
    app = create_app(model, tok, name, Limits(max_tokens=args.max_tokens, max_body=args.max_body,
                                              max_concurrent=args.max_concurrent), template,
                     eos_ids(tok, args.run))  # a Hugging Face directory's generation_config.json adds its end of turn
    print(f"serving {name!r} on http://{args.host}:{args.port}  (explorer: /, API: /v1)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
