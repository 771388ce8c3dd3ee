"""lmforge convert SRC DST --to hf|lmforge"""
from __future__ import annotations

import shutil
from pathlib import Path


def add_arguments(p):
    p.add_argument("src", help="an lmforge run/model directory or a Hugging Face checkpoint directory")
    p.add_argument("dst", help="output directory (created; existing files with the same names are replaced atomically)")
    p.add_argument("--to", required=True, choices=["hf", "lmforge"], help="format to write")
    p.add_argument("--merge", action="store_true",
                   help="a LoRA run: fold the adapters into the weights and write one plain model (without it, --to hf "
                        "writes the base model and DST/adapter in PEFT's format)")


def run(args) -> int:
    import lmforge
    from lmforge import lora
    from lmforge.convert.hf import save_hf
    from lmforge.models import save_model

    src, dst = Path(args.src), Path(args.dst)
    if src.resolve() == dst.resolve():
        raise ValueError("SRC and DST are the same directory; choose a new DST so the source is never overwritten")
    model = lmforge.load(src)
    if isinstance(model, lora.LoRAModel):
        if args.merge:
            model = lora.unload(lora.merge(model))
        elif args.to == "lmforge":
            raise ValueError(f"{src} is a LoRA run, already an lmforge directory; pass --merge to write the model "
                             f"with its adapters folded in")
    elif args.merge:
        raise ValueError(f"--merge folds LoRA adapters into the weights; {src} has none")
    (save_hf if args.to == "hf" else save_model)(model, dst)
    # the tokenizer, its chat template and the generation defaults (end-of-turn ids) travel with the weights
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.model", "spiece.model",
                 "special_tokens_map.json", "chat_template.jinja", "generation_config.json"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.to} checkpoint to {dst} ({n:,} parameters)")
    return 0
