"""The llama family against Hugging Face transformers' Llama, Qwen2 and GLM-4 on small random configs (no downloads)."""
import pytest
import torch

import lmforge
from lmforge.convert.hf import save_hf
from lmforge.generate import generate
from lmforge.models import build_model, save_model
from lmforge.models.llama.config import LlamaConfig

V = 101
COMMON = dict(vocab_size=V, hidden_size=48, intermediate_size=80, max_position_embeddings=64)
# odd sizes, GQA (6 query heads over 2 or 3 key/value heads), rope theta 5e5, every bias option and each rope form
CASES = {
    "llama-gqa": ("LlamaConfig", dict(num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2, rope_theta=5e5)),
    "llama-bias-llama3-rope": ("LlamaConfig", dict(
        num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=3, attention_bias=True, mlp_bias=True,
        rope_theta=5e5, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    "llama-linear-rope-tied": ("LlamaConfig", dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                                   rope_scaling={"rope_type": "linear", "factor": 2.0},
                                                   tie_word_embeddings=True, hidden_size=40)),
    "qwen2": ("Qwen2Config", dict(num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2, rope_theta=1e6,
                                  tie_word_embeddings=True)),
    "glm4": ("GlmConfig", dict(num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2, head_dim=12,
                               rope_theta=5e5, pad_token_id=0, eos_token_id=1)),
}
MODELS = {"LlamaConfig": "LlamaForCausalLM", "Qwen2Config": "Qwen2ForCausalLM", "GlmConfig": "GlmForCausalLM"}


def make_hf(transformers, tmp_path, case):
    config_cls, fields = CASES[case]
    torch.manual_seed(0)
    config = getattr(transformers, config_cls)(**{**COMMON, **fields})
    hf = getattr(transformers, MODELS[config_cls])(config).eval()
    with torch.no_grad():  # HF starts norms at 1 and biases at 0: move every tensor so each mapping is tested
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path / "hf"
    hf.save_pretrained(path)
    return hf, path


@pytest.mark.parametrize("case", CASES)
def test_logits_and_greedy_match_hf(transformers, tmp_path, case):
    hf, path = make_hf(transformers, tmp_path, case)
    ours = lmforge.load(path).eval()
    assert ours.config.family == "llama"
    ids = torch.randint(0, V, (3, 48))
    with torch.no_grad():
        ref = hf(ids).logits
        out = ours(ids).logits
    assert (out - ref).abs().max().item() <= 1e-4

    prompts = [ids[0, :5].tolist(), ids[1, :9].tolist()]  # two lengths: the second row is not padded
    n = 40
    ours_greedy = [[] for _ in prompts]
    for step in generate(ours, prompts, max_new_tokens=n, temperature=0):
        ours_greedy[step.row].append(step.token)
    for p, got in zip(prompts, ours_greedy):
        with torch.no_grad():
            want = hf.generate(torch.tensor([p]), max_new_tokens=n, do_sample=False, pad_token_id=0,
                               eos_token_id=None)[0, len(p):].tolist()
        assert got == want


def test_rope_layout_matters_negative_control(transformers, tmp_path):
    """The GLM check above can fail: the same weights read with Llama's rotation (halves, whole heads) differ."""
    hf, path = make_hf(transformers, tmp_path, "glm4")
    ours = lmforge.load(path).eval()
    wrong = build_model("llama", ours.config.replace(rope_interleaved=False, rope_fraction=1.0)).eval()
    wrong.load_state_dict(ours.state_dict())
    ids = torch.randint(0, V, (1, 30))
    with torch.no_grad():
        assert (wrong(ids).logits - hf(ids).logits).abs().max().item() > 1e-2


@pytest.mark.parametrize("case", ["llama-bias-llama3-rope", "qwen2", "glm4"])
def test_convert_to_hf_loads_in_auto_model_with_equal_logits(transformers, tmp_path, case):
    hf, path = make_hf(transformers, tmp_path, case)
    ours = lmforge.load(path).eval()
    save_model(ours, tmp_path / "ours")
    save_hf(lmforge.load(tmp_path / "ours"), tmp_path / "out")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(back).__name__ == type(hf).__name__
    ids = torch.randint(0, V, (2, 20))
    with torch.no_grad():
        assert torch.equal(back(ids).logits, hf(ids).logits)
    a, b = ours.state_dict(), lmforge.load(tmp_path / "out").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sharded_hf_checkpoint_is_read(transformers, tmp_path):
    hf, _ = make_hf(transformers, tmp_path, "llama-gqa")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    ours = lmforge.load(tmp_path / "sharded").eval()
    ids = torch.randint(0, V, (1, 12))
    with torch.no_grad():
        assert (ours(ids).logits - hf(ids).logits).abs().max().item() <= 1e-4


def test_kv_cache_matches_full_recompute_and_stores_only_kv_heads():
    torch.manual_seed(0)
    model = build_model("llama", "llama-tiny").eval()  # 4 query heads, 2 key/value heads
    ids = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.new_cache(2)
        chunks = [model(ids[:, :8], cache=cache).logits, model(ids[:, 8:11], cache=cache).logits]
        chunks += [model(ids[:, t:t + 1], cache=cache).logits for t in range(11, 20)]
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, atol=1e-5, rtol=1e-5)
    c = model.config
    assert cache.k[0].shape == (2, c.n_kv_heads, c.max_len, c.head_dim)
    mha = build_model("llama", c.replace(n_kv_heads=c.n_heads)).new_cache(2)
    nbytes = lambda kv: sum(t.numel() * t.element_size() for t in kv.k + kv.v)  # noqa: E731
    assert nbytes(mha) == 2 * nbytes(cache)  # 4 heads / 2 key/value heads


