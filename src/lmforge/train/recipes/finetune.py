"""The `finetune` recipe: a pretrained encoder plus a fresh head, trained on a labelled task (Devlin et al. 2019,
sec. 4: "we simply plug in the task-specific inputs and outputs into BERT and fine-tune all the parameters
end-to-end").

- the model: `model: {from: DIR}`, an lmforge or Hugging Face BERT / DistilBERT directory (MiniLM, a BERT the
  `mlm` recipe pretrained), or a config (`model: {family: bert, preset: bert-mini}`, randomly initialised, with
  `data.tokenizer: DIR`). The task sets the head (lmforge.data.finetune.TASKS: classify, tag or qa) and its
  labels; the encoder's tensors are copied, the head's are new (N(0, 0.02), BERT's init);
- the tokenizer: the model directory's (or data.tokenizer's), cutting inputs at data.max_len tokens; batches
  are padded to their own longest row;
- the loss: the head's cross-entropy (the model's own, from `targets`), with its accuracy as a metric
  (metrics.jsonl: accuracy for classify, token_accuracy for tag, span_accuracy for qa; val_ the same on the
  val split every train.eval_interval steps);
- at the end: the task's own scores on the val split (accuracy, entity F1, exact match and token F1;
  lmforge.eval.finetune) in finetune.json. `lmforge eval wordnet RUN` scores the test split.

    lmforge train configs/finetune-wordnet.yaml --set model.from=DIR --set data.task=wordnet-qa --out runs/qa

The config classes import no torch; a `model.from` naming a Hugging Face directory is read through its
family's adapter, which does.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from lmforge.config import Config, check
from lmforge.data.finetune import TASKS, lookup_task
from lmforge.io import atomic_write_json, read_json
from lmforge.models import FAMILIES, config_class, lookup
from lmforge.train.recipes import RecipeRun

if TYPE_CHECKING:
    import torch

ENCODERS = [f.name for f in FAMILIES.values() if f.decoding == "encoder"]


@dataclasses.dataclass
class FinetuneDataConfig(Config):
    """The labelled task and how its text becomes input."""

    task: str = "wordnet-supersense"  # a name in lmforge.data.finetune.TASKS
    max_len: int = 128  # tokens per input, [CLS]/[SEP] included (MiniLM's tokenizer file cuts at 128 too)
    train_examples: int = 0  # train on a random subset of this many training examples (seeded); 0 = all
    eval_examples: int = 0  # val examples scored at the end of the run (finetune.json); 0 = all
    tokenizer: str = ""  # a directory with tokenizer.json; "" = the one in model.from

    def __post_init__(self):
        n = "FinetuneDataConfig"
        check(self.task in TASKS, n, f"unknown task {self.task!r}. Known tasks: {', '.join(TASKS)}")
        check(self.max_len >= 8, n, f"max_len must be >= 8 tokens, got {self.max_len}")
        check(self.train_examples >= 0 and self.eval_examples >= 0, n,
              "train_examples and eval_examples must be >= 0 (0 = all)")


@dataclasses.dataclass
class FinetuneOptions(Config):
    """What the recipe adds to the Trainer."""

    minutes: float = 0.0  # wall-clock training budget; 0 = train to train.max_steps
    max_answer_tokens: int = 30  # qa: longest answer considered (google-research/bert run_squad.py max_answer_length)

    def __post_init__(self):
        check(self.minutes >= 0, "FinetuneOptions", f"minutes must be >= 0, got {self.minutes}")
        check(self.max_answer_tokens > 0, "FinetuneOptions",
              f"max_answer_tokens must be positive, got {self.max_answer_tokens}")


def source_config(directory: str) -> tuple[str, dict[str, Any]]:
    """(family, config fields) of the model in an lmforge or Hugging Face directory, without loading weights."""
    path = Path(directory)
    if not (path / "config.json").is_file():
        raise ValueError(f"model.from: {path} has no config.json: give an lmforge run/model directory or a Hugging "
                         f"Face BERT/DistilBERT directory")
    raw = read_json(path / "config.json", "; the file is corrupt")
    if "family" not in raw:
        if "model_type" not in raw:
            raise ValueError(f"model.from: {path}/config.json has neither 'family' (lmforge) nor 'model_type' "
                             f"(Hugging Face): not a model directory")
        from lmforge.convert.hf import config_from_hf
        cfg = config_from_hf(raw, path)
        return type(cfg).family, cfg.to_dict()
    if "wrapper" in raw:
        raise ValueError(f"model.from: {path} holds a {raw['wrapper'].get('kind')} wrapper around a {raw['family']} "
                         f"model; fine-tune from a plain encoder directory")
    family = raw.pop("family")
    lookup(family)  # an unknown family says which exist
    return family, raw


@dataclasses.dataclass
class Run(RecipeRun):
    """A fine-tuning run (configs/finetune-wordnet.yaml): sections model, data, train, recipe.

    Example (YAML):
        recipe: {name: finetune, minutes: 8}
        model: {from: path/to/all-MiniLM-L6-v2}     # or {family: bert, preset: bert-mini} + data.tokenizer
        data: {task: wordnet-qa, max_len: 128}
        train: {max_steps: 1000, batch_size: 32, lr: 1e-4, warmup_steps: 100, min_lr: 0, weight_decay: 0.01}
    """

    data: FinetuneDataConfig = dataclasses.field(default_factory=FinetuneDataConfig)
    recipe: FinetuneOptions = dataclasses.field(default_factory=FinetuneOptions)

    DECODING: ClassVar[tuple[str, ...]] = ("encoder",)
    NAME: ClassVar[str] = "finetune"
    DEFAULT_FAMILY: ClassVar[str] = "bert"

    def model_config(self, vocab_size: int | None = None) -> Config:
        """The fine-tuned model's Config: model.from's (or the family/preset/fields given), with the task's head
        and labels; other keys in `model` override the directory's (e.g. dropout)."""
        task = lookup_task(self.data.task)
        taken = [k for k in ("head", "labels") if k in self.model]
        if taken:
            raise ValueError(f"model: {' and '.join(taken)} come from the task ({task.name}: head={task.head!r}); "
                             f"leave them out")
        if "from" in self.model:
            family, fields = source_config(self.model["from"])
            entry = lookup(family)
            if entry.decoding not in self.DECODING:
                raise ValueError(f"recipe 'finetune' trains encoders ({', '.join(ENCODERS)}); model.from "
                                 f"{self.model['from']} holds a {family} model, which is a {entry.decoding}. Start from a "
                                 f"BERT or DistilBERT directory")
            for key, value in self.model.items():
                if key not in ("from", "family"):
                    fields[key] = value
        else:
            entry = lookup(self.model.get("family", self.DEFAULT_FAMILY))
            if entry.decoding not in self.DECODING:
                raise ValueError(f"recipe 'finetune' trains encoders ({', '.join(ENCODERS)}); family {entry.name!r} "
                                 f"is a {entry.decoding}. Use model.family bert or distilbert, or model.from DIR")
            base = super().model_config(vocab_size)
            family, fields = type(base).family, base.to_dict()
        fields.update(head=task.head, labels=task.labels)
        if "pooler" in fields:  # BERT: classify reads the pooled [CLS]; tag and qa every token (no pooler, as HF)
            fields["pooler"] = task.head == "classify"
        cls = config_class(family)
        try:
            return cls.from_dict(fields)
        except ValueError as e:
            raise ValueError(f"model: {e}") from None


