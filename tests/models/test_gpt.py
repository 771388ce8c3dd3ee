"""GPT against Hugging Face transformers' GPT2LMHeadModel on small random configs (no downloads)."""
import json

import pytest
import torch

import lmforge
from lmforge.convert.hf import save_hf
from lmforge.models import build_model, save_model

CONFIGS = [
    dict(n_layer=2, n_head=4, n_embd=64, vocab_size=128, n_positions=32),
    dict(n_layer=3, n_head=3, n_embd=48, vocab_size=101, n_positions=40),  # odd shapes
    dict(n_layer=1, n_head=2, n_embd=32, vocab_size=50, n_positions=16, activation_function="gelu", n_inner=80),
]


def make_hf(transformers, tmp_path, **cfg):
    torch.manual_seed(0)
    config = transformers.GPT2Config(resid_pdrop=0, embd_pdrop=0, attn_pdrop=0, **cfg)
    hf = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # HF initialises biases and LayerNorms to 0/1: randomise them so every tensor is tested
        for name, p in hf.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path / "hf"
    hf.save_pretrained(path)
    return hf, path


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"L{c['n_layer']}H{c['n_head']}D{c['n_embd']}V{c['vocab_size']}")
def test_logits_loss_and_greedy_match_hf(transformers, tmp_path, cfg):
    hf, path = make_hf(transformers, tmp_path, **cfg)
    ours = lmforge.load(path).eval()
    ids = torch.randint(0, cfg["vocab_size"], (3, cfg["n_positions"] // 2))
    with torch.no_grad():
        ref = hf(ids, labels=ids)
        out = ours(ids[:, :-1], targets=ids[:, 1:])  # HF shifts labels inside; we take shifted targets
        out_full = ours(ids)
    assert (out_full.logits - ref.logits).abs().max().item() <= 1e-4
    assert out.loss.item() == pytest.approx(ref.loss.item(), abs=1e-5)

    prompt = ids[:1, :4]
    n = cfg["n_positions"] - 4
    with torch.no_grad():
        hf_greedy = hf.generate(prompt, max_new_tokens=n, do_sample=False, pad_token_id=0)[0, 4:].tolist()
        x = prompt
        for _ in range(n):
            x = torch.cat([x, ours(x).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert x[0, 4:].tolist() == hf_greedy


def test_round_trip_is_bit_identical_and_loads_in_transformers(transformers, tmp_path):
    model = build_model("gpt", dict(vocab_size=101, max_len=40, d_model=48, n_heads=3, n_layers=3))
    save_model(model, tmp_path / "ours")
    save_hf(lmforge.load(tmp_path / "ours"), tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    back = tmp_path / "back"
    save_model(lmforge.load(tmp_path / "hf"), back)
    a, b = model.state_dict(), lmforge.load(back).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ids = torch.randint(0, 101, (2, 12))
    with torch.no_grad():
        assert (hf(ids).logits - model.eval()(ids).logits).abs().max().item() <= 1e-4


def test_pytorch_model_bin_is_loaded_weights_only(transformers, tmp_path):
    hf, path = make_hf(transformers, tmp_path, **CONFIGS[0])
    (path / "model.safetensors").unlink()
    torch.save(hf.state_dict(), path / "pytorch_model.bin")
    ids = torch.randint(0, 128, (1, 8))
    with torch.no_grad():
        assert (lmforge.load(path)(ids).logits - hf(ids).logits).abs().max().item() <= 1e-4


class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_that_executes_code_is_refused(tmp_path):
    from lmforge.models.gpt.config import GPTConfig
    from lmforge.models.gpt.hf import config_to_hf

    path = tmp_path / "hf"  # a HF GPT-2 directory written by hand: needs no transformers
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config_to_hf(GPTConfig.preset("gpt-tiny"))))
    torch.save({"transformer.wte.weight": Evil()}, path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="refusing to unpickle"):
        lmforge.load(path)


def test_bad_checkpoints_give_clear_errors(tmp_path):
    model = build_model("gpt", "gpt-tiny")
    save_model(model, tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        lmforge.load(tmp_path / "nope")
    # corrupt weights file
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="corrupt"):
        lmforge.load(tmp_path / "m")
    # config disagrees with the weights: the error names the tensor
    save_model(model, tmp_path / "m")
    cfg = (tmp_path / "m" / "config.json").read_text().replace('"d_model": 64', '"d_model": 32')
    (tmp_path / "m" / "config.json").write_text(cfg)
    with pytest.raises(ValueError, match=r"tensor .* has shape \(64,\), the model expects \(32,\)"):
        lmforge.load(tmp_path / "m")
    # unknown config key
    (tmp_path / "m" / "config.json").write_text('{"family": "gpt", "d_modle": 3}')
    with pytest.raises(ValueError, match="unknown key 'd_modle'"):
        lmforge.load(tmp_path / "m")


def test_kv_cache_matches_full_recompute():
    torch.manual_seed(0)
    model = build_model("gpt", dict(vocab_size=50, max_len=32, d_model=32, n_heads=4, n_layers=2)).eval()
    ids = torch.randint(0, 50, (2, 20))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.new_cache(2)
        chunks = [model(ids[:, :8], cache=cache).logits, model(ids[:, 8:11], cache=cache).logits]
        chunks += [model(ids[:, t:t + 1], cache=cache).logits for t in range(11, 20)]
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, atol=1e-5, rtol=1e-5)


def test_left_padding_with_positions_matches_unpadded():
    torch.manual_seed(0)
    model = build_model("gpt", dict(vocab_size=50, max_len=32, d_model=32, n_heads=4, n_layers=2)).eval()
    short = torch.randint(0, 50, (1, 5))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), short], dim=1)
    keep = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
    pos = (keep.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = model(short).logits
        out = model(padded, positions=pos, attention_mask=keep).logits[:, 3:]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(model(padded, positions=pos, attention_mask=keep).logits).all()


def test_attentions_returned_on_request_and_causal():
    model = build_model("gpt", "gpt-tiny").eval()
    out = model(torch.randint(0, 256, (1, 6)), need_weights=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (1, 4, 6, 6)
    assert torch.all(out.attentions[0].triu(1) == 0)
    assert model(torch.randint(0, 256, (1, 6))).attentions is None


def test_prompt_longer_than_context_is_refused():
    model = build_model("gpt", "gpt-tiny")
    with pytest.raises(ValueError, match="Cannot attend to 129 positions, max_len is only 128"):
        model(torch.zeros(1, 129, dtype=torch.long))
