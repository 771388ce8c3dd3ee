"""The web explorer's routes: the page (GET /, /static/...) and the API behind it.

    POST /api/generate      server-sent events: the prompt's tokens, then one full Step record per token
    POST /api/distribution  the next-token distribution after given ids under given settings: the top n
                            tokens by the model's probability, each raw and after the processors
    GET  /api/stats         engine counters (steps, tokens, largest batch, cancelled rows, requests in flight)
                            and the engine thread's OS id and seconds it waited with no rows (idle_s)

Both POST routes go through the worker like every generation request, and count against
--max-concurrent (the guard in app.py).
"""
from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from lmforge.serve.params import APIError, parse_json
from lmforge.serve.worker import Server

router = APIRouter()
STATIC = resources.files("lmforge.serve") / "static"
MEDIA = {"js": "text/javascript", "css": "text/css", "html": "text/html"}


def _alternatives(srv: Server, alternatives) -> list[dict]:
    return [{"token": a.token, "text": srv.tok.decode([a.token]), "raw_prob": a.raw_prob, "prob": a.prob,
             "removed_by": a.removed_by} for a in alternatives]


def _step_json(srv: Server, st) -> dict:
    return {"index": st.index, "token": st.token, "text": srv.tok.decode([st.token]), "prob": st.prob,
            "raw_prob": st.raw_prob, "rank": st.rank, "entropy": st.entropy, "removed": st.removed,
            "alternatives": _alternatives(srv, st.alternatives[:10])}


@router.get("/")
async def index():
    return FileResponse(STATIC / "index.html")


@router.get("/static/{name}")
async def static(name: str):
    path = STATIC / name
    if "/" in name or not path.is_file():
        return APIError(404, f"no static file {name!r}", "path").response()
    return Response(path.read_bytes(), media_type=MEDIA.get(name.rsplit(".", 1)[-1]))


@router.get("/api/stats")
async def stats(request: Request):
    srv = Server.of(request)
    return {**srv.worker.stats, "active": len(srv.worker.engine.rows), "in_flight": srv.in_flight,
            "max_len": srv.max_len, "vocab_size": srv.vocab_size,
            "engine_thread": srv.worker.thread.native_id,  # the OS's id: its CPU use in top -H or /proc
            "idle_s": srv.worker.idle_seconds()}


@router.post("/api/generate")
async def generate(request: Request):
    srv = Server.of(request)
    body = parse_json(await request.body())
    params, opts = srv.validate.sampling(body), replace(srv.validate.options(body), n=1)  # one answer to show
    ids = srv.validate.text(body.get("prompt"), "prompt")
    gen = srv.generate(ids, params, opts)

    async def events():
        yield f"data: {json.dumps({'type': 'prompt', 'ids': ids, 'tokens': [srv.tok.decode([i]) for i in ids]})}\n\n"
        async for _, st, piece, reason in gen:
            yield f"data: {json.dumps({'type': 'token', 'piece': piece, **_step_json(srv, st)})}\n\n"
            if reason:
                yield f"data: {json.dumps({'type': 'done', 'finish_reason': reason})}\n\n"
    return StreamingResponse(events(), media_type="text/event-stream")


@router.post("/api/distribution")
async def distribution(request: Request):
    """{"ids": [...], "n": 12, "temperature": ..., "top_k": ..., "top_p": ...} -> {"alternatives": [{"token",
    "text", "raw_prob" (the model's), "prob" (after the processors), "removed_by" (the processor that
    removed it, or null)}]}, most likely first by raw_prob."""
    srv = Server.of(request)
    body = parse_json(await request.body())
    ids = srv.validate.ids(body.get("ids"), "ids")
    n = srv.validate.bars(body)
    st = await srv.distribution(ids, srv.validate.sampling(body))
    return {"alternatives": _alternatives(srv, st.alternatives[:n])}
