"""The OpenAI-compatible server against a real uvicorn process: through the official `openai` client
where the test is about compatibility (those tests skip without it), through httpx elsewhere."""
import json
import threading
import time

import httpx
import pytest


@pytest.fixture(scope="module")
def openai():
    return pytest.importorskip("openai")


@pytest.fixture(scope="module")
def client(openai, server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=60)


def alive(server):
    assert httpx.get(server + "/health", timeout=5).json()["status"] == "ok"


def test_models_and_completion_with_logprobs(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    r = client.completions.create(model="tiny", prompt="And God said", max_tokens=12, temperature=0.7, seed=5,
                                  logprobs=3)
    c = r.choices[0]
    assert c.finish_reason == "length" and r.usage.completion_tokens == 12 and r.usage.prompt_tokens == 12
    assert "".join(c.logprobs.tokens) == c.text and len(c.logprobs.token_logprobs) == 12
    for lp, top in zip(c.logprobs.token_logprobs, c.logprobs.top_logprobs):
        assert lp <= 0 and len(top) == 3 and max(top.values()) >= lp - 1e-6
    again = client.completions.create(model="tiny", prompt="And God said", max_tokens=12, temperature=0.7, seed=5)
    assert again.choices[0].text == c.text  # same seed, same text


def test_streaming_equals_non_streaming_and_n(client):
    kw = dict(model="tiny", prompt="In the beginning", max_tokens=20, temperature=0.9, seed=3)
    full = client.completions.create(**kw).choices[0].text
    pieces = [ch.choices[0].text for ch in client.completions.create(stream=True, **kw)]
    assert "".join(pieces) == full and len(pieces) > 3
    r = client.completions.create(n=3, **kw)
    assert [c.index for c in r.choices] == [0, 1, 2] and r.choices[0].text == full
    assert len({c.text for c in r.choices}) > 1  # choice i uses seed + i


def test_stop_strings(client):
    base = client.completions.create(model="tiny", prompt="And", max_tokens=30, temperature=0).choices[0].text
    stop = base[8:10]
    r = client.completions.create(model="tiny", prompt="And", max_tokens=30, temperature=0, stop=[stop, "zzz"])
    assert r.choices[0].text == base[:base.index(stop)] and r.choices[0].finish_reason == "stop"


def test_chat_completion_stream_and_logprobs(client):
    msgs = [{"role": "system", "content": "Be wise."}, {"role": "user", "content": "Who?"}]
    r = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=10, temperature=0, logprobs=True,
                                       top_logprobs=2)
    m = r.choices[0]
    assert m.message.role == "assistant" and len(m.logprobs.content) == r.usage.completion_tokens
    assert all(len(t.top_logprobs) == 2 for t in m.logprobs.content)
    streamed = "".join(ch.choices[0].delta.content or "" for ch in
                       client.chat.completions.create(model="tiny", messages=msgs, max_tokens=10, temperature=0,
                                                      stream=True))
    assert streamed == m.message.content


@pytest.mark.parametrize("kwargs, status, param", [
    (dict(model="nope"), 404, "model"),
    (dict(temperature=-0.5), 400, "temperature"),
    (dict(top_p=1.5), 400, "top_p"),
    (dict(max_tokens=0), 400, "max_tokens"),
    (dict(max_tokens=101), 400, "max_tokens"),
    (dict(prompt=""), 400, "prompt"),
    (dict(prompt="a" * 200), 400, "prompt"),
    (dict(prompt=[1, 2, 10**6]), 400, "prompt"),  # token ids outside the vocabulary
    (dict(prompt=[1] * 200), 400, "prompt"),  # token ids longer than the context
    (dict(n=99), 400, "n"),
    (dict(stop=123), 400, "stop"),
])
def test_bad_requests_get_openai_errors_and_the_server_stays_up(openai, client, server, kwargs, status, param):
    args = {"model": "tiny", "prompt": "And", "max_tokens": 5, **kwargs}
    with pytest.raises(openai.APIStatusError) as e:
        client.completions.create(**args)
    assert e.value.status_code == status
    err = e.value.body
    assert err["param"] == param and param in err["message"]
    if param == "prompt" and len(args["prompt"]) == 200:
        assert "maximum context length is 128 tokens" in err["message"]
    alive(server)


