"""Translation recipe: the foundation Trainer with the 2017 paper's objective, budget and averaging.

What it adds (Vaswani et al. 2017, sec. 5 and 6.1):
- batches of ~max_tokens tokens, pairs of similar length together (lmforge.data.translation.TokenBatches);
- label-smoothed cross-entropy, epsilon 0.1 (lmforge.objectives), as the Trainer's `loss_fn`;
- Adam(0.9, 0.98, 1e-9) with the inverse-square-root warmup schedule: these are TrainConfig values
  (beta2, eps, schedule=inverse_sqrt, weight_decay=0 makes AdamW plain Adam), set in configs/translate-*.yaml;
- a wall-clock budget (`recipe.minutes`), so two models can be compared at equal training time;
- weight snapshots every `recipe.snapshot_interval` steps and the average of the last `average_last`
  (the paper: last 5 checkpoints, written every 10 minutes), kept only if its val loss is lower.

Run directory: the Trainer's files (resume works as for any run) plus snapshots/, averaged/ (a model
directory) and translation.json (val losses, tokens/s, which weights `lmforge translate` uses).

    lmforge train configs/translate-en-de.yaml --out runs/en-de

The config classes import no torch (a run config is read and checked before training starts).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from lmforge.config import Config, check
from lmforge.io import atomic_write, atomic_write_json
from lmforge.train.recipes import RecipeRun

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass
class TranslationDataConfig(Config):
    """Parallel data for the translation recipe: a bundled gettext pair or a TSV (domain, en, de|zh)."""

    pair: str = "en-de"  # bundled: en-de, en-zh; or a path to a .tsv / .tsv.xz file with the same columns
    vocab_size: int = 8000  # joint BPE vocabulary trained on the training split (paper: 37000 on 4.5M pairs)
    max_tokens: int = 2048  # tokens per batch, source + target (sec. 5.1: ~25000 of each on 8 GPUs)
    max_len: int = 128  # training pairs longer than this (in tokens, either side) are skipped

    def __post_init__(self):
        n = "TranslationDataConfig"
        check(bool(self.pair), n, "pair must be en-de, en-zh or a TSV path")
        for k in ("vocab_size", "max_tokens", "max_len"):
            check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        check(self.max_tokens >= 2 * self.max_len, n,
               f"max_tokens ({self.max_tokens}) must hold at least one pair of max_len ({self.max_len}) tokens per side")


@dataclasses.dataclass
class TranslationConfig(Config):
    """What the translation recipe adds to the Trainer: loss, wall-clock budget, checkpoint averaging."""

    label_smoothing: float = 0.1  # sec. 5.4: epsilon_ls = 0.1 ("hurts perplexity ... improves accuracy and BLEU")
    minutes: float = 0.0  # wall-clock training budget; 0 = train to train.max_steps
    average_last: int = 5  # sec. 6.1: base models average the last 5 checkpoints
    snapshot_interval: int = 100  # steps between the snapshots averaged (paper: every 10 minutes)

    def __post_init__(self):
        n = "TranslationConfig"
        check(0.0 <= self.label_smoothing < 1.0, n, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        check(self.minutes >= 0, n, f"minutes must be >= 0, got {self.minutes}")
        check(self.average_last >= 1, n, f"average_last must be >= 1 (1 = no averaging), got {self.average_last}")
        check(self.snapshot_interval > 0, n, f"snapshot_interval must be positive, got {self.snapshot_interval}")


@dataclasses.dataclass
class Run(RecipeRun):
    """A translation run (configs/translate-*.yaml): sections model, data, train, recipe.

    Example (YAML):
        model: {family: transformer, preset: transformer-small}
        data: {pair: en-de, vocab_size: 8000, max_tokens: 2048}
        train: {schedule: inverse_sqrt, warmup_steps: 400, lr: 1e-3, beta2: 0.98, eps: 1e-9, weight_decay: 0}
        recipe: {minutes: 30, average_last: 5}       # `name: translation` is implied by the family
    """

    data: TranslationDataConfig = dataclasses.field(default_factory=TranslationDataConfig)
    recipe: TranslationConfig = dataclasses.field(default_factory=TranslationConfig)

    DECODING: ClassVar[tuple[str, ...]] = ("encoder-decoder",)
    NAME: ClassVar[str] = "translation"
    DEFAULT_FAMILY: ClassVar[str] = "transformer"


class Objective:
    """loss_fn(model, batch) for the Trainer: label-smoothed cross-entropy over the target tokens.
    (The Trainer counts the real tokens trained on: TokenBatches.batch_tokens.)"""

    def __init__(self, epsilon: float):
        from lmforge.objectives import label_smoothed_cross_entropy

        self.epsilon, self.loss = epsilon, label_smoothed_cross_entropy

    def __call__(self, model, batch) -> torch.Tensor:
        src, tgt, targets = batch
        return self.loss(model(src, tgt).logits, targets, self.epsilon)


class Snapshots:
    """Trainer callback: stop at the wall-clock budget (training time, summed over resumes); save weights every
    `interval` steps, keep the last `keep`."""

    def __init__(self, out_dir: Path, interval: int, keep: int, minutes: float):
        self.dir, self.interval, self.keep = out_dir / "snapshots", interval, keep
        self.budget = minutes * 60 if minutes > 0 else None
        self.stopped_by_budget = False

    def save(self, model, step: int) -> None:
        from lmforge.train.checkpoint import save_weights
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.dir / f"step-{step:08d}.safetensors", lambda tmp: save_weights(model, tmp, step))
        for old in self.paths()[:-self.keep]:
            old.unlink()

    def paths(self) -> list[Path]:
        return sorted(self.dir.glob("step-*.safetensors"))

    def __call__(self, trainer, row: dict) -> None:
        step = row["step"]
        if self.budget is not None and trainer.elapsed() >= self.budget and step < trainer.cfg.max_steps:
            # the Trainer ends the run after this step, with a checkpoint there
            trainer.request_stop(f"wall-clock budget of {self.budget / 60:g} min spent")
            self.stopped_by_budget = True
        if step % self.interval == 0 or step == trainer.cfg.max_steps or self.stopped_by_budget:
            self.save(trainer.model, step)  # the last step's weights are always a snapshot


def average_checkpoints(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the weights in `paths` (Vaswani et al. 2017 sec. 6.1; fairseq average_checkpoints.py)."""
    from safetensors.torch import load_file
    if not paths:
        raise ValueError("no checkpoints to average")
    total = None
    for p in paths:
        state = load_file(str(p))
        if total is None:
            total = {k: v.double().clone() for k, v in state.items()}
        else:
            if state.keys() != total.keys():
                raise ValueError(f"{p} holds different tensors from {paths[0]}: not snapshots of the same model")
            for k, v in state.items():
                total[k] += v.double()
    return {k: (v / len(paths)).float() for k, v in total.items()}


