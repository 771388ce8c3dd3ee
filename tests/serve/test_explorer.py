"""The explorer's /api/distribution in-process (httpx's ASGI transport): it runs on the engine's thread,
batched with generation, and counts against --max-concurrent like every other request."""
import asyncio
import threading
import time

import httpx
import pytest
import torch

from lmforge.generate.sampling import top_k
from lmforge.models import build_model
from lmforge.serve.app import Limits, create_app
from lmforge.tokenizers import CharTokenizer

TEXT = "And God said, Let there be light: and there was light. And God saw the light, that it was good."


class Gate:
    """Wraps a model's forward: records which threads run it and how many at once, and while closed
    holds the first call that arrives (so the engine is busy and requests pile up behind it)."""

    def __init__(self, model):
        self.forward, self.lock = model.forward, threading.Lock()
        self.threads, self.running, self.most = set(), 0, 0
        self.entered, self.opened = threading.Event(), threading.Event()
        model.forward = self

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.threads.add(threading.current_thread().name)
            self.running += 1
            self.most = max(self.most, self.running)
        self.entered.set()
        try:
            assert self.opened.wait(60), "the test never opened the gate"
            return self.forward(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def served():
    """(app, model, tokenizer, gate) for a tiny random GPT; the engine thread is stopped afterwards."""
    tok = CharTokenizer.train(TEXT)
    torch.manual_seed(0)
    model = build_model("gpt", dict(vocab_size=tok.vocab_size, max_len=64, d_model=32, n_heads=2, n_layers=2)).eval()
    app = create_app(model, tok, "tiny", Limits(max_concurrent=3))
    gate = Gate(model)
    yield app, model, tok, gate
    gate.opened.set()
    app.state.server.worker.close()


def expected(gate, ids, n, k):
    """The top-n next tokens after `ids` by a full forward pass computed here, with their probabilities
    under the model and after top-k."""
    with torch.no_grad():
        logits = gate.forward(torch.tensor([ids])).logits[0, -1].float()  # (V,)
    raw, final = logits.softmax(-1), top_k(logits, k).softmax(-1)
    top = raw.topk(n).indices
    return top.tolist(), raw[top].tolist(), final[top].tolist()


async def until(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_a_flood_of_distribution_requests_over_the_limit_gets_429_and_the_rest_exact_answers(served):
    app, model, tok, gate = served
    contexts = [tok.encode(t) for t in ("And God said", "Let there be", "light: and", "it was good", "the light",
                                        "And God saw the light, that")]  # 6 requests, max_concurrent 3

    async def flood():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tiny") as client:
            tasks = [asyncio.create_task(client.post("/api/distribution", json={"ids": ids, "n": 6, "top_k": 3}))
                     for ids in contexts]
            # the engine is held inside the first forward pass: three requests stay in flight, three are refused
            await until(lambda: gate.entered.is_set() and sum(t.done() for t in tasks) == 3, "three 429s")
            assert app.state.server.in_flight == 3
            gate.opened.set()
            replies = await asyncio.gather(*tasks)
            after = (await client.post("/api/distribution", json={"ids": contexts[0], "n": 6, "top_k": 3}))
            return replies, after, (await client.get("/api/stats")).json()

    replies, after, stats = asyncio.run(flood())
    assert sorted(r.status_code for r in replies) == [200] * 3 + [429] * 3
    for ids, r in zip(contexts, replies):
        if r.status_code == 429:
            err = r.json()["error"]
            assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
            assert "limit 3" in err["message"] and err["param"] is None
            continue
        tokens, raw, final = expected(gate, ids, 6, 3)
        alts = r.json()["alternatives"]
        assert [a["token"] for a in alts] == tokens
        assert [a["raw_prob"] for a in alts] == pytest.approx(raw, abs=1e-6)
        assert [a["prob"] for a in alts] == pytest.approx(final, abs=1e-6)
        assert [a["removed_by"] for a in alts] == [None] * 3 + ["top_k"] * 3
        assert [a["text"] for a in alts] == [tok.decode([t]) for t in tokens]
    assert after.status_code == 200 and stats["in_flight"] == 0  # the slots came back
    assert gate.threads == {"lmforge-engine"} and gate.most == 1  # the model ran on the engine thread only


def test_distribution_rows_join_a_running_generation_and_get_the_same_numbers(served):
    """Asked while a generation is decoding, the distribution rides in the same batch (left-padded, its own
    positions) and equals the one computed alone."""
    app, model, tok, gate = served
    contexts = [tok.encode("And God"), tok.encode("it was good, and there")]

    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tiny") as client:
            gen = asyncio.create_task(client.post("/api/generate", json={"prompt": "Let there be", "max_tokens": 30,
                                                                         "temperature": 0}))
            await until(gate.entered.is_set, "the generation's first forward pass")
            dists = [asyncio.create_task(client.post("/api/distribution", json={"ids": ids, "n": 4}))
                     for ids in contexts]
            await until(lambda: app.state.server.worker.stats["requests"] == 3, "both rows to be queued")
            gate.opened.set()
            return await gen, await asyncio.gather(*dists), (await client.get("/api/stats")).json()

    gen, dists, stats = asyncio.run(run())
    assert gen.status_code == 200 and '"finish_reason": "length"' in gen.text
    assert stats["max_batch"] == 3  # the generation's row and both distribution rows in one step
    for ids, r in zip(contexts, dists):
        tokens, raw, _ = expected(gate, ids, 4, 0)
        alts = r.json()["alternatives"]
        assert [a["token"] for a in alts] == tokens
        assert [a["raw_prob"] for a in alts] == pytest.approx(raw, abs=1e-6)
        assert [a["prob"] for a in alts] == pytest.approx(raw, abs=1e-6)  # no processor: the model's own


def test_distribution_with_a_penalty_counts_the_context(served):
    """presence_penalty lowers every token already in `ids` by the penalty (OpenAI's definition), as the
    engine does during generation (before, the route passed no counts and answered 500)."""
    app, model, tok, gate = served
    gate.opened.set()
    ids = tok.encode("And God said")

    async def ask():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tiny") as client:
            return await client.post("/api/distribution", json={"ids": ids, "n": 5, "presence_penalty": 2})

    alts = asyncio.run(ask()).json()["alternatives"]
    with torch.no_grad():
        logits = gate.forward(torch.tensor([ids])).logits[0, -1].float()
    seen = torch.zeros_like(logits)
    seen[ids] = 1
    final = (logits - 2 * seen).softmax(-1)
    assert [a["prob"] for a in alts] == pytest.approx(final[[a["token"] for a in alts]].tolist(), abs=1e-6)
