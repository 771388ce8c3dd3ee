"""Request validation: every limit the server enforces and every error it answers, in one place.

A request body becomes `SamplingParams` (how to choose each token) and `Options` (how many tokens,
how many choices, seed, stop strings), or an `APIError` in OpenAI's shape naming the offending
parameter. The routes (openai.py, explorer.py) call `Validator` and never check a value themselves.

    v = Validator(tok, name="kjv-char", vocab_size=65, max_len=256, limits=Limits())
    params, opts = v.sampling(body), v.options(body)      # 400 on temperature=-1, n=99, stop=123, ...
    ids = v.prompt(body)                                  # 400 if too long for the context
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi.responses import JSONResponse

from lmforge.data.chat import ChatPrompt, build_prompt
from lmforge.generate import SamplingParams


@dataclass
class Limits:
    max_tokens: int = 1024  # cap on max_tokens per request
    max_body: int = 1 << 20  # bytes
    max_concurrent: int = 32  # POST requests in flight (generating, or waiting for the engine); more get 429
    max_n: int = 8  # choices per request
    max_stop: int = 4  # stop strings per request (OpenAI's limit)
    max_logprobs: int = 20  # top_logprobs / logprobs per token (OpenAI's limit)
    max_bars: int = 20  # the explorer's /api/distribution `n`: at most the worker's alternatives per Step


class APIError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, param: str | None = None, type_: str = "invalid_request_error",
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type_, code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}}, status_code=self.status)


def body_too_large(limits: Limits, size: int | None = None) -> APIError:
    """413: from Content-Length before the body is read (size known), or while a chunked body arrives."""
    got = f"{size} bytes" if size is not None else f"over {limits.max_body} bytes"
    return APIError(413, f"request body is {got}; the limit is {limits.max_body}", "body", code="request_too_large")


def too_many_requests(limits: Limits) -> APIError:
    return APIError(429, f"too many requests in flight (limit {limits.max_concurrent}); retry shortly",
                    type_="rate_limit_error", code="rate_limit_exceeded")


def parse_json(raw: bytes) -> dict:
    """The JSON object of a request body (the guard in app.py has already capped its size)."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"We could not parse the JSON body of your request ({e}).", "body") from None
    if not isinstance(body, dict):
        raise APIError(400, "the JSON body must be an object", "body")
    return body


@dataclass(frozen=True)
class Options:
    """What a generation request asks for besides how to choose each token."""
    max_tokens: int
    n: int  # choices; choice c samples with seed + c
    seed: int | None
    stop: tuple[str, ...]  # stop strings (text); the text ends before the first match


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # JSON true is not a number here


