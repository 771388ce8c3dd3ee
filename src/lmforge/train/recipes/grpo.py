"""The `grpo` recipe: Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath sec. 4.1) on the poem task.

No value model: each rollout samples a group of G responses to every prompt from the policy, scores them with the
poem scorer, and gives each response the advantage (r - mean(group)) / std(group) on all its tokens (sec. 4.1.2,
outcome supervision). The loss is PPO's clipped ratio with the KL to the frozen SFT reference added per token with
the k3 estimator (eq. 3 and 4; lmforge.objectives.rl.grpo_loss), averaged over each response's tokens, then over
the responses.

Defaults: beta 0.04 (sec. 4.2), clip 0.2, one pass over each rollout (the paper's single policy update per
sampling, mu = 1; TRL's num_iterations = 1), G = 8 (TRL's num_generations; the paper samples 64, far beyond a
CPU's budget). The reference stays the SFT model (the paper's iterative reset of the reference is left out).

    lmforge train configs/grpo-poems.yaml --set recipe.sft=runs/sft-poems

Run directory: the Trainer's files (the policy, a plain family model), rollouts/ (the latest rollouts, for
resume) and rl.json (held-out scores of the SFT model and of the policy).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from lmforge.config import check
from lmforge.train.recipes import RecipeRun
from lmforge.train.recipes.ppo import PromptConfig, RLOptions


@dataclasses.dataclass
class GRPOOptions(RLOptions):
    """GRPO's options (Shao et al. 2024)."""

    rollout_prompts: int = 4  # prompts per rollout; samples per rollout = rollout_prompts * group_size
    group_size: int = 8  # G, samples per prompt
    epochs: int = 1  # mu, passes over each rollout
    beta: float = 0.04  # weight of the k3 KL to the reference (sec. 4.2)

    def __post_init__(self):
        super().__post_init__()
        check(self.group_size >= 2, "GRPOOptions",
              f"group_size must be >= 2 (advantages are normalised within a group), got {self.group_size}")
        check(self.beta >= 0, "GRPOOptions", f"beta must be >= 0, got {self.beta}")


@dataclasses.dataclass
class Run(RecipeRun):
    """A GRPO run (configs/grpo-poems.yaml): sections recipe (policy, reward, GRPO's options), data (the prompts),
    train (optimizer steps: each rollout gives epochs * rollout_prompts * group_size / batch_size of them). The model
    is the policy's: the `model` section is not used.

    Example (YAML):
        recipe: {name: grpo, sft: runs/sft-poems, rollout_prompts: 4, group_size: 8}
        train: {max_steps: 40, batch_size: 16, lr: 1e-5, warmup_steps: 0, dtype: fp32}
    """

    data: PromptConfig = dataclasses.field(default_factory=PromptConfig)
    recipe: GRPOOptions = dataclasses.field(default_factory=GRPOOptions)

    DECODING: ClassVar[tuple[str, ...]] = ("decoder",)
    NAME: ClassVar[str] = "grpo"
    DEFAULT_FAMILY: ClassVar[str] = "gpt"


KEYS = ("ids", "attn", "responses", "mask", "logp", "ref_logp", "advantages", "stats")


