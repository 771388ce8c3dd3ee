"""The `blank` recipe: GLM's autoregressive blank-infilling pretraining (Du et al. 2022) on a text corpus.

Each row is a window of `data.block_size` characters of the train split, blanked by lmforge.data.blank: one
objective drawn per row from `data.mix` ([MASK] short Poisson(3) spans, [sMASK] whole sentences, [gMASK] one
long span at the end; sec. 2.1-2.2), its spans shuffled into part B. The loss is the model's mean
cross-entropy over part B (each span's tokens and its <eop>). Rows are a pure function of (seed, batch index,
row), as lmforge.data.sampler's windows, so a resumed run sees exactly the batches it would have.

    lmforge train configs/glm-zh.yaml            # model: {family: glm, ...}; `recipe: blank` is implied
    lmforge infill runs/glm-zh "床前明月光，[MASK]。举头望明月，低头思故乡。"
"""
from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import ClassVar

from lmforge.config import Config, RecipeOptions, check
from lmforge.train.recipes import RecipeRun


def _default_mix() -> dict[str, float]:
    from lmforge.data.blank import MIX
    return dict(MIX)


@dataclasses.dataclass
class BlankDataConfig(Config):
    """Where the rows come from and how they are blanked. `corpus`: a bundled name (lmforge.data.corpora:
    zh-prose, poems-zh, ...) or a UTF-8 .txt path; the character tokenizer (with GLM's special tokens,
    lmforge.data.blank.SPECIAL_TOKENS) covers every character of the corpus."""

    corpus: str = "zh-prose"
    tokenizer: typing.Literal["char"] = "char"
    block_size: int = 128  # characters of text per row, before blanking (part A + part B = block_size + spans)
    ratio: float = 0.15  # sec. 2.1: spans until at least 15% of the tokens are covered ([MASK], [sMASK])
    poisson_lambda: float = 3.0  # sec. 2.1: span lengths ~ Poisson(3)
    mix: dict[str, float] = dataclasses.field(default_factory=_default_mix)  # objective -> weight (data.blank.MIX)
    sentence_ends: str = "。！？；!?\n"  # a sentence for [sMASK] ends after one of these characters

    def __post_init__(self):
        from lmforge.data.blank import check_mix
        n = "BlankDataConfig"
        check(self.block_size >= 2, n, f"block_size must be >= 2 (a blank needs text around it), got {self.block_size}")
        check(0.0 < self.ratio < 1.0, n, f"ratio must be in (0, 1), got {self.ratio}")
        check(self.poisson_lambda > 0, n, f"poisson_lambda must be positive, got {self.poisson_lambda}")
        check(bool(self.corpus), n, "corpus must name a bundled corpus or a text file")
        try:
            check_mix(self.mix)
        except ValueError as e:
            raise ValueError(f"{n}: data.mix: {e}") from None
        self.mix = {k: float(v) for k, v in self.mix.items()}


@dataclasses.dataclass
class Run(RecipeRun):
    """A GLM pretraining run: sections recipe (no options), model (the glm family), data, train."""

    data: BlankDataConfig = dataclasses.field(default_factory=BlankDataConfig)
    recipe: RecipeOptions = dataclasses.field(default_factory=RecipeOptions)

    DECODING: ClassVar[tuple[str, ...]] = ("decoder",)
    NAME: ClassVar[str] = "blank"
    DEFAULT_FAMILY: ClassVar[str] = "glm"

    def __post_init__(self):
        super().__post_init__()
        family = self.model.get("family", self.DEFAULT_FAMILY)
        if family != "glm":
            raise ValueError(f"recipe 'blank' trains the glm family (blank infilling needs its 2-D positions and "
                             f"part A / part B attention); model.family is {family!r}")


class BlankBatches:
    """Batch i: windows drawn from `numpy.random.default_rng([seed, i])`, each blanked with its own generator
    (seed, i, row), padded on the right to the batch's longest row. Over processes, batch i is one global batch
    and rank r takes its rows [r*B, (r+1)*B)."""

    def __init__(self, tokens, batch_size: int, *, block_size: int, blank_tokens, pad_id: int, data: BlankDataConfig,
                 sentence_end_ids: list[int], seed: int, rank: int = 0, world_size: int = 1):
        if len(tokens) < block_size:
            raise ValueError(f"the split has {len(tokens)} tokens, fewer than data.block_size = {block_size}; use a "
                             "smaller block_size or more text")
        self.tokens, self.batch_size, self.block_size = tokens, batch_size, block_size
        self.blank_tokens, self.pad_id, self.data, self.sentence_end_ids = blank_tokens, pad_id, data, sentence_end_ids
        self.seed, self.rank, self.world_size = seed, rank, world_size

    def get(self, index: int):
        import numpy as np
        import torch

        from lmforge.data.blank import IGNORE, blank_infill

        d, B = self.data, self.batch_size
        starts = np.random.default_rng([self.seed, index]).integers(0, len(self.tokens) - self.block_size + 1,
                                                                   B * self.world_size)
        rows = []
        for r in range(self.rank * B, (self.rank + 1) * B):
            window = self.tokens[starts[r]:starts[r] + self.block_size].tolist()
            rng = np.random.default_rng([self.seed, index, r])
            rows.append(blank_infill(window, self.blank_tokens, rng, mix=d.mix, ratio=d.ratio, lam=d.poisson_lambda,
                                     sentence_end_ids=self.sentence_end_ids))
        T = max(len(row.ids) for row in rows)

        def pad(field, fill):
            return torch.tensor([getattr(row, field) + [fill] * (T - len(row.ids)) for row in rows])

        attention = torch.tensor([[1] * len(row.ids) + [0] * (T - len(row.ids)) for row in rows])
        return (pad("ids", self.pad_id), pad("targets", IGNORE), pad("positions", 0), pad("block_positions", 0),
                torch.tensor([row.prefix_len for row in rows]), attention)

    @staticmethod
    def batch_tokens(batch) -> int:
        return int(batch[5].sum())  # real tokens, padding not counted


