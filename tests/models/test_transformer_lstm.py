"""Masks and shapes of every attention in the encoder-decoder families: no future leak, padding changes nothing,
the KV cache / recurrent state gives the same logits as a full forward."""
import itertools

import pytest
import torch

from lmforge.models import config_class as model_config_class
from lmforge.models import build_model, load_model, save_model

FAMILIES = [("transformer", "transformer-tiny"), ("lstm", "lstm-tiny")]


def make(family, preset, **kw):
    torch.manual_seed(0)
    return build_model(family, {**model_config_class(family).PRESETS[preset], "dropout": 0.0, **kw}).eval()


def batch(V=512, B=3, S=7, T=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, V, (B, S), generator=g), torch.randint(3, V, (B, T), generator=g)


@pytest.mark.parametrize("family,preset", FAMILIES)
def test_shapes(family, preset):
    model = make(family, preset)
    src, tgt = batch()
    out = model(src, tgt, targets=tgt, need_weights=True)
    assert out.logits.shape == (3, 6, 512)
    assert out.loss.ndim == 0
    for probs in out.cross_attentions:  # (B, heads, T, S), rows are distributions over source positions
        assert probs.shape[0] == 3 and probs.shape[2:] == (6, 7)
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))
    if family == "transformer":
        assert [p.shape for p in out.attentions] == [(3, 2, 6, 6)]  # decoder self-attention
        assert torch.all(out.attentions[0].triu(1) == 0)  # causal: nothing above the diagonal


@pytest.mark.parametrize("family,preset", FAMILIES)
def test_no_future_leak(family, preset):
    """Changing target token t+1 does not change the decoder output at positions <= t."""
    model = make(family, preset)
    src, tgt = batch()
    base = model(src, tgt).logits
    for t in range(tgt.size(1) - 1):
        changed = tgt.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 17) % 500 + 3
        out = model(src, changed).logits
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1])
        assert not torch.allclose(out[:, t + 1], base[:, t + 1])


@pytest.mark.parametrize("family,preset", FAMILIES)
def test_padding_changes_nothing(family, preset):
    """Extra source padding (any amount, any row) and target right-padding leave the real positions' logits unchanged,
    and every decoder position gives zero cross-attention to source padding."""
    model = make(family, preset)
    src, tgt = batch(B=2)
    base = model(src, tgt).logits
    padded_src = torch.cat([src, torch.zeros(2, 5, dtype=torch.long)], 1)  # pad_id 0
    padded_tgt = torch.cat([tgt, torch.zeros(2, 3, dtype=torch.long)], 1)
    out = model(padded_src, padded_tgt, need_weights=True)
    torch.testing.assert_close(out.logits[:, : tgt.size(1)], base, atol=1e-5, rtol=1e-4)
    for probs in out.cross_attentions:
        assert probs[..., src.size(1):].abs().max() == 0
    # a batch of different lengths: row 1 alone == row 1 inside a batch with a longer row 0
    short = src[1:, :4]
    alone = model(short, tgt[1:]).logits
    mixed = torch.stack([src[0], torch.cat([short[0], torch.zeros(3, dtype=torch.long)])])
    torch.testing.assert_close(model(mixed, tgt).logits[1:], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family,preset", FAMILIES)
def test_incremental_decoding_matches_full_forward(family, preset):
    """The decoding protocol: prefill (encode, feed <s>), then decode_step with the target tokens, in
    chunks of two and of one: the logits after each token equal the full forward's."""
    model = make(family, preset)
    src, tgt = batch()
    tgt[:, 0] = model.decoder_start  # the decoder starts from <s>
    full = model(src, tgt).logits
    for chunks in ([2, 1, 1, 1], [1, 1, 1, 1, 1]):
        with torch.no_grad():
            state, out = model.prefill(src.tolist(), capacity=16)
            steps, t = [out.logits], 1
            for n in chunks:  # logits after the chunk's last token
                steps.append(model.decode_step(state, tgt[:, t:t + n]).logits)
                t += n
        ends = [0] + list(itertools.accumulate(chunks))
        torch.testing.assert_close(torch.stack(steps, 1), full[:, ends], atol=1e-5, rtol=1e-4)


def test_transformer_wiring_follows_the_paper():
    model = make("transformer", "transformer-tiny")
    c = model.config
    assert model.lm_head.embedding[0] is model.tok_emb  # shared vocabulary, tied output (sec. 3.4)
    assert all(not b.norm_first for b in [*model.encoder, *model.decoder])  # post-norm Add & Norm
    assert all(b.cross_attn is None for b in model.encoder) and all(b.cross_attn is not None for b in model.decoder)
    # embeddings scaled by sqrt(d_model), plus sinusoids (PE(1, 1) = cos(1))
    x = model._embed(torch.tensor([[5, 5]]))
    torch.testing.assert_close(x[0, 1] - x[0, 0], model.pe[1] - model.pe[0])
    torch.testing.assert_close(x[0, 0], model.tok_emb.weight[5] * c.d_model ** 0.5 + model.pe[0])
    assert abs(model.pe[1, 1].item() - 0.5403) < 1e-4
    # xavier scheme: embedding std d_model^-0.5
    assert abs(model.tok_emb.weight.std().item() - c.d_model ** -0.5) < 0.02


@pytest.mark.parametrize("family,preset", FAMILIES)
def test_save_and_load_round_trip(tmp_path, family, preset):
    model = make(family, preset)
    save_model(model, tmp_path)
    again = load_model(tmp_path).eval()
    src, tgt = batch()
    torch.testing.assert_close(again(src, tgt).logits, model(src, tgt).logits)


def test_too_long_inputs_are_refused_with_the_limit():
    model = make("transformer", "transformer-tiny")
    with pytest.raises(ValueError, match="max_len is only 128"):
        model(torch.ones(1, 129, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))
    lstm = make("lstm", "lstm-tiny")
    with pytest.raises(ValueError, match="max_len is only 128"):
        lstm(torch.ones(1, 129, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))


def test_configs_validate():
    from lmforge.models.lstm.config import LSTMConfig
    from lmforge.models.transformer.config import TransformerConfig
    assert TransformerConfig.preset("transformer-base").n_dec_layers == 6
    base = build_model("transformer", {**TransformerConfig.PRESETS["transformer-base"]})
    assert 60e6 < sum(p.numel() for p in base.parameters()) < 66e6  # Table 3: 65M
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(d_model=100, n_heads=8)
    with pytest.raises(ValueError, match="must differ"):
        LSTMConfig(pad_id=1)
