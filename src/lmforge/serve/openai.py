"""The OpenAI-compatible routes: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health.

Request and response shapes follow OpenAI's API reference (completions: `text`, `logprobs` with
`tokens`/`token_logprobs`/`top_logprobs`/`text_offset`; chat: `message`/`delta`, `logprobs.content`),
so the official `openai` client works unchanged. Streaming is server-sent events ending in
`data: [DONE]`. Supported: stream, logprobs, n, stop, seed, temperature, top_p, max_tokens,
presence/frequency penalties, and top_k as an extension. Validation: params.py.
"""
from __future__ import annotations

import json
import math
import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from lmforge.serve.params import parse_json
from lmforge.serve.worker import Server

router = APIRouter()


def _log(p: float) -> float:
    """log p for JSON (which has no -Infinity): a removed token gets -9999.0, as OpenAI clients expect a number."""
    return math.log(p) if p > 0 else -9999.0


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _logprob_entry(srv: Server, st, k: int) -> tuple[str, float, list[tuple[str, float]]]:
    """(token text, its log probability under the model, the k most likely alternatives as (text, logprob))."""
    top = [(srv.tok.decode([a.token]), _log(a.raw_prob)) for a in st.alternatives[:k]]
    return srv.tok.decode([st.token]), st.raw_logprob, top


async def _collect(gen, n: int, entry=None):
    """Drain `Server.generate` for a non-streaming answer: per choice its text, finish reason and
    [entry(step)]; and the number of tokens generated."""
    texts, reasons, entries, n_tokens = [""] * n, ["length"] * n, [[] for _ in range(n)], 0
    async for c, st, piece, reason in gen:
        texts[c] += piece
        reasons[c] = reason or reasons[c]
        n_tokens += 1
        if entry is not None:
            entries[c].append(entry(st))
    return texts, reasons, entries, n_tokens


def _sse(obj) -> str:
    return f"data: {json.dumps(obj)}\n\n"


@router.get("/health")
async def health(request: Request):
    return {"status": "ok", "model": Server.of(request).name}


@router.get("/v1/models")
async def models(request: Request):
    return {"object": "list", "data": [{"id": Server.of(request).name, "object": "model", "created": 0,
                                        "owned_by": "lmforge"}]}


async def _read(request: Request):
    """What both generation routes start with: the server, the JSON body, its model name checked, and its
    sampling parameters and options validated (serve.params: every limit and 400 in one place)."""
    srv = Server.of(request)
    body = parse_json(await request.body())
    srv.validate.model(body)
    return srv, body, srv.validate.sampling(body), srv.validate.options(body)


@router.post("/v1/completions")
async def completions(request: Request):
    srv, body, params, opts = await _read(request)
    k = srv.validate.completion_logprobs(body)
    ids = srv.validate.prompt(body)
    rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    gen = srv.generate(ids, params, opts)

    def choice(c, text, reason, lp):
        return {"text": text, "index": c, "logprobs": lp, "finish_reason": reason}

    def logprobs(entries, offset):
        if k is None:
            return None
        out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for t, lp, top in entries:
            out["tokens"].append(t)
            out["token_logprobs"].append(lp)
            out["top_logprobs"].append(dict(top))
            out["text_offset"].append(offset)
            offset += len(t)
        return out

    if body.get("stream"):
        async def events():
            offsets = [0] * opts.n
            async for c, st, piece, reason in gen:
                entries = [_logprob_entry(srv, st, k)] if k is not None else []
                chunk = {"id": rid, "object": "text_completion", "created": created, "model": srv.name,
                         "choices": [choice(c, piece, reason, logprobs(entries, offsets[c]))]}
                offsets[c] += len(piece)
                yield _sse(chunk)
            yield "data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    texts, reasons, entries, n_tokens = await _collect(
        gen, opts.n, None if k is None else (lambda st: _logprob_entry(srv, st, k)))
    return {"id": rid, "object": "text_completion", "created": created, "model": srv.name,
            "choices": [choice(c, texts[c], reasons[c], logprobs(entries[c], 0)) for c in range(opts.n)],
            "usage": _usage(len(ids), n_tokens)}


@router.post("/v1/chat/completions")
async def chat_completions(request: Request):
    srv, body, params, opts = await _read(request)
    k = srv.validate.chat_logprobs(body)
    prompt = srv.validate.chat(body, opts)
    rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    gen = srv.generate(prompt.ids, params, opts, stop_ids=prompt.stop_ids, stop_text=prompt.stop_text)

    def content(st):
        t, lp, top = _logprob_entry(srv, st, k)
        return {"token": t, "logprob": lp, "bytes": list(t.encode()),
                "top_logprobs": [{"token": a, "logprob": b, "bytes": list(a.encode())} for a, b in top]}

    if body.get("stream"):
        async def events():
            base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": srv.name}
            for c in range(opts.n):
                yield _sse({**base, "choices": [{"index": c, "delta": {"role": "assistant", "content": ""},
                                                 "finish_reason": None}]})
            async for c, st, piece, reason in gen:
                ch = {"index": c, "delta": {"content": piece} if piece else {}, "finish_reason": reason}
                if k is not None:
                    ch["logprobs"] = {"content": [content(st)]}
                yield _sse({**base, "choices": [ch]})
            yield "data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    texts, reasons, lps, n_tokens = await _collect(gen, opts.n, None if k is None else content)
    choices = [{"index": c, "message": {"role": "assistant", "content": texts[c]},
                "logprobs": {"content": lps[c]} if k is not None else None, "finish_reason": reasons[c]}
               for c in range(opts.n)]
    return {"id": rid, "object": "chat.completion", "created": created, "model": srv.name, "choices": choices,
            "usage": _usage(len(prompt.ids), n_tokens)}
