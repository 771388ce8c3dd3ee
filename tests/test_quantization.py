"""lmforge.quantize: int8 / bf16 weights in a whole model, its decoding, and its file."""
import json

import pytest
import torch

import lmforge
from lmforge.generate import generate
from lmforge.models import build_model, save_model
from lmforge.nn.quant import BF16Linear, Int8Linear
from lmforge.quantization import SCHEME

SHAPE = dict(vocab_size=96, max_len=64, d_model=64, n_heads=4, n_layers=2)


def gpt(seed=0, **shape):
    torch.manual_seed(seed)
    return build_model("gpt", {**SHAPE, **shape}).eval()


def greedy(model, prompt, n=24, **kw):
    return [s.token for s in generate(model, prompt, max_new_tokens=n, temperature=0, **kw)]


@pytest.mark.parametrize("weights, layer, rel", [("int8", Int8Linear, 0.02), ("bf16", BF16Linear, 0.02)])
def test_every_linear_and_the_tied_head_are_converted_and_logits_stay_close(weights, layer, rel):
    fp32 = gpt()
    ids = torch.randint(0, SHAPE["vocab_size"], (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = fp32(ids).logits
    model = lmforge.quantize(gpt(), weights)
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    assert isinstance(model.lm_head, layer)
    assert model.tok_emb.weight.dtype == torch.float32  # the lookup table stays fp32 (its rows are read one by one)
    torch.testing.assert_close(model.lm_head.dequantized() if weights == "int8" else model.lm_head.weight.float(),
                               model.tok_emb.weight, rtol=0, atol=model.tok_emb.weight.abs().max().item() / 100)
    with torch.no_grad():
        logits = model(ids).logits
    # measured: int8 0.6%, bf16 0.3% of the largest logit on this random model
    assert (logits - expected).abs().max() <= rel * expected.abs().max()
    assert lmforge.quantize(model, weights) is model  # already done: unchanged


def test_greedy_tokens_of_the_int8_model_follow_the_fp32_model():
    prompt = [5, 17, 42, 8, 9]
    a, b = greedy(gpt(), prompt), greedy(lmforge.quantize(gpt(), "int8"), prompt)
    agree = sum(x == y for x, y in zip(a, b))
    print(f"int8 vs fp32 greedy: {agree}/{len(a)} tokens the same")
    assert a[:8] == b[:8]  # a random model's margins are small; the first tokens hold


@pytest.mark.parametrize("weights", ["int8", "bf16"])
def test_kv_cache_on_equals_off_for_the_quantized_model(weights):
    model = lmforge.quantize(gpt(), weights)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    assert greedy(model, prompt, use_cache=True) == greedy(model, prompt, use_cache=False)
    ids = torch.tensor([prompt])
    with torch.no_grad():
        full = model(ids).logits[:, -1]
        cache = model.new_cache(1)
        model(ids[:, :-1], cache=cache)
        step = model(ids[:, -1:], cache=cache).logits[:, -1]
    torch.testing.assert_close(step, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weights", ["int8", "bf16"])
def test_save_and_load_keep_the_quantized_tensors_without_quantizing_again(weights, tmp_path, monkeypatch):
    model = lmforge.quantize(gpt(), weights)
    save_model(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["weights"] == weights
    from safetensors import safe_open
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert f.metadata()["weights"] == weights and f.metadata()["scheme"] == SCHEME[weights]
        if weights == "int8":
            assert f.get_tensor("lm_head.weight").dtype == torch.int8 and f.get_tensor("lm_head.scale").dtype == torch.float32

    import lmforge.nn.quant as quant
    monkeypatch.setattr(quant, "quantize_int8", lambda w: pytest.fail("loading quantized again"))
    monkeypatch.setattr(quant.BF16Linear, "from_weight", lambda *a: pytest.fail("loading converted again"))
    loaded = lmforge.load(tmp_path).eval()
    saved, back = model.state_dict(), loaded.state_dict()
    assert saved.keys() == back.keys()
    for k in saved:
        assert saved[k].dtype == back[k].dtype and torch.equal(saved[k], back[k]), k  # bit-identical
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_an_fp32_model_saves_as_before(tmp_path):
    save_model(gpt(), tmp_path)
    assert "weights" not in json.loads((tmp_path / "config.json").read_text())


def test_bad_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="unknown weights 'int4'.*fp32, bf16, int8"):
        lmforge.quantize(gpt(), "int4")
    model = lmforge.quantize(gpt(), "int8")
    with pytest.raises(ValueError, match="already int8.*load the fp32 model"):
        lmforge.quantize(model, "bf16")
    # a quantized file for another model shape
    save_model(model, tmp_path / "q")
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    (tmp_path / "q" / "config.json").write_text(json.dumps({**config, "d_model": 128}))
    with pytest.raises(ValueError, match="has shape .* the model expects"):
        lmforge.load(tmp_path / "q")
    # config.json and the file disagree about what the tensors are
    save_model(gpt(), tmp_path / "f")
    config = json.loads((tmp_path / "f" / "config.json").read_text())
    (tmp_path / "f" / "config.json").write_text(json.dumps({**config, "weights": "int8"}))
    with pytest.raises(ValueError, match="config.json says the weights are int8 but model.safetensors says fp32"):
        lmforge.load(tmp_path / "f")
    (tmp_path / "f" / "config.json").write_text(json.dumps({**config, "weights": "int3"}))
    with pytest.raises(ValueError, match="unknown weights 'int3'"):
        lmforge.load(tmp_path / "f")
    # a Hugging Face directory holds float weights
    from lmforge.convert.hf import save_hf
    with pytest.raises(ValueError, match="weights are int8.*convert the fp32 model"):
        save_hf(model, tmp_path / "hf")


def test_a_layer_that_adds_to_nn_linear_is_refused():
    from lmforge import lora
    model = lora.apply(gpt(), r=2, alpha=4, targets=["qkv"])
    with pytest.raises(ValueError, match="not a plain nn.Linear"):
        lmforge.quantize(model, "int8")
