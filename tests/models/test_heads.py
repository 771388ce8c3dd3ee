"""Fine-tuning heads (sequence classification, token classification, extractive QA) of BERT and DistilBERT against
transformers' BertFor* / DistilBertFor* classes on odd random configs saved with save_pretrained (no downloads):
logits and losses equal, labels carried both ways, conversion bit-identical."""
import json

import pytest
import torch

import lmforge
from lmforge.convert.hf import save_hf
from lmforge.models import build_model, save_model

LABELS = ("O", "B-X", "I-X", "B-Y", "I-Y")  # 5 classes: the classifier's rows are not square with anything
BERT = dict(hidden_size=36, num_attention_heads=3, num_hidden_layers=3, vocab_size=101, max_position_embeddings=40,
            intermediate_size=52, hidden_dropout_prob=0, attention_probs_dropout_prob=0)
DISTIL = dict(dim=36, n_heads=3, n_layers=3, vocab_size=101, max_position_embeddings=40, hidden_dim=52, dropout=0,
              attention_dropout=0, seq_classif_dropout=0, qa_dropout=0)
CLASSES = {  # (family, head) -> transformers class
    ("bert", "classify"): "BertForSequenceClassification", ("bert", "tag"): "BertForTokenClassification",
    ("bert", "qa"): "BertForQuestionAnswering", ("distilbert", "classify"): "DistilBertForSequenceClassification",
    ("distilbert", "tag"): "DistilBertForTokenClassification", ("distilbert", "qa"): "DistilBertForQuestionAnswering",
}
CASES = sorted(CLASSES)


def make_hf(transformers, tmp_path, family, head):
    torch.manual_seed(0)
    labels = {} if head == "qa" else dict(id2label=dict(enumerate(LABELS)), label2id={x: i for i, x in enumerate(LABELS)})
    config = (transformers.BertConfig(**BERT, **labels) if family == "bert"
              else transformers.DistilBertConfig(**DISTIL, **labels))
    hf = getattr(transformers, CLASSES[family, head])(config).eval()
    with torch.no_grad():  # HF initialises biases and LayerNorms to 0/1: randomise them so every tensor is tested
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "norm" in name.lower():
                p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path / CLASSES[family, head]
    hf.save_pretrained(path)
    return hf, path


