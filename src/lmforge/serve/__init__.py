"""Serving: an OpenAI-compatible HTTP server with continuous batching and the web explorer (static/).

`lmforge.serve.app` needs the [serve] extra (FastAPI, uvicorn).
"""
