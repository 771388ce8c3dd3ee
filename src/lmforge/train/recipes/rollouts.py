"""What the RL recipes (ppo, grpo) share: the prompts, the reward, sampling rollouts from the policy, and the batch
source the Trainer reads minibatches from.

A rollout is `prompts x samples` responses sampled from the current policy (lmforge.generate, KV cache), scored by
the reward, with the policy's and the frozen reference's log-probabilities of every response token; the recipe
turns it into advantages (PPO: GAE over a value head; GRPO: group-normalised scores). The Trainer then takes
`epochs x minibatches` optimizer steps on it before the next rollout is sampled (RolloutBatches). Each rollout is
written to the run directory (rollouts/K.pt) so a resumed run continues mid-rollout on the same samples.

Layout of a rollout's token tensors: the prompts left-padded to one width P, the responses right-padded to R,
so response token t of every row is at column P + t and its logits at P + t - 1 (`response_slice`).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    import torch


class NonFiniteReward(ValueError, FloatingPointError):
    """The reward returned NaN or infinity for a sample. A ValueError (bad input: the reward function is wrong)
    and a FloatingPointError, so `lmforge train` reports it as a stopped run whose last checkpoint is intact."""


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A prompt the policy answers: its ids in the chat template, what the scorer checks (the poem form) and
    what a reward model reads (the user's prompt, under the SFT run's system prompt)."""

    ids: tuple[int, ...]  # system prompt and user prompt in the chat template, ending where the answer starts
    prompt: str  # the user's prompt, e.g. "写一首五言绝句，题为《登鹳雀楼》"
    form: str | None = None  # the poem form (lmforge.eval.poems.FORMS) the answer should have
    title: str = ""


# reward(prompts, responses) -> one number per response
Reward = Callable[[Sequence[Prompt], Sequence[str]], Sequence[float]]


def poem_prompts(tokenizer, split: str, limit: int, context: int, max_new_tokens: int,
                 system: str = "") -> list[Prompt]:
    """The poem task's prompts of one split (lmforge.data.poems.examples: one phrasing, scored forms only) in the
    chat template with the SFT run's system prompt (`system`; "" = the task's), as SFT encoded them; `limit` > 0
    keeps the first `limit`. ValueError when a prompt and max_new_tokens do not fit the policy's context."""
    from lmforge.data import chat, poems

    out = []
    for ex in poems.examples(split)[:limit or None]:
        msgs = poems.messages(ex.prompt)
        if system:
            msgs[0] = {"role": "system", "content": system}
        ids, _ = chat.encode(tokenizer, msgs, add_generation_prompt=True)  # ends with the assistant's marker
        out.append(Prompt(tuple(ids), ex.prompt, ex.form, ex.title))
    check_context(out, context, max_new_tokens)
    return out


def check_context(prompts: Sequence[Prompt], context: int, max_new_tokens: int) -> None:
    """ValueError naming the first prompt that leaves no room for max_new_tokens and an end-of-turn marker (which a
    reward model reads after a response cut at max_new_tokens) in the model's context."""
    for p in prompts:
        if len(p.ids) + max_new_tokens + 1 > context:
            raise ValueError(f"prompt {p.prompt!r} is {len(p.ids)} tokens in the chat template; with recipe.max_new_tokens "
                             f"= {max_new_tokens} and an end marker that is {len(p.ids) + max_new_tokens + 1}, longer than "
                             f"the policy's context (max_len {context}). Lower recipe.max_new_tokens or use a policy "
                             "with a longer context")


