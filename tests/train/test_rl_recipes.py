"""The ppo and grpo recipes on a tiny policy: rollouts score what was sampled, both recipes raise a reward, a NaN
reward stops the run with the last checkpoint intact, resume is exact, bad settings are refused."""
import json
import math

import pytest
import torch

import lmforge
from lmforge.data import chat, poems
from lmforge.kernels.tune import forced
from lmforge.models import build_model, save_model
from lmforge.tokenizers import CharTokenizer, save_tokenizer
from lmforge.train.checkpoint import STATE, load_train_state
from lmforge.train.recipes import grpo, ppo, run_config
from lmforge.train.recipes.rollouts import NonFiniteReward, forward, pack, poem_prompts, sample
from lmforge.objectives.rl import token_logprobs

CFG = {"max_len": 80, "d_model": 32, "n_heads": 2, "n_layers": 2, "d_ff": 64}
TRAIN = {"batch_size": 8, "lr": 3e-3, "min_lr": 3e-3, "warmup_steps": 0, "dtype": "fp32", "progress": False,
         "log_interval": 1, "save_interval": 0, "weight_decay": 0.0}


@pytest.fixture(scope="module")
def sft(tmp_path_factory):
    """A stand-in SFT run: a random tiny GPT over the characters of the first 8 training prompts and 2 val prompts
    (a small vocabulary, so a random policy samples each character often enough to learn from)."""
    path = tmp_path_factory.mktemp("sft")
    text = "".join(ex.prompt for ex in poems.examples("train")[:8] + poems.examples("val")[:2]) + poems.SYSTEM_PROMPT
    text += "，。\n"
    tok = CharTokenizer.train(text, special_tokens=chat.CHAT_SPECIAL_TOKENS)
    torch.manual_seed(0)
    model = build_model("gpt", {**CFG, "vocab_size": tok.vocab_size})
    save_model(model, path)
    save_tokenizer(tok, path)
    return path


def config(name, sft, **kw):
    options = {"name": name, "sft": str(sft), "max_new_tokens": 12, **kw.pop("recipe", {})}
    return run_config({"recipe": options, "data": {"train_prompts": 8, "eval_prompts": kw.pop("eval_prompts", 0)},
                       "train": {**TRAIN, **kw}})


def commas(prompts, texts):
    """A toy reward anyone can check: the share of the response's characters that are "，" (one character in
    the vocabulary's ~70 at the start)."""
    return [t.count("，") / max(len(t), 1) for t in texts]


def test_pack_worked_example():
    ids, attn, resp, mask = pack([[5, 6], [7]], [[8], [9, 1]], 0)
    assert ids.tolist() == [[5, 6, 8, 0], [0, 7, 9, 1]]
    assert attn.tolist() == [[1, 1, 1, 0], [0, 1, 1, 1]]
    assert resp.tolist() == [[8, 0], [9, 1]] and mask.tolist() == [[1, 0], [1, 1]]


def test_rollout_sampling_and_logprobs_are_generations(sft):
    """Greedy rollouts are lmforge.generate's tokens, and the log-probs trained on (one packed forward, prompts
    left-padded) are the ones generation computed for them on the KV cache; sampled rollouts are seeded."""
    from lmforge.generate import generate
    from lmforge.tokenizers import load_tokenizer

    model, tok = lmforge.load(sft), load_tokenizer(sft)
    prompts = [p.ids for p in poem_prompts(tok, "train", 3, 80, 12)]
    steps = [[] for _ in prompts]
    for st in generate(model, [list(p) for p in prompts], max_new_tokens=12, temperature=0):
        steps[st.row].append((st.token, st.raw_logprob))
    greedy = sample(model, prompts, max_new_tokens=12, temperature=0.0, eos=[], seed=0)
    assert greedy == [[t for t, _ in row] for row in steps]
    ids, attn, resp, mask = pack(prompts, greedy, 0)
    logits, _ = forward(model, ids, attn, resp.size(1))
    ours = token_logprobs(logits, resp)
    for b, row in enumerate(steps):
        torch.testing.assert_close(ours[b, :len(row)], torch.tensor([lp for _, lp in row]), atol=1e-4, rtol=0)
    drawn = sample(model, prompts, max_new_tokens=12, temperature=1.0, eos=[], seed=3)
    assert drawn == sample(model, prompts, max_new_tokens=12, temperature=1.0, eos=[], seed=3) != greedy
    # a row ends at its end-of-turn token: make one the first token drawn
    first = drawn[0][0]
    ended = sample(model, prompts, max_new_tokens=12, temperature=1.0, eos=[first], seed=3)
    assert ended[0] == [first] and all(first not in row[:-1] for row in ended)


