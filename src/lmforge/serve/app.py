"""An OpenAI-compatible HTTP server with continuous batching, plus the endpoints the web explorer uses.

    lmforge serve runs/kjv-char            # http://127.0.0.1:8000  (the explorer is at /)

One worker thread owns a generation `Engine`: each request adds its sequences, which join the
running batch at the next step and leave it when done (continuous batching); the worker hands each
Step to the request's asyncio queue. A client that disconnects mid-stream cancels its sequences.

OpenAI API: POST /v1/completions, POST /v1/chat/completions (stream, logprobs, n, stop, seed,
temperature, top_p, max_tokens; top_k as an extension), GET /v1/models, GET /health.
Explorer API: POST /api/generate (SSE of full Step records), POST /api/distribution (the next-token
distribution for given ids and settings, raw vs processed), GET /api/stats.
Errors use OpenAI's shape: {"error": {"message", "type", "param", "code"}} with HTTP 400/404/413/429.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass
from importlib import resources

import torch
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from lmforge.data.chat import build_prompt
from lmforge.generate import Engine, SamplingParams
from lmforge.tokenizers import eos_ids
from lmforge.tokenizers.stream import TextStream


@dataclass
class Limits:
    max_tokens: int = 1024  # cap on max_tokens per request
    max_body: int = 1 << 20  # bytes
    max_concurrent: int = 32  # requests in flight; more get 429
    max_n: int = 8


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, type_: str = "invalid_request_error",
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type_, code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}}, status_code=self.status)


class Worker:
    """Runs the Engine in a thread; delivers each Step to the asyncio queue of the request that owns it."""

    def __init__(self, model, alternatives: int = 20):
        self.engine = Engine(model, alternatives=alternatives)
        self.cv = threading.Condition()
        self.owners: dict[int, tuple] = {}  # sequence id -> (loop, queue, choice index)
        self.stats = {"steps": 0, "tokens": 0, "max_batch": 0, "cancelled": 0, "requests": 0}
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="lmforge-engine", daemon=True)
        self.thread.start()

    def submit(self, prompt, params, *, max_new_tokens, eos, seed, loop, queue, choice):
        with self.cv:
            seq = self.engine.add(prompt, params, max_new_tokens=max_new_tokens, eos_token_id=eos, seed=seed)
            self.owners[seq.id] = (loop, queue, choice)
            self.cv.notify()
        return seq

    def cancel(self, seq) -> None:
        with self.cv:
            if self.owners.pop(seq.id, None) is not None and not seq.done:
                seq.cancel()
                self.stats["cancelled"] += 1

    def _loop(self) -> None:
        while True:
            with self.cv:
                while not self.engine.active and not self.stopping:
                    self.cv.wait()
                if self.stopping:
                    return
            try:
                steps = self.engine.step()
                error = None
            except Exception as e:  # a failure fails the requests in the batch, not the server
                steps, error = [], e
            batch = len(steps)
            with self.cv:
                self.stats["steps"] += 1
                self.stats["tokens"] += batch
                self.stats["max_batch"] = max(self.stats["max_batch"], batch)
                if error is not None:
                    for sid, (loop, q, c) in list(self.owners.items()):
                        loop.call_soon_threadsafe(q.put_nowait, (c, error))
                    self.owners.clear()
                    self.engine = Engine(self.engine.model, alternatives=self.engine.k)
                for st in steps:
                    owner = self.owners.get(st.row)
                    if owner is None:
                        continue
                    loop, q, c = owner
                    loop.call_soon_threadsafe(q.put_nowait, (c, st))
                    if st.finish_reason:
                        del self.owners[st.row]

    def close(self) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify()


# -- request parsing ------------------------------------------------------------------------------
def _num(body: dict, name: str, default, lo, hi, *, integer=False, lo_open=False):
    v = body.get(name, default)
    if v is None:
        v = default
    kind = int if integer else (int, float)
    ok = isinstance(v, kind) and not isinstance(v, bool) and (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo}, {hi}]"
        raise APIError(400, f"{name} must be {'an integer' if integer else 'a number'} in {rng}, got {v!r}", name)
    return v


def _stop_list(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop):
        raise APIError(400, "stop must be a string or a list of at most 4 strings", "stop")
    return stop


class Server:
    def __init__(self, model, tok, name: str, limits: Limits):
        self.model, self.tok, self.name, self.limits = model.eval(), tok, name, limits
        self.max_len = model.config.max_len
        self.eos = eos_ids(tok)
        self.worker = Worker(model)
        self.in_flight = 0

    def check_model(self, body: dict) -> None:
        m = body.get("model", self.name)
        if m != self.name:
            raise APIError(404, f"The model '{m}' does not exist; this server serves '{self.name}'", "model",
                           code="model_not_found")

    def params(self, body: dict) -> tuple[SamplingParams, dict]:
        temperature = _num(body, "temperature", 1.0, 0, 2)
        top_p = _num(body, "top_p", 1.0, 0, 1, lo_open=True)
        top_k = _num(body, "top_k", 0, 0, self.model.config.vocab_size, integer=True)
        presence = _num(body, "presence_penalty", 0.0, -2, 2)
        frequency = _num(body, "frequency_penalty", 0.0, -2, 2)
        max_tokens = _num(body, "max_tokens", 16, 1, self.limits.max_tokens, integer=True)
        n = _num(body, "n", 1, 1, self.limits.max_n, integer=True)
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise APIError(400, f"seed must be an integer, got {seed!r}", "seed")
        params = SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k, presence_penalty=presence,
                                frequency_penalty=frequency)
        return params, dict(max_tokens=max_tokens, n=n, seed=seed, stop=_stop_list(body))

    def encode(self, text, param: str = "prompt") -> list[int]:
        if not isinstance(text, str) or not text:
            raise APIError(400, f"{param} must be a non-empty string", param)
        try:
            ids = self.tok.encode(text)
        except ValueError as e:
            raise APIError(400, f"{param}: {e}", param) from None
        self.check_length(ids, param)
        return ids

    def check_ids(self, ids, param: str) -> list[int]:
        """Token ids given directly (completions' prompt, the explorer's ids): in the vocabulary, within the context."""
        V = self.model.config.vocab_size
        if not all(0 <= t < V for t in ids):
            raise APIError(400, f"{param}: token ids must be in [0, {V - 1}]", param)
        self.check_length(ids, param)
        return ids

    def check_length(self, ids, param):
        if len(ids) >= self.max_len:
            raise APIError(400, f"This model's maximum context length is {self.max_len} tokens; your {param} is "
                                f"{len(ids)} tokens. Shorten it to at most {self.max_len - 1} tokens.", param,
                           code="context_length_exceeded")

    async def run(self, prompt: list[int], params, opts, *, stop_ids=(), stop_text=()):
        """Async iterator of (choice, Step, text piece, finish_reason or None) for the n choices."""
        self.in_flight += 1  # requests generating now; the middleware answers 429 above the limit
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        n, seed = opts["n"], opts["seed"]
        seqs = [self.worker.submit(prompt, params, max_new_tokens=opts["max_tokens"], eos=self.eos + list(stop_ids),
                                   seed=None if seed is None else seed + c, loop=loop, queue=queue, choice=c)
                for c in range(n)]
        streams = [TextStream(self.tok.decode, list(opts["stop"]) + list(stop_text)) for _ in range(n)]
        open_ = set(range(n))
        try:
            while open_:
                c, st = await queue.get()
                if isinstance(st, Exception):
                    raise APIError(500, f"generation failed: {st}", type_="server_error")
                if c not in open_:
                    continue
                stopped_by_token = st.token in stop_ids or st.token in self.eos
                piece = "" if stopped_by_token else streams[c].push(st.token)
                reason = None
                if streams[c].stopped or stopped_by_token:
                    reason = "stop"
                elif st.finish_reason:
                    reason = "length"
                if reason:
                    piece += streams[c].flush()
                    open_.discard(c)
                    self.worker.cancel(seqs[c])
                yield c, st, piece, reason
        finally:
            self.in_flight -= 1
            for s in seqs:  # the client left (or we are done): stop computing for it
                self.worker.cancel(s)


class _Guard:
    """The two checks that answer before a request body is read: body size (413) and requests in flight
    (429). Plain ASGI rather than @app.middleware("http"), which relays every streamed chunk through an
    extra task and queue. A body sent without Content-Length (chunked) is counted as it arrives and
    refused once it passes the limit, so it is never held whole in memory."""

    def __init__(self, app, srv: "Server", limits: Limits):
        self.app, self.srv, self.limits = app, srv, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            size = dict(scope["headers"]).get(b"content-length", b"")
            max_body, error = self.limits.max_body, None
            if size.isdigit() and int(size) > max_body:
                error = APIError(413, f"request body is {int(size)} bytes; the limit is {max_body}", "body",
                                 code="request_too_large")
            elif self.srv.in_flight >= self.limits.max_concurrent and scope["path"] != "/api/distribution":
                error = APIError(429, f"too many requests in flight (limit {self.limits.max_concurrent}); retry "
                                      "shortly", type_="rate_limit_error", code="rate_limit_exceeded")
            if error is not None:
                return await error.response()(scope, receive, send)
            receive = _counted(receive, max_body)
        return await self.app(scope, receive, send)


def _counted(receive, max_body: int):
    """`receive` that raises a 413 APIError (answered by the route's `handle`) once the body passes max_body."""
    seen = 0

    async def counted_receive():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_body:
                raise APIError(413, f"request body is over {max_body} bytes", "body", code="request_too_large")
        return message
    return counted_receive


def create_app(model, tok, name: str = "lmforge", limits: Limits | None = None) -> FastAPI:
    limits = limits or Limits()
    srv = Server(model, tok, name, limits)
    app = FastAPI(title="lmforge", docs_url=None, redoc_url=None)
    app.state.server = srv

    app.add_middleware(_Guard, srv=srv, limits=limits)

    async def read_json(request: Request) -> dict:
        raw = await request.body()  # at most limits.max_body bytes: _Guard refuses anything longer
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise APIError(400, f"We could not parse the JSON body of your request ({e}).", "body") from None
        if not isinstance(body, dict):
            raise APIError(400, "the JSON body must be an object", "body")
        return body

    def handle(fn):
        async def wrapper(request: Request):
            try:
                return await fn(request)
            except APIError as e:
                return e.response()
        return wrapper

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": name}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "lmforge"}]}

    @app.get("/api/stats")
    async def stats():
        return {**srv.worker.stats, "active": len(srv.worker.engine.rows), "max_len": srv.max_len,
                "vocab_size": model.config.vocab_size}

    async def collect(gen, n: int, entry=None):
        """Drain `srv.run` for a non-streaming answer: per choice its text, finish reason and [entry(step)];
        and the number of tokens generated."""
        texts, reasons, entries, n_tokens = [""] * n, ["length"] * n, [[] for _ in range(n)], 0
        async for c, st, piece, reason in gen:
            texts[c] += piece
            reasons[c] = reason or reasons[c]
            n_tokens += 1
            if entry is not None:
                entries[c].append(entry(st))
        return texts, reasons, entries, n_tokens

    def usage(prompt_tokens: int, completion_tokens: int) -> dict:
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}

    def logprob_entry(st, k: int):
        t = srv.tok.decode([st.token])
        top = [(srv.tok.decode([a.token]), _log(a.raw_prob)) for a in st.alternatives[:k]]
        return t, st.raw_logprob, top

    @app.post("/v1/completions")
    @handle
    async def completions(request: Request):
        body = await read_json(request)
        srv.check_model(body)
        params, opts = srv.params(body)
        k = body.get("logprobs")
        if k is not None:
            k = _num(body, "logprobs", 0, 0, 20, integer=True)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            ids = srv.check_ids(prompt, "prompt")
        else:
            ids = srv.encode(prompt)
        rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        gen = srv.run(ids, params, opts)

        def choice_obj(c, text, reason, lp):
            return {"text": text, "index": c, "logprobs": lp, "finish_reason": reason}

        def lp_obj(entries, offset):
            if k is None:
                return None
            out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
            for t, lp, top in entries:
                out["tokens"].append(t); out["token_logprobs"].append(lp)
                out["top_logprobs"].append(dict(top)); out["text_offset"].append(offset); offset += len(t)
            return out

        if body.get("stream"):
            async def events():
                offsets = [0] * opts["n"]
                async for c, st, piece, reason in gen:
                    entries = [logprob_entry(st, k or 0)] if k is not None and st is not None else []
                    chunk = {"id": rid, "object": "text_completion", "created": created, "model": name,
                             "choices": [choice_obj(c, piece, reason, lp_obj(entries, offsets[c]))]}
                    offsets[c] += len(piece)
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")

        texts, reasons, entries, n_tokens = await collect(
            gen, opts["n"], None if k is None else (lambda st: logprob_entry(st, k)))
        return {"id": rid, "object": "text_completion", "created": created, "model": name,
                "choices": [choice_obj(c, texts[c], reasons[c], lp_obj(entries[c], 0)) for c in range(opts["n"])],
                "usage": usage(len(ids), n_tokens)}

    @app.post("/v1/chat/completions")
    @handle
    async def chat_completions(request: Request):
        body = await read_json(request)
        srv.check_model(body)
        params, opts = srv.params(body)
        want_lp = bool(body.get("logprobs"))
        k = _num(body, "top_logprobs", 0, 0, 20, integer=True) if want_lp else 0
        messages = body.get("messages")
        try:
            prompt = build_prompt(srv.tok, messages, srv.max_len - min(opts["max_tokens"], srv.max_len // 2))
        except ValueError as e:
            raise APIError(400, str(e), "messages") from None
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        gen = srv.run(prompt.ids, params, opts, stop_ids=prompt.stop_ids, stop_text=prompt.stop_text)

        def lp_content(st):
            t, lp, top = logprob_entry(st, k)
            return {"token": t, "logprob": lp, "bytes": list(t.encode()),
                    "top_logprobs": [{"token": a, "logprob": b, "bytes": list(a.encode())} for a, b in top]}

        if body.get("stream"):
            async def events():
                base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": name}
                for c in range(opts["n"]):
                    first = {"index": c, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                    yield f"data: {json.dumps({**base, 'choices': [first]})}\n\n"
                async for c, st, piece, reason in gen:
                    ch = {"index": c, "delta": {"content": piece} if piece else {}, "finish_reason": reason}
                    if want_lp:
                        ch["logprobs"] = {"content": [lp_content(st)]}
                    yield f"data: {json.dumps({**base, 'choices': [ch]})}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")

        texts, reasons, lps, n_tokens = await collect(gen, opts["n"], lp_content if want_lp else None)
        choices = [{"index": c, "message": {"role": "assistant", "content": texts[c]},
                    "logprobs": {"content": lps[c]} if want_lp else None, "finish_reason": reasons[c]}
                   for c in range(opts["n"])]
        return {"id": rid, "object": "chat.completion", "created": created, "model": name, "choices": choices,
                "usage": usage(len(prompt.ids), n_tokens)}

    # -- the explorer's endpoints -------------------------------------------------------------------
    def step_json(st):
        return {"index": st.index, "token": st.token, "text": tok.decode([st.token]), "prob": st.prob,
                "raw_prob": st.raw_prob, "rank": st.rank, "entropy": st.entropy, "removed": st.removed,
                "alternatives": [{"token": a.token, "text": tok.decode([a.token]), "raw_prob": a.raw_prob,
                                  "prob": a.prob, "removed_by": a.removed_by} for a in st.alternatives[:10]]}

    @app.post("/api/generate")
    @handle
    async def api_generate(request: Request):
        body = await read_json(request)
        params, opts = srv.params(body)
        opts["n"] = 1
        ids = srv.encode(body.get("prompt"))

        async def events():
            yield f"data: {json.dumps({'type': 'prompt', 'ids': ids, 'tokens': [tok.decode([i]) for i in ids]})}\n\n"
            async for _, st, piece, reason in srv.run(ids, params, opts):
                yield f"data: {json.dumps({'type': 'token', 'piece': piece, **step_json(st)})}\n\n"
                if reason:
                    yield f"data: {json.dumps({'type': 'done', 'finish_reason': reason})}\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/api/distribution")
    @handle
    async def api_distribution(request: Request):
        """The next-token distribution after `ids`, under the given settings: top `n` raw vs processed."""
        body = await read_json(request)
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(t, int) for t in ids):
            raise APIError(400, "ids must be a non-empty list of token ids", "ids")
        srv.check_ids(ids, "ids")
        n = _num(body, "n", 10, 1, 50, integer=True)  # bars to return (not OpenAI's n)
        params, _ = srv.params({k: v for k, v in body.items() if k != "n"})

        def compute():
            with torch.inference_mode():
                logits = model(torch.tensor([ids]), keep_logits=1).logits[:, -1].float()
                z, _ = params.process(logits)
                raw = logits.softmax(-1)[0]
                final = (z.softmax(-1) if not params.greedy else
                         torch.nn.functional.one_hot(z.argmax(-1), z.size(-1)).float())[0]
                top = raw.topk(min(n, raw.numel()))
                return [{"token": int(t), "text": tok.decode([int(t)]), "raw_prob": float(raw[t]),
                         "prob": float(final[t])} for t in top.indices]
        return {"alternatives": await asyncio.to_thread(compute)}

    @app.get("/")
    async def index():
        return FileResponse(resources.files("lmforge.serve") / "static" / "index.html")

    @app.get("/static/{name}")
    async def static(name: str):
        path = resources.files("lmforge.serve") / "static" / name
        if "/" in name or not path.is_file():
            return APIError(404, f"no static file {name!r}", "path").response()
        media = {"js": "text/javascript", "css": "text/css", "html": "text/html"}.get(name.rsplit(".", 1)[-1])
        return Response(path.read_bytes(), media_type=media)

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):
        return APIError(400, str(exc), None).response()

    return app


def _log(p: float) -> float:
    """log p for JSON (which has no -Infinity): a removed token gets -9999.0, as OpenAI clients expect a number."""
    import math
    return math.log(p) if p > 0 else -9999.0