def batch(family: str):
    """A padded batch (rows of 20, 15 and 5 real tokens), two segments for BERT (DistilBERT has none)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 101, (3, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    mask[2, 5:] = 0
    types = torch.zeros_like(ids)
    types[:, 10:] = 1
    return (ids, mask, types) if family == "bert" else (ids, mask, None)


def ours_and_ref(model, hf, family, head, targets=None):
    ids, mask, types = batch(family)
    kw = {"token_type_ids": types} if family == "bert" else {}
    hf_targets = {}
    if targets is not None:
        hf_targets = ({"start_positions": targets[:, 0], "end_positions": targets[:, 1]} if head == "qa"
                      else {"labels": targets})
    with torch.no_grad():
        out = model(ids, mask, types, targets=targets)
        ref = hf(ids, attention_mask=mask, **kw, **hf_targets)
    if head == "classify":
        got, want = out.sequence_logits, ref.logits
    elif head == "tag":
        got, want = out.logits, ref.logits
    else:
        got, want = out.logits, torch.stack([ref.start_logits, ref.end_logits], dim=-1)
    return out, ref, got, want


def targets_for(head: str):
    g = torch.Generator().manual_seed(1)
    if head == "classify":
        return torch.tensor([4, 0, 2])
    if head == "tag":
        t = torch.randint(0, len(LABELS), (3, 20), generator=g)
        t[1, 15:] = -100  # padding is not scored
        t[2, 5:] = -100
        return t
    return torch.tensor([[3, 6], [1, 1], [2, 4]])  # (start, end) token of each answer


@pytest.mark.parametrize("family,head", CASES)
def test_logits_and_loss_match_transformers(transformers, tmp_path, family, head):
    hf, path = make_hf(transformers, tmp_path, family, head)
    model = lmforge.load(path).eval()
    assert (model.config.family, model.config.head) == (family, head)
    assert model.config.labels == (() if head == "qa" else LABELS)  # id2label read in index order
    targets = targets_for(head)
    out, ref, got, want = ours_and_ref(model, hf, family, head, targets)
    assert got.shape == want.shape == {"classify": (3, 5), "tag": (3, 20, 5), "qa": (3, 20, 2)}[head]
    assert (got - want).abs().max().item() <= 1e-5
    assert out.loss.item() == pytest.approx(ref.loss.item(), abs=1e-5)


@pytest.mark.parametrize("family,head", CASES)
def test_convert_both_ways_keeps_weights_labels_and_logits(transformers, tmp_path, family, head):
    torch.manual_seed(0)
    fields = dict(vocab_size=101, max_len=40, d_model=36, n_heads=3, n_layers=3, d_ff=52, dropout=0.0, head=head,
                  labels=() if head == "qa" else LABELS)
    if family == "bert":
        fields["pooler"] = head == "classify"  # HF's token and span classes have no pooler
    model = build_model(family, fields).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_model(model, tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["head"] == head and tuple(saved["labels"]) == (() if head == "qa" else LABELS)
    save_hf(lmforge.load(tmp_path / "ours"), tmp_path / "hf")
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf_config["architectures"] == [CLASSES[family, head]]
    if head != "qa":
        assert hf_config["id2label"] == {str(i): x for i, x in enumerate(LABELS)}
    hf = getattr(transformers, CLASSES[family, head]).from_pretrained(tmp_path / "hf").eval()
    if head != "qa":
        assert hf.config.id2label == dict(enumerate(LABELS))
    save_model(lmforge.load(tmp_path / "hf"), tmp_path / "back")
    a, b = model.state_dict(), lmforge.load(tmp_path / "back").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert lmforge.load(tmp_path / "back").config == model.config
    _, _, got, want = ours_and_ref(model, hf, family, head)
    assert (got - want).abs().max().item() <= 1e-5


def test_span_loss_textbook():
    from lmforge.nn.heads import span_loss
    logits = torch.tensor([[[0.0, 0.0], [9.0, 0.0], [0.0, 9.0]]])  # start scores [0, 9, 0], end [0, 0, 9]
    assert span_loss(logits, torch.tensor([[1, 2]])).item() < 1e-3
    # a wrong end costs the end's cross-entropy, halved: (0 + (9 + log(1 + 2 e^-9))) / 2 ~= 4.5
    assert span_loss(logits, torch.tensor([[1, 0]])).item() == pytest.approx(4.5, abs=1e-3)


@pytest.mark.parametrize("fields,match", [
    (dict(head="classify"), "head='classify' needs labels"),
    (dict(head="tag", labels=["O"], pooler=False), "at least 2"),
    (dict(head="tag", labels=["O", "O"], pooler=False), "distinct; repeated: \\['O'\\]"),
    (dict(head="qa", labels=["a", "b"], pooler=False), "head='qa' takes none"),
    (dict(head="classify", labels=["a", "b"], pooler=False), "needs pooler=true"),
    (dict(head="tag", labels=["a", "b"]), "set pooler=false"),
    (dict(head="classify", labels=["a", "b"], head_dropout=1.5), "head_dropout must be in"),
])
def test_bad_head_configs_say_what_to_do(fields, match):
    with pytest.raises(ValueError, match=match):
        build_model("bert", dict(vocab_size=50, max_len=16, d_model=32, n_heads=2, n_layers=1, **fields))


def test_targets_of_the_wrong_shape_or_without_a_head():
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (2, 8))
    small = dict(vocab_size=50, max_len=16, d_model=32, n_heads=2, n_layers=1)
    clf = build_model("bert", dict(small, head="classify", labels=["a", "b", "c"]))
    with pytest.raises(ValueError, match=r"targets have shape \(2, 8\).*shape \(2,\)"):
        clf(ids, targets=torch.zeros(2, 8, dtype=torch.long))
    qa = build_model("distilbert", dict(small, head="qa"))
    with pytest.raises(ValueError, match=r"span head needs \(batch, 2\) = \(2, 2\)"):
        qa(ids, targets=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="head='none'"):
        build_model("bert", small)(ids, targets=torch.zeros(2, 8, dtype=torch.long))
