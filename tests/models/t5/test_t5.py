"""The t5 family against Hugging Face transformers' T5ForConditionalGeneration on tiny random configs of both
variants (v1.0: ReLU, tied head with the d_model^-0.5 rescale; v1.1: gated GELU, untied head), no downloads."""
import json
import pytest
import torch

import lmforge
from lmforge.cli import main
from lmforge.convert.hf import save_hf
from lmforge.generate import beam_search_batch, generate
from lmforge.models import build_model
from lmforge.models.t5.config import T5Config
from lmforge.nn import RelativePositionBias

V = 99
# odd sizes: head_dim (d_kv) 12 with 3 heads and d_model 40 (3 * 12 != 40), 3 encoder and 2 decoder layers,
# 8 buckets up to distance 20 so that sources of 30 tokens reach the logarithmic and the saturated buckets
COMMON = dict(vocab_size=V, d_model=40, d_kv=12, d_ff=56, num_layers=3, num_decoder_layers=2, num_heads=3,
              relative_attention_num_buckets=8, relative_attention_max_distance=20)
CASES = {
    "v1.0": dict(feed_forward_proj="relu"),  # tied head, rescaled
    "v1.1": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),  # untied, gelu_new, no rescale
}


def make_hf(transformers, tmp_path, case, noise: float = 0.05):
    """A random T5ForConditionalGeneration saved with save_pretrained, reloaded from its directory.

    v1.1: transformers 5 ties every T5 head in memory, so the untied head is given its own random matrix and
    config.json is written as the released T5 v1.1 files are (tie_word_embeddings false, no scale key).
    noise: added to every tensor (times a standard normal); generation tests use 0.5, as a less perturbed
    random T5 repeats one token whatever the source."""
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**COMMON, **CASES[case])).eval()
    with torch.no_grad():  # HF starts norms at 1: move every tensor so each mapping is tested
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * noise)
        if case == "v1.1":
            hf.lm_head.weight = torch.nn.Parameter(torch.randn(V, 40) * 0.3)
    path = tmp_path / f"hf-{case}"
    hf.save_pretrained(path)
    if case == "v1.1":
        cfg = json.loads((path / "config.json").read_text())
        cfg["tie_word_embeddings"] = False
        cfg.pop("scale_decoder_outputs", None)
        (path / "config.json").write_text(json.dumps(cfg))
    return transformers.T5ForConditionalGeneration.from_pretrained(path).eval(), path


def batch():
    """Three sources of lengths 30, 20 and 5 (right-padded, attention_mask 0 on the padding) and decoder inputs
    that start with <pad> = 0, as HF's decoder_input_ids."""
    g = torch.Generator().manual_seed(1)
    src = torch.randint(2, V, (3, 30), generator=g)
    keep = torch.ones_like(src)
    keep[1, 20:] = 0
    keep[2, 5:] = 0
    tgt = torch.randint(2, V, (3, 25), generator=g)
    tgt[:, 0] = 0
    return src * keep, keep, tgt


@pytest.mark.parametrize("case", CASES)
def test_logits_match_hf_with_padding(transformers, tmp_path, case):
    hf, path = make_hf(transformers, tmp_path, case)
    ours = lmforge.load(path).eval()
    c = ours.config
    assert c.family == "t5" and c.head_dim == 12 and c.n_dec_layers == 2
    assert (c.activation, c.tie_embeddings, c.rescale_head) == {"v1.0": ("relu", True, True),
                                                                "v1.1": ("geglu_tanh", False, False)}[case]
    src, keep, tgt = batch()
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=keep, decoder_input_ids=tgt).logits
        out = ours(src, tgt, src_keep=keep).logits
        assert (out - ref).abs().max().item() <= 1e-4
        # the default source mask is src != pad: the same here, as the padding is id 0
        assert (ours(src, tgt).logits - ref).abs().max().item() <= 1e-4
        # a padded row gives the logits of the same row alone
        alone = ours(src[2:, :5], tgt[2:]).logits
        assert (alone - out[2:]).abs().max().item() <= 1e-4


