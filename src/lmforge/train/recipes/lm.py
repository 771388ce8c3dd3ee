"""The `lm` recipe: next-token prediction on a text corpus (GPT-1/GPT-2 pretraining; nanoGPT's loop).

Random windows of `data.block_size` tokens from the corpus's train split (lmforge.data.sampler), the
model's own mean cross-entropy as the loss, val loss on the val split. The default recipe of
decoder-only families.

    lmforge train configs/kjv-char.yaml          # model: {family: gpt, ...}; `recipe: lm` is implied
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import ClassVar

from lmforge.config import Config, RecipeOptions, check
from lmforge.train.recipes import RecipeRun


@dataclasses.dataclass
class DataConfig(Config):
    """Where the tokens come from. `corpus` is a bundled name (see lmforge.data.corpora) or a UTF-8 .txt path."""

    corpus: str = "kjv"
    tokenizer: typing.Literal["char"] = "char"  # the other tokenizers arrive with their own issue
    block_size: int = 256  # tokens per training window (T); nanoGPT shakespeare_char uses 256
    chat_tokens: bool = False  # give the tokenizer the chat template's markers (lmforge.data.chat), for a later SFT

    def __post_init__(self):
        check(self.block_size > 0, "DataConfig", f"block_size must be positive, got {self.block_size}")
        check(bool(self.corpus), "DataConfig", "corpus must name a bundled corpus or a text file")


@dataclasses.dataclass
class Run(RecipeRun):
    """A language-model run (configs/kjv-char.yaml): sections recipe (no options), model, data, train."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    recipe: RecipeOptions = dataclasses.field(default_factory=RecipeOptions)

    DECODING: ClassVar[tuple[str, ...]] = ("decoder",)
    NAME: ClassVar[str] = "lm"


def run(cfg: Run, out: Path, resume: bool = False) -> dict:
    """Build data, tokenizer and model from `cfg` and train into `out`; returns the last metrics row."""
    from lmforge.data.prepare import prepare
    from lmforge.data.sampler import RandomWindows
    from lmforge.train.dist import Dist
    from lmforge.train.loop import Trainer
    from lmforge.train.recipes import build_model

    dist = Dist()
    tokenizer = None
    if resume:
        from lmforge.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(out)
    tokenizer, tokens = prepare(cfg.data, out, tokenizer)
    for split, arr in tokens.items():
        if len(arr) < cfg.data.block_size + 1:
            raise ValueError(f"the {split} split of corpus {cfg.data.corpus!r} has {len(arr)} tokens, fewer than "
                             f"data.block_size + 1 = {cfg.data.block_size + 1}; use a smaller block_size or more text")
    model = build_model(cfg, tokenizer, cfg.data.block_size, "data.block_size")
    t = cfg.train
    train_batches = RandomWindows(tokens["train"], cfg.data.block_size, t.batch_size, seed=t.seed,
                                  rank=dist.rank, world_size=dist.world_size)
    val_batches = RandomWindows(tokens["val"], cfg.data.block_size, t.batch_size, seed=t.seed + 1,
                                rank=dist.rank, world_size=dist.world_size)
    if dist.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"model: {model.config.family}, {n_params / 1e6:.2f}M parameters; data: {cfg.data.corpus}, "
              f"{len(tokens['train']):,} train / {len(tokens['val']):,} val tokens, vocab {tokenizer.vocab_size}; "
              f"global batch {t.batch_size * t.grad_accum * dist.world_size} x {cfg.data.block_size} tokens"
              + (f" over {dist.world_size} processes" if dist.enabled else "")
              + (", model sharded (fsdp)" if t.parallel == "fsdp" else ""), flush=True)
    trainer = Trainer(model, t, train_batches, val_batches, out_dir=out, tokenizer=tokenizer, run_config=cfg.to_dict())
    last = trainer.fit(resume=resume)
    if dist.is_main:
        val = f", val loss {last['val_loss']:.4f}" if "val_loss" in last else ""
        print(f"done: step {trainer.step}{val}. Run directory: {out} (lmforge info {out})", flush=True)
    return last
