"""An OpenAI-compatible HTTP server with continuous batching, plus the web explorer.

    lmforge serve runs/kjv-char            # http://127.0.0.1:8000  (the explorer is at /)

The parts:
    worker.py    the one thread that runs the model (an Engine, continuous batching) and `Server`,
                 the state the routes share
    params.py    request validation: every limit, every 400, SamplingParams from a request body
    openai.py    /v1/completions, /v1/chat/completions, /v1/models, /health
    explorer.py  the page at / and /api/generate, /api/distribution, /api/stats
    app.py       this file: wires them, and the guard that answers 413 and 429 before a body is read

Errors use OpenAI's shape: {"error": {"message", "type", "param", "code"}} with HTTP 400/404/413/429/500.
"""
from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from lmforge.serve import explorer, openai
from lmforge.serve.params import APIError, Limits, body_too_large, too_many_requests
from lmforge.serve.worker import Server

__all__ = ["create_app", "Limits", "APIError"]


class _Guard:
    """Counts the POST requests in flight and answers two checks before a body is read: body size
    (413) and requests in flight (429). Every POST counts, generation and /api/distribution alike,
    from its headers until its response ends (a stream: until its last event or the client leaving).

    Plain ASGI rather than @app.middleware("http"), which relays every streamed chunk through an extra
    task and queue. A body sent without Content-Length (chunked) is counted as it arrives and refused
    once it passes the limit, so it is never held whole in memory."""

    def __init__(self, app, srv: Server, limits: Limits):
        self.app, self.srv, self.limits = app, srv, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        size = dict(scope["headers"]).get(b"content-length", b"")
        if size.isdigit() and int(size) > self.limits.max_body:
            return await body_too_large(self.limits, int(size)).response()(scope, receive, send)
        if self.srv.in_flight >= self.limits.max_concurrent:
            return await too_many_requests(self.limits).response()(scope, receive, send)
        self.srv.in_flight += 1  # no await since the check: the event loop runs one request at a time here
        try:
            await self.app(scope, _counted(receive, self.limits), send)
        finally:
            self.srv.in_flight -= 1


def _counted(receive, limits: Limits):
    """`receive` that raises a 413 APIError (answered by the app's handler) once the body passes max_body."""
    seen = 0

    async def counted_receive():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limits.max_body:
                raise body_too_large(limits)
        return message
    return counted_receive


def create_app(model, tok, name: str = "lmforge", limits: Limits | None = None, template=None,
               eos: list[int] | None = None) -> FastAPI:
    """The server for one model and its tokenizer; `name` is the model id clients pass as `model`;
    `template` the directory's chat template (lmforge.data.hf_chat.load_chat_template; None: lmforge's);
    `eos` the ids every generation ends at (default: the tokenizer's, lmforge.tokenizers.eos_ids)."""
    limits = limits or Limits()
    app = FastAPI(title="lmforge", docs_url=None, redoc_url=None)
    app.state.server = Server(model, tok, name, limits, template, eos)
    app.include_router(openai.router)
    app.include_router(explorer.router)
    app.add_middleware(_Guard, srv=app.state.server, limits=limits)

    @app.exception_handler(APIError)
    async def api_error(request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):  # FastAPI's own checks (a path parameter): in OpenAI's shape too
        return APIError(400, str(exc)).response()

    return app