def test_head_variants_are_what_makes_the_difference(transformers, tmp_path):
    """Negative control: the same v1.0 weights read without the rescale, or with absolute-free bias switched
    off (a zero table), give different logits; so the parity above is not vacuous."""
    hf, path = make_hf(transformers, tmp_path, "v1.0")
    ours = lmforge.load(path).eval()
    src, keep, tgt = batch()
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=keep, decoder_input_ids=tgt).logits
        wrong = build_model("t5", ours.config.replace(rescale_head=False)).eval()
        wrong.load_state_dict(ours.state_dict())
        assert (wrong(src, tgt, src_keep=keep).logits - ref).abs().max().item() > 1e-2
        wrong = build_model("t5", ours.config).eval()
        wrong.load_state_dict(ours.state_dict())
        wrong.dec_bias.bias.weight.zero_()
        assert (wrong(src, tgt, src_keep=keep).logits - ref).abs().max().item() > 1e-2


def test_buckets_match_hf():
    from transformers.models.t5.modeling_t5 import T5Attention
    rel = torch.arange(-1000, 1001)[None, :]
    for bidirectional in (True, False):
        for buckets, distance in ((32, 128), (8, 20), (4, 3), (16, 9)):
            ours = RelativePositionBias.bucket(rel, bidirectional, buckets, distance)
            ref = T5Attention._relative_position_bucket(rel, bidirectional, buckets, distance)
            assert torch.equal(ours, ref), (bidirectional, buckets, distance)


# the id generation ends at, passed to both sides: one that ends some rows early and lets others run to the
# limit, under greedy and beam search alike (a random model has no real </s>; found by looking at its outputs)
EOS = {"v1.0": 37, "v1.1": 1}


@pytest.mark.parametrize("case", CASES)
def test_greedy_and_beam_match_hf_generate(transformers, tmp_path, case):
    hf, path = make_hf(transformers, tmp_path, case, noise=0.5)
    ours = lmforge.load(path).eval()
    src, keep, _ = batch()
    sources = [row[k.bool()].tolist() for row, k in zip(src, keep)]
    n, eos = 12, EOS[case]

    def hf_rows(out):
        rows = []
        for r in out.tolist():
            assert r[0] == 0  # the decoder start, <pad>
            r = r[1:]
            rows.append(r[:r.index(eos) + 1] if eos in r else r)
        return rows

    with torch.no_grad():
        want = hf_rows(hf.generate(src, attention_mask=keep, max_new_tokens=n, do_sample=False, num_beams=1,
                                   eos_token_id=eos, pad_token_id=0, decoder_start_token_id=0))
    got = [[] for _ in sources]
    for step in generate(ours, sources, max_new_tokens=n, temperature=0, eos_token_id=eos):
        got[step.row].append(step.token)
    assert got == want
    assert any(len(r) < n for r in want) and any(len(r) == n for r in want)  # some end at </s>, some run out

    for early in (True, False):
        with torch.no_grad():
            want = hf_rows(hf.generate(src, attention_mask=keep, max_new_tokens=n, do_sample=False, num_beams=4,
                                       length_penalty=0.0, early_stopping=early, eos_token_id=eos, pad_token_id=0, decoder_start_token_id=0))
        hyps = beam_search_batch(ours, sources, num_beams=4, max_new_tokens=n, length_penalty_alpha=0.0,
                                 eos_token_id=eos, early_stopping=early)
        assert [h[0].tokens for h in hyps] == want
        assert any(len(r) < n for r in want) and any(len(r) == n for r in want)


