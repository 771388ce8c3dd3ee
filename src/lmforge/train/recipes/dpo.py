"""The `dpo` recipe: Direct Preference Optimization (Rafailov et al. 2023) on preference pairs.

The policy starts as the SFT model; a frozen copy of it is the reference (the Trainer's companion "ref"). For
each pair, log pi(y | x) is the SUM of the completion tokens' log-probabilities (the answer and its end-of-turn
marker; the prompt is left out), under the policy and under the reference, and the loss is eq. 7:

    -log sigmoid(beta * [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))])

(lmforge.objectives.preference.dpo). No reward model and no sampling during training: the same pairs the reward
model learns from (`lmforge pairs`). beta (default 0.1, the paper's) weighs the implicit KL penalty to the
reference: larger stays closer to SFT.

Logged beside the loss (train and val_): the implicit rewards beta * log(pi / pi_ref) of each side, their margin
and accuracy, and logp_gap = log pi(y_w) - log pi(y_l), the policy's own preference, which DPO raises.

    lmforge train configs/dpo-poems.yaml

Run directory: the Trainer's files (the policy: a plain family model, so `lmforge chat RUN` and
`lmforge eval poems RUN` read it), plus dpo.json: the held-out pairs under the reference and the policy.
The config classes import no torch.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from lmforge.config import Config, check
from lmforge.io import atomic_write_json
from lmforge.train.recipes import RecipeRun
from lmforge.train.recipes.reward import PreferenceData, encode_pairs, load_sft, read_data


@dataclasses.dataclass
class DPOOptions(Config):
    sft: str = ""  # the SFT run: the policy's start and the frozen reference
    beta: float = 0.1  # Rafailov et al. 2023 sec. 6: 0.1 (0.5 for their summarisation runs)

    def __post_init__(self):
        check(self.beta > 0, "DPOOptions", f"beta must be positive (the paper uses 0.1 to 0.5), got {self.beta}")


@dataclasses.dataclass
class Run(RecipeRun):
    """A DPO run (configs/dpo-poems.yaml). The model is the SFT run's; the model section may set only `dropout`.

    Example (YAML):
        recipe: {name: dpo, sft: runs/sft-poems, beta: 0.1}
        data: {pairs: runs/pairs-train.jsonl, val_pairs: runs/pairs-val.jsonl}
        train: {max_steps: 200, batch_size: 16, lr: 1e-5, warmup_steps: 20}
    """

    data: PreferenceData = dataclasses.field(default_factory=PreferenceData)
    recipe: DPOOptions = dataclasses.field(default_factory=DPOOptions)

    DECODING: ClassVar[tuple[str, ...]] = ("decoder",)
    NAME: ClassVar[str] = "dpo"


def dpo_loss(beta: float):
    """loss_fn(policy, batch, companions) for the Trainer: rows chosen then rejected; the reference's log-probs
    computed without gradients."""
    import torch

    from lmforge.objectives.preference import dpo, sequence_logps

    def loss_fn(model, batch, companions):
        ids, _, completion = batch  # right padding: the causal mask keeps it out of every real token's view
        logps = sequence_logps(model(ids).logits, ids, completion)  # (2B,)
        with torch.no_grad():
            ref = sequence_logps(companions["ref"](ids).logits, ids, completion)
        B = ids.size(0) // 2
        return dpo(logps[:B], logps[B:], ref[:B], ref[B:], beta=beta)
    return loss_fn


def logps(model, batches) -> tuple[list[float], list[float]]:
    """(log pi(chosen), log pi(rejected)) of every pair, in order (batches: PairBatches with shuffle=False)."""
    from lmforge.data.preferences import per_pair
    from lmforge.objectives.preference import sequence_logps

    return per_pair(model, batches, lambda m, ids, _, completion: sequence_logps(m(ids).logits, ids, completion))


def evaluate(policy, ref, batches, beta: float) -> dict:
    """On pairs: the policy's and the reference's own preference (mean log pi(y_w) - log pi(y_l), and the share
    of pairs where it is positive), and DPO's implicit-reward accuracy, margin and loss."""
    import math

    pc, pr = logps(policy, batches)
    rc, rr = logps(ref, batches)
    n = len(pc)
    u = [beta * ((a - c) - (b - d)) for a, b, c, d in zip(pc, pr, rc, rr)]
    return {"pairs": n,
            "policy_logp_gap": sum(a - b for a, b in zip(pc, pr)) / n,
            "policy_prefers_chosen": sum(a > b for a, b in zip(pc, pr)) / n,
            "ref_logp_gap": sum(c - d for c, d in zip(rc, rr)) / n,
            "ref_prefers_chosen": sum(c > d for c, d in zip(rc, rr)) / n,
            "reward_accuracy": sum(x > 0 for x in u) / n,
            "reward_margin": sum(u) / n,
            "loss": sum(math.log1p(math.exp(-x)) if x > -30 else -x for x in u) / n}  # -log sigmoid(u)