class Objective:
    """loss_fn(model, batch) for the Trainer: the head's cross-entropy and how often its argmax is right
    (a text's class; a word's tag; an answer's start and end both)."""

    METRIC = {"classify": "accuracy", "tag": "token_accuracy", "qa": "span_accuracy"}

    def __init__(self, head: str, segments: bool):
        self.head, self.segments = head, segments

    def __call__(self, model, batch):
        import torch

        from lmforge.objectives import LossOutput

        ids, mask, types, targets = batch
        out = model(ids, mask, types if self.segments else None, targets=targets)
        with torch.no_grad():
            if self.head == "classify":
                right = out.sequence_logits.argmax(-1) == targets
            elif self.head == "tag":
                scored = targets != -100
                right = (out.logits.argmax(-1) == targets)[scored]
            else:  # qa: (B, T, 2) -> the argmax position of start and of end, (B, 2)
                right = (out.logits.argmax(1) == targets).all(-1)[targets[:, 0] != -100]
            accuracy = right.float().mean() if right.numel() else torch.zeros(())
        return LossOutput(out.loss, {self.METRIC[self.head]: accuracy})


class Budget:
    """Trainer callback: end training once `minutes` of training time are spent (summed over resumes)."""

    def __init__(self, minutes: float):
        self.seconds = minutes * 60

    def __call__(self, trainer, row: dict) -> None:
        if self.seconds > 0 and trainer.elapsed() >= self.seconds and row["step"] < trainer.cfg.max_steps:
            trainer.request_stop(f"wall-clock budget of {self.seconds / 60:g} min spent")