@pytest.mark.parametrize("recipe", ["ppo", "grpo"])
def test_the_reward_rises(recipe, sft, tmp_path):
    """A few dozen steps raise the toy reward from the random policy's, with the KL to the reference bounded; every
    metric the plots need is in metrics.jsonl."""
    if recipe == "ppo":
        cfg = config("ppo", sft, max_steps=28, lr=1e-2, min_lr=1e-2,
                     recipe={"rollout_prompts": 16, "epochs": 2, "kl_coef": 0.01})
        module = ppo
    else:
        cfg = config("grpo", sft, max_steps=28, lr=1e-2, min_lr=1e-2,
                     recipe={"rollout_prompts": 2, "group_size": 8, "epochs": 2, "beta": 0.01})
        module = grpo
    # torch's default products everywhere, untimed: lr 1e-2 makes the trajectory chaotic, and which fast path the
    # session's timing picks changes the last float bits (one such pick left grpo at 0.09 after 28 steps)
    with forced():
        module.run(cfg, tmp_path, reward=commas, log=lambda m: None)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for key in ("reward", "kl", "entropy", "clip_frac", "response_len"):
        assert all(math.isfinite(r[key]) for r in rows), key
    first, last = rows[0]["reward"], sum(r["reward"] for r in rows[-4:]) / 4
    assert first < 0.05 and last > first + 0.15, (first, last)  # measured: 0 -> 0.43 (ppo), 0 -> 0.35 (grpo)
    assert max(r["kl"] for r in rows) < 30  # nats per 12-token response (measured: < 16)
    summary = json.loads((tmp_path / "rl.json").read_text())
    assert summary["recipe"] == recipe and summary["steps"] == 28


def test_a_nan_reward_names_the_sample_and_keeps_the_last_checkpoint(sft, tmp_path):
    calls = []

    def reward(prompts, texts):
        calls.append(1)
        return [float("nan") if len(calls) == 3 and i == 5 else 0.5 for i in range(len(texts))]

    cfg = config("ppo", sft, max_steps=12, save_interval=2, recipe={"rollout_prompts": 8, "epochs": 2})
    with pytest.raises(NonFiniteReward, match=r"the reward is nan for sample 5 of rollout 2: prompt '.*写一首") as e:
        ppo.run(cfg, tmp_path, reward=reward, log=lambda m: None)
    assert isinstance(e.value, ValueError) and isinstance(e.value, FloatingPointError)
    assert load_train_state(tmp_path / STATE)["step"] == 4  # rollouts 0 and 1: 2 steps each, saved every 2
    lmforge.load(tmp_path)  # the weights of step 4 load


def test_train_reports_a_nan_reward_as_a_stop(sft, tmp_path, capsys, monkeypatch):
    from lmforge.train import recipes

    monkeypatch.setattr(ppo, "reward_from", lambda option, tok, system: lambda p, t: [float("inf")] * len(t))
    cfg = config("ppo", sft, max_steps=4, recipe={"rollout_prompts": 8, "epochs": 1})
    assert recipes.train(cfg, tmp_path) == 1
    err = capsys.readouterr().err
    assert "the reward is inf for sample 0 of rollout 0" in err and "no checkpoint was saved yet" in err


def test_resume_mid_rollout_is_exact(sft, tmp_path):
    kw = {"recipe": {"rollout_prompts": 8, "epochs": 2}}
    straight, parts = tmp_path / "a", tmp_path / "b"
    ppo.run(config("ppo", sft, max_steps=6, **kw), straight, reward=commas, log=lambda m: None)
    ppo.run(config("ppo", sft, max_steps=3, **kw), parts, reward=commas, log=lambda m: None)
    ppo.run(config("ppo", sft, max_steps=6, **kw), parts, resume=True, reward=commas, log=lambda m: None)
    a, b = lmforge.load(straight), lmforge.load(parts)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


