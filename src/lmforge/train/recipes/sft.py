"""The `sft` recipe: supervised fine-tuning of a pretrained decoder into a chat model (Ouyang et al. 2022,
sec. 3.5 "SFT"; the first stage of InstructGPT).

The examples are conversations in the chat template (lmforge.data.chat) with a system prompt; the loss is
the next-token cross-entropy on the assistant's tokens only (its answer, the <|end|> that closes the turn
and the newline after it), the system prompt and the user's prompt being context, not targets:

    <|system|>你是一位诗人。...<|end|>\\n<|user|>写一首五言绝句，题为《春晓》<|end|>\\n<|assistant|>春眠不觉晓，...<|end|>\\n
    0 0 ...                                                                     0 ...          0   1 1 ...              1     1

The task is the poem task (lmforge.data.poems): each train poem of a scored form under every prompt
phrasing (data.phrasings, 4: the same poem asked for in four ways), and with data.free the other train
poems under "写一首诗，题为《X》". That is augmentation of 326 poems, not new poems: the answers repeat.

    lmforge train configs/zh-base.yaml --out runs/zh-base          # the base: char-level GPT on zh-base
    lmforge train configs/sft-poems.yaml --set recipe.init=runs/zh-base --out runs/sft-poems
    lmforge chat runs/sft-poems                                     # the run's system prompt is the default

`recipe.init` is the run (or model directory) fine-tuned from; its tokenizer is kept (pretrain with
data.chat_tokens: true so it has the template's markers; without them the plain "User: ..." layout is used).
Run directory: the Trainer's files; run.json records init, and data.system (the system prompt) for chat.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import ClassVar

from lmforge.config import Config, check
from lmforge.train.recipes import RecipeRun


@dataclasses.dataclass
class SFTDataConfig(Config):
    """The conversations SFT learns from."""

    task: typing.Literal["poems"] = "poems"  # lmforge.data.poems
    phrasings: int = 4  # prompt phrasings per poem (lmforge.data.poems.PHRASINGS); val uses the first
    free: bool = True  # also the train poems of no scored form, under "写一首诗，题为《X》"
    system: str = ""  # the system prompt; "" = the task's (lmforge.data.poems.SYSTEM_PROMPT)

    def __post_init__(self):
        check(1 <= self.phrasings <= 4, "SFTDataConfig", f"phrasings must be 1 to 4, got {self.phrasings}")


@dataclasses.dataclass
class SFTOptions(Config):
    init: str = ""  # the pretrained run or model directory fine-tuned from (required)


@dataclasses.dataclass
class Run(RecipeRun):
    """An SFT run (configs/sft-poems.yaml): model (optional changes to the init's config, e.g. dropout),
    data, train, recipe (init).

    Example (YAML):
        recipe: {name: sft, init: runs/zh-base}
        data: {task: poems, phrasings: 4}
        train: {max_steps: 600, batch_size: 16, lr: 3e-4}
    """

    data: SFTDataConfig = dataclasses.field(default_factory=SFTDataConfig)
    recipe: SFTOptions = dataclasses.field(default_factory=SFTOptions)

    DECODING: ClassVar[tuple[str, ...]] = ("decoder",)
    NAME: ClassVar[str] = "sft"


# ----------------------------------------------------------------------------------------- data

def encode_examples(examples, tokenizer, max_len: int, system: str = "",
                    skip_long: bool = False) -> list[tuple[list[int], list[int]]]:
    """[(ids, loss_mask)] of each example in the chat template (lmforge.data.poems.encode). ValueError naming
    the example when one is longer than the model's context: a cut conversation would teach the model to
    stop mid-poem (or never see the answer). skip_long: leave such examples out instead (the free poems,
    some of which are 古体诗 of 60 lines)."""
    from lmforge.data import chat
    from lmforge.data import poems

    out = []
    for i, ex in enumerate(examples):
        msgs = poems.messages(ex)
        if system:
            msgs[0] = {"role": "system", "content": system}
        try:
            ids, mask = chat.encode(tokenizer, msgs, add_generation_prompt=False)
        except ValueError as e:  # a character the tokenizer does not know
            raise ValueError(f"example {i} (《{ex.title}》, prompt {ex.prompt!r}) cannot be encoded: {e}") from None
        if len(ids) > max_len and skip_long:
            continue
        if len(ids) > max_len:
            prompt_len = len(ids) - sum(mask)
            raise ValueError(f"example {i} (《{ex.title}》, prompt {ex.prompt!r}) is {len(ids)} tokens in the chat "
                             f"template ({prompt_len} of system prompt and prompt, {sum(mask)} of answer), longer than "
                             f"the model's context max_len {max_len}: shorten data.system or the prompt, or pretrain "
                             "with a larger model.max_len")
        out.append((ids, mask))
    return out


def targets(ids: list[int], mask: list[int]) -> list[int]:
    """Next-token targets with -100 (not scored) where the next token is not the assistant's.

    Example: ids [7, 8, 9, 4], mask [0, 0, 1, 1] -> [-100, 9, 4, -100] (position t predicts ids[t+1]; the
    last position predicts nothing)."""
    return [nxt if m else -100 for nxt, m in zip(ids[1:], mask[1:])] + [-100]


class ChatBatches:
    """Batches (ids (B, T), targets (B, T)) of encoded conversations, right-padded to the longest of the batch
    (padding: id 0, target -100). Batch i is a pure function of (seed, i): epoch i // len(self) is a
    permutation drawn from numpy.random.default_rng([seed, epoch]), so resume needs one integer.
    shuffle=False reads them in order, the last batch short (evaluation)."""

    def __init__(self, examples: list[tuple[list[int], list[int]]], batch_size: int, seed: int = 0,
                 shuffle: bool = True):
        if not examples:
            raise ValueError("no examples to batch: the split is empty")
        self.examples, self.batch_size, self.seed, self.shuffle = examples, batch_size, seed, shuffle
        self.per_epoch = len(examples) // batch_size if shuffle else -(-len(examples) // batch_size)
        if self.per_epoch == 0:
            raise ValueError(f"{len(examples)} examples are fewer than one batch of {batch_size}: lower "
                             "train.batch_size")

    def __len__(self) -> int:
        return self.per_epoch

    def get(self, index: int):
        import numpy as np
        import torch

        epoch, i = divmod(index, self.per_epoch)
        if self.shuffle:
            rows = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
            rows = rows[i * self.batch_size:(i + 1) * self.batch_size].tolist()
        else:
            rows = list(range(i * self.batch_size, min((i + 1) * self.batch_size, len(self.examples))))
        T = max(len(self.examples[r][0]) for r in rows)
        ids = torch.zeros((len(rows), T), dtype=torch.long)
        tgt = torch.full((len(rows), T), -100, dtype=torch.long)
        for b, r in enumerate(rows):
            x, m = self.examples[r]
            ids[b, :len(x)] = torch.tensor(x)
            tgt[b, :len(x)] = torch.tensor(targets(x, m))
        return ids, tgt

    def batch_tokens(self, batch) -> int:
        return int((batch[1] != -100).sum())  # the tokens learned from


# ----------------------------------------------------------------------------------------- the run

def load_init(path: str, model_section: dict):
    """(model, tokenizer) of recipe.init, with the run's model section applied (only dropout may change)."""
    import lmforge
    from lmforge.models import build_model, lookup
    from lmforge.tokenizers import load_tokenizer

    if not path:
        raise ValueError("recipe.init is empty: give the pretrained run to fine-tune, e.g. "
                         "--set recipe.init=runs/zh-base (lmforge train configs/zh-base.yaml)")
    if not Path(path).is_dir():
        raise ValueError(f"recipe.init {path!r} is not a directory; give a pretrained run directory")
    model = lmforge.load(path)
    family = getattr(type(getattr(model, "config", None)), "family", None)
    if family is None or lookup(family).decoding != "decoder":
        raise ValueError(f"recipe.init {path} holds a {family or type(model).__name__} model; SFT here needs a "
                         "decoder-only language model (gpt, llama)")
    changes = {k: v for k, v in model_section.items() if k != "family"}
    if set(changes) - {"dropout"}:
        raise ValueError(f"model section sets {sorted(set(changes) - {'dropout'})}: a fine-tuned model keeps its "
                         "init's shape; only model.dropout may change")
    if changes:
        new = model.config.replace(**changes)
        state = model.state_dict()
        model = build_model(family, new)
        model.load_state_dict(state)
    return model, load_tokenizer(path)


def run(cfg: Run, out: Path, resume: bool = False, log=print) -> dict:
    """Fine-tune recipe.init on the task's conversations; returns the last metrics row."""
    from lmforge.data import chat
    from lmforge.data import poems
    from lmforge.train.dist import Dist
    from lmforge.train.loop import Trainer

    dist, t, d = Dist(), cfg.train, cfg.data
    model, tokenizer = load_init(cfg.recipe.init, cfg.model)
    if not d.system:  # record the system prompt used, so `lmforge chat` can default to it
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(d, system=poems.SYSTEM_PROMPT))
        d = cfg.data
    max_len = model.config.max_len
    train_ex = encode_examples(poems.examples("train", d.phrasings), tokenizer, max_len, d.system)
    free = [e for e in poems.examples("train", 1, free=True) if e.form is None] if d.free else []
    free_ex = encode_examples(free, tokenizer, max_len, d.system, skip_long=True)
    train_ex += free_ex
    val_ex = encode_examples(poems.examples("val"), tokenizer, max_len, d.system)
    train_batches = ChatBatches(train_ex, t.batch_size, seed=t.seed)
    val_batches = ChatBatches(val_ex, t.batch_size, seed=t.seed + 1)
    if dist.is_main:
        learned = sum(sum(m) for _, m in train_ex)
        log(f"init: {cfg.recipe.init} ({model.config.family}, "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters); template: "
            f"{'chat markers' if chat.has_markers(tokenizer) else 'plain (the tokenizer has no chat markers)'}; "
            f"data: {len(train_ex)} train conversations ({learned:,} assistant tokens; "
            f"{len(free_ex)} of {len(free)} free poems fit the context), {len(val_ex)} val; "
            f"{len(train_batches)} batches an epoch; longest {max(len(x) for x, _ in train_ex)} of {max_len} tokens")
    trainer = Trainer(model, t, train_batches, val_batches, out_dir=out, tokenizer=tokenizer,
                      run_config=cfg.to_dict(), log=log)
    last = trainer.fit(resume=resume)
    if dist.is_main:
        val = f", val loss {last['val_loss']:.4f}" if "val_loss" in last else ""
        log(f"done: step {trainer.step}{val}. Run directory: {out} (lmforge eval poems {out}; lmforge chat {out})")
    return last