def test_kv_cache_on_equals_off_and_steps_equal_forward():
    torch.manual_seed(0)
    model = build_model("t5", "t5-v1_1-tiny").eval()
    sources = [[5, 6, 7, 8, 9, 1], [10, 11, 1]]
    on = beam_search_batch(model, sources, num_beams=3, max_new_tokens=10, eos_token_id=1)
    off = beam_search_batch(model, sources, num_beams=3, max_new_tokens=10, eos_token_id=1, use_cache=False)
    assert [[(h.tokens, round(h.logprob, 4)) for h in hs] for hs in on] == \
           [[(h.tokens, round(h.logprob, 4)) for h in hs] for hs in off]
    steps = [list(generate(model, sources, max_new_tokens=10, temperature=0, use_cache=u)) for u in (True, False)]
    assert [(s.row, s.token) for s in steps[0]] == [(s.row, s.token) for s in steps[1]]
    # prefill + decode_step give the logits of forward at every position, cross-attention keys cached
    src, tgt = torch.tensor([sources[0]]), torch.tensor([[0, 20, 21, 22, 23]])
    with torch.no_grad():
        full = model(src, tgt).logits[0]
        state, out = model.prefill(sources[:1])
        assert state.memory is None and state.context.cache.cross[0] is not None
        rows = [out.logits[0]] + [model.decode_step(state, tgt[:, t:t + 1]).logits[0] for t in range(1, 5)]
    torch.testing.assert_close(torch.stack(rows), full, atol=1e-5, rtol=1e-5)
    # what `--show probs` shows: each step's cross-attention over the source, as a full forward computes it
    steps = list(generate(model, sources[:1], max_new_tokens=4, temperature=0, need_weights=True))
    tgt = torch.tensor([[0] + [s.token for s in steps[:-1]]])
    with torch.no_grad():
        out = model(src, tgt, need_weights=True)
    for i, s in enumerate(steps):
        ref = torch.stack([a[0, :, i] for a in out.cross_attentions])  # (n_dec_layers, nh, S)
        torch.testing.assert_close(s.cross_attention, ref, atol=1e-5, rtol=1e-5)
        assert s.attention.shape == (2, 2, i + 1)  # decoder layers x heads x the tokens read so far


@pytest.mark.slow
def test_translation_recipe_trains_t5_to_memorise(tmp_path):
    """The family's default recipe trains it end to end: 32 EN-DE pairs memorised in 300 steps (the recipe's
    targets start with <s> = 1 and end with </s> = 2, so the run sets decoder_start_id and eos_id)."""
    from lmforge.data.translation import Pair
    from lmforge.generate.seq2seq import greedy
    from lmforge.models import load_model
    from lmforge.tokenizers import load_tokenizer
    from lmforge.train.recipes.translation import run
    from tr_helpers import memo_config, memo_pairs, write_tsv
    pairs = memo_pairs()
    val = [Pair("grep", "invalid argument", "ungültiges Argument")]
    cfg = memo_config(write_tsv(tmp_path / "memo.tsv", [*[Pair("memo", p.src, p.tgt) for p in pairs], *val]))
    model = {"family": "t5", "d_model": 64, "n_heads": 2, "head_dim": 32, "n_layers": 2, "d_ff": 256, "max_len": 64,
             "dropout": 0.0, "num_buckets": 16, "max_distance": 32, "eos_id": 2, "decoder_start_id": 1}
    cfg = type(cfg).from_dict({**cfg.to_dict(), "model": model})
    run(cfg, tmp_path / "run", log=lambda m: None)
    m, tok = load_model(tmp_path / "run").eval(), load_tokenizer(tmp_path / "run")
    src = torch.nn.utils.rnn.pad_sequence([torch.tensor(tok.encode(p.src) + [2]) for p in pairs[:8]], batch_first=True)
    assert [tok.decode(o) for o in greedy(m, src)] == [p.tgt for p in pairs[:8]]


@pytest.mark.parametrize("case", CASES)
def test_convert_both_ways(transformers, tmp_path, case):
    hf, path = make_hf(transformers, tmp_path, case)
    assert main(["convert", str(path), str(tmp_path / "ours"), "--to", "lmforge"]) == 0
    ours = lmforge.load(tmp_path / "ours").eval()
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["family"] == "t5"
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path / "ours"), str(out), "--to", "hf"]) == 0
    back = transformers.AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    assert type(back).__name__ == "T5ForConditionalGeneration"
    src, keep, tgt = batch()
    with torch.no_grad():
        assert torch.equal(back(input_ids=src, attention_mask=keep, decoder_input_ids=tgt).logits,
                           hf(input_ids=src, attention_mask=keep, decoder_input_ids=tgt).logits)
    a, b = ours.state_dict(), lmforge.load(out).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # HF -> ours -> HF: the same tensors, bit for bit
    from safetensors.torch import load_file
    first, second = load_file(path / "model.safetensors"), load_file(out / "model.safetensors")
    first = {k: v for k, v in first.items() if not (case == "v1.0" and k == "lm_head.weight")}
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_hf_writes_tied_head_without_rescale(transformers, tmp_path):
    """transformers 5 builds a T5 v1.1 config with a tied head and no rescale (tie_word_embeddings forced true,
    scale_decoder_outputs false): read as such, and written back the same way."""
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(
        **COMMON, feed_forward_proj="gated-gelu", tie_word_embeddings=False)).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = lmforge.load(tmp_path / "hf").eval()
    assert (ours.config.tie_embeddings, ours.config.rescale_head) == (True, False)
    src, keep, tgt = batch()
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=keep, decoder_input_ids=tgt).logits
        assert (ours(src, tgt, src_keep=keep).logits - ref).abs().max().item() <= 1e-4
    save_hf(ours, tmp_path / "back")
    back = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        assert torch.equal(back(input_ids=src, attention_mask=keep, decoder_input_ids=tgt).logits, ref)