def test_the_ppo_run_is_a_value_head_on_the_policy(sft, tmp_path):
    from lmforge.train.value import ValueModel

    summary = ppo.run(config("ppo", sft, max_steps=1, recipe={"rollout_prompts": 8, "epochs": 1}, eval_prompts=2),
                      tmp_path, reward=commas, log=lambda m: None)
    assert summary["sft"]["n"] == summary["trained"]["n"] == 4  # 2 held-out titles x eval_samples 2
    assert 0 <= summary["trained"]["mean_score"] <= 1
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["family"] == "gpt" and record["wrapper"] == {"kind": "value_head"}
    wrapped, policy = lmforge.load(tmp_path), lmforge.load(tmp_path, base_only=True)
    assert isinstance(wrapped, ValueModel) and type(policy).__name__ == "GPT"
    ids = torch.tensor([[3, 4, 5]])
    torch.testing.assert_close(wrapped(ids).logits, policy(ids).logits)
    assert wrapped(ids).values.shape == (1, 3)
    # it generates as the policy does
    from lmforge.generate import generate
    assert [s.token for s in generate(wrapped, [3, 4], max_new_tokens=4, temperature=0)] == \
        [s.token for s in generate(policy, [3, 4], max_new_tokens=4, temperature=0)]


def test_bad_settings_are_refused(sft, tmp_path):
    with pytest.raises(ValueError, match="longer than the policy's context"):
        ppo.run(config("ppo", sft, max_steps=1, recipe={"max_new_tokens": 60}), tmp_path, reward=commas)
    with pytest.raises(ValueError, match="does not split into minibatches"):
        ppo.run(config("ppo", sft, max_steps=1, recipe={"rollout_prompts": 6}), tmp_path, reward=commas)
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        config("grpo", sft, recipe={"group_size": 1})
    with pytest.raises(ValueError, match="recipe.sft is empty"):
        ppo.run(config("ppo", "", max_steps=1), tmp_path)
    with pytest.raises(ValueError, match="neither 'scorer' nor a directory"):
        ppo.run(config("ppo", sft, max_steps=1, recipe={"reward": "nowhere"}), tmp_path)


def test_a_reward_model_rewards_the_conversation_it_was_trained_on(sft, tmp_path):
    """recipe.reward = a reward run's directory: the reward is the model's score of the SFT run's system prompt,
    the prompt, the response and its end marker, encoded as the reward recipe encodes a completion."""
    from lmforge.data.preferences import encode_completion
    from lmforge.tokenizers import load_tokenizer
    from lmforge.train.checkpoint import save_checkpoint
    from lmforge.train.recipes.rollouts import Prompt
    from lmforge.train.reward_model import RewardModel

    tok = load_tokenizer(sft)
    torch.manual_seed(1)
    rm = RewardModel(build_model("gpt", {**CFG, "vocab_size": tok.vocab_size}))
    torch.nn.init.normal_(rm.head.weight, std=1.0)  # a head that tells texts apart (a fresh one starts at 0)
    save_checkpoint(tmp_path / "rm", rm, {"step": 1})
    reward = ppo.reward_from(str(tmp_path / "rm"), tok, poems.SYSTEM_PROMPT)
    prompts = [Prompt((1,), ex.prompt, ex.form) for ex in poems.examples("train")[:3]]
    texts = ["，，。", "", "写诗"]
    got = reward(prompts, texts)
    for p, t, r in zip(prompts, texts, got):
        ids = torch.tensor([encode_completion(tok, p.prompt, t, poems.SYSTEM_PROMPT)[0]])
        assert abs(r - rm.eval()(ids).item()) < 1e-5
    assert len(set(round(r, 4) for r in got)) == 3
    cfg = config("ppo", sft, max_steps=1, recipe={"rollout_prompts": 8, "epochs": 1, "reward": str(tmp_path / "rm")})
    ppo.run(cfg, tmp_path / "run", log=lambda m: None)
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])["reward"] != 0


@pytest.mark.parametrize("name", ["ppo", "grpo"])
def test_the_first_minibatch_is_on_policy_at_any_temperature(name, sft, tmp_path):
    """The log-probs stored with a rollout are those of the distribution it was sampled from (the temperature
    applied), so on the rollout's first minibatch the ratio is 1: no clipping, approx_kl 0 (PPO)."""
    options = {"rollout_prompts": 8, "epochs": 1, "temperature": 0.7}
    if name == "grpo":
        options.update(rollout_prompts=1, group_size=8)
    (ppo if name == "ppo" else grpo).run(config(name, sft, max_steps=1, recipe=options), tmp_path, reward=commas,
                                         log=lambda m: None)
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert row["clip_frac"] == 0.0 and row.get("approx_kl", 0.0) < 1e-6
