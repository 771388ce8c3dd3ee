"""The `reward` and `dpo` recipes and `lmforge pairs`, end to end on a tiny GPT "SFT run" (random weights, a
character tokenizer with the chat markers) and pairs made from real poems: chosen = the poem, rejected = the poem
with its last line cut (a lower score from the real scorer)."""
import json

import pytest
import torch

from lmforge.data import chat
from lmforge.data.poems import SYSTEM_PROMPT, examples, load
from lmforge.data.preferences import Pair, read_pairs, write_pairs
from lmforge.eval.poems import score
from lmforge.models import build_model
from lmforge.tokenizers.char import CharTokenizer
from lmforge.train.checkpoint import save_checkpoint
from lmforge.train.recipes import run_config, train


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """A GPT with a chat tokenizer over the poems' characters, saved as a run directory (what an SFT run leaves)."""
    text = SYSTEM_PROMPT + "".join(f"{p['title']}{''.join(p['lines'])}\n" for p in load()) + "写一首五言绝句七律诗题为《》"
    tok = CharTokenizer.train(text, special_tokens=chat.CHAT_SPECIAL_TOKENS)
    torch.manual_seed(0)
    model = build_model("gpt", {"vocab_size": tok.vocab_size, "max_len": 160, "d_model": 32, "n_heads": 2,
                                "n_layers": 1, "d_ff": 64, "dropout": 0.0})
    out = tmp_path_factory.mktemp("sft")
    save_checkpoint(out, model, {"step": 0}, tokenizer=tok)
    return out


def cut_pairs(split, n):
    """(poem, poem without its last line) pairs of real 绝句, scored by the real scorer."""
    pairs = []
    for ex in examples(split):
        if ex.form in ("五言绝句", "七言绝句") and len(pairs) < n:
            cut = "\n".join(ex.answer.split("\n")[:-1])
            pairs.append(Pair(ex.prompt, ex.answer, cut, score(ex.answer, ex.form).score, score(cut, ex.form).score,
                              {"form": ex.form, "title": ex.title}))
    return [p for p in pairs if p.chosen_score > p.rejected_score]


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    write_pairs(d / "train.jsonl", cut_pairs("train", 48))
    write_pairs(d / "val.jsonl", cut_pairs("val", 16))
    return d / "train.jsonl", d / "val.jsonl"


def config(name, sft, pairs, steps=30, **recipe):
    train_file, val_file = pairs
    return run_config({"recipe": {"name": name, "sft": str(sft), **recipe}, "model": {},
                       "data": {"pairs": str(train_file), "val_pairs": str(val_file)},
                       "train": {"max_steps": steps, "batch_size": 8, "lr": 3e-3, "warmup_steps": 0,
                                 "eval_interval": steps, "eval_steps": 1, "save_interval": 0, "log_interval": 5,
                                 "dtype": "fp32", "progress": False, "seed": 0, "weight_decay": 0.0}})


