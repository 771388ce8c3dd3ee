"""The `ppo` recipe: RLHF's PPO (Stiennon et al. 2020; Ouyang et al. 2022) on the poem task.

The policy starts as the SFT model (recipe.sft), a frozen copy of it is the reference. Each rollout samples one
response per prompt from the policy (lmforge.generate, KV cache), scores it (recipe.reward: the poem scorer, or a
reward model), and gives every response token the reward

    r_t = -kl_coef * (log pi(y_t) - log pi_ref(y_t))   (+ the whitened score at the last token)

(Stiennon et al. eq. 1, the k1 estimate per token); GAE (gamma, lambda) over a value head turns it into advantages
(whitened over the rollout), and the Trainer takes `epochs` passes of shuffled minibatches over the rollout with
the clipped policy loss and the clipped value loss (lmforge.objectives.rl).

Choices, with the "N implementation details of RLHF with PPO" (Huang et al. 2024; "N-details") where we follow it:
- The value head is a linear layer on the policy's own final hidden states (ValueModel), not a separate value
  model. Stiennon et al. (and lm-human-preferences) use a separate value network initialised from the reward model;
  on a 2-core CPU one forward and backward for both halves the cost, there is no reward model to start from when the
  reward is the scorer, and the value loss is scaled by vf_coef = 0.1 (N-details' default) so it does not pull the
  shared trunk far. Head init: weight N(0, 1/sqrt(d_model + 1)), bias 0 (N-details).
- Score whitening per rollout ("batch", not running): the scores of one rollout are shifted and scaled to mean 0
  and std 1 before the KL term is added. The poem score lives in [0, 1] with a small spread and a reward model's
  logits on another scale; whitening puts both on one scale against kl_coef, and keeps nothing across rollouts, so
  a resumed run is exact. (lm-human-preferences normalises the reward model once, before training, with a gain and
  a bias; TRL's PPO whitened the per-token rewards of each batch.)
- Advantages are whitened over the rollout (N-details); gamma = 1, lambda = 0.95, clip 0.2 for both the ratio and
  the value, 4 epochs over the rollout (N-details); kl_coef 0.05 fixed (TRL's PPOConfig; N-details' adaptive
  controller is left out); dropout off.

    lmforge train configs/ppo-poems.yaml --set recipe.sft=runs/sft-poems

Run directory: the Trainer's files (the policy with its value head: config.json names the base family and
"wrapper": {"kind": "value_head"}; lmforge.load(RUN, base_only=True) gives the policy alone), rollouts/ (the
latest rollouts, for resume) and rl.json (held-out scores of the SFT model and of the policy).
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import ClassVar

from lmforge.config import Config, check
from lmforge.train.recipes import RecipeRun

@dataclasses.dataclass
class PromptConfig(Config):
    """The prompts: the poem task's (lmforge.data.poems), train split for rollouts, val split for the scores."""

    task: typing.Literal["poems"] = "poems"
    train_prompts: int = 0  # the first N train prompts (0 = all)
    eval_prompts: int = 32  # held-out (val) titles scored before and after training (0 = none)
    eval_samples: int = 2  # poems per held-out title (sampled at temperature 1)

    def __post_init__(self):
        check(self.eval_samples >= 1, "PromptConfig", f"eval_samples must be >= 1, got {self.eval_samples}")
        for k in ("train_prompts", "eval_prompts"):
            check(getattr(self, k) >= 0, "PromptConfig", f"{k} must be >= 0 (0 = all / none), got {getattr(self, k)}")


@dataclasses.dataclass
class RLOptions(Config):
    """What the RL recipes share: the policy, the reward, the rollouts and the clipped ratio."""

    sft: str = ""  # the SFT run directory the policy (and the frozen reference) start from (as the dpo recipe)
    reward: str = "scorer"  # "scorer" (lmforge.eval.poems.score) or a reward model's run directory
    rollout_prompts: int = 16  # prompts per rollout
    epochs: int = 4  # passes over each rollout (N-details: 4 PPO epochs)
    # longest response sampled: a 七言律诗 is 8 lines of 7 characters and a mark, 4 line breaks, the end marker (69)
    max_new_tokens: int = 80
    # sampling temperature of the rollouts; the log-probs trained on are taken at the same temperature (TRL does
    # so too), so they are those of the distribution sampled from. No top-k / top-p: a truncated distribution
    # would not be the policy whose ratio PPO clips (N-details sample from the full distribution)
    temperature: float = 1.0
    clip: float = 0.2  # the ratio's clip range eps (Schulman et al. 2017: 0.2)

    def __post_init__(self):
        n = type(self).__name__
        for k in ("rollout_prompts", "epochs", "max_new_tokens"):
            check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        check(self.temperature > 0, n, f"temperature must be > 0 (rollouts are sampled), got {self.temperature}")
        check(0 < self.clip < 1, n, f"clip must be in (0, 1) (PPO: 0.2), got {self.clip}")


