"""The `span` recipe: T5's pretraining objective, span corruption (Raffel et al. 2020, sec. 3.1.4), for
encoder-decoder models (`t5`, and the 2017 `transformer`: both take model(src, tgt)).

The text is tokenized, concatenated and cut into examples of `data.length` tokens (T5's reduce_concat_tokens
and split_tokens); each example is corrupted by lmforge.data.span (15% noise, mean span 3, sentinels from
the end of the vocabulary): the encoder reads the input, the decoder is taught the target. Batch i picks
its rows and their spans from (seed, i) only, so a resumed run sees exactly the batches it would have, and
the spans of an example differ from epoch to epoch (T5 also corrupts on the fly). Loss: cross-entropy over
the target tokens (T5 uses no label smoothing). `recipe.minutes` stops at a wall-clock budget.

The tokenizer: `data.tokenizer: unigram` learns a Unigram vocabulary (T5's kind, SentencePiece's algorithm)
with `data.extra_ids` sentinels at its end; the special tokens first are T5's <pad> </s> <unk> (the decoder
starts from <pad>), or <pad> <s> </s> <unk> for a family whose config has a bos_id (the 2017 Transformer
starts from <s>). Or a run / tokenizer directory whose vocabulary ends in <extra_id_*> sentinels.

    lmforge train configs/span-gettext.yaml --out runs/span     # then: recipe text2text with init: runs/span
"""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import ClassVar

from lmforge.config import Config, check
from lmforge.train.recipes import RecipeRun

TOKENIZER_LINES = 25_000  # the Unigram is learned on at most this many lines, spread over the text (pure Python)


@dataclasses.dataclass
class SpanDataConfig(Config):
    """What is corrupted. `corpus`: "gettext" (every message, in English, German and Chinese, of the bundled
    gettext pairs' training programs: lmforge.data.text2text.pretraining_texts) or a bundled corpus / text file
    (lmforge.data.corpora: kjv, zh-prose, ...)."""

    corpus: str = "gettext"
    tokenizer: str = "unigram"  # or a directory / tokenizer.json whose vocabulary ends in <extra_id_*>
    vocab_size: int = 8000  # pieces + special tokens of a learned Unigram; the sentinels come on top
    extra_ids: int = 100  # T5: 100 sentinels, <extra_id_0> = the last id
    length: int = 114  # text tokens per example before corruption (T5: 568 -> 512 input tokens; ours -> ~102)
    noise_density: float = 0.15  # sec. 3.1.4
    mean_span: float = 3.0  # sec. 3.3.4

    def __post_init__(self):
        n = "SpanDataConfig"
        check(self.vocab_size >= 100, n, f"vocab_size must be >= 100, got {self.vocab_size}")
        check(self.extra_ids >= 1, n, f"extra_ids must be >= 1 (span corruption needs sentinels), got {self.extra_ids}")
        check(self.length >= 2, n, f"length must be >= 2 tokens, got {self.length}")
        check(0.0 < self.noise_density < 1.0, n, f"noise_density must be in (0, 1), got {self.noise_density}")
        check(self.mean_span >= 1.0, n, f"mean_span must be >= 1, got {self.mean_span}")


@dataclasses.dataclass
class SpanOptions(Config):
    minutes: float = 0.0  # wall-clock training budget; 0 = train to train.max_steps

    def __post_init__(self):
        check(self.minutes >= 0, "SpanOptions", f"minutes must be >= 0, got {self.minutes}")


@dataclasses.dataclass
class Run(RecipeRun):
    """A span-corruption pretraining run: sections recipe, model (an encoder-decoder), data, train.

    Example (YAML):
        recipe: {name: span, minutes: 10}
        model: {family: transformer, preset: transformer-small}
        data: {corpus: gettext, vocab_size: 8000, extra_ids: 100, length: 114}
        train: {batch_size: 16, lr: 1e-3}
    """

    data: SpanDataConfig = dataclasses.field(default_factory=SpanDataConfig)
    recipe: SpanOptions = dataclasses.field(default_factory=SpanOptions)

    DECODING: ClassVar[tuple[str, ...]] = ("encoder-decoder",)
    NAME: ClassVar[str] = "span"
    DEFAULT_FAMILY: ClassVar[str] = "transformer"


# ---------------------------------------------------------------------------------------------- tokenizer

def special_layout(family: str) -> tuple[str, ...]:
    """The special tokens first in the vocabulary for a family: T5's <pad> </s> <unk>, or <pad> <s> </s> <unk>
    when the family's config has a bos_id (the decoder starts from <s>: the 2017 Transformer, ids 0 1 2 as
    lmforge.data.translation)."""
    from lmforge.models import config_class

    names = {f.name for f in dataclasses.fields(config_class(family))}
    return ("<pad>", "<s>", "</s>", "<unk>") if "bos_id" in names else ("<pad>", "</s>", "<unk>")


