"""The `mlm` recipe: BERT's pretraining (Devlin et al. 2019, sec. 3.1) on a bundled corpus's documents.

Each training example is a sentence pair [CLS] A [SEP] B [SEP] from lmforge.data.corruption: B follows A in
the same document half the time (next-sentence prediction, when `data.nsp`), 15% of the ordinary tokens are
chosen for the masked-LM loss (80% [MASK], 10% random, 10% unchanged). The masking is drawn afresh for each
batch from (seed, batch index) -- "dynamic masking" (Liu et al. 2019, RoBERTa, sec. 4.1), where BERT's
scripts masked each sequence 10 fixed ways -- so a resumed run sees exactly the batches it would have.
Loss: mean masked-LM cross-entropy + mean next-sentence cross-entropy; the accuracies of both are logged,
and on the val split (held-out books or items) at every evaluation.

    lmforge train configs/mlm-kjv.yaml           # model: {family: bert, ...}; -> runs/mlm-kjv
    lmforge fill-mask runs/mlm-kjv "And God said, Let there be [MASK]."
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from lmforge.config import Config, RecipeOptions, check
from lmforge.train.recipes import RecipeRun


@dataclasses.dataclass
class MLMDataConfig(Config):
    """Where the sentence pairs come from. `corpus`: a bundled corpus with documents (kjv: chapters of verses,
    zh-prose: items of sentences). `tokenizer`: "wordpiece" learns a WordPiece vocabulary of `vocab_size` on
    the train split (BERT's kind; Chinese text splits into characters, as BERT's multilingual model does);
    else a model directory or tokenizer.json with [CLS], [SEP], [MASK] and [PAD] (MiniLM's, say)."""

    corpus: str = "kjv"
    tokenizer: str = "wordpiece"
    vocab_size: int = 8000
    max_len: int = 128  # tokens per pair, [CLS] and [SEP]s included (BERT: 128 for 90% of its steps, then 512)
    mask_prob: float = 0.15  # Devlin et al. 2019, sec. 3.1
    nsp: bool = True  # next-sentence prediction (RoBERTa showed it can be dropped: data.nsp=false)
    lowercase: bool = True  # for a learned WordPiece vocabulary (BERT-uncased)

    def __post_init__(self):
        n = "MLMDataConfig"
        check(self.vocab_size >= 100, n, f"vocab_size must be >= 100, got {self.vocab_size}")
        check(self.max_len >= 8, n, f"max_len must be >= 8, got {self.max_len}")
        check(0.0 < self.mask_prob < 1.0, n, f"mask_prob must be in (0, 1), got {self.mask_prob}")


@dataclasses.dataclass
class Run(RecipeRun):
    """An MLM (+ NSP) pretraining run: sections recipe (no options), model (an encoder), data, train."""

    data: MLMDataConfig = dataclasses.field(default_factory=MLMDataConfig)
    recipe: RecipeOptions = dataclasses.field(default_factory=RecipeOptions)

    DECODING: ClassVar[tuple[str, ...]] = ("encoder",)
    NAME: ClassVar[str] = "mlm"
    DEFAULT_FAMILY: ClassVar[str] = "bert"


class PairBatches:
    """Batch i: rows drawn from `numpy.random.default_rng([seed, i])`, masked with a torch generator seeded from
    (seed, i); padded to the batch's longest pair. A pure function of i, as lmforge.data.sampler's windows;
    over processes, batch i is one global batch and rank r takes its rows [r*B, (r+1)*B)."""

    def __init__(self, pairs, batch_size: int, *, tok, vocab_size: int, mask_prob: float, nsp: bool,
                 seed: int, rank: int = 0, world_size: int = 1):
        self.pairs, self.batch_size, self.mask_prob, self.nsp = pairs, batch_size, mask_prob, nsp
        self.seed, self.rank, self.world_size, self.vocab_size = seed, rank, world_size, vocab_size
        s = tok.special_tokens
        self.pad_id, self.mask_id = s["[PAD]"], s["[MASK]"]
        self.special_ids = sorted(set(s.values()))

    def get(self, index: int):
        import numpy as np
        import torch

        from lmforge.data.corruption import mask_tokens

        rows = np.random.default_rng([self.seed, index]).integers(0, len(self.pairs), self.batch_size * self.world_size)
        rows = rows[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        picked = [self.pairs[r] for r in rows]
        T = max(len(p.ids) for p in picked)
        ids = torch.full((len(picked), T), self.pad_id, dtype=torch.long)
        types = torch.zeros_like(ids)
        attention = torch.zeros_like(ids)
        for b, p in enumerate(picked):
            ids[b, :len(p.ids)] = torch.tensor(p.ids)
            types[b, :len(p.ids)] = torch.tensor(p.token_type_ids)
            attention[b, :len(p.ids)] = 1
        g = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, index, 1]).integers(2**62)))
        inputs, labels = mask_tokens(ids, mask_id=self.mask_id, vocab_size=self.vocab_size,
                                     special_ids=self.special_ids, prob=self.mask_prob, generator=g)
        nsp = torch.tensor([p.label for p in picked]) if self.nsp else torch.zeros(0, dtype=torch.long)
        return inputs, attention, types, labels, nsp

    @staticmethod
    def batch_tokens(batch) -> int:
        return int(batch[1].sum())  # real tokens, padding not counted