def make_rollout(policy, ref, tokenizer, prompts, reward, o: GRPOOptions, eos, pad_id: int, seed: int):
    """make(k) for RolloutBatches: rollout k's groups (G consecutive rows per prompt), their rewards and
    group-normalised advantages, the policy's and the reference's log-probs."""
    import numpy as np
    import torch

    from lmforge.objectives.rl import grpo_advantages, kl_k1
    from lmforge.train.recipes.rollouts import check_rewards, logprobs, pack, rollout_stats, sample

    def make(k: int) -> dict:
        rng = np.random.default_rng([seed, k])
        picked = rng.choice(len(prompts), o.rollout_prompts, replace=len(prompts) < o.rollout_prompts)
        chosen = [prompts[i] for i in picked for _ in range(o.group_size)]  # (prompt 0) x G, (prompt 1) x G, ...
        was = policy.training
        policy.eval()
        try:
            with torch.no_grad():
                responses = sample(policy, [p.ids for p in chosen], max_new_tokens=o.max_new_tokens,
                                   temperature=o.temperature, eos=eos, seed=seed * 100_003 + k * 1009)
                texts = [tokenizer.decode([t for t in r if t not in eos], skip_special_tokens=True) for r in responses]
                scores = torch.tensor(check_rewards(reward(chosen, texts), chosen, texts, k))
                device = next(policy.parameters()).device
                ids, attn, resp, mask = (t.to(device) for t in pack([p.ids for p in chosen], responses, pad_id))
                logp = logprobs(policy, ids, attn, resp, o.temperature)
                ref_logp = logprobs(ref, ids, attn, resp, o.temperature)
        finally:
            policy.train(was)
        cpu = lambda t: t.detach().cpu()  # noqa: E731
        return {"ids": cpu(ids), "attn": cpu(attn), "responses": cpu(resp), "mask": cpu(mask), "logp": cpu(logp),
                "ref_logp": cpu(ref_logp), "advantages": grpo_advantages(scores, o.group_size),
                "stats": rollout_stats(scores, cpu(kl_k1(logp, ref_logp)), cpu(mask))}
    return make


def grpo_objective(o: GRPOOptions):
    """loss_fn(policy, minibatch, companions): eq. 3's loss; metrics: the rollout's reward, kl (k1 to the reference,
    summed over a response, as PPO logs it) and response_len, and this minibatch's kl_k3 (the penalty's mean per
    token), entropy, clip_frac."""
    from lmforge.objectives import LossOutput
    from lmforge.objectives.rl import entropy, grpo_loss, masked_mean, token_logprobs
    from lmforge.train.recipes.rollouts import forward, rollout_metrics

    def loss_fn(policy, batch, companions):
        ids, attn, resp, mask, old_logp, ref_logp, adv, stats = batch
        logits, _ = forward(policy, ids, attn, resp.size(1))
        logits = logits / o.temperature  # as sampled (see RLOptions.temperature)
        out = grpo_loss(token_logprobs(logits, resp), old_logp, ref_logp, adv, mask, o.clip, o.beta)
        metrics = {**rollout_metrics(stats), "kl_k3": out.metrics["kl"], "clip_frac": out.metrics["clip_frac"],
                   "entropy": masked_mean(entropy(logits.detach()), mask)}
        return LossOutput(out.loss, metrics)
    return loss_fn


def run(cfg: Run, out: Path, resume: bool = False, log=print, reward=None) -> dict:
    """Train the policy with GRPO into `out`; returns the summary written to out/rl.json. `reward`: a Reward
    (rollouts.Reward) to use instead of recipe.reward (the Python API: any callable)."""
    from lmforge.train.loop import Trainer
    from lmforge.train.recipes.ppo import finish, setup
    from lmforge.train.recipes.rollouts import RolloutBatches

    o, t, out = cfg.recipe, cfg.train, Path(out)
    start = setup(cfg, out, "grpo", reward)
    policy = start.policy
    make = make_rollout(policy, start.ref, start.tokenizer, start.prompts, start.reward, o, start.eos, start.pad,
                        t.seed)
    rows = o.rollout_prompts * o.group_size
    keep = RolloutBatches.keep_for(t.save_interval, t.grad_accum, o.epochs * max(rows // t.batch_size, 1))
    batches = RolloutBatches(make, KEYS, rows, t.batch_size, o.epochs, t.seed, out / "rollouts", keep)
    log(f"grpo: policy from {o.sft} ({policy.config.family}, {sum(p.numel() for p in policy.parameters()) / 1e6:.2f}M "
        f"parameters); reward {o.reward}; {len(start.prompts)} train prompts, {o.rollout_prompts} per rollout x "
        f"{o.group_size} samples, {o.epochs} epoch(s) x {batches.minibatches} minibatches = {batches.per_rollout} "
        "steps per rollout")
    trainer = Trainer(policy, t, batches, None, out_dir=out, tokenizer=start.tokenizer, run_config=cfg.to_dict(),
                      loss_fn=grpo_objective(o), companions={"ref": start.ref}, log=log)
    trainer.fit(resume=resume)
    return finish(trainer, start, o, out, "grpo", log)