def prepare(cfg: Run, tokenizer=None, log=print):
    """Read and split the data, train (or reuse) the joint tokenizer -> (lang, splits, tokenizer, train, val batches)."""
    from lmforge.data import translation as data

    lang, pairs = data.read_tsv(cfg.data.pair)
    splits = data.split_by_domain(pairs)
    if tokenizer is None:
        tokenizer = data.train_tokenizer(splits["train"], cfg.data.vocab_size)  # training split only
    train_ex, skipped = data.encode_pairs(tokenizer, splits["train"], cfg.data.max_len)
    val_ex, _ = data.encode_pairs(tokenizer, splits["val"], cfg.data.max_len)
    train = data.TokenBatches(train_ex, cfg.data.max_tokens, seed=cfg.train.seed)
    val = data.TokenBatches(val_ex, cfg.data.max_tokens, seed=cfg.train.seed + 1)
    log(f"data: {cfg.data.pair} ({lang}), {len(splits['train']):,} train / {len(splits['val']):,} val / "
        f"{len(splits['test']):,} test pairs (split by domain); {skipped} training pairs over {cfg.data.max_len} "
        f"tokens skipped; {train.tokens():,} tokens per epoch in {len(train)} batches; vocab {tokenizer.vocab_size}")
    return lang, splits, tokenizer, train, val


def run(cfg: Run, out: str | Path, resume: bool = False, *, log=print) -> dict:
    """Train one translation model into `out`; returns the summary also written to out/translation.json.
    Under torchrun every process trains and evaluates (collectives); only rank 0 writes files and logs."""
    from lmforge.models import load_state, save_model
    from lmforge.tokenizers import load_tokenizer, save_tokenizer
    from lmforge.train.dist import Dist
    from lmforge.train.loop import Trainer
    from lmforge.train.recipes import build_model

    if cfg.train.parallel == "fsdp":  # Snapshots.save runs on rank 0 alone, and a sharded model is on every rank
        raise ValueError("the translation recipe saves and averages weight snapshots from one process, which needs "
                         "the whole model there; use train.parallel=ddp (fsdp: the lm recipe)")
    out = Path(out)
    main = Dist().is_main
    if not main:
        log = lambda msg: None  # noqa: E731 -- one copy of every line, from rank 0
    tokenizer = None
    if resume:
        tokenizer = load_tokenizer(out)
    lang, splits, tokenizer, train_batches, val_batches = prepare(cfg, tokenizer, log)
    model = build_model(cfg, tokenizer, cfg.data.max_len, "data.max_len")
    model_cfg = model.config
    log(f"model: {model_cfg.family}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    objective = Objective(cfg.recipe.label_smoothing)
    snaps = Snapshots(out, cfg.recipe.snapshot_interval, cfg.recipe.average_last, cfg.recipe.minutes)
    trainer = Trainer(model, cfg.train, train_batches, val_batches, out_dir=out, tokenizer=tokenizer,
                      run_config=cfg.to_dict(), loss_fn=objective, callbacks=(snaps,), log=log)
    last = trainer.fit(resume=resume)
    seconds, tokens = trainer.elapsed(), trainer.global_tokens()  # both summed over resumes
    summary = {"family": model_cfg.family, "pair": cfg.data.pair, "lang": lang, "steps": trainer.step,
               "train_seconds": round(seconds, 1), "train_tokens": tokens,
               "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
               "stopped_by_budget": trainer.dist.broadcast(snaps.stopped_by_budget),  # the callback ran on rank 0
               "val_loss_final": trainer.evaluate(), "best": "final"}
    paths = trainer.dist.broadcast(snaps.paths())  # rank 0's files decide for all: evaluate() is a collective
    if cfg.recipe.average_last > 1 and len(paths) > 1:
        load_state(model, average_checkpoints(paths), "averaged snapshots")  # out/ keeps the final weights
        summary["val_loss_averaged"] = trainer.evaluate()
        summary["averaged"] = [p.name for p in paths]
        if main:
            save_model(model, out / "averaged")
            save_tokenizer(tokenizer, out / "averaged")
        if summary["val_loss_averaged"] < summary["val_loss_final"]:
            summary["best"] = "averaged"
    summary["last_metrics"] = last
    if main:
        atomic_write_json(out / "translation.json", summary)
    log(f"done: {trainer.step} steps in {seconds:.0f} s, {summary['tokens_per_s']} tokens/s; val loss "
        f"final {summary['val_loss_final']:.4f}" + (f", averaged {summary['val_loss_averaged']:.4f}"
                                                    if "val_loss_averaged" in summary else "")
        + f"; using {summary['best']}")
    return summary
