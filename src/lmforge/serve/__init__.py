"""Serving: an OpenAI-compatible HTTP server with continuous batching and the web explorer (static/).

`lmforge.serve.app.create_app` wires the parts (worker, params, openai, explorer: see app.py); they
need the [serve] extra (FastAPI, uvicorn).
"""
