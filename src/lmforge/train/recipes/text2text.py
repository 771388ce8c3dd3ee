"""The `text2text` recipe: one encoder-decoder trained on several tasks written as text (Raffel et al. 2020,
sec. 2.4), from scratch or fine-tuned from a span-corruption run (`init`).

Tasks (lmforge.data.text2text): en-de and en-zh translation ("translate English to German: ...") and
program classification ("which program: <message>" -> the program's name). The tasks' training examples
are pooled and batched by length (lmforge.data.translation.TokenBatches): examples-proportional mixing
(sec. 3.5.2) without a cap. Loss: cross-entropy over the target tokens (label_smoothing, T5: 0).
`recipe.minutes` stops at a wall-clock budget, so runs can be compared at equal training time.

    recipe: {name: text2text, tasks: [en-de, en-zh, program], init: runs/span, minutes: 10}

With `init`, the model (family, size, weights) and the tokenizer are the init run's; `model` may only name
the same family. Without it, data.tokenizer is "unigram" (learned on the training split, with sentinels
so that the same vocabulary serves span corruption) or a tokenizer / run directory.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from lmforge.config import Config, check
from lmforge.io import atomic_write_json, read_json
from lmforge.train.recipes import RecipeRun


@dataclasses.dataclass
class Text2TextDataConfig(Config):
    tokenizer: str = "unigram"  # or a directory / tokenizer.json with <pad> and </s>; ignored with recipe.init
    vocab_size: int = 8000
    extra_ids: int = 100  # sentinels of a learned Unigram (unused here; they keep the layout of a span run)
    max_tokens: int = 2048  # tokens per batch, source + target, as the translation recipe
    max_len: int = 128  # training examples longer than this (tokens, either side) are skipped
    min_messages: int = 200  # a program is a class of the `program` task with this many messages
    limit: int = 0  # at most this many examples per task and split, spread over it (quick runs, tests); 0 = all

    def __post_init__(self):
        n = "Text2TextDataConfig"
        for k in ("vocab_size", "max_tokens", "max_len", "min_messages"):
            check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        check(self.limit >= 0, n, f"limit must be >= 0 (0 = every example), got {self.limit}")
        check(self.extra_ids >= 0, n, f"extra_ids must be >= 0, got {self.extra_ids}")
        check(self.max_tokens >= 2 * self.max_len, n,
              f"max_tokens ({self.max_tokens}) must hold one example of max_len ({self.max_len}) tokens per side")


@dataclasses.dataclass
class Text2TextOptions(Config):
    tasks: list = dataclasses.field(default_factory=lambda: ["en-de", "en-zh", "program"])
    init: str = ""  # a span (or text2text) run directory to start from; "" = from scratch
    minutes: float = 0.0  # wall-clock training budget; 0 = train to train.max_steps
    label_smoothing: float = 0.0  # T5: none

    def __post_init__(self):
        from lmforge.data.text2text import TASKS

        n = "Text2TextOptions"
        check(isinstance(self.tasks, list) and len(self.tasks) > 0, n, f"tasks must be a non-empty list, got {self.tasks!r}")
        bad = [t for t in self.tasks if t not in TASKS]
        check(not bad, n, f"unknown task(s) {bad}; the tasks are: {', '.join(TASKS)}")
        check(len(set(self.tasks)) == len(self.tasks), n, f"tasks are listed twice: {self.tasks}")
        check(self.minutes >= 0, n, f"minutes must be >= 0, got {self.minutes}")
        check(0.0 <= self.label_smoothing < 1.0, n, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


@dataclasses.dataclass
class Run(RecipeRun):
    """A text-to-text multi-task run: sections recipe, model (an encoder-decoder), data, train."""

    data: Text2TextDataConfig = dataclasses.field(default_factory=Text2TextDataConfig)
    recipe: Text2TextOptions = dataclasses.field(default_factory=Text2TextOptions)

    DECODING: ClassVar[tuple[str, ...]] = ("encoder-decoder",)
    NAME: ClassVar[str] = "text2text"
    DEFAULT_FAMILY: ClassVar[str] = "transformer"

    @classmethod
    def _sections(cls, d):
        """With recipe.init and no model section, the model's family is the init run's (its config.json)."""
        section = d.get("recipe") if isinstance(d, dict) else None
        init = section.get("init") if isinstance(section, dict) else None
        if init and not d.get("model") and (Path(init) / "config.json").is_file():
            saved = read_json(Path(init) / "config.json")
            family = saved.get("family") if isinstance(saved, dict) else None
            if isinstance(family, str):
                d = {**d, "model": {"family": family}}
        return super()._sections(d)


def encode(tok, examples, max_len: int | None, start_id: int) -> tuple[list[tuple[list[int], list[int]]], int]:
    """Examples -> ([(source ids + </s>, start + target ids + </s>)], number skipped for exceeding max_len),
    the layout lmforge.data.translation.TokenBatches batches."""
    eos = tok.special_tokens["</s>"]
    out, skipped = [], 0
    for e in examples:
        s = tok.encode(e.src, add_special_tokens=False) + [eos]
        t = [start_id] + tok.encode(e.tgt, add_special_tokens=False) + [eos]
        if max_len is not None and (len(s) > max_len or len(t) > max_len):
            skipped += 1
            continue
        out.append((s, t))
    return out, skipped


def spread(items: list, limit: int) -> list:
    """At most `limit` items, every k-th so they span the list (all of them when limit is 0)."""
    if not limit or len(items) <= limit:
        return items
    return items[::len(items) // limit][:limit]


def _init(cfg: Run, out: Path, resume: bool):
    """(tokenizer, init weights or None) and cfg.model set to the init run's model, for recipe.init."""
    from lmforge.models import load_model
    from lmforge.tokenizers import load_tokenizer, save_tokenizer

    src = Path(cfg.recipe.init)
    if not (src / "config.json").is_file():
        raise ValueError(f"recipe.init {str(src)!r} is not a run or model directory (no config.json): give the "
                         "directory of a span run (lmforge train configs/span-gettext.yaml)")
    base = load_model(src)
    family = base.config.family
    whole = {"family": family, **base.config.to_dict()}
    # a resumed run's config holds the whole model; {"family": DEFAULT_FAMILY} is what a config without a model
    # section reads as when its init did not exist yet (a run config checked before the init run was trained)
    if cfg.model not in ({}, {"family": family}, {"family": cfg.DEFAULT_FAMILY}, whole):
        raise ValueError(f"recipe.init gives the model (a {family!r} model from {src}); leave the model section out "
                         f"(it says {cfg.model})")
    cfg.model = whole
    if resume:
        return load_tokenizer(out), None
    tok = load_tokenizer(src)
    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(tok, out)
    return tok, base.state_dict()