def scorer_reward() -> Reward:
    """The verifiable reward: lmforge.eval.poems.score(response, form).score, in [0, 1]."""
    from lmforge.eval.poems import score

    def reward(prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        return [score(r, p.form).score for p, r in zip(prompts, responses)]
    return reward


def model_reward(rm, tokenizer, system: str) -> Reward:
    """The reward of a reward model (lmforge.train.reward_model.RewardModel): its score of each conversation as the
    reward recipe trained it (score_texts: the SFT run's system prompt, the user's prompt, the response and its
    end-of-turn marker)."""
    def reward(prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        return rm.score_texts(tokenizer, [p.prompt for p in prompts], list(responses), system)
    return reward


def check_rewards(values, prompts: Sequence[Prompt], responses: Sequence[str], rollout: int) -> list[float]:
    """The rewards as floats; NonFiniteReward naming the prompt and sample when one is NaN or infinite, or
    ValueError when there is not one per response."""
    values = [float(v) for v in values]
    if len(values) != len(responses):
        raise ValueError(f"the reward returned {len(values)} values for {len(responses)} responses; it must return "
                         "one number per response")
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise NonFiniteReward(f"the reward is {v} for sample {i} of rollout {rollout}: prompt {prompts[i].prompt!r}, "
                                  f"sample {responses[i]!r}. A reward must be a finite number for every text; fix "
                                  "the reward function (or model) and resume from the last checkpoint")
    return values


# ----------------------------------------------------------------------------------------- sampling

def sample(model, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, temperature: float,
           eos: Sequence[int], seed: int) -> list[list[int]]:
    """One response per prompt (token ids, the end-of-turn token included when it was drawn), all rows decoded
    together through the model's decoding protocol (lmforge.models.protocol: prefill, then one decode_step per
    token on the KV cache), as lmforge.generate decodes; temperature 0 is greedy (then the tokens are
    lmforge.generate's, tested). The trainer may not import the generation package (DESIGN.md's dependency
    direction), so this loop is the Engine's without its bookkeeping: every row runs until all have ended or
    max_new_tokens, a row's tokens after its end are dropped. Seeded: one torch.Generator for the batch."""
    import torch

    longest = max(len(p) for p in prompts)
    with torch.no_grad():
        state, out = model.prefill([list(p) for p in prompts], capacity=longest + max_new_tokens)
        device = out.logits.device
        generator = torch.Generator(device).manual_seed(seed)
        stops = torch.tensor(sorted(set(eos)) or [-1], device=device)
        done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
        tokens: list[list[int]] = [[] for _ in prompts]
        for i in range(max_new_tokens):
            logits = out.logits.float()  # (B, V) next-token scores
            if temperature == 0:
                chosen = logits.argmax(-1)
            else:
                chosen = torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator).squeeze(1)  # (B,)
            for b, t in enumerate(chosen.tolist()):
                if not done[b]:
                    tokens[b].append(t)
            done |= torch.isin(chosen, stops)
            if bool(done.all()) or i == max_new_tokens - 1:
                break
            out = model.decode_step(state, chosen[:, None])
    return tokens


def pack(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int):
    """(ids (B, P+R), attention_mask (B, P+R), response tokens (B, R), response mask (B, R)): prompts left-padded
    to P, responses right-padded to R.

    Example: prompts [[5, 6], [7]], responses [[8], [9, 1]], pad 0 ->
      ids [[5, 6, 8, 0], [0, 7, 9, 1]], attention [[1, 1, 1, 0], [0, 1, 1, 1]], response mask [[1, 0], [1, 1]]"""
    import torch

    P, R = max(len(p) for p in prompts), max(len(r) for r in responses)
    B = len(prompts)
    ids = torch.full((B, P + R), pad_id, dtype=torch.long)
    attn = torch.zeros(B, P + R, dtype=torch.long)
    for b, (p, r) in enumerate(zip(prompts, responses)):
        ids[b, P - len(p):P] = torch.tensor(p)
        ids[b, P:P + len(r)] = torch.tensor(r)
        attn[b, P - len(p):P + len(r)] = 1
    return ids, attn, ids[:, P:].clone(), attn[:, P:].float()


def forward(model, ids: "torch.Tensor", attn: "torch.Tensor", R: int):
    """The model on a packed batch; returns (logits (B, R, V) predicting the R response tokens, its ModelOutput).
    Positions count from each row's first real token (left padding), as generation counts them."""
    positions = (attn.cumsum(1) - 1).clamp(min=0)
    out = model(ids, attention_mask=attn, positions=positions, keep_logits=R + 1)
    return out.logits[:, :-1], out


def response_slice(x: "torch.Tensor", R: int) -> "torch.Tensor":
    """The positions whose outputs score the R response tokens (B, P+R, ...) -> (B, R, ...): P-1 .. P+R-2."""
    return x[:, -R - 1:-1]


def logprobs(model, ids, attn, responses, temperature: float = 1.0) -> "torch.Tensor":
    """log pi(response token) under `model` at `temperature`, (B, R), no gradients."""
    import torch

    from lmforge.objectives.rl import token_logprobs

    with torch.no_grad():
        logits, _ = forward(model, ids, attn, responses.size(1))
        return token_logprobs(logits / temperature, responses)


# ----------------------------------------------------------------------------------------- the batch source

class RolloutBatches:
    """The Trainer's batch source for RL: minibatch `index` of a sequence of rollouts.

    Rollout k = index // (epochs * minibatches) is sampled (by `make(k)`, the recipe's: it samples with the
    policy as it is when the Trainer first asks for it) and reused for `epochs` passes of `minibatches`
    shuffled minibatches each (the permutation of epoch e a function of (seed, k, e)). `make(k)` returns a dict
    of tensors with one row per sample, `keys` the ones a minibatch holds, in order.

    Each rollout is saved to `directory`/k.pt (atomically) and the last `keep` are kept, so a run resumed from a
    checkpoint taken mid-rollout reads the samples it was training on (keep_for says how many); a run resumed
    at a rollout's first step samples it afresh from the checkpoint's policy, as the uninterrupted run did."""

    def __init__(self, make: Callable[[int], dict], keys: Sequence[str], rows: int, batch_size: int, epochs: int,
                 seed: int, directory: Path | None = None, keep: int = 2):
        if rows % batch_size:
            raise ValueError(f"a rollout of {rows} samples does not split into minibatches of train.batch_size = "
                             f"{batch_size}; make the samples per rollout a multiple of the batch size")
        self.make, self.keys, self.rows, self.batch_size = make, tuple(keys), rows, batch_size
        self.minibatches, self.epochs, self.seed = rows // batch_size, epochs, seed
        self.directory, self.keep = (Path(directory) if directory is not None else None), max(keep, 1)
        self.k, self.buffer = None, None

    @staticmethod
    def keep_for(save_interval: int, grad_accum: int, per_rollout: int) -> int:
        """Rollouts to keep on disk so that the last checkpoint's is among them: checkpoints every save_interval
        steps are at most ceil(save_interval * grad_accum / per_rollout) rollouts apart, plus the current one;
        with save_interval 0 (a checkpoint at the end only) the current one.

        Example: keep_for(250, 1, 8) -> 33; keep_for(4, 1, 8) -> 2"""
        return -(-save_interval * grad_accum // per_rollout) + 1 if save_interval else 1

    @property
    def per_rollout(self) -> int:
        return self.epochs * self.minibatches

    def rollout(self, k: int) -> dict:
        import torch

        if self.k != k:
            path = self.directory / f"{k}.pt" if self.directory is not None else None
            if path is not None and path.exists():
                self.buffer = torch.load(path, weights_only=True)
            else:
                self.buffer = self.make(k)
                if path is not None:
                    self.directory.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".tmp")
                    torch.save(self.buffer, tmp)
                    tmp.replace(path)
                    for old in self.directory.glob("*.pt"):
                        if old.stem.isdigit() and int(old.stem) <= k - self.keep:
                            old.unlink()
            self.k = k
        return self.buffer

    def get(self, index: int) -> tuple:
        import numpy as np
        import torch

        k, j = divmod(index, self.per_rollout)
        epoch, m = divmod(j, self.minibatches)
        buffer = self.rollout(k)
        order = np.random.default_rng([self.seed, k, epoch]).permutation(self.rows)
        rows = torch.from_numpy(order[m * self.batch_size:(m + 1) * self.batch_size])
        return tuple(buffer[key][rows] for key in self.keys)

    def batch_tokens(self, batch) -> int:
        return int(batch[self.keys.index("mask")].sum())  # response tokens trained on


def rollout_stats(scores, kl_k1, mask) -> "torch.Tensor":
    """(N, 3) rows of [mean score, mean KL to the reference (k1 summed over each response, nats), mean response
    length] of the whole rollout, repeated per sample so any minibatch carries them to the logged metrics."""
    import torch

    row = torch.tensor([scores.mean().item(), (kl_k1 * mask).sum(1).mean().item(), mask.sum(1).mean().item()])
    return row.expand(len(scores), 3).clone()


def rollout_metrics(stats) -> dict[str, float]:
    """The rollout's numbers from a minibatch's stats rows: reward, kl (to the reference), response_len."""
    return {"reward": stats[0, 0], "kl": stats[0, 1], "response_len": stats[0, 2]}


# ----------------------------------------------------------------------------------------- models and the evaluation

def load_policy(path: str):
    """(the SFT model without dropout, its tokenizer) from recipe.sft. Dropout is switched off: it would make
    the policy's log-probs differ between sampling and training (N-details: RL runs disable dropout)."""
    import lmforge
    from lmforge.models import FAMILIES, build_model
    from lmforge.tokenizers import load_tokenizer

    if not path:
        raise ValueError("recipe.sft is empty: give the run directory of an SFT model (the sft recipe), e.g. "
                         "--set recipe.sft=runs/sft-poems")
    if not Path(path).is_dir():
        raise ValueError(f"recipe.sft {path!r} is not a directory; give an SFT run's directory")
    model = lmforge.load(path, base_only=True)
    family = FAMILIES.get(getattr(getattr(model, "config", None), "family", None))
    if family is None or family.decoding != "decoder":
        raise ValueError(f"recipe.sft {path} holds a {type(model).__name__}; RL trains a decoder-only language "
                         f"model (gpt, llama): give an SFT run of one")
    if getattr(model.config, "dropout", 0.0):
        state = model.state_dict()
        model = build_model(model.config.family, {**model.config.to_dict(), "dropout": 0.0})
        model.load_state_dict(state)
    return model, load_tokenizer(path)