def _tokenizer(cfg: MLMDataConfig, out: Path, resume: bool, train_text: str):
    from lmforge.tokenizers import WordPieceTokenizer, load_tokenizer, save_tokenizer

    if resume:
        return load_tokenizer(out)
    if cfg.tokenizer == "wordpiece":
        tok = WordPieceTokenizer.train(train_text, cfg.vocab_size, lowercase=cfg.lowercase)
    else:
        tok = load_tokenizer(cfg.tokenizer)
        missing = [t for t in ("[CLS]", "[SEP]", "[MASK]", "[PAD]") if t not in tok.special_tokens]
        if missing:
            raise ValueError(f"data.tokenizer {cfg.tokenizer!r} has no {', '.join(missing)}: BERT's pretraining "
                             "needs [CLS], [SEP], [MASK] and [PAD] (use data.tokenizer: wordpiece)")
    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(tok, out)
    return tok


def pairs_for(corpus: str, split: str, tok, max_len: int, seed: int):
    """The sentence pairs of a split: sentences encoded without special tokens, then NSP pairing."""
    import random

    from lmforge.data.corpora import documents
    from lmforge.data.corruption import sentence_pairs

    docs = [[tok.encode(s, add_special_tokens=False) for s in doc] for doc in documents(corpus, split)]
    s = tok.special_tokens
    return sentence_pairs(docs, cls_id=s["[CLS]"], sep_id=s["[SEP]"], max_len=max_len, rng=random.Random(seed))


def run(cfg: Run, out: Path, resume: bool = False) -> dict:
    """Build pairs, tokenizer and model from `cfg` and train into `out`; returns the last metrics row."""
    from lmforge.data.corpora import documents
    from lmforge.objectives import bert_pretraining_loss
    from lmforge.train.dist import Dist
    from lmforge.train.loop import Trainer
    from lmforge.train.recipes import build_model

    d, t, dist = cfg.data, cfg.train, Dist()
    head = "pretraining" if d.nsp else "mlm"
    given = cfg.model.get("head")
    if given is not None and given != head:
        raise ValueError(f"model.head is {given!r} but data.nsp={d.nsp} trains the {head!r} heads; leave model.head out")
    cfg.model = {**cfg.model, "head": head}
    train_docs = documents(d.corpus, "train")  # also says which corpora have documents, before any work
    tok = _tokenizer(d, out, resume, "\n".join(s for doc in train_docs for s in doc))
    pairs = {split: pairs_for(d.corpus, split, tok, d.max_len, t.seed + i) for i, split in enumerate(("train", "val"))}
    model = build_model(cfg, tok, d.max_len, "data.max_len")
    common = dict(tok=tok, vocab_size=model.config.vocab_size, mask_prob=d.mask_prob, nsp=d.nsp,
                  rank=dist.rank, world_size=dist.world_size)
    train_batches = PairBatches(pairs["train"], t.batch_size, seed=t.seed, **common)
    val_batches = PairBatches(pairs["val"], t.batch_size, seed=t.seed + 1, **common)
    if dist.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"model: {model.config.family} ({head} heads), {n_params / 1e6:.2f}M parameters; data: {d.corpus}, "
              f"{len(pairs['train']):,} train / {len(pairs['val']):,} val sentence pairs, vocab {tok.vocab_size}; "
              f"global batch {t.batch_size * t.grad_accum * dist.world_size} pairs of <= {d.max_len} tokens", flush=True)
    trainer = Trainer(model, t, train_batches, val_batches, out_dir=out, tokenizer=tok, run_config=cfg.to_dict(),
                      loss_fn=bert_pretraining_loss)
    last = trainer.fit(resume=resume)
    if dist.is_main:
        val = "".join(f", {k} {last[k]:.4f}" for k in ("val_mlm_acc", "val_nsp_acc") if k in last)
        print(f"done: step {trainer.step}{val}. Run directory: {out} (lmforge fill-mask {out} \"... [MASK] ...\")",
              flush=True)
    return last
