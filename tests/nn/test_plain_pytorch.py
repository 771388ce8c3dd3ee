"""lmforge.nn is the reference math: its layers are plain torch.nn.Linear / F.linear, with no fast path inside
(those live in lmforge.kernels, applied by the decoding Engine and the Trainer)."""
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from lmforge.nn import FeedForward, LMHead, MultiHeadAttention


def test_layers_are_torch_linears_and_compute_f_linear(monkeypatch):
    torch.manual_seed(0)
    attn, ff = MultiHeadAttention(384, 6), FeedForward(384, 1536)
    emb = torch.nn.Embedding(512, 384)
    head = LMHead(emb)
    layers = [attn.qkv, attn.out, ff.fc1, ff.fc2]
    assert all(type(m) is torch.nn.Linear for m in layers)
    assert type(MultiHeadAttention(384, 6, cross=True).kv) is torch.nn.Linear
    assert type(LMHead(None, 384, 512).proj) is torch.nn.Linear
    calls = []
    real = F.linear
    monkeypatch.setattr(F, "linear", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    for name in ("bmm", "baddbmm"):  # what the few-row fast paths would call
        monkeypatch.setattr(torch, name, lambda *a, **k: pytest.fail("a batched product ran: nn/ must compute F.linear"))
    x = torch.randn(1, 1, 384)  # one decoding row, no gradients: where a fast path would be taken
    with torch.no_grad():
        y, _ = attn(x)
        ff(y)
        logits = head(y)
    assert [id(w) for w in calls] == [id(m.weight) for m in layers] + [id(emb.weight)]
    torch.testing.assert_close(logits, y @ emb.weight.T)


def test_running_a_model_imports_no_kernels():
    code = ("import sys, torch; from lmforge.models import build_model; "
            "m = build_model('gpt', dict(vocab_size=64, max_len=16, d_model=32, n_heads=2, n_layers=1)); "
            "m(torch.zeros(1, 4, dtype=torch.long)); print('lmforge.kernels' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
