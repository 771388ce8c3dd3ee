"""A reward model: a decoder-only language model with a scalar head on its last real token.

Stiennon et al. 2020 (sec. 3.4, "we add a randomly initialized linear head that outputs a scalar value") and
Ouyang et al. 2022 (sec. 3.5, the SFT model "with the final unembedding layer removed" outputs a scalar): the
SFT model reads prompt + completion, and a linear layer maps the final hidden state of the LAST real token
(the one that has seen the whole text) to one number. It is trained with the Bradley-Terry loss
(lmforge.objectives.preference.bradley_terry; the `reward` recipe) and read by PPO as the reward:

    rm = load_reward_model("runs/reward-poems")                 # eval mode, frozen
    r = rm.score(ids, mask)                                     # ids, mask (B, T) -> (B,)

A checkpoint of it is its base's config.json plus "wrapper": {"kind": "reward"} and the base's tensors under
"base." (lmforge.train.checkpoint.config_record), so `lmforge.load(run)` rebuilds it (lmforge.models.WRAPPERS)
and `lmforge.load(run, base_only=True)` gives the language model inside.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

KIND = "reward"


def last_positions(mask: Tensor) -> Tensor:
    """Index of each row's last real token -> (B,); rows may be padded on the left, the right or both.
    Example: mask [[1, 1, 0], [0, 1, 1]] -> [1, 2]."""
    if mask.dim() != 2 or not bool(mask.bool().any(1).all()):
        raise ValueError(f"mask must be (B, T) with at least one real token (1) in every row; got shape "
                         f"{tuple(mask.shape)}" + (" with an empty row" if mask.dim() == 2 else ""))
    T = mask.size(1)
    return (mask.bool() * torch.arange(1, T + 1, device=mask.device)).argmax(1)  # the largest index holding a 1


class RewardModel(nn.Module):
    """base: a decoder-only family model (GPT, Llama: forward(ids, positions=, attention_mask=) -> hidden_states).
    head: Linear(d_model, 1), N(0, 1/sqrt(d_model + 1)) weights and a zero bias (Stiennon et al. 2020's released
    reward head), so every text starts near 0."""

    def __init__(self, base: nn.Module):
        super().__init__()
        d_model = getattr(getattr(base, "config", None), "d_model", None)
        if not isinstance(d_model, int) or getattr(base, "decoder_start", 0) is not None:
            raise ValueError(f"a reward model is built on a decoder-only family model (gpt, llama), got a "
                             f"{type(base).__name__}")
        self.base = base
        self.config = base.config  # vocab_size, max_len: what the recipes check texts against
        self.head = nn.Linear(d_model, 1)
        nn.init.normal_(self.head.weight, std=1 / (d_model + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)

    def wrapper_config(self) -> dict:
        return {"kind": KIND}

    @classmethod
    def from_record(cls, base: nn.Module, record: dict) -> "RewardModel":
        return cls(base)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """ids (B, T), mask (B, T) with 1 on real tokens (default: all real) -> one reward per row (B,)."""
        if mask is None:
            mask = torch.ones_like(ids)
        if tuple(mask.shape) != tuple(ids.shape):
            raise ValueError(f"mask has shape {tuple(mask.shape)} but ids have shape {tuple(ids.shape)}; give one "
                             "value per token (1 = real token, 0 = padding)")
        last = last_positions(mask)
        if bool(mask[:, 0].all()) and bool((mask.sum(1) == last + 1).all()):
            # right padding only: the causal mask alone keeps padding out of every real token's view
            out = self.base(ids, keep_logits=1)
        else:  # left padding: positions counted from each row's first real token, padding keys masked
            positions = (mask.long().cumsum(1) - 1).clamp(min=0)
            out = self.base(ids, positions=positions, attention_mask=mask, keep_logits=1)
        h = out.hidden_states[torch.arange(ids.size(0), device=ids.device), last]  # (B, d_model)
        return self.head(h).squeeze(-1)  # (B,)

    def score(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """The reward of each row (B,), without gradients (what PPO reads); forward() keeps them (training)."""
        with torch.no_grad():
            return self(ids, mask)

    def score_texts(self, tok, prompts: list[str], answers: list[str], system: str | None = None,
                    batch_size: int = 32) -> list[float]:
        """The reward of each (prompt, answer) as the reward recipe trained it: the chat template with the system
        prompt (default: the task's), the answer, its end-of-turn marker (lmforge.data.preferences.encode_completion).
        Example: rm.score_texts(tok, ["写一首五言绝句，题为《春晓》"], ["春眠不觉晓，处处闻啼鸟。\n..."]) -> [1.7]"""
        from lmforge.data.preferences import SYSTEM_PROMPT, encode_completion
        from lmforge.nn.masks import pad_rows

        if len(prompts) != len(answers):
            raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers: give one answer per prompt")
        rows = [encode_completion(tok, p, a, system or SYSTEM_PROMPT)[0] for p, a in zip(prompts, answers)]
        too_long = [i for i, r in enumerate(rows) if len(r) > self.config.max_len]
        if too_long:
            raise ValueError(f"text {too_long[0]} is {len(rows[too_long[0]])} tokens in the chat template, longer than "
                             f"the reward model's context max_len ({self.config.max_len})")
        device = next(self.parameters()).device
        out: list[float] = []
        for i in range(0, len(rows), batch_size):
            ids, keep = pad_rows(rows[i:i + batch_size], device=device)  # right padding
            out += self.score(ids, keep.long()).float().tolist()
        return out


def load_reward_model(run: str | Path) -> RewardModel:
    """The reward model a `reward` run trained, in eval mode, its parameters frozen (requires_grad False)."""
    from lmforge.loading import load

    path = Path(run)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a run directory (no config.json): give the directory a `reward` run wrote")
    model = load(path)
    if not isinstance(model, RewardModel):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a reward model: train one with the reward "
                         f"recipe (lmforge train configs/reward-poems.yaml)")
    return model.eval().requires_grad_(False)