def _write(path, config, state):
    from safetensors.torch import save_file
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    save_file(state, str(path / "model.safetensors"))


def test_bad_t5_directories_and_configs_give_clear_errors(transformers, tmp_path):
    _, path = make_hf(transformers, tmp_path, "v1.0")
    config = json.loads((path / "config.json").read_text())
    from safetensors.torch import load_file
    state = load_file(path / "model.safetensors")

    for proj, act in (("gated-mish", None), ("relu", "tanh"), ("gelu-gated", None)):
        bad = {**config, "feed_forward_proj": proj}
        bad.pop("is_gated_act", None)
        bad.pop("dense_act_fn", None)
        if act:
            bad["dense_act_fn"] = act
        _write(tmp_path / "ffn", bad, state)
        with pytest.raises(ValueError, match=rf"feed_forward_proj={proj!r}.*Supported.*relu.*gated-gelu_new"):
            lmforge.load(tmp_path / "ffn")

    for key, value, what in (("relative_attention_num_buckets", 3, "num_buckets must be even and >= 4"),
                             ("relative_attention_max_distance", 4, r"max_distance must be > num_buckets // 2 = 4")):
        _write(tmp_path / "buckets", {**config, key: value}, state)
        with pytest.raises(ValueError, match=what):
            lmforge.load(tmp_path / "buckets")
    with pytest.raises(ValueError, match="num_buckets must be an even integer >= 4"):
        RelativePositionBias(2, num_buckets=5, max_distance=30)

    extra = {**state, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.extra": torch.zeros(2)}
    _write(tmp_path / "extra", config, extra)
    with pytest.raises(ValueError, match=r"tensors lmforge cannot map: \['encoder.block.0.*extra'\]"):
        lmforge.load(tmp_path / "extra")
    missing = {k: v for k, v in state.items() if k != "decoder.block.1.layer.2.DenseReluDense.wo.weight"}
    _write(tmp_path / "missing", config, missing)
    with pytest.raises(ValueError, match="missing tensor 'decoder.block.1.layer.2.DenseReluDense.wo.weight'"):
        lmforge.load(tmp_path / "missing")
    _write(tmp_path / "arch", {**config, "architectures": ["T5ForQuestionAnswering"]}, state)
    with pytest.raises(ValueError, match="architecture 'T5ForQuestionAnswering' is not supported"):
        lmforge.load(tmp_path / "arch")

    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        T5Config(activation="swish")


def test_init_is_meshtf_t5():
    """nn.init's "t5" scheme: fan-in normal for every matrix, the query rows a further head_dim^-0.5 (the 1/sqrt(d_k)
    T5 leaves out of the logits), unit-variance embedding; as HF's T5PreTrainedModel._init_weights."""
    torch.manual_seed(0)
    c = T5Config(vocab_size=4000, d_model=256, n_heads=4, head_dim=64, n_layers=1, d_ff=1024)
    m = build_model("t5", c)
    inner = c.n_heads * c.head_dim
    qkv = m.encoder[0].attn.qkv.weight
    expected = {"q": (qkv[:inner], (c.d_model * c.head_dim) ** -0.5), "k": (qkv[inner:2 * inner], c.d_model ** -0.5),
                "cross q": (m.decoder[0].cross_attn.q.weight, (c.d_model * c.head_dim) ** -0.5),
                "o": (m.encoder[0].attn.out.weight, inner ** -0.5), "wi": (m.encoder[0].ffn.fc1.weight, c.d_model ** -0.5),
                "wo": (m.encoder[0].ffn.fc2.weight, c.d_ff ** -0.5), "embedding": (m.tok_emb.weight, 1.0)}
    for name, (w, std) in expected.items():
        assert w.std().item() == pytest.approx(std, rel=0.05), name
    assert torch.equal(m.enc_norm.weight, torch.ones(c.d_model))