def init_model(cfg: Run, model_cfg: Config, log) -> torch.nn.Module:
    """The model to fine-tune: model.from's tensors copied into a model with the task's head (the rest, the
    head, drawn from train.seed), or, without model.from, a seeded random model. A directory already fine-tuned
    with the same head and labels keeps its head (training continues); one with another head or other labels
    gets a new one."""
    import torch

    from lmforge import load
    from lmforge.models import build_model

    torch.manual_seed(cfg.train.seed)
    model = build_model(type(model_cfg).family, model_cfg)
    if "from" not in cfg.model:
        return model
    loaded = load(cfg.model["from"], base_only=True)
    source = loaded.state_dict()
    same_head = (getattr(loaded.config, "head", None), tuple(getattr(loaded.config, "labels", ()))) == \
        (model_cfg.head, tuple(model_cfg.labels))
    if not same_head:  # a model fine-tuned for another task (or other labels): its head is not reused
        source = {k: v for k, v in source.items() if not k.startswith(("classifier.", "pre_classifier."))}
    own = model.state_dict()
    resized = [f"{k} {tuple(v.shape)} -> {tuple(own[k].shape)}" for k, v in source.items()
               if k in own and v.shape != own[k].shape]
    if resized:
        raise ValueError(f"model.from: tensors of {cfg.model['from']} do not fit the fine-tuned model's shapes "
                         f"({'; '.join(resized[:3])}); do not override size fields (max_len, d_model, ...) in model")
    new = [k for k in own if k not in source]
    unused = [k for k in source if k not in own]
    model.load_state_dict({**own, **{k: v for k, v in source.items() if k in own}})
    log(f"model: {model_cfg.family} from {cfg.model['from']}; new (random) tensors: {', '.join(new)}"
        + (f"; not used: {', '.join(unused)}" if unused else ""))
    return model