class Validator:
    """Turns request bodies into checked values for one served model."""

    def __init__(self, tok, *, name: str, vocab_size: int, max_len: int, limits: Limits, template=None):
        self.tok, self.name, self.vocab_size, self.max_len, self.limits = tok, name, vocab_size, max_len, limits
        self.template = template  # the model directory's chat template (lmforge.data.hf_chat); None: lmforge's

    def model(self, body: dict) -> None:
        """404 unless `model` is absent or names the served model."""
        m = body.get("model", self.name)
        if m != self.name:
            raise APIError(404, f"The model '{m}' does not exist; this server serves '{self.name}'", "model",
                           code="model_not_found")

    @staticmethod
    def number(body: dict, name: str, default, lo, hi, *, integer: bool = False, lo_open: bool = False):
        """body[name] (default when absent or null), checked to lie in [lo, hi] ((lo, hi] with lo_open)."""
        v = body.get(name)
        v = default if v is None else v
        ok = (_is_int(v) or (not integer and isinstance(v, float))) and (v > lo if lo_open else v >= lo) and v <= hi
        if not ok:
            rng = f"{'(' if lo_open else '['}{lo}, {hi}]"
            raise APIError(400, f"{name} must be {'an integer' if integer else 'a number'} in {rng}, got {v!r}", name)
        return v

    def sampling(self, body: dict) -> SamplingParams:
        """How to choose each token. OpenAI's ranges: temperature [0, 2], top_p (0, 1], penalties [-2, 2];
        top_k (an extension, 0 = off) up to the vocabulary."""
        try:
            return SamplingParams(temperature=self.number(body, "temperature", 1.0, 0, 2),
                                  top_p=self.number(body, "top_p", 1.0, 0, 1, lo_open=True),
                                  top_k=self.number(body, "top_k", 0, 0, self.vocab_size, integer=True),
                                  presence_penalty=self.number(body, "presence_penalty", 0.0, -2, 2),
                                  frequency_penalty=self.number(body, "frequency_penalty", 0.0, -2, 2))
        except ValueError as e:  # SamplingParams' own checks; the ranges above are meant to catch everything first
            raise APIError(400, str(e), str(e).split(" ", 1)[0]) from None

    def options(self, body: dict) -> Options:
        seed = body.get("seed")
        if seed is not None and not _is_int(seed):
            raise APIError(400, f"seed must be an integer, got {seed!r}", "seed")
        return Options(max_tokens=self.number(body, "max_tokens", 16, 1, self.limits.max_tokens, integer=True),
                       n=self.number(body, "n", 1, 1, self.limits.max_n, integer=True),
                       seed=seed, stop=self.stop(body))

    def stop(self, body: dict) -> tuple[str, ...]:
        stop = body.get("stop")
        if stop is None:
            return ()
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or len(stop) > self.limits.max_stop or not all(isinstance(s, str) for s in stop):
            raise APIError(400, f"stop must be a string or a list of at most {self.limits.max_stop} strings", "stop")
        return tuple(stop)

    # -- prompts ----------------------------------------------------------------------------------
    def text(self, text, param: str = "prompt") -> list[int]:
        """Encode a non-empty string; 400 if the tokenizer cannot or the result does not fit the context."""
        if not isinstance(text, str) or not text:
            raise APIError(400, f"{param} must be a non-empty string", param)
        try:
            ids = self.tok.encode(text)
        except ValueError as e:
            raise APIError(400, f"{param}: {e}", param) from None
        return self.fits(ids, param)

    def ids(self, ids, param: str) -> list[int]:
        """Token ids given directly (completions' prompt, the explorer's context): a non-empty list of
        integers in the vocabulary that fits the context."""
        if not isinstance(ids, list) or not ids or not all(_is_int(t) for t in ids):
            raise APIError(400, f"{param} must be a non-empty list of token ids", param)
        if not all(0 <= t < self.vocab_size for t in ids):
            raise APIError(400, f"{param}: token ids must be in [0, {self.vocab_size - 1}]", param)
        return self.fits(ids, param)

    def fits(self, ids: list[int], param: str) -> list[int]:
        """At least one position must be left for a new token (litgpt's wording of the same check)."""
        if len(ids) >= self.max_len:
            raise APIError(400, f"This model's maximum context length is {self.max_len} tokens; your {param} is "
                                f"{len(ids)} tokens. Shorten it to at most {self.max_len - 1} tokens.", param,
                           code="context_length_exceeded")
        return ids

    def prompt(self, body: dict) -> list[int]:
        """/v1/completions' prompt: a string, a list of token ids, or a one-element list of either."""
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]
        return self.ids(prompt, "prompt") if isinstance(prompt, list) else self.text(prompt, "prompt")

    def chat(self, body: dict, opts: Options) -> ChatPrompt:
        """/v1/chat/completions' messages, templated (the directory's chat template when it has one);
        the oldest turns are dropped to leave room for the answer (at most half the context). 400 for
        messages of the wrong shape and for messages the template refuses (its raise_exception)."""
        try:
            return build_prompt(self.tok, body.get("messages"),
                                self.max_len - min(opts.max_tokens, self.max_len // 2), self.template)
        except ValueError as e:
            raise APIError(400, str(e), "messages") from None

    # -- what to report ---------------------------------------------------------------------------
    def completion_logprobs(self, body: dict) -> int | None:
        """/v1/completions' `logprobs`: None (off) or how many alternatives per token."""
        if body.get("logprobs") is None:
            return None
        return self.number(body, "logprobs", 0, 0, self.limits.max_logprobs, integer=True)

    def chat_logprobs(self, body: dict) -> int | None:
        """/v1/chat/completions' `logprobs` (a switch) and `top_logprobs` (how many alternatives)."""
        if not body.get("logprobs"):
            return None
        return self.number(body, "top_logprobs", 0, 0, self.limits.max_logprobs, integer=True)

    def bars(self, body: dict) -> int:
        """The explorer's `n`: how many of the most likely next tokens to return (not OpenAI's n)."""
        return self.number(body, "n", 10, 1, self.limits.max_bars, integer=True)