@dataclasses.dataclass
class PPOOptions(RLOptions):
    """PPO's options. Defaults: N-details (gamma 1, lambda 0.95, vf_coef 0.1, value clip 0.2), TRL (kl_coef 0.05)."""

    kl_coef: float = 0.05  # beta of the per-token k1 penalty
    gamma: float = 1.0
    lam: float = 0.95
    vf_coef: float = 0.1  # weight of the value loss in the shared trunk's loss
    vf_clip: float = 0.2
    whiten_scores: bool = True  # whiten each rollout's scores (see the module docstring)

    def __post_init__(self):
        super().__post_init__()
        n = "PPOOptions"
        check(self.kl_coef >= 0, n, f"kl_coef must be >= 0, got {self.kl_coef}")
        check(0 <= self.gamma <= 1 and 0 <= self.lam <= 1, n, f"gamma and lam must be in [0, 1], got {self.gamma}, {self.lam}")
        check(self.vf_coef >= 0 and self.vf_clip > 0, n, f"vf_coef must be >= 0 and vf_clip > 0, got {self.vf_coef}, {self.vf_clip}")


@dataclasses.dataclass
class Run(RecipeRun):
    """A PPO run (configs/ppo-poems.yaml): sections recipe (the policy, the reward, PPO's options), data (the
    prompts), train (optimizer steps: each rollout gives epochs * rollout_prompts / batch_size of them). The model
    is the policy's: the `model` section is not used.

    Example (YAML):
        recipe: {name: ppo, sft: runs/sft-poems, reward: scorer, rollout_prompts: 16}
        train: {max_steps: 64, batch_size: 8, lr: 1e-5, warmup_steps: 0, dtype: fp32}
    """

    data: PromptConfig = dataclasses.field(default_factory=PromptConfig)
    recipe: PPOOptions = dataclasses.field(default_factory=PPOOptions)

    DECODING: ClassVar[tuple[str, ...]] = ("decoder",)
    NAME: ClassVar[str] = "ppo"
    DEFAULT_FAMILY: ClassVar[str] = "gpt"


# ----------------------------------------------------------------------------------------- rollouts and loss

def make_rollout(policy, ref, tokenizer, prompts, reward, o: PPOOptions, eos, pad_id: int, seed: int):
    """make(k) for RolloutBatches: rollout k's samples, rewards, values, advantages and returns."""
    import numpy as np
    import torch

    from lmforge.objectives.rl import gae, ppo_rewards, token_logprobs, whiten
    from lmforge.train.recipes.rollouts import check_rewards, pack, response_slice, rollout_stats, sample
    from lmforge.train.recipes.rollouts import forward as packed_forward

    def make(k: int) -> dict:
        rng = np.random.default_rng([seed, k])
        chosen = [prompts[i] for i in rng.choice(len(prompts), o.rollout_prompts, replace=len(prompts) < o.rollout_prompts)]
        was = policy.training
        policy.eval()
        try:
            with torch.no_grad():
                responses = sample(policy.base, [p.ids for p in chosen], max_new_tokens=o.max_new_tokens,
                                   temperature=o.temperature, eos=eos, seed=seed * 100_003 + k * 1009)
                texts = [tokenizer.decode([t for t in r if t not in eos], skip_special_tokens=True) for r in responses]
                scores = torch.tensor(check_rewards(reward(chosen, texts), chosen, texts, k))
                device = next(policy.parameters()).device
                ids, attn, resp, mask = (t.to(device) for t in pack([p.ids for p in chosen], responses, pad_id))
                R = resp.size(1)
                logits, out = packed_forward(policy, ids, attn, R)
                logp, values = token_logprobs(logits / o.temperature, resp), response_slice(out.values, R).float() * mask
                ref_logits, _ = packed_forward(ref, ids, attn, R)
                ref_logp = token_logprobs(ref_logits / o.temperature, resp)
                shaped = whiten(scores) if o.whiten_scores and len(scores) > 1 else scores
                rewards, kl = ppo_rewards(shaped.to(device), logp, ref_logp, mask, o.kl_coef)
                adv, returns = gae(rewards, values, mask, o.gamma, o.lam)
                adv = whiten(adv, mask)
        finally:
            policy.train(was)
        cpu = lambda t: t.detach().cpu()  # noqa: E731
        return {"ids": cpu(ids), "attn": cpu(attn), "responses": cpu(resp), "mask": cpu(mask), "logp": cpu(logp),
                "values": cpu(values), "advantages": cpu(adv), "returns": cpu(returns),
                "stats": rollout_stats(scores, cpu(kl), cpu(mask))}
    return make