def test_left_padding_matches_unpadded_and_attention_maps_are_causal():
    torch.manual_seed(0)
    model = build_model("llama", "glm4-tiny").eval()
    short = torch.randint(0, 256, (1, 5))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), short], dim=1)
    keep = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
    pos = (keep.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = model(short).logits
        out = model(padded, positions=pos, attention_mask=keep, need_weights=True)
    torch.testing.assert_close(out.logits[:, 3:], ref, atol=1e-5, rtol=1e-5)
    assert out.attentions[0].shape == (1, 4, 8, 8) and torch.all(out.attentions[0][0, :, 3:].triu(4) == 0)  # real rows 3..7: no key after the query
    steps = list(generate(model, [short[0].tolist()], max_new_tokens=3, temperature=0, need_weights=True))
    assert steps[-1].attention.shape[:2] == (2, 4)  # layers x query heads, over the row's tokens


def test_bad_configs_and_checkpoints_give_clear_errors(transformers, tmp_path):
    with pytest.raises(ValueError, match=r"n_heads \(6\) must be divisible by n_kv_heads \(4\)"):
        LlamaConfig(d_model=48, n_heads=6, n_kv_heads=4, n_layers=1, d_ff=8, vocab_size=10)
    with pytest.raises(ValueError, match="unknown rope scaling kind 'yarn'"):
        LlamaConfig(rope_scaling={"rope_type": "yarn", "factor": 4.0})
    with pytest.raises(ValueError, match="llama3' needs .*low_freq_factor"):
        LlamaConfig(rope_scaling={"rope_type": "llama3", "factor": 8.0})
    hf, path = make_hf(transformers, tmp_path, "llama-gqa")
    # a checkpoint with a tensor the layout does not have: named in the error
    from safetensors.torch import load_file, save_file
    state = load_file(path / "model.safetensors")
    state["model.layers.0.self_attn.q_norm.weight"] = torch.ones(8)
    save_file(state, path / "model.safetensors")
    with pytest.raises(ValueError, match="cannot map: \\['model.layers.0.self_attn.q_norm.weight'\\]"):
        lmforge.load(path)
    # a config with an unknown rope scaling kind
    import json
    cfg = json.loads((path / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown rope scaling kind 'yarn'"):
        lmforge.load(path)
    # a model the chosen layout cannot express
    model = build_model("llama", LlamaConfig.preset("llama-tiny", qkv_bias=True))
    with pytest.raises(ValueError, match="cannot be written as LlamaForCausalLM"):
        save_hf(model, tmp_path / "x")


def test_convert_cli_both_ways_keeps_tokenizer_files(transformers, tmp_path):
    from lmforge.cli import main
    hf, path = make_hf(transformers, tmp_path, "qwen2")
    (path / "tokenizer_config.json").write_text('{"eos_token": "<|im_end|>"}')
    assert main(["convert", str(path), str(tmp_path / "ours"), "--to", "lmforge"]) == 0
    assert main(["convert", str(tmp_path / "ours"), str(tmp_path / "back"), "--to", "hf"]) == 0
    assert (tmp_path / "back" / "tokenizer_config.json").read_text() == '{"eos_token": "<|im_end|>"}'
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    ids = torch.randint(0, V, (1, 16))
    with torch.no_grad():
        assert torch.equal(back(ids).logits, hf(ids).logits)


def test_a_qwen2_directory_chats_with_its_own_template_and_tokenizer(transformers, tmp_path):
    """A Hugging Face Qwen2 directory (random weights, a ChatML template, a byte-level BPE tokenizer.json):
    lmforge's prompt ids equal apply_chat_template's and its greedy answer equals transformers' generate."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hf_chat_helpers import QWEN2, hf_tokenizer

    from lmforge.data.chat import build_prompt
    from lmforge.data.hf_chat import load_chat_template
    from lmforge.tokenizers import eos_ids, load_tokenizer
    hf_tok = hf_tokenizer(QWEN2, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                          dict(eos_token="<|im_end|>", pad_token="<|endoftext|>"))
    torch.manual_seed(0)
    config = transformers.Qwen2Config(vocab_size=len(hf_tok), hidden_size=48, intermediate_size=80,
                                      num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
                                      max_position_embeddings=256, tie_word_embeddings=True)
    hf = transformers.Qwen2ForCausalLM(config).eval()
    hf.save_pretrained(tmp_path)
    hf_tok.save_pretrained(tmp_path)
    model, tok, template = lmforge.load(tmp_path).eval(), load_tokenizer(tmp_path), load_chat_template(tmp_path)
    messages = [{"role": "user", "content": "Who was the first king of Israel?"}]
    prompt = build_prompt(tok, messages, 200, template)
    want_prompt = hf_tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    assert prompt.ids == want_prompt
    got = [s.token for s in generate(model, prompt.ids, max_new_tokens=12, temperature=0,
                                     eos_token_id=prompt.stop_ids + eos_ids(tok, tmp_path))]
    with torch.no_grad():
        want = hf.generate(torch.tensor([want_prompt]), max_new_tokens=12, do_sample=False,
                           eos_token_id=hf_tok.convert_tokens_to_ids("<|im_end|>"),
                           pad_token_id=0)[0, len(want_prompt):].tolist()
    assert got == want