def test_the_reward_recipe_learns_the_pairs_and_saves_a_normalised_reward_model(sft_run, pair_files, tmp_path):
    from lmforge.data.preferences import PairBatches, encode_pair
    from lmforge.tokenizers import load_tokenizer
    from lmforge.train.recipes.reward import load_reward_model

    assert train(config("reward", sft_run, pair_files, steps=12), tmp_path / "rm") == 0
    summary = json.loads((tmp_path / "rm" / "reward.json").read_text())
    assert summary["train"]["accuracy"] >= 0.9 and summary["held_out"]["accuracy"] >= 0.75
    assert summary["held_out"]["spearman"] > 0.5 and summary["held_out"]["texts"] == 2 * summary["val_pairs"]
    metrics = [json.loads(line) for line in (tmp_path / "rm" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["loss"] < metrics[0]["loss"] / 2 < 0.6931 / 2  # from log 2 (a random head) down
    rm = load_reward_model(tmp_path / "rm")
    tok = load_tokenizer(tmp_path / "rm")
    texts = [side for p in read_pairs(pair_files[0]) for side in encode_pair(tok, p)]
    ids, mask, _ = PairBatches([(texts[i], texts[i + 1]) for i in range(0, len(texts), 2)], 8, shuffle=False).get(0)
    assert set(json.loads((tmp_path / "rm" / "config.json").read_text())["wrapper"]) == {"kind"}
    # normalised over all training texts: a batch of them has a mean near 0 and the chosen side scores higher
    r = rm.score(ids, mask)
    assert abs(r.mean().item()) < 2 * r.std().item() and (r[:8] > r[8:]).float().mean() >= 0.75
    pairs = read_pairs(pair_files[0])[:8]
    by_text = rm.score_texts(tok, [p.prompt for p in pairs], [p.chosen for p in pairs], batch_size=3)
    torch.testing.assert_close(torch.tensor(by_text), r[:8], atol=1e-5, rtol=1e-5)  # the same texts, the same rewards


def test_the_dpo_recipe_raises_the_chosen_margin_and_keeps_the_reference(sft_run, pair_files, tmp_path):
    import lmforge

    assert train(config("dpo", sft_run, pair_files, steps=10, beta=0.1), tmp_path / "dpo") == 0
    summary = json.loads((tmp_path / "dpo" / "dpo.json").read_text())
    for part in ("train", "held_out"):
        s = summary[part]
        assert s["policy_logp_gap"] > s["ref_logp_gap"] + 1.0 and s["reward_accuracy"] >= 0.75
    assert summary["train"]["loss"] < 0.6931
    policy, sft = lmforge.load(tmp_path / "dpo"), lmforge.load(sft_run)
    assert type(policy) is type(sft) and not torch.equal(policy.tok_emb.weight, sft.tok_emb.weight)
    metrics = [json.loads(line) for line in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    assert {"reward_chosen", "reward_rejected", "margin", "accuracy", "logp_gap", "val_margin"} <= set(metrics[-1])
    assert metrics[-1]["margin"] > metrics[0]["margin"]


@pytest.mark.parametrize("name", ["reward", "dpo"])
def test_a_bad_preference_file_stops_the_run_before_anything_is_written(sft_run, pair_files, tmp_path, name):
    bad = tmp_path / "bad.jsonl"
    lines = pair_files[0].read_text().splitlines()
    lines[3] = json.dumps({k: v for k, v in json.loads(lines[3]).items() if k != "rejected"})
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"bad.jsonl line 4: no 'rejected'"):
        train(config(name, sft_run, (bad, pair_files[1])), out)
    assert not out.exists()
    long = tmp_path / "long.jsonl"
    write_pairs(long, [Pair("写" * 200, "春", "秋")] + read_pairs(pair_files[0]))
    with pytest.raises(ValueError, match="long.jsonl pair 1 is .* tokens .* longer than the model's context max_len"):
        train(config(name, sft_run, (long, pair_files[1])), out)
    assert not out.exists()


def test_recipe_options_are_checked(sft_run, pair_files, tmp_path):
    with pytest.raises(ValueError, match="recipe.sft is empty"):
        train(config("dpo", "", pair_files), tmp_path / "x")
    with pytest.raises(ValueError, match="beta must be positive"):
        config("dpo", sft_run, pair_files, beta=0)
    cfg = config("reward", sft_run, pair_files).with_overrides(["model.n_layers=3"])
    with pytest.raises(ValueError, match="model: n_layers cannot change"):
        train(cfg, tmp_path / "x")
    with pytest.raises(ValueError, match="trains decoder models"):
        run_config({"recipe": {"name": "reward"}, "model": {"family": "bert"}})


def test_held_out_split_keeps_a_title_on_one_side():
    from lmforge.train.recipes.reward import held_out_split

    pairs = [Pair(f"p{i}{k}", "a", "b", extra={"title": f"t{i}"}) for i in range(20) for k in range(2)]
    train_pairs, val = held_out_split(pairs, 0.1, seed=0)
    assert len(val) == 4 and not {p.extra["title"] for p in val} & {p.extra["title"] for p in train_pairs}


@pytest.fixture(scope="module")
def verse_run(tmp_path_factory):
    """A GPT whose next token, whatever the context, is drawn from one fixed distribution over a few characters,
    "，", "。", a newline and <|end|>: its final LayerNorm outputs one constant vector (weight 0, bias e_0) and the
    untied head's first column holds the logits. Its samples are random verses of varied form: scores differ."""
    tok = CharTokenizer.train(SYSTEM_PROMPT + "".join(p["title"] for p in load()) + "写一首五言绝句七律诗题为《》春花月夜山水，。\n",
                              special_tokens=chat.CHAT_SPECIAL_TOKENS)
    model = build_model("gpt", {"vocab_size": tok.vocab_size, "max_len": 160, "d_model": 8, "n_heads": 2,
                                "n_layers": 1, "d_ff": 16, "dropout": 0.0, "tie_embeddings": False})
    logits = torch.full((tok.vocab_size,), -20.0)
    for ch, logit in {**dict.fromkeys("春花月夜山水", 2.0), "，": 1.4, "。": 1.4, "\n": 0.5}.items():
        logits[tok.encode(ch, add_special_tokens=False)[0]] = logit
    logits[tok.special_tokens[chat.END]] = 0.0
    with torch.no_grad():
        model.norm.weight.zero_()
        model.norm.bias.zero_()
        model.norm.bias[0] = 1.0
        model.lm_head.proj.weight.zero_()
        model.lm_head.proj.weight[:, 0] = logits
    out = tmp_path_factory.mktemp("verse")
    save_checkpoint(out, model, {"step": 0}, tokenizer=tok)
    return out


def test_lmforge_pairs_samples_scores_and_writes(verse_run, sft_run, tmp_path, capsys):
    from lmforge.cli import main
    from lmforge.eval.preferences import make_pairs

    pairs, stats = make_pairs(verse_run, "val", samples=3, limit=8, seed=1, batch_size=8)
    again, _ = make_pairs(verse_run, "val", samples=3, limit=8, seed=1, batch_size=3)
    assert pairs == again  # the samples do not depend on which prompts were generated together
    every, all_stats = make_pairs(verse_run, "val", samples=3, limit=8, seed=1, batch_size=8, pairing="all")
    assert set(pairs) <= set(every) and len(every) > len(pairs)  # the same samples: (best, worst) is one of all
    assert all_stats["ties"] == stats["ties"] and all_stats["pairing"] == "all"
    with pytest.raises(ValueError, match="pairing must be one of extremes, all"):
        make_pairs(verse_run, "val", samples=3, limit=1, pairing="best")
    assert stats["prompts"] == 8 and stats["pairs"] + stats["ties"] == 8 and stats["samples"] == 24
    assert stats["pairs"] >= 4 and stats["chosen_score"] > stats["rejected_score"]
    for p in pairs:
        assert p.chosen_score == score(p.chosen, p.extra["form"]).score > p.rejected_score == score(p.rejected, p.extra["form"]).score
        assert "<|end|>" not in p.chosen + p.rejected
    out = tmp_path / "pairs.jsonl"
    assert main(["pairs", str(verse_run), "--split", "val", "--limit", "8", "--samples", "3",
                 "--seed", "1", "--out", str(out)]) == 0
    assert read_pairs(out) == pairs and json.loads(out.with_suffix(".json").read_text())["pairs"] == len(pairs)
    assert f"{len(pairs)} pairs from 8 prompts" in capsys.readouterr().out
    assert main(["pairs", str(verse_run), "--out", str(out)]) == 2  # an existing file is not replaced without --force
    assert "exists; pass --force" in capsys.readouterr().err
    # a model whose samples all tie (the random tiny GPT: no sample has a line of the form) writes nothing
    assert main(["pairs", str(sft_run), "--split", "val", "--limit", "2",
                 "--out", str(tmp_path / "none.jsonl")]) == 2
    assert "tied: no pair to write" in capsys.readouterr().err and not (tmp_path / "none.jsonl").exists()


def test_the_bundled_configs_pick_their_recipes():
    from pathlib import Path

    from lmforge.train.recipes import load_run_config

    root = Path(__file__).resolve().parents[2] / "configs"
    reward, dpo = load_run_config(root / "reward-poems.yaml"), load_run_config(root / "dpo-poems.yaml")
    assert (reward.NAME, reward.recipe.sft, reward.data.pairs) == ("reward", "runs/sft-poems", "runs/pairs-train.jsonl")
    assert (dpo.NAME, dpo.recipe.beta, dpo.data.val_pairs) == ("dpo", 0.5, "runs/pairs-val.jsonl")