def blank_loss(model, batch):
    """The model's mean cross-entropy over part B (lmforge.models.glm.model.GLM.forward)."""
    ids, targets, positions, block, prefix_len, attention = batch
    return model(ids, targets, positions=positions, block_positions=block, prefix_len=prefix_len,
                 attention_mask=attention).loss


def tokenizer_for(corpus: str):
    """A character tokenizer over every character of the corpus (all splits; lmforge.data.prepare says why),
    with GLM's special tokens first: ids 0..5 = <pad> [MASK] [sMASK] [gMASK] <sop> <eop>."""
    from lmforge.data.blank import SPECIAL_TOKENS
    from lmforge.data.corpora import splits
    from lmforge.tokenizers import CharTokenizer

    text = splits(corpus)
    return CharTokenizer.train(text["train"] + text["val"] + text["test"], special_tokens=list(SPECIAL_TOKENS))


def run(cfg: Run, out: Path, resume: bool = False) -> dict:
    """Build tokenizer, rows and model from `cfg` and train into `out`; returns the last metrics row."""
    import numpy as np

    from lmforge.data.blank import BlankTokens
    from lmforge.data.corpora import splits
    from lmforge.tokenizers import load_tokenizer, save_tokenizer
    from lmforge.train.dist import Dist
    from lmforge.train.loop import Trainer
    from lmforge.train.recipes import build_model

    d, t, dist = cfg.data, cfg.train, Dist()
    if resume:
        tok = load_tokenizer(out)
    else:
        tok = tokenizer_for(d.corpus)
        out.mkdir(parents=True, exist_ok=True)
        save_tokenizer(tok, out)
    s = tok.special_tokens
    blank_tokens = BlankTokens.from_vocab(s)
    ids = dict(pad_id=s["<pad>"], mask_id=blank_tokens.mask, smask_id=blank_tokens.smask, gmask_id=blank_tokens.gmask,
               sop_id=blank_tokens.sop, eop_id=blank_tokens.eop)
    clash = {k: (cfg.model[k], v) for k, v in ids.items() if k in cfg.model and cfg.model[k] != v}
    if clash:
        raise ValueError(f"model {', '.join(f'{k}={a}' for k, (a, _) in clash.items())} differ from the tokenizer's "
                         f"ids ({', '.join(f'{k}={b}' for k, (_, b) in clash.items())}); leave them out of model")
    cfg.model = {**cfg.model, **ids}
    text = splits(d.corpus)
    tokens = {split: np.asarray(tok.encode(text[split]), dtype=np.int64) for split in ("train", "val")}
    ends = [tok.vocab[c] for c in d.sentence_ends if c in tok.vocab]
    # part A + part B = the window + two positions per span (its blank in part A, its <sop> in part B: the span's
    # own tokens move from A to B); at most ceil(ratio * n) spans (each covers a token)
    length = d.block_size + 2 * max(math.ceil(d.ratio * d.block_size), 1)
    model = build_model(cfg, tok, length, "data.block_size + its spans")
    common = dict(block_size=d.block_size, blank_tokens=blank_tokens, pad_id=ids["pad_id"], data=d,
                  sentence_end_ids=ends, rank=dist.rank, world_size=dist.world_size)
    train_batches = BlankBatches(tokens["train"], t.batch_size, seed=t.seed, **common)
    val_batches = BlankBatches(tokens["val"], t.batch_size, seed=t.seed + 1, **common)
    if dist.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        mix = ", ".join(f"{k} {w:g}" for k, w in d.mix.items())
        print(f"model: glm, {n_params / 1e6:.2f}M parameters; data: {d.corpus}, {len(tokens['train']):,} train / "
              f"{len(tokens['val']):,} val characters, vocab {tok.vocab_size}; objectives {mix}; global batch "
              f"{t.batch_size * t.grad_accum * dist.world_size} windows of {d.block_size}", flush=True)
    trainer = Trainer(model, t, train_batches, val_batches, out_dir=out, tokenizer=tok, run_config=cfg.to_dict(),
                      loss_fn=blank_loss)
    last = trainer.fit(resume=resume)
    if dist.is_main:
        val = f", val loss {last['val_loss']:.4f}" if "val_loss" in last else ""
        print(f"done: step {trainer.step}{val}. Run directory: {out} (lmforge infill {out} \"...[MASK]...\")",
              flush=True)
    return last