def run(cfg: Run, out: Path, resume: bool = False, log=print) -> dict:
    """Read and check the pairs, take the policy and the reference from the SFT run, train with DPO, then compare
    policy and reference on the held-out pairs. Returns the summary also written to out/dpo.json."""
    import copy

    from lmforge.data.preferences import PairBatches, run_system_prompt, spaced
    from lmforge.train.dist import Dist
    from lmforge.train.loop import Trainer

    dist, t, o = Dist(), cfg.train, cfg.recipe
    train_pairs, val_pairs, val_source = read_data(cfg.data, t.seed)  # a bad line stops here: nothing written yet
    policy, tok = load_sft(o.sft, cfg.model, "DPO policy")
    ref = copy.deepcopy(policy)  # frozen by the Trainer (companions): never trained, never saved
    max_len, system = policy.config.max_len, run_system_prompt(o.sft)
    train_enc = encode_pairs(tok, train_pairs, max_len, cfg.data.pairs, system)
    val_enc = encode_pairs(tok, val_pairs, max_len, cfg.data.val_pairs or cfg.data.pairs, system)
    train_batches = PairBatches(train_enc, t.batch_size, seed=t.seed)
    val_batches = PairBatches(val_enc, min(t.batch_size, len(val_enc)), seed=t.seed + 1)
    if dist.is_main:
        log(f"DPO: policy and reference from {o.sft} ({policy.config.family}, "
            f"{sum(p.numel() for p in policy.parameters()) / 1e6:.2f}M parameters), beta {o.beta}; pairs: "
            f"{len(train_pairs)} train, {len(val_pairs)} held out ({val_source})")
    trainer = Trainer(policy, t, train_batches, val_batches, out_dir=out, tokenizer=tok, run_config=cfg.to_dict(),
                      loss_fn=dpo_loss(o.beta), companions={"ref": ref}, log=log)
    last = trainer.fit(resume=resume)
    summary = {"sft": o.sft, "beta": o.beta, "train_pairs": len(train_pairs), "val_pairs": len(val_pairs),
               "val_source": val_source, "step": trainer.step, "last": last}
    if dist.is_main:
        ordered = lambda enc: PairBatches(enc, 16, shuffle=False)  # noqa: E731
        # the train pairs' numbers from at most ~4,096 of them, evenly spaced (data.preferences.spaced)
        summary["train"] = evaluate(trainer.model, trainer.companions["ref"], ordered(spaced(train_enc)), o.beta)
        summary["held_out"] = h = evaluate(trainer.model, trainer.companions["ref"], ordered(val_enc), o.beta)
        atomic_write_json(out / "dpo.json", summary)
        log(f"done: step {trainer.step}; held-out pairs ({h['pairs']}): log pi(chosen) - log pi(rejected) "
            f"{h['ref_logp_gap']:+.2f} (SFT) -> {h['policy_logp_gap']:+.2f} (DPO); implicit-reward accuracy "
            f"{h['reward_accuracy']:.1%}. Run directory: {out}")
    return summary