def run(cfg: Run, out: str | Path, resume: bool = False, *, log=print) -> dict:
    """Fine-tune into `out`; returns the summary also written to out/finetune.json."""
    import numpy as np

    from lmforge.data.finetune import PaddedBatches, encode_examples, load_examples, pad_id, task_tokenizer
    from lmforge.eval.finetune import evaluate, uses_segments
    from lmforge.tokenizers import load_tokenizer
    from lmforge.train.dist import Dist
    from lmforge.train.loop import Trainer

    if cfg.train.parallel == "fsdp":  # the final scoring runs on rank 0 alone, which needs the whole model there
        raise ValueError("the finetune recipe scores the val split from one process; use train.parallel=ddp")
    out = Path(out)
    dist = Dist()
    if not dist.is_main:
        log = lambda msg: None  # noqa: E731 -- one copy of every line, from rank 0
    task = lookup_task(cfg.data.task)
    source = out if resume else cfg.data.tokenizer or cfg.model.get("from")
    if not source:
        raise ValueError("data.tokenizer: a model built from a config (no model.from) needs a tokenizer; give a "
                         "directory with tokenizer.json (e.g. the model directory whose vocabulary it should read)")
    tokenizer = load_tokenizer(source)
    model_cfg = cfg.model_config(vocab_size=tokenizer.vocab_size)  # a config-built model takes the tokenizer's
    if tokenizer.vocab_size > model_cfg.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                         f"{model_cfg.vocab_size}: they do not belong together")
    if cfg.data.max_len > model_cfg.max_len:
        raise ValueError(f"data.max_len ({cfg.data.max_len}) is longer than the model's max_len ({model_cfg.max_len}); "
                         f"lower data.max_len")
    tok = task_tokenizer(tokenizer, cfg.data.max_len, task.pair)
    train_ex = load_examples(task, "train")
    if 0 < cfg.data.train_examples < len(train_ex):
        keep = np.sort(np.random.default_rng(cfg.train.seed).choice(len(train_ex), cfg.data.train_examples, replace=False))
        train_ex = [train_ex[i] for i in keep]
    val_ex = load_examples(task, "val")
    train_f, cut = encode_examples(task, train_ex, tok)
    val_f, _ = encode_examples(task, val_ex, tok)
    # a qa/tag example whose answer truncation removed entirely has nothing to score: left out of the batches
    scored = lambda f: isinstance(f.target, int) or any(t != -100 for t in f.target)  # noqa: E731
    train_f, val_f = [f for f in train_f if scored(f)], [f for f in val_f if scored(f)]
    log(f"data: {task.name} ({task.head} head{f', {len(task.labels)} labels' if task.labels else ''}), "
        f"{len(train_f):,} train examples" + (f" (a random {cfg.data.train_examples:,} of the split)"
                                                 if cfg.data.train_examples else "")
        + f", {len(val_f):,} val; {cut} training answers cut by max_len {cfg.data.max_len}")
    model = init_model(cfg, model_cfg, log)
    log(f"model: {model_cfg.family}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    t, pad = cfg.train, pad_id(tokenizer)
    train_batches = PaddedBatches(train_f, t.batch_size, pad, seed=t.seed, rank=dist.rank, world_size=dist.world_size)
    # shuffled once, by a fixed seed: the val examples are in file order (by lexicographer file), and the
    # Trainer's eval reads the first train.eval_steps batches
    val_batches = PaddedBatches(val_f, t.batch_size, pad, seed=t.seed + 1, rank=dist.rank, world_size=dist.world_size)
    objective = Objective(task.head, uses_segments(model))
    trainer = Trainer(model, t, train_batches, val_batches, out_dir=out, tokenizer=tokenizer,
                      run_config=cfg.to_dict(), loss_fn=objective, callbacks=(Budget(cfg.recipe.minutes),), log=log)
    last = trainer.fit(resume=resume)
    summary = {"task": task.name, "head": task.head, "from": cfg.model.get("from"), "steps": trainer.step,
               "train_examples": len(train_f), "epochs": round(trainer.step * t.batch_size * t.grad_accum
                                                               * dist.world_size / len(train_f), 3),
               "train_seconds": round(trainer.elapsed(), 1), "stopped": trainer.stop_reason, "last_metrics": last}
    if dist.is_main:
        scores = evaluate(trainer.model, tokenizer, task.name, "val", max_len=cfg.data.max_len,
                          limit=cfg.data.eval_examples, examples=val_ex)
        scores.pop("predictions")
        summary["val"] = scores
        atomic_write_json(out / "finetune.json", summary)
        shown = ", ".join(f"{k} {100 * v:.2f}" for k, v in scores.items() if isinstance(v, float))
        log(f"done: {trainer.step} steps ({summary['epochs']} epochs) in {summary['train_seconds']:.0f} s; val "
            f"({scores['n']:,} examples): {shown}. Test scores: lmforge eval wordnet {out}")
    dist.barrier()
    return summary
