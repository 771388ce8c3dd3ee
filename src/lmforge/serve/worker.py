"""The one thread that runs the model, and the served model the routes share.

`Worker` owns a generation `Engine` and steps it on its own thread: a request adds its sequences,
which join the running batch at the next step and leave it when done (continuous batching, Orca,
Yu et al. 2022); the worker hands each Step to the asyncio queue of the request that owns it. The
model is run by this thread only, so a request never waits on a lock around the model and two
forward passes never compete for the same cores.

`Server` is what the routes see: the tokenizer, the validator, the worker, and `generate`, which
turns a request's Steps into text pieces (stop strings, end-of-text) and cancels its rows when the
client leaves.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import AsyncIterator

from lmforge.generate import Engine, SamplingParams, Step
from lmforge.serve.params import APIError, Limits, Options, Validator
from lmforge.tokenizers import eos_ids
from lmforge.tokenizers.stream import TextStream


class Worker:
    """Runs the Engine on a thread; delivers each Step to the asyncio queue of the request that owns it.

    stats: engine steps, tokens decoded, the largest batch, rows cancelled by a client leaving, requests.
    """

    def __init__(self, model, alternatives: int = 20):
        self.engine = Engine(model, alternatives=alternatives)
        self.cv = threading.Condition()
        self.owners: dict[int, tuple] = {}  # sequence id -> (loop, queue, choice index)
        self.stats = {"steps": 0, "tokens": 0, "max_batch": 0, "cancelled": 0, "requests": 0}
        self._idle, self._idle_since = 0.0, None  # seconds waited with no rows; when the current wait began
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="lmforge-engine", daemon=True)
        self.thread.start()

    def submit(self, prompt: list[int], params: SamplingParams, *, n: int, max_new_tokens: int, eos: list[int],
               seed: int | None) -> Rows:
        """Add n sequences of one prompt (choice c samples with seed + c); they join at the next step."""
        rows = Rows(self, asyncio.get_running_loop())
        with self.cv:
            self.stats["requests"] += 1
            for c in range(n):
                seq = self.engine.add(prompt, params, max_new_tokens=max_new_tokens, eos_token_id=eos,
                                      seed=None if seed is None else seed + c)
                rows.seqs.append(seq)
                self.owners[seq.id] = (rows.loop, rows.queue, c)
            self.cv.notify()
        return rows

    def cancel(self, seq) -> None:
        """Stop decoding a sequence (its request is done with it, or gone); it leaves at the next step."""
        with self.cv:
            if self.owners.pop(seq.id, None) is not None and not seq.done:
                seq.cancel()
                self.stats["cancelled"] += 1

    def _loop(self) -> None:
        while True:
            with self.cv:
                if not self.engine.active and not self.stopping:
                    self._idle_since = time.perf_counter()
                    while not self.engine.active and not self.stopping:
                        self.cv.wait()
                    self._idle += time.perf_counter() - self._idle_since
                    self._idle_since = None
                if self.stopping:
                    return
            try:
                steps, error = self.engine.step(), None
            except Exception as e:  # a failure fails the requests in the batch, not the server
                steps, error = [], e
            wake: dict[object, list] = {}  # event loop -> [(queue, item)]: what this step hands it
            with self.cv:
                self.stats["steps"] += 1
                self.stats["tokens"] += len(steps)
                self.stats["max_batch"] = max(self.stats["max_batch"], len(steps))
                if error is not None:
                    for loop, q, c in self.owners.values():
                        wake.setdefault(loop, []).append((q, (c, error)))
                    self.owners.clear()
                    self.engine = Engine(self.engine.model, alternatives=self.engine.k)
                for st in steps:
                    owner = self.owners.get(st.row)
                    if owner is None:
                        continue  # cancelled: its request is gone
                    loop, q, c = owner
                    wake.setdefault(loop, []).append((q, (c, st)))
                    if st.finish_reason:
                        del self.owners[st.row]
            # One wake-up per event loop per step, not one per token: each call_soon_threadsafe writes to the
            # loop's wake-up socket (a system call, which lets go of the interpreter lock and may hand it to
            # the loop) and has the loop run one more callback; with 8 clients this took the loop's CPU use
            # from 0.072 to 0.062 of a core (BENCHMARKS.md, the server under 8 streaming clients).
            for loop, items in wake.items():
                loop.call_soon_threadsafe(_deliver, items)

    def idle_seconds(self) -> float:
        """Seconds this thread has waited with no rows to step, the wait under way included."""
        with self.cv:
            return self._idle + (0.0 if self._idle_since is None else time.perf_counter() - self._idle_since)

    def close(self) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify()


def _deliver(items: list) -> None:
    """On the event loop: hand each (queue, item) of one engine step to its request."""
    for q, item in items:
        q.put_nowait(item)


class Rows:
    """One request's sequences in the engine: `await get()` gives (choice, Step) as they are made, or
    (choice, exception) when the engine failed; `cancel()` ends them (call it in a `finally`)."""

    def __init__(self, worker: Worker, loop):
        self.worker, self.loop, self.queue, self.seqs = worker, loop, asyncio.Queue(), []

    async def get(self) -> tuple[int, Step | Exception]:
        return await self.queue.get()

    def cancel(self, choice: int | None = None) -> None:
        for seq in self.seqs if choice is None else self.seqs[choice:choice + 1]:
            self.worker.cancel(seq)


class Server:
    """The served model: name, tokenizer, request validation, the worker, and requests in flight."""

    def __init__(self, model, tok, name: str, limits: Limits, template=None, eos: list[int] | None = None):
        self.tok, self.name, self.limits = tok, name, limits
        cfg = model.eval().config
        self.vocab_size, self.max_len = cfg.vocab_size, cfg.max_len
        self.validate = Validator(tok, name=name, vocab_size=cfg.vocab_size, max_len=cfg.max_len, limits=limits,
                                  template=template)
        self.eos = eos_ids(tok) if eos is None else list(eos)
        # each Step carries as many alternatives as any request may ask for (top_logprobs, explorer bars)
        self.worker = Worker(model, alternatives=max(limits.max_logprobs, limits.max_bars))
        self.in_flight = 0  # POST requests being answered; counted by the guard in app.py

    @staticmethod
    def of(request) -> Server:
        """The Server of the app answering `request` (create_app keeps it in app.state)."""
        return request.app.state.server

    async def generate(self, prompt: list[int], params: SamplingParams, opts: Options, *, stop_ids=(),
                       stop_text=()) -> AsyncIterator[tuple[int, Step, str, str | None]]:
        """(choice, Step, text piece, finish_reason or None) for the n choices of one request.

        A choice ends with "stop" at an end-of-text token, a stop token (stop_ids: a chat template's
        end of turn) or a stop string (opts.stop + stop_text), whose text is not given out; and with
        "length" when max_tokens (or the context) runs out."""
        n, ends = opts.n, set(self.eos) | set(stop_ids)
        streams = [TextStream(self.tok.decode, list(opts.stop) + list(stop_text)) for _ in range(n)]
        open_ = set(range(n))
        rows = self.worker.submit(prompt, params, n=n, max_new_tokens=opts.max_tokens, eos=sorted(ends),
                                  seed=opts.seed)
        try:
            while open_:
                c, st = await rows.get()
                if isinstance(st, Exception):
                    raise APIError(500, f"generation failed: {st}", type_="server_error")
                if c not in open_:
                    continue  # a Step of a choice already ended by a stop string
                at_end = st.token in ends
                piece = "" if at_end else streams[c].push(st.token)
                reason = "stop" if at_end or streams[c].stopped else "length" if st.finish_reason else None
                if reason:
                    piece += streams[c].flush()
                    open_.discard(c)
                    rows.cancel(c)  # a stop string ends the choice before the engine would
                yield c, st, piece, reason
        finally:
            rows.cancel()  # done, or the client left: stop computing for it

    async def distribution(self, ids: list[int], params: SamplingParams) -> Step:
        """The next-token distribution after `ids` under `params`: one row through the engine, one step.

        The row joins the running batch like any request, so the model is still run by the worker
        thread only and the numbers are those generation itself computes (same padding, positions,
        penalty counts). The token it draws is ignored; seed 0 keeps the draw off the global RNG."""
        rows = self.worker.submit(ids, params, n=1, max_new_tokens=1, eos=[], seed=0)
        try:
            _, st = await rows.get()
        finally:
            rows.cancel()  # the client left while the row waited for its step
        if isinstance(st, Exception):
            raise APIError(500, f"the model failed: {st}", type_="server_error")
        return st