def train_tokenizer(texts: list[str], vocab_size: int, extra_ids: int, family: str):
    """A Unigram vocabulary with `extra_ids` sentinels at its end, learned on at most TOKENIZER_LINES of texts."""
    from lmforge.tokenizers import UnigramTokenizer

    step = max(1, len(texts) // TOKENIZER_LINES)
    return UnigramTokenizer.train(texts[::step], vocab_size, special_tokens=special_layout(family),
                                  extra_ids=extra_ids)


def sentinel_count(tok) -> int:
    """How many <extra_id_k> the tokenizer has where span corruption numbers them (<extra_id_k> = vocab - 1 - k)."""
    n = 0
    while tok.token_to_id(f"<extra_id_{n}>") == tok.vocab_size - 1 - n:
        n += 1
    return n


def model_ids(cfg: RecipeRun, tok) -> None:
    """Fill the model config's special ids (pad_id, bos_id, eos_id where the family has them) from the tokenizer,
    unless the run config sets them."""
    from lmforge.models import config_class

    family = cfg.model.get("family", cfg.DEFAULT_FAMILY)
    names = {f.name for f in dataclasses.fields(config_class(family))}
    ids = {}
    for key, token in (("pad_id", "<pad>"), ("bos_id", "<s>"), ("eos_id", "</s>")):
        if key in names and key not in cfg.model:
            if token not in tok.special_tokens:
                raise ValueError(f"the tokenizer has no {token} token, which family {family!r} needs for {key}")
            ids[key] = tok.special_tokens[token]
    cfg.model = {**cfg.model, **ids}


def tokenizer_for(cfg: RecipeRun, spec: str, texts, vocab_size: int, extra_ids: int, out: Path, resume: bool):
    """The run's tokenizer: the one saved in `out` on resume, a learned Unigram (`spec` "unigram"), or loaded."""
    from lmforge.tokenizers import load_tokenizer, save_tokenizer

    if resume:
        return load_tokenizer(out)
    if spec == "unigram":
        tok = train_tokenizer(texts(), vocab_size, extra_ids, cfg.model.get("family", cfg.DEFAULT_FAMILY))
    else:
        tok = load_tokenizer(spec)
    for t in ("<pad>", "</s>"):
        if t not in tok.special_tokens:
            raise ValueError(f"tokenizer {spec!r} has no {t}: text-to-text training needs <pad> and </s> "
                             "(use data.tokenizer: unigram)")
    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(tok, out)
    return tok


# -------------------------------------------------------------------------------------------------- data

def chunks(texts: list[str], tok, length: int) -> list[list[int]]:
    """Token ids of all texts, concatenated and cut into pieces of `length` (the last, shorter one dropped unless
    it is the only one); T5's reduce_concat_tokens + split_tokens."""
    stream: list[int] = []
    for t in texts:
        stream += tok.encode(t, add_special_tokens=False)
    if len(stream) < 2:
        raise ValueError("the corpus has fewer than 2 tokens: nothing to corrupt")
    out = [stream[i:i + length] for i in range(0, len(stream), length)]
    return out if len(out) == 1 or len(out[-1]) == length else out[:-1]


class SpanBatches:
    """Batch i: `batch_size` examples drawn by numpy.random.default_rng([seed, i]), each corrupted with
    random.Random of (seed, i, row): a pure function of i. Returns (src (B, S), tgt (B, T), targets (B, T)),
    tgt = decoder start + targets shifted right, padding pad_id (targets: -100), as TokenBatches."""

    def __init__(self, examples: list[list[int]], batch_size: int, *, vocab_size: int, n_sentinels: int,
                 eos_id: int, pad_id: int, start_id: int, density: float, mean_span: float, seed: int,
                 rank: int = 0, world_size: int = 1):
        if not examples:
            raise ValueError("no examples to corrupt (is the split empty?)")
        self.examples, self.batch_size, self.seed, self.rank, self.world_size = examples, batch_size, seed, rank, world_size
        self.kw = dict(vocab_size=vocab_size, n_sentinels=n_sentinels, eos_id=eos_id, density=density,
                       mean_span=mean_span)
        self.pad_id, self.start_id = pad_id, start_id

    def pair(self, index: int, row: int) -> tuple[list[int], list[int]]:
        """(inputs, targets) of one global row of batch `index`."""
        import numpy as np

        from lmforge.data.span import span_corrupt

        pick = int(np.random.default_rng([self.seed, index]).integers(0, len(self.examples), self.batch_size
                                                                         * self.world_size)[row])
        return span_corrupt(self.examples[pick], random.Random(f"{self.seed}/{index}/{row}"), **self.kw)

    def get(self, index: int):
        rows = range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        return pad_pairs([self.pair(index, r) for r in rows], self.pad_id, self.start_id)

    def batch_tokens(self, batch) -> int:
        src, _, targets = batch
        return int((src != self.pad_id).sum()) + int((targets != -100).sum())


def pad_pairs(pairs: list[tuple[list[int], list[int]]], pad_id: int, start_id: int):
    """[(inputs, targets)] -> (src (B, S), tgt (B, T), targets (B, T)): tgt = [start] + targets[:-1]."""
    import torch

    S, T = max(len(s) for s, _ in pairs), max(len(t) for _, t in pairs)
    src = torch.full((len(pairs), S), pad_id, dtype=torch.long)
    tgt = torch.full((len(pairs), T), pad_id, dtype=torch.long)
    targets = torch.full((len(pairs), T), -100, dtype=torch.long)
    for r, (s, t) in enumerate(pairs):
        src[r, :len(s)] = torch.tensor(s)
        tgt[r, :len(t)] = torch.tensor([start_id] + t[:-1])
        targets[r, :len(t)] = torch.tensor(t)
    return src, tgt, targets


# ------------------------------------------------------------------------------------------- objective

class Objective:
    """loss_fn for the Trainer: mean cross-entropy over the target tokens (label smoothing epsilon, T5: 0), and
    the token accuracy."""

    def __init__(self, epsilon: float = 0.0):
        self.epsilon = epsilon

    def __call__(self, model, batch):
        from lmforge.objectives import LossOutput, label_smoothed_cross_entropy

        src, tgt, targets = batch
        logits = model(src, tgt).logits
        real = targets != -100
        acc = ((logits.argmax(-1) == targets) & real).sum() / real.sum().clamp(min=1)
        return LossOutput(label_smoothed_cross_entropy(logits, targets, self.epsilon), {"acc": acc.detach()})


class Budget:
    """Trainer callback: ask the Trainer to stop once its training time (summed over resumes) reaches `minutes`."""

    def __init__(self, minutes: float):
        self.seconds = minutes * 60 if minutes > 0 else None
        self.stopped = False

    def __call__(self, trainer, row: dict) -> None:
        if self.seconds is not None and trainer.elapsed() >= self.seconds and row["step"] < trainer.cfg.max_steps:
            trainer.request_stop(f"wall-clock budget of {self.seconds / 60:g} min spent")
            self.stopped = True


def corpus_texts(corpus: str, split: str) -> list[str]:
    """The lines of a split: gettext messages (lmforge.data.text2text) or a bundled corpus's non-empty lines."""
    from lmforge.data import text2text
    from lmforge.data.corpora import splits

    if corpus == "gettext":
        if split == "train":
            return text2text.pretraining_texts()
        return [t for e in text2text.examples("en-de", split) + text2text.examples("en-zh", split)
                for t in (e.src.split(": ", 1)[1], e.tgt)]
    return [line for line in splits(corpus)[split].split("\n") if line.strip()]


def run(cfg: Run, out: str | Path, resume: bool = False, *, log=print) -> dict:
    """Pretrain an encoder-decoder by span corruption into `out`; returns the last metrics row."""
    from lmforge.train.dist import Dist
    from lmforge.train.loop import Trainer
    from lmforge.train.recipes import build_model

    out, d, t, dist = Path(out), cfg.data, cfg.train, Dist()
    if not dist.is_main:
        log = lambda msg: None  # noqa: E731
    tok = tokenizer_for(cfg, d.tokenizer, lambda: corpus_texts(d.corpus, "train"), d.vocab_size, d.extra_ids,
                        out, resume)
    n_sentinels = sentinel_count(tok)
    if n_sentinels == 0:
        raise ValueError(f"tokenizer {d.tokenizer!r} does not end in <extra_id_0> (<extra_id_k> = vocab_size - 1 - k): "
                         "span corruption needs T5's sentinels; use data.tokenizer: unigram with data.extra_ids")
    model_ids(cfg, tok)
    data = {s: chunks(corpus_texts(d.corpus, s), tok, d.length) for s in ("train", "val")}
    # the longest input: each noise span (>= 1 token) becomes one sentinel, so at most length tokens, + </s>;
    # the targets are shorter
    model = build_model(cfg, tok, d.length + 1, "data.length + 1")
    kw = dict(vocab_size=tok.vocab_size, n_sentinels=n_sentinels, eos_id=tok.special_tokens["</s>"],
              pad_id=model.config.pad_id, start_id=model.decoder_start, density=d.noise_density,
              mean_span=d.mean_span, rank=dist.rank, world_size=dist.world_size)
    train = SpanBatches(data["train"], t.batch_size, seed=t.seed, **kw)
    val = SpanBatches(data["val"], t.batch_size, seed=t.seed + 1, **kw)
    log(f"model: {model.config.family}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters; data: "
        f"{d.corpus}, {len(data['train']):,} train / {len(data['val']):,} val examples of {d.length} tokens; vocab "
        f"{tok.vocab_size} with {n_sentinels} sentinels")
    budget = Budget(cfg.recipe.minutes)
    trainer = Trainer(model, t, train, val, out_dir=out, tokenizer=tok, run_config=cfg.to_dict(),
                      loss_fn=Objective(), callbacks=(budget,), log=log)
    last = trainer.fit(resume=resume)
    log(f"done: step {trainer.step} in {trainer.elapsed():.0f} s; run directory {out} "
        f"(fine-tune it: recipe text2text with init: {out})")
    return last
