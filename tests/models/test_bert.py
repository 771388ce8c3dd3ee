"""BERT against Hugging Face transformers (BertModel, BertForMaskedLM, BertForPreTraining) on the real MiniLM-L6
and on small random configs saved with save_pretrained (no downloads)."""
import json

import pytest
import torch

import lmforge
from lmforge.convert.hf import save_hf
from lmforge.models import build_model, save_model

ODD = dict(hidden_size=36, num_attention_heads=3, num_hidden_layers=3, vocab_size=101, max_position_embeddings=40,
           intermediate_size=52)


def make_hf(transformers, tmp_path, arch="BertModel", **cfg):
    torch.manual_seed(0)
    config = transformers.BertConfig(hidden_dropout_prob=0, attention_probs_dropout_prob=0, **cfg)
    hf = getattr(transformers, arch)(config).eval()
    with torch.no_grad():  # HF initialises biases and LayerNorms to 0/1: randomise them so every tensor is tested
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path / arch
    hf.save_pretrained(path)
    return hf, path


def batch(vocab: int, B: int = 3, T: int = 20, seed: int = 0):
    """ids with [CLS] first, a padded batch (rows of 20, 15 and 5 real tokens), two segments."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (B, T), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    mask[2, 5:] = 0
    types = torch.zeros_like(ids)
    types[:, T // 2:] = 1
    return ids, mask, types


def test_minilm_hidden_states_and_pooler_match_transformers(transformers, minilm):
    ours = lmforge.load(minilm).eval()
    assert ours.config.family == "bert" and (ours.config.d_model, ours.config.n_layers) == (384, 6)
    hf = transformers.BertModel.from_pretrained(minilm).eval()
    ids, mask, types = batch(30522)
    with torch.no_grad():
        a, b = ours(ids, mask, types), hf(ids, attention_mask=mask, token_type_ids=types)
        plain = ours(ids).hidden_states
        ref_plain = hf(ids).last_hidden_state
    assert a.hidden_states.shape == (3, 20, 384)
    assert (a.hidden_states - b.last_hidden_state).abs().max().item() <= 1e-5
    assert (a.pooled - b.pooler_output).abs().max().item() <= 1e-5
    assert (plain - ref_plain).abs().max().item() <= 1e-5  # no mask, no token types: all real, segment 0


@pytest.mark.parametrize("arch", ["BertModel", "BertForMaskedLM", "BertForPreTraining"])
def test_odd_random_configs_match_transformers_with_every_head(transformers, tmp_path, arch):
    hf, path = make_hf(transformers, tmp_path, arch, **ODD)
    ours = lmforge.load(path).eval()
    assert ours.config.head == {"BertModel": "none", "BertForMaskedLM": "mlm", "BertForPreTraining": "pretraining"}[arch]
    ids, mask, types = batch(101)
    with torch.no_grad():
        out = ours(ids, mask, types)
        ref = hf(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    last = ref.last_hidden_state if arch == "BertModel" else ref.hidden_states[-1]
    assert (out.hidden_states - last).abs().max().item() <= 1e-5
    if arch == "BertModel":
        assert out.logits is None and (out.pooled - ref.pooler_output).abs().max().item() <= 1e-5
    if arch == "BertForMaskedLM":
        assert out.pooled is None and (out.logits - ref.logits).abs().max().item() <= 1e-5
    if arch == "BertForPreTraining":
        assert (out.logits - ref.prediction_logits).abs().max().item() <= 1e-5
        assert (out.sequence_logits - ref.seq_relationship_logits).abs().max().item() <= 1e-5


def test_masked_lm_loss_matches_transformers(transformers, tmp_path):
    hf, path = make_hf(transformers, tmp_path, "BertForMaskedLM", **ODD)
    ours = lmforge.load(path).eval()
    ids, mask, types = batch(101)
    labels = torch.full_like(ids, -100)
    labels[:, 2:5] = ids[:, 2:5]
    with torch.no_grad():
        assert ours(ids, mask, types, targets=labels).loss.item() == pytest.approx(
            hf(ids, attention_mask=mask, token_type_ids=types, labels=labels).loss.item(), abs=1e-5)


def test_attention_probabilities_match_transformers(transformers, tmp_path):
    hf, path = make_hf(transformers, tmp_path, **ODD)
    hf = transformers.BertModel.from_pretrained(path, attn_implementation="eager").eval()
    ours = lmforge.load(path).eval()
    ids, mask, types = batch(101)
    with torch.no_grad():
        out = ours(ids, mask, types, need_weights=True)
        ref = hf(ids, attention_mask=mask, token_type_ids=types, output_attentions=True)
    assert len(out.attentions) == 3 and out.attentions[0].shape == (3, 3, 20, 20)
    for a, b in zip(out.attentions, ref.attentions):
        assert (a - b).abs().max().item() <= 1e-5
    assert out.attentions[0][2, :, :, 5:].abs().max().item() == 0.0  # nobody looks at row 2's padding
    assert (out.hidden_states - ours(ids, mask, types).hidden_states).abs().max().item() <= 1e-5


def test_keys_with_and_without_the_bert_prefix(transformers, tmp_path):
    """A BertForPreTraining checkpoint's encoder ("bert." prefix) read as a plain BertModel, and back."""
    hf, path = make_hf(transformers, tmp_path, "BertForPreTraining", **ODD)
    cfg = json.loads((path / "config.json").read_text())
    cfg["architectures"] = ["BertModel"]
    (path / "config.json").write_text(json.dumps(cfg))
    ours = lmforge.load(path).eval()
    assert ours.config.head == "none"
    ids, mask, types = batch(101)
    with torch.no_grad():
        ref = hf.bert(ids, attention_mask=mask, token_type_ids=types)
        out = ours(ids, mask, types)
    assert (out.hidden_states - ref.last_hidden_state).abs().max().item() <= 1e-5
    assert (out.pooled - ref.pooler_output).abs().max().item() <= 1e-5