def run(cfg: Run, out: str | Path, resume: bool = False, *, log=print) -> dict:
    """Train one text-to-text model on cfg.recipe.tasks into `out`; returns the summary in out/text2text.json."""
    from lmforge.data import text2text
    from lmforge.data.translation import TokenBatches
    from lmforge.models import load_state
    from lmforge.train.dist import Dist
    from lmforge.train.loop import Trainer
    from lmforge.train.recipes import build_model
    from lmforge.train.recipes.span import Budget, Objective, model_ids, tokenizer_for

    out, d, t, dist = Path(out), cfg.data, cfg.train, Dist()
    if not dist.is_main:
        log = lambda msg: None  # noqa: E731
    tasks = cfg.recipe.tasks
    train_ex, val_ex = ([e for task in tasks for e in spread(text2text.examples(task, split, d.min_messages), d.limit)]
                        for split in ("train", "val"))
    state = None
    if cfg.recipe.init:
        tok, state = _init(cfg, out, resume)
    else:
        texts = lambda: [s for e in train_ex for s in (e.src, e.tgt)]  # noqa: E731 -- prefixes included
        tok = tokenizer_for(cfg, d.tokenizer, texts, d.vocab_size, d.extra_ids, out, resume)
        model_ids(cfg, tok)
    model = build_model(cfg, tok, d.max_len, "data.max_len")
    if state is not None:
        load_state(model, state, cfg.recipe.init)
    start, pad = model.decoder_start, model.config.pad_id
    train_pairs, skipped = encode(tok, train_ex, d.max_len, start)
    val_pairs, _ = encode(tok, val_ex, d.max_len, start)
    train = TokenBatches(train_pairs, d.max_tokens, seed=t.seed, pad_id=pad)
    val = TokenBatches(val_pairs, d.max_tokens, seed=t.seed + 1, pad_id=pad)
    counts = {task: sum(e.task == task for e in train_ex) for task in tasks}
    log(f"model: {model.config.family}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters"
        f"{' from ' + cfg.recipe.init if cfg.recipe.init else ''}; tasks {counts} ({skipped} over {d.max_len} tokens "
        f"skipped), {len(val_pairs):,} val; vocab {tok.vocab_size}")
    budget = Budget(cfg.recipe.minutes)
    trainer = Trainer(model, t, train, val, out_dir=out, tokenizer=tok, run_config=cfg.to_dict(),
                      loss_fn=Objective(cfg.recipe.label_smoothing), callbacks=(budget,), log=log)
    last = trainer.fit(resume=resume)
    seconds, tokens = trainer.elapsed(), trainer.global_tokens()
    summary = {"family": model.config.family, "tasks": tasks, "init": cfg.recipe.init or None, "steps": trainer.step,
               "train_seconds": round(seconds, 1), "train_tokens": tokens,
               "stopped_by_budget": trainer.dist.broadcast(budget.stopped), "last_metrics": last}
    if dist.is_main:
        atomic_write_json(out / "text2text.json", summary)
    log(f"done: {trainer.step} steps in {seconds:.0f} s; run directory {out}")
    return summary
