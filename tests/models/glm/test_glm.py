"""The glm family (Du et al. 2022): the 2-D positions and the part A / part B attention, checked as
invariants (Hugging Face transformers has no GLM of 2022 to compare with), and its decoding: KV cache on ==
off == one forward over the whole row, padding changes nothing, later blanks see earlier fills."""
import pytest
import torch

from lmforge.data.blank import BlankTokens, build
from lmforge.models import FAMILIES, build_model
from lmforge.models.glm.config import GLMConfig

TOK = BlankTokens(mask=1, smask=2, gmask=3, sop=4, eop=5)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("glm", "glm-tiny").eval()


def run(model, row, change=None):
    ids = torch.tensor([row.ids])
    if change is not None:
        ids[0, change[0]] = change[1]
    return model(ids, positions=torch.tensor([row.positions]), block_positions=torch.tensor([row.block_positions]),
                 prefix_len=torch.tensor([row.prefix_len])).logits[0]


def test_registered_apart_from_glm4():
    assert FAMILIES["glm"].recipe == "blank" and FAMILIES["glm"].decoding == "decoder"
    assert FAMILIES["glm"].hf_adapter() is None  # Hugging Face's model_type "glm" (GLM-4) is the llama family's
    from lmforge.convert.hf import _adapters
    assert _adapters()["glm"][0] == "llama"


def test_part_a_both_ways_part_b_causal(model):
    row = build(list(range(10, 22)), [(2, 4), (7, 10)], TOK, order=[1, 0])  # A: 9 tokens, B: 4 + 3
    base = run(model, row)
    with torch.no_grad():
        later_a = run(model, row, (6, 30))  # a part-A token late in A
        assert (later_a[:6] - base[:6]).abs().max() > 1e-4, "part A reads later part-A tokens (bidirectional)"
        last_b = run(model, row, (len(row.ids) - 1, 30))  # the last part-B token
        assert torch.allclose(last_b[:-1], base[:-1], atol=1e-6), "nothing before it reads it (A: never B; B: causal)"
        first_b = run(model, row, (row.prefix_len + 1, 30))
        assert torch.allclose(first_b[:row.prefix_len + 1], base[:row.prefix_len + 1], atol=1e-6)
        assert (first_b[row.prefix_len + 2:] - base[row.prefix_len + 2:]).abs().max() > 1e-4


def test_two_d_positions_are_two_tables_added(model):
    """Moving a span's blank (first id) or its tokens' place in the span (second id) changes the logits; a
    span's <sop> reads the position of its own blank."""
    row = build(list(range(10, 22)), [(2, 4)], TOK)
    with torch.no_grad():
        x = model.tok_emb(torch.tensor([row.ids])) + model.pos_emb.pos(torch.tensor([row.positions])) \
            + model.pos_emb.block(torch.tensor([row.block_positions]))
        y = model.tok_emb(torch.tensor([row.ids])) + model.pos_emb(torch.tensor([row.positions]),
                                                                   torch.tensor([row.block_positions]))
    assert torch.allclose(x, y, atol=1e-7)
    assert row.positions[row.prefix_len:] == [2, 2, 2] and row.block_positions[row.prefix_len:] == [1, 2, 3]


def test_loss_reads_part_b_only(model):
    row = build(list(range(10, 22)), [(2, 4), (7, 10)], TOK)
    t = torch.tensor
    out = model(t([row.ids]), t([row.targets]), positions=t([row.positions]), block_positions=t([row.block_positions]),
                prefix_len=t([row.prefix_len]))
    logits = out.logits[0, row.prefix_len:]
    want = torch.nn.functional.cross_entropy(logits, t(row.targets[row.prefix_len:]))
    assert torch.allclose(out.loss, want)


