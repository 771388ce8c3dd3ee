"""The `reward` recipe: a reward model learnt from preference pairs (Stiennon et al. 2020 sec. 3.4; Ouyang et al.
2022 sec. 3.5).

The SFT model with a scalar head on its last real token (lmforge.train.reward_model.RewardModel), trained with
the Bradley-Terry loss -log sigmoid(r(x, y_w) - r(x, y_l)) (lmforge.objectives.preference.bradley_terry) on the
pairs of a preference file (lmforge.data.preferences; `lmforge pairs` writes one from the SFT model's own samples
ranked by the poem scorer). Both sides of a pair go through the model in one batch (rows chosen, then rejected).

After training, as both papers do before RL, the head's bias is shifted so that the rewards of the training
texts have mean 0 (Stiennon et al.: "normalize ... such that the reference summaries achieve a mean score of 0";
Ouyang et al. use the labellers' demonstrations; we use the training pairs' texts, what the policy samples).
The run is then scored on the held-out pairs:

- pair accuracy: the share of held-out pairs whose chosen side gets the higher reward;
- Pearson and Spearman correlation of the reward with the scorer's score over the held-out texts.

    lmforge pairs runs/sft-poems --split train --out runs/pairs-train.jsonl
    lmforge pairs runs/sft-poems --split val --out runs/pairs-val.jsonl
    lmforge train configs/reward-poems.yaml

Run directory: the Trainer's files (config.json names the "reward" wrapper: lmforge.load gives the RewardModel),
plus reward.json (the held-out numbers). PPO reads it with load_reward_model(run).score(ids, mask).
The config classes import no torch.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from lmforge.config import Config, check
from lmforge.io import atomic_write_json
from lmforge.train.recipes import RecipeRun


@dataclasses.dataclass
class PreferenceData(Config):
    """The preference files (lmforge.data.preferences) the `reward` and `dpo` recipes learn from."""

    pairs: str = ""  # the training pairs (JSON Lines)
    val_pairs: str = ""  # held-out pairs; "" = hold out val_fraction of the training file's prompts
    val_fraction: float = 0.1  # used only without val_pairs; prompts sharing a title stay on one side
    max_pairs: int = 0  # the first N training pairs (0 = all): keeps a CPU run short

    def __post_init__(self):
        n = "PreferenceData"
        check(0 < self.val_fraction < 1, n, f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        check(self.max_pairs >= 0, n, f"max_pairs must be >= 0 (0 = all), got {self.max_pairs}")


@dataclasses.dataclass
class RewardOptions(Config):
    sft: str = ""  # the SFT run the reward model starts from (its weights, tokenizer and chat template)
    normalize: bool = True  # after training, shift the head's bias so the training texts' mean reward is 0


@dataclasses.dataclass
class Run(RecipeRun):
    """A reward-model run (configs/reward-poems.yaml). The model is the SFT run's; the model section may set only
    `dropout` (and `family`, which must be the SFT run's).

    Example (YAML):
        recipe: {name: reward, sft: runs/sft-poems}
        data: {pairs: runs/pairs-train.jsonl, val_pairs: runs/pairs-val.jsonl}
        train: {max_steps: 300, batch_size: 16, lr: 3e-5, warmup_steps: 20}
    """

    data: PreferenceData = dataclasses.field(default_factory=PreferenceData)
    recipe: RewardOptions = dataclasses.field(default_factory=RewardOptions)

    DECODING: ClassVar[tuple[str, ...]] = ("decoder",)
    NAME: ClassVar[str] = "reward"


# ----------------------------------------------------------------------------------------- shared with dpo

def load_sft(path: str, model_section: dict, what: str):
    """(model, tokenizer) of the SFT run a post-training run starts from; model_section may change `dropout`."""
    import lmforge
    from lmforge.models import build_model
    from lmforge.tokenizers import load_tokenizer

    if not path:
        raise ValueError(f"recipe.sft is empty: give the SFT run the {what} starts from (e.g. --set "
                         "recipe.sft=runs/sft-poems)")
    if not (Path(path) / "config.json").is_file():
        raise ValueError(f"recipe.sft {path!r} is not a run directory (no config.json); give an SFT run's directory")
    other = sorted(set(model_section) - {"family", "dropout"})
    if other:
        raise ValueError(f"model: {', '.join(other)} cannot change: the {what} is the SFT model (recipe.sft); the "
                         "model section may set only dropout")
    sft = lmforge.load(path)
    family = type(sft.config).family
    if model_section.get("family", family) != family:
        raise ValueError(f"model.family is {model_section['family']!r} but recipe.sft holds a {family} model; "
                         "leave model.family out")
    if "dropout" in model_section:
        state = sft.state_dict()
        sft = build_model(family, {**sft.config.to_dict(), "dropout": float(model_section["dropout"])})
        sft.load_state_dict(state)
    return sft, load_tokenizer(path)


def held_out_split(pairs: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, val): a seeded `fraction` of the prompts' groups (the same title, else the same prompt) held out."""
    import random

    key = lambda p: p.extra.get("title") or p.prompt  # noqa: E731
    groups = sorted({key(p) for p in pairs})
    random.Random(seed).shuffle(groups)
    val_keys = set(groups[:max(1, round(fraction * len(groups)))])
    train = [p for p in pairs if key(p) not in val_keys]
    if not train:
        raise ValueError(f"holding out {fraction:.0%} of the prompts leaves no training pairs: give data.val_pairs "
                         "or more pairs")
    return train, [p for p in pairs if key(p) in val_keys]


def read_data(d: PreferenceData, seed: int) -> tuple[list, list, str]:
    """(train pairs, val pairs, where val came from); every line of both files checked before anything is built."""
    from lmforge.data.preferences import read_pairs

    if not d.pairs:
        raise ValueError("data.pairs is empty: give a preference file (lmforge pairs RUN --out FILE.jsonl)")
    train = read_pairs(d.pairs)
    val = read_pairs(d.val_pairs) if d.val_pairs else None
    if d.max_pairs:
        train = train[:d.max_pairs]
    if val is None:
        train, val = held_out_split(train, d.val_fraction, seed)
        return train, val, f"{d.val_fraction:.0%} of {d.pairs}'s prompts"
    return train, val, d.val_pairs


def encode_pairs(tok, pairs: list, max_len: int, source: str, system: str) -> list:
    """encode_pair of every pair with the SFT run's system prompt; ValueError naming the first pair that cannot
    be encoded or is longer than the model's context."""
    from lmforge.data.preferences import encode_pair

    out = []
    for i, p in enumerate(pairs):
        try:
            enc = encode_pair(tok, p, system)
        except ValueError as e:  # a character the tokenizer does not know
            raise ValueError(f"{source} pair {i + 1} cannot be encoded with the SFT run's tokenizer: {e}") from None
        longest = max(len(enc[0][0]), len(enc[1][0]))
        if longest > max_len:
            raise ValueError(f"{source} pair {i + 1} is {longest} tokens in the chat template, longer than the model's "
                             f"context max_len ({max_len}); drop it or shorten its prompt or answers")
        out.append(enc)
    return out


# ----------------------------------------------------------------------------------------- loss and scoring

def reward_loss(model, batch):
    """loss_fn(model, batch) for the Trainer: Bradley-Terry on the rewards of rows chosen / rejected."""
    from lmforge.objectives.preference import bradley_terry

    ids, mask, _ = batch
    r = model(ids, mask)  # (2B,)
    B = r.size(0) // 2
    return bradley_terry(r[:B], r[B:])


def rewards(model, batches) -> tuple[list[float], list[float]]:
    """(chosen rewards, rejected rewards) of every pair, in order (batches: PairBatches with shuffle=False)."""
    from lmforge.data.preferences import per_pair

    return per_pair(model, batches, lambda m, ids, mask, _: m(ids, mask))


def evaluate(model, pairs: list, batches) -> dict:
    """Held-out pair accuracy, mean margin, and the correlation of the reward with the pairs' scores over their
    distinct texts (None when the file has no scores)."""
    from lmforge.eval.correlation import pearson, spearman

    chosen, rejected = rewards(model, batches)
    out = {"pairs": len(pairs), "accuracy": sum(c > r for c, r in zip(chosen, rejected)) / len(pairs),
           "margin": sum(c - r for c, r in zip(chosen, rejected)) / len(pairs)}
    texts = {}  # (prompt, text) -> (reward, score): a text in two pairs counts once
    for p, c, r in zip(pairs, chosen, rejected):
        if p.chosen_score is not None:
            texts[(p.prompt, p.chosen)] = (c, p.chosen_score)
            texts[(p.prompt, p.rejected)] = (r, p.rejected_score)
    if len(texts) >= 2:
        rs, ss = [v[0] for v in texts.values()], [v[1] for v in texts.values()]
        out.update(texts=len(texts), pearson=pearson(rs, ss), spearman=spearman(rs, ss))
    return out


def normalize_bias(model, batches) -> float:
    """Shift the head's bias so the mean reward over the batches' texts is 0; returns the shift applied."""
    import torch

    chosen, rejected = rewards(model, batches)
    mean = (sum(chosen) + sum(rejected)) / (len(chosen) + len(rejected))
    with torch.no_grad():
        model.head.bias -= mean
    return -mean


# ----------------------------------------------------------------------------------------- the run

def run(cfg: Run, out: Path, resume: bool = False, log=print) -> dict:
    """Read and check the pairs, build the reward model from the SFT run, train it, normalise it, score it on
    the held-out pairs. Returns the summary also written to out/reward.json."""
    from lmforge.data.preferences import PairBatches, run_system_prompt, spaced
    from lmforge.train.dist import Dist
    from lmforge.train.loop import Trainer
    from lmforge.train.reward_model import RewardModel

    dist, t, o = Dist(), cfg.train, cfg.recipe
    train_pairs, val_pairs, val_source = read_data(cfg.data, t.seed)  # a bad line stops here: nothing written yet
    sft, tok = load_sft(o.sft, cfg.model, "reward model")
    max_len, system = sft.config.max_len, run_system_prompt(o.sft)
    train_enc = encode_pairs(tok, train_pairs, max_len, cfg.data.pairs, system)
    val_enc = encode_pairs(tok, val_pairs, max_len, cfg.data.val_pairs or cfg.data.pairs, system)
    import torch
    torch.manual_seed(t.seed)  # the head's initial weights
    model = RewardModel(sft)
    train_batches = PairBatches(train_enc, t.batch_size, seed=t.seed)
    val_batches = PairBatches(val_enc, min(t.batch_size, len(val_enc)), seed=t.seed + 1)
    if dist.is_main:
        log(f"reward model: {o.sft} ({sft.config.family}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
            f"parameters) + a scalar head; pairs: {len(train_pairs)} train, {len(val_pairs)} held out ({val_source})")
    trainer = Trainer(model, t, train_batches, val_batches, out_dir=out, tokenizer=tok, run_config=cfg.to_dict(),
                      loss_fn=reward_loss, log=log)
    last = trainer.fit(resume=resume)
    summary = {"sft": o.sft, "train_pairs": len(train_pairs), "val_pairs": len(val_pairs), "val_source": val_source,
               "step": trainer.step, "last": last}
    ordered = lambda enc: PairBatches(enc, 32, shuffle=False)  # noqa: E731
    read, read_enc = spaced(train_pairs), spaced(train_enc)  # the bias shift and train accuracy: at most ~4,096
    if o.normalize:  # on every rank (the same shift everywhere), then a checkpoint: a collective
        summary["bias_shift"] = normalize_bias(trainer.model, ordered(read_enc))
        trainer.save()  # the normalised head is the run's model
    if dist.is_main:
        summary["train"] = evaluate(trainer.model, read, ordered(read_enc))
        summary["held_out"] = h = evaluate(trainer.model, val_pairs, ordered(val_enc))
        atomic_write_json(out / "reward.json", summary)
        corr = (f"; reward vs scorer over {h['texts']} texts: Pearson {h['pearson']:.3f}, Spearman {h['spearman']:.3f}"
                if h.get("pearson") is not None and h.get("spearman") is not None else "")
        log(f"done: step {trainer.step}; held-out pair accuracy {h['accuracy']:.1%} of {h['pairs']} pairs (train "
            f"{summary['train']['accuracy']:.1%}){corr}. Run directory: {out}")
    return summary


def load_reward_model(run: str | Path):
    """The reward model of a `reward` run, frozen, in eval mode: .score(ids, mask) -> (B,) rewards
    (lmforge.train.reward_model.load_reward_model)."""
    from lmforge.train.reward_model import load_reward_model as load

    return load(run)
