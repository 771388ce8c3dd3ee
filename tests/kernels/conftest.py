import pytest
import torch


@pytest.fixture
def batched_calls(monkeypatch):
    """Counts calls of the batched products the few-row paths use (F.linear never calls them)."""
    calls = []
    for name in ("bmm", "baddbmm"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    return calls