KEYS = ("ids", "attn", "responses", "mask", "logp", "values", "advantages", "returns", "stats")


def ppo_loss(o: PPOOptions):
    """loss_fn(policy, minibatch, companions): clipped policy loss + vf_coef * clipped value loss; metrics: the
    rollout's reward, kl (to the reference) and response_len, and this minibatch's entropy, clip_frac, approx_kl,
    policy_loss, value_loss, vf_clip_frac."""
    from lmforge.objectives import LossOutput
    from lmforge.objectives.rl import entropy, masked_mean, ppo_policy_loss, token_logprobs, value_loss
    from lmforge.train.recipes.rollouts import forward, response_slice, rollout_metrics

    def loss_fn(policy, batch, companions):
        ids, attn, resp, mask, old_logp, old_values, adv, returns, stats = batch
        R = resp.size(1)
        logits, out = forward(policy, ids, attn, R)
        logits = logits / o.temperature  # as sampled (see RLOptions.temperature)
        logp = token_logprobs(logits, resp)
        values = response_slice(out.values, R).float()
        pg = ppo_policy_loss(logp, old_logp, adv, mask, o.clip)
        vf = value_loss(values, old_values, returns, mask, o.vf_clip)
        metrics = {**rollout_metrics(stats), "entropy": masked_mean(entropy(logits.detach()), mask),
                   "policy_loss": pg.loss.detach(), "value_loss": vf.loss.detach(), **pg.metrics, **vf.metrics}
        return LossOutput(pg.loss + o.vf_coef * vf.loss, metrics)
    return loss_fn


# ----------------------------------------------------------------------------------------- the run

def reward_from(option: str, tokenizer, system: str):
    """The Reward a run config names: "scorer", or a reward model's run directory (the reward recipe's)."""
    from lmforge.train.recipes.rollouts import model_reward, scorer_reward

    if option == "scorer":
        return scorer_reward()
    if not Path(option).is_dir():
        raise ValueError(f"recipe.reward {option!r} is neither 'scorer' nor a directory; give 'scorer' or a reward "
                         "model's run directory (the reward recipe)")
    from lmforge.train.reward_model import load_reward_model

    return model_reward(load_reward_model(option), tokenizer, system)


@dataclasses.dataclass
class Start:
    """What both RL recipes start from (setup)."""

    policy: typing.Any  # the SFT model, trained
    ref: typing.Any  # a frozen copy of it, the reference
    tokenizer: typing.Any
    system: str  # the SFT run's system prompt
    prompts: list  # rollouts.Prompt of the train split
    held_out: list  # lmforge.data.poems.Example of the val split, scored before and after training
    eos: list[int]
    pad: int
    reward: typing.Any  # rollouts.Reward: recipe.reward, or the caller's