@pytest.mark.parametrize("head", ["none", "mlm", "pretraining"])
def test_convert_both_ways_is_bit_identical_and_loads_in_transformers(transformers, tmp_path, head):
    torch.manual_seed(0)
    model = build_model("bert", dict(vocab_size=101, max_len=40, d_model=36, n_heads=3, n_layers=3, d_ff=52,
                                     head=head, pooler=head != "mlm")).eval()
    with torch.no_grad():  # the LayerNorms and biases start at 1 and 0: move them so every tensor is tested
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_model(model, tmp_path / "ours")
    save_hf(lmforge.load(tmp_path / "ours"), tmp_path / "hf")
    cls = {"none": "BertModel", "mlm": "BertForMaskedLM", "pretraining": "BertForPreTraining"}[head]
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == [cls]
    hf = getattr(transformers, cls).from_pretrained(tmp_path / "hf").eval()
    save_model(lmforge.load(tmp_path / "hf"), tmp_path / "back")
    a, b = model.state_dict(), lmforge.load(tmp_path / "back").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ids, mask, types = batch(101)
    with torch.no_grad():
        out = model(ids, mask, types)
        ref = hf(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    assert (out.hidden_states - ref.hidden_states[-1]).abs().max().item() <= 1e-5
    if head != "none":
        logits = ref.logits if head == "mlm" else ref.prediction_logits
        assert (out.logits - logits).abs().max().item() <= 1e-5
    if head == "pretraining":
        assert (out.sequence_logits - ref.seq_relationship_logits).abs().max().item() <= 1e-5


def test_convert_cli_minilm_to_lmforge_and_back(transformers, minilm, tmp_path):
    import subprocess
    import sys
    for src, dst, to in ((minilm, tmp_path / "ours", "lmforge"), (tmp_path / "ours", tmp_path / "hf", "hf")):
        r = subprocess.run([sys.executable, "-m", "lmforge", "convert", str(src), str(dst), "--to", to], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "ours" / "tokenizer.json").is_file()
    ids, mask, types = batch(30522, seed=1)
    hf = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
    ref = transformers.BertModel.from_pretrained(minilm).eval()
    with torch.no_grad():
        a = hf(ids, attention_mask=mask, token_type_ids=types)
        b = ref(ids, attention_mask=mask, token_type_ids=types)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state) and torch.equal(a.pooler_output, b.pooler_output)


# ---------------------------------------------------------------- bad input (issue deliverable 9)
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("bert", dict(vocab_size=50, max_len=16, d_model=32, n_heads=2, n_layers=1)).eval()


def test_token_type_ids_of_the_wrong_shape_or_range(tiny):
    ids = torch.randint(0, 50, (2, 8))
    with pytest.raises(ValueError, match=r"token_type_ids has shape \(2, 7\) but ids have shape \(2, 8\)"):
        tiny(ids, token_type_ids=torch.zeros(2, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token_type_ids must be in \[0, 1\].*from 2 to 2"):
        tiny(ids, token_type_ids=torch.full((2, 8), 2))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(8,\) but ids have shape \(2, 8\)"):
        tiny(ids, attention_mask=torch.ones(8))


def test_input_longer_than_max_positions_names_the_limit(tiny):
    with pytest.raises(ValueError, match="the input is 17 tokens but the model reads at most max_len = 16.*Truncate"):
        tiny(torch.zeros(1, 17, dtype=torch.long))
    assert tiny(torch.zeros(1, 16, dtype=torch.long)).hidden_states.shape == (1, 16, 32)


@pytest.mark.parametrize("config,match", [
    ({"model_type": "roberta", "architectures": ["RobertaModel"]},
     "model_type 'roberta' \\(RobertaModel\\) is not supported. Supported: gpt2.*bert"),
    ({"model_type": "bert", "architectures": ["BertForQuestionAnswering"], "vocab_size": 10},
     "architecture 'BertForQuestionAnswering' is not supported. Supported: BertModel, BertForMaskedLM"),
    ({"model_type": "bert", "is_decoder": True, "vocab_size": 10}, "is_decoder=true"),
    ({"model_type": "bert", "position_embedding_type": "relative_key", "vocab_size": 10}, "relative_key"),
])
def test_a_directory_that_is_not_bert_like_says_what_it_is(tmp_path, config, match):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=match):
        lmforge.load(tmp_path)


def test_generate_refuses_an_encoder(tiny):
    from lmforge.generate import generate
    with pytest.raises(ValueError, match="bert.*encoder.*does not generate"):
        next(generate(tiny, [1, 2, 3], max_new_tokens=2))


def test_generate_cli_refuses_an_encoder_directory(tiny, tmp_path, capsys):
    from lmforge.cli import main
    from lmforge.tokenizers import WordPieceTokenizer, save_tokenizer
    save_model(tiny, tmp_path)
    save_tokenizer(WordPieceTokenizer.train(["the sun is shining"], vocab_size=40), tmp_path)
    assert main(["generate", str(tmp_path), "--prompt", "the sun"]) == 2
    assert "bert model, an encoder: it does not generate text" in capsys.readouterr().err