def test_padded_batch_equals_rows_alone(model):
    rows = [build(list(range(10, 22)), [(2, 4)], TOK), build(list(range(30, 37)), [(1, 2), (4, 6)], TOK)]
    T = max(len(r.ids) for r in rows)
    pad = lambda xs, f: torch.tensor([x + [f] * (T - len(x)) for x in xs])  # noqa: E731
    with torch.no_grad():
        out = model(pad([r.ids for r in rows], 0), positions=pad([r.positions for r in rows], 0),
                    block_positions=pad([r.block_positions for r in rows], 0),
                    prefix_len=torch.tensor([r.prefix_len for r in rows]),
                    attention_mask=pad([[1] * len(r.ids) for r in rows], 0)).logits
        for b, r in enumerate(rows):
            assert torch.allclose(out[b, :len(r.ids)], run(model, r), atol=1e-5)


def decode(model, prompts, feed, use_cache):
    with torch.inference_mode():
        state, out = model.prefill(prompts, use_cache=use_cache)
        logits = [out.logits]
        for t in feed:
            logits.append(model.decode_step(state, torch.tensor([[t]] * len(prompts))).logits)
    return torch.stack(logits, 1)  # (B, steps, vocab)


def test_kv_cache_on_equals_off_equals_one_forward(model):
    prompts = [[10, 11, 1, 13, 1], [20, 1, 22, 23, 24, 25, 2]]
    feed = [30, 5, 31, 32, 5, 33]  # fill blank 1 with "30", then blank 2 with "31 32", then past its end
    on, off = decode(model, prompts, feed, True), decode(model, prompts, feed, False)
    assert torch.allclose(on, off, atol=1e-5)
    # row 0 as one training row: A = 10 11 [M] 13 [M]; B = <sop> 30 <sop> 31 32 <eop> 33 (the last blank is closed)
    row = build([10, 11, 30, 13, 31, 32], [(2, 3), (4, 6)], TOK)
    ids = row.ids + [5, 33]
    positions, block = row.positions + [4, 4], row.block_positions + [4, 5]
    with torch.no_grad():
        full = model(torch.tensor([ids]), positions=torch.tensor([positions]), block_positions=torch.tensor([block]),
                     prefix_len=torch.tensor([row.prefix_len])).logits[0, row.prefix_len:]
    assert torch.allclose(on[0], full, atol=1e-5)
    alone = decode(model, prompts[1:], feed, True)
    assert torch.allclose(on[1], alone[0], atol=1e-5), "a left-padded row decodes as it would alone"


def test_later_blank_sees_earlier_fill(model):
    a = decode(model, [[10, 1, 12, 1]], [30, 5], True)[0, -1]
    b = decode(model, [[10, 1, 12, 1]], [31, 5], True)[0, -1]
    assert (a - b).abs().max() > 1e-4


def test_prompt_without_blank_is_continued_after_gmask(model):
    with_gmask = decode(model, [[10, 11, 12, 3]], [30], True)
    plain = decode(model, [[10, 11, 12]], [30], True)
    assert torch.allclose(with_gmask, plain)


def test_protocol_state_reorders_and_joins(model):
    with torch.inference_mode():
        s1, o1 = model.prefill([[10, 1, 12]])
        s2, o2 = model.prefill([[20, 21, 22, 1, 24, 25]])
        s = s1.join(s2)
        both = model.decode_step(s, torch.tensor([[30], [31]])).logits
        s.reorder(torch.tensor([1]))
        s.trim()
        after = model.decode_step(s, torch.tensor([[32]])).logits
    ref = decode(model, [[20, 21, 22, 1, 24, 25]], [31, 32], True)[0]
    assert torch.allclose(both[1], ref[1], atol=1e-5) and torch.allclose(after[0], ref[2], atol=1e-5)
    assert torch.allclose(both[0], decode(model, [[10, 1, 12]], [30], True)[0, 1], atol=1e-5)


def test_config_errors():
    with pytest.raises(ValueError, match="special token ids must differ"):
        GLMConfig.preset("glm-tiny", smask_id=1)
    with pytest.raises(ValueError, match="eop_id must be a token id below vocab_size"):
        GLMConfig.preset("glm-tiny", eop_id=256)
    model = build_model("glm", "glm-tiny")
    with pytest.raises(ValueError, match="train it with the `blank` recipe"):
        model(torch.tensor([[10, 11]]), torch.tensor([[11, 12]]))
    with pytest.raises(ValueError, match="max_len is only 128"):
        model.prefill([[10] * 127 + [1, 12]])