def setup(cfg, out: Path, name: str, reward=None) -> Start:
    """Check that the run is one process, make `out`, and load what an RL recipe (`name`) starts from; `reward`:
    a Reward to use instead of recipe.reward."""
    import copy

    from lmforge.data import poems
    from lmforge.data.preferences import run_system_prompt
    from lmforge.tokenizers import eos_ids
    from lmforge.train.dist import Dist
    from lmforge.train.recipes.rollouts import load_policy, poem_prompts

    if Dist().enabled:
        raise ValueError(f"the {name} recipe runs in one process (its rollouts are sampled by rank 0's policy); run "
                         "it without torchrun")
    Path(out).mkdir(parents=True, exist_ok=True)
    o, d = cfg.recipe, cfg.data
    policy, tokenizer = load_policy(o.sft)
    eos = eos_ids(tokenizer)
    if not eos:
        raise ValueError(f"the tokenizer of {o.sft} has no end-of-turn token (<|end|>): RL needs a chat model "
                         "that ends its answers; give an SFT run (the sft recipe)")
    system = run_system_prompt(o.sft)
    prompts = poem_prompts(tokenizer, "train", d.train_prompts, policy.config.max_len, o.max_new_tokens, system)
    held_out = poems.examples("val")[:d.eval_prompts] if d.eval_prompts else []
    pad = tokenizer.padding.pad_id if getattr(tokenizer, "padding", None) is not None else 0
    reward = reward or reward_from(o.reward, tokenizer, system)
    return Start(policy, copy.deepcopy(policy), tokenizer, system, prompts, held_out, eos, pad or 0, reward)


def finish(trainer, start: Start, o, out: Path, name: str, log=print) -> dict:
    """Score the SFT reference and the trained policy on the held-out titles (lmforge.eval.poems.evaluate_poems:
    data.eval_samples poems per title at temperature 1, seed 0, as `lmforge eval poems --split val` does); write
    rl.json."""
    from lmforge.eval.poems import evaluate_poems
    from lmforge.io import atomic_write_json

    summary = {"recipe": name, "sft": o.sft, "reward": o.reward, "steps": trainer.step,
               "last": trainer.metrics[-1] if trainer.metrics else {}}
    if start.held_out:
        n = trainer.run_config["data"]["eval_samples"]
        for key, model in (("sft", trainer.companions["ref"]), ("trained", start.policy)):
            result = evaluate_poems(model, start.tokenizer, start.held_out, n=n, seed=0, system=start.system)
            summary[key] = {k: result[k] for k in ("n", "mean_score", "format_rate", "rhyme_rate", "distinct_2")}
            summary[key]["samples"] = result["samples"][:4]
        a, b = summary["sft"], summary["trained"]
        log(f"held-out ({len(start.held_out)} val titles x {n}): mean score SFT {a['mean_score']:.3f} -> {name} "
            f"{b['mean_score']:.3f}; format rate {a['format_rate']:.2f} -> {b['format_rate']:.2f}; rhyme rate "
            f"{a['rhyme_rate']:.2f} -> {b['rhyme_rate']:.2f}")
    atomic_write_json(out / "rl.json", summary)
    return summary


def run(cfg: Run, out: Path, resume: bool = False, log=print, reward=None) -> dict:
    """Train the policy with PPO into `out`; returns the summary written to out/rl.json. `reward`: a Reward
    (rollouts.Reward) to use instead of recipe.reward (the Python API: any callable)."""
    import torch

    from lmforge.train.loop import Trainer
    from lmforge.train.recipes.rollouts import RolloutBatches
    from lmforge.train.value import ValueModel

    o, t, out = cfg.recipe, cfg.train, Path(out)
    start = setup(cfg, out, "ppo", reward)
    base = start.policy
    torch.manual_seed(t.seed)
    policy = ValueModel(base)  # a resumed run's checkpoint then overwrites the head's initial weights
    make = make_rollout(policy, start.ref, start.tokenizer, start.prompts, start.reward, o, start.eos, start.pad,
                        t.seed)
    keep = RolloutBatches.keep_for(t.save_interval, t.grad_accum, o.epochs * max(o.rollout_prompts // t.batch_size, 1))
    batches = RolloutBatches(make, KEYS, o.rollout_prompts, t.batch_size, o.epochs, t.seed, out / "rollouts", keep)
    log(f"ppo: policy from {o.sft} ({base.config.family}, {sum(p.numel() for p in base.parameters()) / 1e6:.2f}M "
        f"parameters) + value head; reward {o.reward}; {len(start.prompts)} train prompts, {o.rollout_prompts} per rollout, "
        f"{o.epochs} epochs x {batches.minibatches} minibatches = {batches.per_rollout} steps per rollout")
    trainer = Trainer(policy, t, batches, None, out_dir=out, tokenizer=start.tokenizer, run_config=cfg.to_dict(),
                      loss_fn=ppo_loss(o), companions={"ref": start.ref}, log=log)
    trainer.fit(resume=resume)
    return finish(trainer, start, o, out, "ppo", log)
