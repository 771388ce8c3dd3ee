"""lmforge.lora against PEFT (peft.PeftModel on the Hugging Face export of the same base), on tiny random configs:
apply, merge/unmerge, save in PEFT's format, load PEFT's adapters, and the errors of an adapter for another base."""
import json

import pytest
import torch

import lmforge
from lmforge import lora
from lmforge.convert.hf import save_hf
from lmforge.models import build_model, load_model, save_model
from lmforge.nn.lora import LoRALinear

GPT = dict(vocab_size=67, max_len=24, d_model=48, n_heads=3, n_layers=2, dropout=0.0)
LLAMA = dict(vocab_size=67, max_len=24, d_model=48, n_heads=6, n_kv_heads=2, n_layers=2, d_ff=80, dropout=0.0)


def base(family, seed=0, **over):
    torch.manual_seed(seed)
    return build_model(family, {**(GPT if family == "gpt" else LLAMA), **over}).eval()


def trained(model):
    """An adapter as after training: B no longer zero (else every test would pass trivially)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                for b in m.lora_B.values():
                    b.normal_(0, 0.05)
    return model


def ids(n=3, t=11, seed=5):
    return torch.randint(0, 67, (n, t), generator=torch.Generator().manual_seed(seed))


def test_apply_freezes_the_base_and_starts_at_it():
    model = base("gpt")
    x = ids()
    with torch.no_grad():
        before = model(x).logits
    wrapped = lora.apply(model, r=4, alpha=8, dropout=0.05, targets=["qkv", "out"])
    assert wrapped.base is model and isinstance(model.blocks[0].attn.qkv, LoRALinear)
    assert wrapped.config is model.config  # the wrapper behaves as the model it wraps
    n_train, n_all = lora.trainable(wrapped)
    # per layer: qkv A (4, 48) + B (144, 4), out A (4, 48) + B (48, 4)
    assert n_train == 2 * (4 * 48 + 144 * 4 + 4 * 48 + 48 * 4)
    assert {n for n, p in wrapped.named_parameters() if p.requires_grad} == {
        f"base.blocks.{i}.attn.{m}.lora_{ab}.all" for i in range(2) for m in ("qkv", "out") for ab in "AB"}
    with torch.no_grad():
        assert torch.equal(wrapped.eval()(x).logits, before)


def test_slices_of_the_fused_projection():
    model = base("llama")  # GQA: q has 48 rows, k and v 16 each
    wrapped = lora.apply(model, r=2, alpha=4, targets=["q", "v"])
    qkv = model.blocks[1].attn.qkv
    assert [(p.name, p.start, p.stop) for p in qkv.parts] == [("q", 0, 48), ("v", 64, 80)]
    assert set(wrapped.layers()) == {"blocks.0.attn.qkv", "blocks.1.attn.qkv"}


def test_targets_that_match_nothing_or_overlap_are_clear_errors():
    model = base("gpt")
    with pytest.raises(ValueError, match=r"'c_attn' matches no linear layer.*blocks\.N\.attn\.qkv.*ffn\.fc1.*"
                                         r"blocks\.N\.attn\.\{q,k,v\}"):
        lora.apply(model, targets=["c_attn"])
    with pytest.raises(ValueError, match="overlap on blocks.0.attn.qkv"):
        lora.apply(model, targets=["qkv", "q"])
    with pytest.raises(ValueError, match="rank r and alpha must be positive"):
        lora.apply(model, r=0)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())  # nothing changed


@pytest.mark.parametrize("family, targets", [("gpt", ["qkv", "out", "fc1", "fc2"]), ("llama", ["qkv", "out", "gate"])])
def test_merge_keeps_logits_and_unmerge_restores_the_weights(family, targets):
    model = base(family)
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    wrapped = trained(lora.apply(model, r=4, alpha=8, targets=targets)).eval()
    x = ids()
    with torch.no_grad():
        before = wrapped(x).logits
        lora.merge(wrapped)
        merged = wrapped(x).logits
        lora.unmerge(wrapped)
        after = wrapped(x).logits
    torch.testing.assert_close(merged, before, rtol=0, atol=1e-5)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
    state = lora.unload(wrapped).state_dict()
    # unmerge: within 1e-6 of the original weights, not bit for bit ((W0 + D) - D rounds)
    assert max((state[k] - w0[k]).abs().max().item() for k in w0) <= 1e-6


CASES = {
    "gpt-fused-qkv": ("gpt", {}, ["qkv", "out", "fc1", "fc2"]),
    "gpt-q-v-slices": ("gpt", {}, ["q", "v", "attn.out"]),  # block-diagonal c_attn adapter of rank 2r
    "llama-gqa-all": ("llama", {}, ["qkv", "out", "gate", "fc1", "fc2"]),  # one A shared by q_proj, k_proj, v_proj
    "llama-q-v": ("llama", {}, ["q", "v"]),  # the paper's W_q, W_v
    "qwen2": ("llama", dict(layout="qwen2", qkv_bias=True, tie_embeddings=True), ["q", "k", "out"]),
}


@pytest.mark.parametrize("case", CASES)
def test_peft_loads_our_adapter_on_the_hf_export_with_equal_logits(transformers, tmp_path, case):
    peft = pytest.importorskip("peft")
    family, over, targets = CASES[case]
    model = base(family, **over)
    save_model(model, tmp_path / "base")
    save_hf(lmforge.load(tmp_path / "base"), tmp_path / "hf")
    wrapped = trained(lora.apply(model, r=4, alpha=8, dropout=0.1, targets=targets, base_path="runs/base")).eval()
    lora.save_adapter(wrapped, tmp_path / "adapter")
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["adapter_config.json",
                                                                        "adapter_model.safetensors"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    peft_model = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    x = ids()
    with torch.no_grad():
        ours, theirs = wrapped(x).logits, peft_model(x).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    # and PEFT's merge agrees with ours
    with torch.no_grad():
        theirs_merged = peft_model.merge_and_unload()(x).logits
        ours_merged = lora.merge(wrapped)(x).logits
    torch.testing.assert_close(ours_merged, theirs_merged, rtol=0, atol=1e-5)


def test_the_adapter_files_use_peft_names(tmp_path):
    wrapped = lora.apply(base("gpt"), r=4, alpha=8, targets=["qkv", "attn.out"])
    lora.save_adapter(wrapped, tmp_path)
    from safetensors.torch import load_file
    keys = set(load_file(tmp_path / "adapter_model.safetensors"))
    assert "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight" in keys
    assert "base_model.model.transformer.h.1.attn.c_proj.lora_B.weight" in keys
    assert len(keys) == 2 * 2 * 2  # 2 layers x 2 modules x (A, B): only adapters are saved
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    # attn.c_proj, not c_proj: the MLP's c_proj is not adapted
    assert config["target_modules"] == ["attn.c_proj", "c_attn"] and config["fan_in_fan_out"] is True
    assert (config["r"], config["lora_alpha"], config["peft_type"]) == (4, 8, "LORA")

    llama = lora.apply(base("llama"), r=4, alpha=8, targets=["q", "v"])
    lora.save_adapter(llama, tmp_path / "llama")
    keys = set(load_file(tmp_path / "llama" / "adapter_model.safetensors"))
    assert "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight" in keys
    assert not any("k_proj" in k for k in keys)


def test_our_adapter_round_trips_bit_for_bit(tmp_path):
    wrapped = trained(lora.apply(base("llama"), r=3, alpha=6, targets=["qkv", "fc2"])).eval()
    lora.save_adapter(wrapped, tmp_path)
    again = lora.load_adapter(base("llama"), tmp_path).eval()
    x = ids()
    with torch.no_grad():
        assert torch.equal(again(x).logits, wrapped(x).logits)


@pytest.mark.parametrize("family, hf_targets, rank_pattern", [
    ("llama", ["q_proj", "v_proj", "o_proj", "down_proj"], {"v_proj": 2}),
    ("gpt", ["c_attn", "c_fc"], {"c_fc": 6}),
])
def test_an_adapter_peft_made_loads_into_our_model_with_equal_logits(transformers, tmp_path, family, hf_targets,
                                                                     rank_pattern):
    peft = pytest.importorskip("peft")
    save_model(base(family), tmp_path / "base")
    save_hf(lmforge.load(tmp_path / "base"), tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    torch.manual_seed(7)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=hf_targets, rank_pattern=rank_pattern,
                             alpha_pattern={hf_targets[0]: 3}, init_lora_weights=False,  # A and B random
                             fan_in_fan_out=family == "gpt")
    peft_model = peft.get_peft_model(hf, config).eval()
    peft_model.save_pretrained(tmp_path / "adapter")
    ours = lora.load_adapter(lmforge.load(tmp_path / "hf"), tmp_path / "adapter").eval()
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, peft_model(x).logits, rtol=0, atol=1e-5)


def test_an_adapter_for_another_base_is_refused_and_changes_nothing(tmp_path):
    wrapped = trained(lora.apply(base("gpt", seed=0), targets=["qkv"]))
    lora.save_adapter(wrapped, tmp_path)

    other = base("gpt", seed=1)  # same shapes, other weights: the recorded sha256 differs
    state = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match="adapter for another base: .* sha256"):
        lora.load_adapter(other, tmp_path)
    wider = base("gpt", d_model=60, n_heads=3)
    with pytest.raises(ValueError, match=r"adapter for another base: .*c_attn's lora_A is \(8, 48\)"):
        lora.load_adapter(wider, tmp_path)
    deeper_adapter = lora.apply(base("gpt", n_layers=3), targets=["qkv"])
    lora.save_adapter(deeper_adapter, tmp_path / "deep")
    with pytest.raises(ValueError, match=r"adapts 'transformer\.h\.2\.attn\.c_attn'.*another base"):
        lora.load_adapter(base("gpt"), tmp_path / "deep")
    for m in (other, wider):
        assert not any(isinstance(x, LoRALinear) for x in m.modules())
    assert all(torch.equal(v, state[k]) for k, v in other.state_dict().items())
    assert all(p.requires_grad for p in other.parameters())
    # asked for, the same-shaped one still loads
    assert isinstance(lora.load_adapter(other, tmp_path, check_base=False), lora.LoRAModel)


def test_a_lora_model_saves_and_loads_as_a_wrapper(tmp_path):
    from lmforge.train.checkpoint import save_checkpoint
    wrapped = trained(lora.apply(base("gpt"), r=2, alpha=4, targets=["q", "v", "fc1"])).eval()
    save_checkpoint(tmp_path, wrapped, {"step": 3})
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["family"] == "gpt" and record["wrapper"]["kind"] == "lora"
    again = load_model(tmp_path).eval()
    x = ids()
    with torch.no_grad():
        assert torch.equal(again(x).logits, wrapped(x).logits)
    assert isinstance(load_model(tmp_path, base_only=True).blocks[0].attn.qkv, torch.nn.Linear)


def test_train_also_keeps_a_new_head_trainable():
    class Scored(torch.nn.Module):  # a family model with a new scalar head, as a reward or value model has
        def __init__(self, base):
            super().__init__()
            self.base, self.head = base, torch.nn.Linear(67, 1)

        def forward(self, x):
            return self.head(self.base(x).logits)

    model = Scored(base("gpt"))
    wrapped = lora.apply(model, r=2, alpha=4, targets=["qkv"], train_also=["head"])
    trained_names = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert {"base.head.weight", "base.head.bias"} <= trained_names
    assert not any("tok_emb" in n or n.endswith("qkv.weight") for n in trained_names)
    assert wrapped.wrapper_config()["train_also"] == ["head"]
    with pytest.raises(ValueError, match="also trains head in full"):
        lora.save_adapter(wrapped, "unused")
    with pytest.raises(ValueError, match="train_also 'value' matches no module.*base, head"):
        lora.apply(Scored(base("gpt")), targets=["qkv"], train_also=["value"])