def test_bad_json_and_oversized_body(server):
    r = httpx.post(server + "/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"
    r = httpx.post(server + "/v1/completions", json={"prompt": "x" * 30000, "model": "tiny"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    alive(server)


def test_a_chunked_body_is_refused_while_it_arrives(server):
    """No Content-Length: the server counts the chunks and answers 413 once they pass --max-body (20000),
    without waiting for the end of a body that may never end (it would otherwise be read whole into memory)."""
    import socket
    from urllib.parse import urlsplit
    u = urlsplit(server)
    with socket.create_connection((u.hostname, u.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(30):  # 30 KB, and no terminating chunk: the body is still "arriving"
            sock.sendall(b"3e8\r\n" + b" " * 1000 + b"\r\n")
        reply = b""
        while b"request_too_large" not in reply:  # headers and JSON may come in separate packets
            data = sock.recv(65536)  # times out (and fails) if the server waits for the rest of the body
            assert data, f"connection closed without the error; got {reply!r}"
            reply += data
    assert reply.startswith(b"HTTP/1.1 413")
    alive(server)


def stream_tokens(server, prompt, seed, max_tokens, out, i):
    with httpx.stream("POST", server + "/v1/completions", timeout=60,
                      json={"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "seed": seed,
                            "temperature": 0.8, "stream": True}) as r:
        text = ""
        for line in r.iter_lines():
            if line.startswith("data: {"):
                text += json.loads(line[6:])["choices"][0]["text"]
        out[i] = text


def test_concurrent_requests_are_batched_and_unaffected_by_each_other(server):
    prompts = ["And God said", "In the beginning", "The LORD is", "Blessed"]
    alone = [httpx.post(server + "/v1/completions", timeout=60,
                        json={"model": "tiny", "prompt": p, "max_tokens": 60, "seed": i, "temperature": 0.8}
                        ).json()["choices"][0]["text"] for i, p in enumerate(prompts)]
    before = httpx.get(server + "/api/stats").json()
    out = [None] * 4
    threads = [threading.Thread(target=stream_tokens, args=(server, p, i, 60, out, i)) for i, p in enumerate(prompts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    after = httpx.get(server + "/api/stats").json()
    assert out == alone  # joining a running batch changes nothing in a request's text
    assert after["max_batch"] >= 2  # they were decoded together (continuous batching)
    assert after["steps"] - before["steps"] < 4 * 60  # fewer engine steps than tokens: rows shared steps


def test_disconnect_cancels_generation(server):
    before = httpx.get(server + "/api/stats").json()
    with httpx.stream("POST", server + "/v1/completions", timeout=60,
                      json={"model": "tiny", "prompt": "And", "max_tokens": 100, "stream": True}) as r:
        for i, line in enumerate(r.iter_lines()):
            if i >= 4:
                break  # leave mid-stream: the connection closes
    deadline = time.time() + 20
    while True:
        s = httpx.get(server + "/api/stats").json()
        if s["cancelled"] > before["cancelled"] and s["active"] == 0:
            break
        assert time.time() < deadline, s
        time.sleep(0.1)
    assert s["tokens"] - before["tokens"] < 100  # generation stopped well before max_tokens
    alive(server)


def test_distribution_endpoint_applies_settings(server):
    ids = [1, 2, 3]
    raw = httpx.post(server + "/api/distribution", json={"ids": ids, "n": 5}).json()["alternatives"]
    cut = httpx.post(server + "/api/distribution", json={"ids": ids, "n": 5, "top_k": 2, "temperature": 0.5}).json()
    cut = cut["alternatives"]
    assert [a["token"] for a in raw] == [a["token"] for a in cut]
    assert [a["raw_prob"] for a in raw] == pytest.approx([a["raw_prob"] for a in cut])
    assert [a["prob"] > 0 for a in cut] == [True, True, False, False, False]
    assert [a["removed_by"] for a in cut] == [None, None, "top_k", "top_k", "top_k"]
    assert sum(a["prob"] for a in cut) == pytest.approx(1.0, abs=1e-5)
    for bad in ([], [1, 10**6], [1] * 200):
        r = httpx.post(server + "/api/distribution", json={"ids": bad, "n": 5})
        assert r.status_code == 400 and r.json()["error"]["param"] == "ids"


def test_requests_over_the_concurrency_limit_get_429_and_later_ones_succeed(tmp_path):
    from live import make_run, start_server
    run = make_run(tmp_path, max_len=4096, d_model=64, n_heads=4, n_layers=2)  # long enough to still be running
    proc, url = start_server(run, "--name", "tiny", "--max-concurrent", "1", "--max-tokens", "4000", "--no-pack")
    try:
        body = {"model": "tiny", "prompt": "And", "max_tokens": 4000, "temperature": 1.0, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=30) as first:
            lines = first.iter_lines()  # held: a dropped iterator closes the stream
            assert next(lines).startswith("data: ")  # generating now
            r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "And", "max_tokens": 2})
            assert r.status_code == 429
            assert r.json()["error"]["code"] == "rate_limit_exceeded" and "limit 1" in r.json()["error"]["message"]
        for _ in range(100):  # the first client left: its slot frees once the server notices
            r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "And", "max_tokens": 2})
            if r.status_code != 429:
                break
            time.sleep(0.1)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
    finally:
        proc.terminate()
        proc.wait(10)


def test_completions_stop_at_the_chat_end_of_turn_token(tmp_path):
    """A model that always says <|end|> (its final norm outputs <|end|>'s embedding whatever the input):
    /v1/completions stops there, as `lmforge sample` does, instead of running to max_tokens."""
    import torch

    from live import start_server

    from lmforge.models import build_model, save_model
    from lmforge.data.chat import CHAT_SPECIAL_TOKENS
    from lmforge.tokenizers import CharTokenizer, save_tokenizer
    tok = CharTokenizer.train("And God said, Let there be light.", special_tokens=CHAT_SPECIAL_TOKENS)
    end = tok.special_tokens["<|end|>"]
    torch.manual_seed(0)
    model = build_model("gpt", dict(vocab_size=tok.vocab_size, max_len=64, d_model=32, n_heads=2, n_layers=1))
    with torch.no_grad():
        model.tok_emb.weight[end] *= 10
        model.norm.weight.zero_()
        model.norm.bias.copy_(model.tok_emb.weight[end])
    save_model(model, tmp_path)
    save_tokenizer(tok, tmp_path)
    proc, url = start_server(tmp_path, "--name", "tiny", "--threads", "1")
    try:
        r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "And", "max_tokens": 10,
                                                     "temperature": 0}).json()
        assert r["choices"][0]["finish_reason"] == "stop" and r["choices"][0]["text"] == ""
        assert r["usage"]["completion_tokens"] == 1
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_flags_out_of_range_are_one_clear_line(served_run, capsys):
    from lmforge.cli import main
    for flag in ("--threads", "--max-concurrent"):
        assert main(["serve", str(served_run), flag, "0"]) == 2
        assert f"{flag} must be >= 1, got 0" in capsys.readouterr().err


def test_the_llama_family_is_served_unchanged(tmp_path):
    """The same server, Step records and distribution endpoint for a Llama-style model (GQA, RoPE): greedy text
    over HTTP (streamed and not, with logprobs) equals lmforge.generate in this process."""
    import lmforge
    from live import make_run, start_server

    from lmforge.generate import generate
    run = make_run(tmp_path, family="llama", d_model=64, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=160)
    from lmforge.tokenizers import load_tokenizer
    model, tok = lmforge.load(run).eval(), load_tokenizer(run)
    want = "".join(tok.decode([s.token]) for s in generate(model, tok.encode("And God"), max_new_tokens=15,
                                                              temperature=0))
    proc, url = start_server(run, "--name", "llama", "--threads", "1")
    try:
        body = {"model": "llama", "prompt": "And God", "max_tokens": 15, "temperature": 0, "logprobs": 2}
        r = httpx.post(url + "/v1/completions", json=body, timeout=60).json()["choices"][0]
        assert r["text"] == want and len(r["logprobs"]["top_logprobs"]) == 15
        with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True}, timeout=60) as s:
            chunks = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")]
        assert "".join(c["choices"][0]["text"] for c in chunks) == want
        d = httpx.post(url + "/api/distribution", json={"ids": tok.encode("And God"), "n": 3}).json()
        assert len(d["alternatives"]) == 3 and tok.decode([d["alternatives"][0]["token"]]) == want[0]
    finally:
        proc.terminate()
        proc.wait(10)


def test_many_concurrent_streams_each_get_their_own_tokens_equal_to_in_process_generation(server, served_run):
    """8 streams at once (greedy and sampled, different lengths, one with n=2), with logprobs: each choice's
    tokens and log-probabilities are those an in-process Engine gives its prompt alone. The worker hands
    the event loop one batch of Steps per engine step; this shows each Step still reaches its own request
    and choice, in order, and nothing else does."""
    import torch

    import lmforge
    from lmforge.generate import Engine, SamplingParams
    from lmforge.tokenizers import load_tokenizer
    asks = [dict(prompt=p, temperature=t, seed=i, max_tokens=m, n=n)
            for i, (p, t, m, n) in enumerate([("And God said", 0.8, 40, 1), ("In the beginning", 0.0, 25, 1),
                                              ("The LORD is", 1.2, 33, 2), ("Blessed", 0.8, 40, 1),
                                              ("And", 0.0, 17, 1), ("Let there be", 0.5, 40, 1),
                                              ("He said", 1.0, 29, 1), ("And God said", 0.8, 40, 1)])]
    asks[-1]["seed"] = 100  # the same prompt as the first with another seed: its own draws, not the first's

    def stream(i, out):
        a = asks[i]
        got = [([], []) for _ in range(a["n"])]  # per choice: token texts, their logprobs
        with httpx.stream("POST", server + "/v1/completions", timeout=120,
                          json={"model": "tiny", **a, "logprobs": 2, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    ch = json.loads(line[6:])["choices"][0]
                    got[ch["index"]][0].extend(ch["logprobs"]["tokens"])
                    got[ch["index"]][1].extend(ch["logprobs"]["token_logprobs"])
        out[i] = got

    before = httpx.get(server + "/api/stats").json()
    out = [None] * len(asks)
    threads = [threading.Thread(target=stream, args=(i, out)) for i in range(len(asks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    after = httpx.get(server + "/api/stats").json()
    assert after["max_batch"] >= 4  # they shared engine steps

    tok, model = load_tokenizer(served_run), lmforge.load(served_run).eval()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the server runs (live.start_server): the same products, the same rounding
    try:
        for a, got in zip(asks, out):
            engine = Engine(model, alternatives=2)
            seqs = [engine.add(tok.encode(a["prompt"]), SamplingParams(temperature=a["temperature"]),
                               max_new_tokens=a["max_tokens"], seed=a["seed"] + c) for c in range(a["n"])]
            steps = {s.id: [] for s in seqs}
            while engine.active:
                for st in engine.step():
                    steps[st.row].append(st)
            for (texts, logprobs), s in zip(got, seqs):
                assert texts == [tok.decode([st.token]) for st in steps[s.id]], a
                assert logprobs == pytest.approx([st.raw_logprob for st in steps[s.id]], abs=1e-4), a
    finally:
        torch.set_num_threads(threads_before)
    assert after["tokens"] - before["tokens"] == sum(a["max_tokens"] * a["n"] for a in asks)
