"""Generation benchmarks, ratios measured in one run (these machines are noisy: contenders interleaved).

    python bench/generate.py                 # all five; --only decode|server|ttft|linear|hugepages; --repeats N
    python bench/generate.py --only linear --threads 1   # the chosen kernels, one thread

1. Decode tokens/s, batch 1, GPT-2-124M shape (random weights), 32-token prompt, 256 new tokens, greedy,
   fp32: lmforge.generate (full Step records; the CPU fast paths of lmforge.kernels and, as `lmforge
   generate` and the server ask for them, huge-page weights) vs Hugging Face `generate` with its KV cache,
   same process; and lmforge again with lmforge.kernels.decode's layer step off (`lmforge_modules`: every
   layer through its modules), which says what the step gains.
   Also the fraction of the memory-bandwidth bound: a decode step must read every parameter once, so
   tokens/s <= read bandwidth / parameter bytes (bandwidth measured here by summing a 1 GiB tensor): best
   tokens/s against the best bandwidth of 15 sums after the rounds, and per round against the bandwidth read
   right after that round's decode (the median of those).
   bf16 too where the CPU has native bf16 (avx512_bf16 / amx).
2. Server: aggregate streamed tokens/s with 8 concurrent clients vs 1 (continuous batching), and where the
   server's threads spent the time (on a CPU, waiting for one, blocked); next to it the same 8 rows vs 1
   stepped by an Engine in this process, the ceiling of the server's ratio. `--against SRC` serves another
   checkout's src directory too, timed in the same rounds.
3. Time to first token for a 512-token prompt (124M shape), vs HF generate(max_new_tokens=1).
4. The products: per path (few rows: 1, 2, 8 rows; large: 256 rows) and GPT-2 matrix, the kernel
   lmforge.kernels.tune chooses on this machine and its speed relative to F.linear (interleaved, weights
   streamed from memory), one and all threads (`--threads N`: N only).
5. The same one-row products over all of GPT-2 small's weights, from torch's allocations vs from huge
   pages (lmforge.kernels.huge_page_weights, which the decoding CLI and the server apply), interleaved.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import (  # bench/common.py (also keeps bench/ off the path)
    cpu_has_native_bf16, interleaved, machine, machine_line, ratio, read_bandwidth, set_threads)

import torch  # noqa: E402


def models(dtype):
    import transformers

    from lmforge.convert.hf import save_hf
    from lmforge.models import build_model
    torch.manual_seed(0)
    ours = build_model("gpt", "gpt2").eval()
    with tempfile.TemporaryDirectory() as d:
        save_hf(ours, d)
        hf = transformers.GPT2LMHeadModel.from_pretrained(d, attn_implementation="sdpa").eval()
    return ours.to(dtype), hf.to(dtype)


def bench_decode(repeats: int, dtype=torch.float32, new: int = 256) -> dict:
    from lmforge.generate import generate
    from lmforge.kernels import decode
    ours, hf = models(dtype)
    prompt = torch.randint(0, 50257, (1, 32))
    n_params = sum(p.numel() for p in ours.parameters())
    # lmforge_modules: the same decode with kernels.decode's layer step off (every layer through its modules)
    times = {"lmforge": [], "lmforge_modules": [], "hf": []}
    toks = {}
    weight_bytes = n_params * torch.finfo(dtype).bits / 8
    per_round = []  # lmforge's fraction of the bound measured right after it, in the same round
    for r in range(repeats + 1):  # first round warms up, not counted
        for name in times:  # interleaved
            t = time.perf_counter()
            if name.startswith("lmforge"):
                decode.set_decode_step(name == "lmforge")
                try:
                    out = [s.token for s in generate(ours, prompt[0], max_new_tokens=new, temperature=0,
                                                     huge_pages=True)]
                finally:
                    decode.set_decode_step(True)
            else:
                with torch.inference_mode():
                    out = hf.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                      pad_token_id=0)[0, 32:].tolist()
            if r:
                times[name].append(new / (time.perf_counter() - t))
                if name == "lmforge":
                    per_round.append(times[name][-1] * weight_bytes / read_bandwidth(tensors=1))
            toks[name] = out
    bw = read_bandwidth()
    bound = bw / weight_bytes
    best = {k: max(v) for k, v in times.items()}
    return {"dtype": str(dtype).split(".")[-1], "lmforge_tok_s": best["lmforge"], "hf_tok_s": best["hf"],
            "ratio": best["lmforge"] / best["hf"],
            "ratio_per_round_median": ratio(times["hf"], times["lmforge"])["median"],  # rates: arguments swapped
            "spread_lmforge": [round(x, 2) for x in times["lmforge"]], "spread_hf": [round(x, 2) for x in times["hf"]],
            "same_tokens": toks["lmforge"] == toks["hf"] if dtype == torch.float32 else None,
            "lmforge_modules_tok_s": best["lmforge_modules"],
            "layer_step_gain": best["lmforge"] / best["lmforge_modules"],
            "layer_step_gain_per_round_median": ratio(times["lmforge_modules"], times["lmforge"])["median"],
            "layer_step_same_tokens": toks["lmforge"] == toks["lmforge_modules"],
            "read_GBps": bw / 1e9, "bound_tok_s": bound, "fraction_of_bound": best["lmforge"] / bound,
            # the machine's speed moves ~10-15% within minutes, the decode's and the bandwidth's alike: the same
            # fraction with the bandwidth read right after each round's decode, the median over the rounds
            "fraction_of_bound_per_round": [round(f, 3) for f in per_round],
            "fraction_of_bound_per_round_median": statistics.median(per_round)}


def bench_ttft(repeats: int) -> dict:
    from lmforge.generate import generate
    ours, hf = models(torch.float32)
    prompt = torch.randint(0, 50257, (1, 512))
    t_ours, t_hf = [], []
    for r in range(repeats + 1):
        t = time.perf_counter()
        next(iter(generate(ours, prompt[0], max_new_tokens=1, temperature=0, huge_pages=True)))
        a = time.perf_counter() - t
        with torch.inference_mode():
            t = time.perf_counter()
            hf.generate(prompt, max_new_tokens=1, do_sample=False, pad_token_id=0)
            b = time.perf_counter() - t
        if r:
            t_ours.append(a); t_hf.append(b)
    return {"lmforge_ttft_s": min(t_ours), "hf_ttft_s": min(t_hf), "ratio_hf_over_lmforge": min(t_hf) / min(t_ours)}


def _thread_times(pid: int) -> dict[int, tuple[float, float]]:
    """Per thread of process `pid`: (seconds run on a CPU, seconds waited for one while runnable), from Linux's
    /proc/<pid>/task/<tid>/schedstat (sched-stats.rst: "time spent on the cpu", "time spent waiting on a
    runqueue", in ns). {} where there is no /proc."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run, wait, _ = f.read().split()
        except (OSError, ValueError):
            continue  # the thread ended
        out[int(tid)] = (int(run) / 1e9, int(wait) / 1e9)
    return out


def _cpu_use(before: dict, after: dict, loop: int, engine: int | None, wall: float, idle: float = 0.0) -> dict:
    """Where the server's threads spent the `wall` seconds the clients streamed, as fractions of it: on a
    CPU (cores kept busy) for the event loop (uvicorn runs it on the main thread), the engine thread and
    torch's worker threads; for the engine thread also the time it was runnable but waited for a CPU
    (the machine's other work), the time it waited with no rows to step (`idle`: before the first
    request arrives and after the last ends), and the rest, when it had rows to step but was blocked:
    on the interpreter lock (or on torch's worker threads, with more than one)."""
    used = {tid: (after[tid][0] - before.get(tid, (0, 0))[0], after[tid][1] - before.get(tid, (0, 0))[1])
            for tid in after}
    loop_s, total = used.get(loop, (0.0, 0.0))[0], sum(u[0] for u in used.values())
    if engine is None:  # a server that does not say which thread is its engine's (nor its idle time): take the
        # busiest other thread, which it is with one torch thread (`--server-threads 1`)
        engine = max((tid for tid in used if tid != loop), key=lambda tid: used[tid][0], default=None)
    run, wait = used.get(engine, (0.0, 0.0))
    return {"event_loop": round(loop_s / wall, 3), "engine": round(run / wall, 3),
            "torch_threads": round((total - loop_s - run) / wall, 3),
            "engine_waiting_for_a_cpu": round(wait / wall, 3), "engine_idle": round(idle / wall, 3),
            "engine_blocked": round(max(0.0, wall - run - wait - idle) / wall, 3)}


def _engine_alone(run: Path, rows: int, tokens: int, threads: int | None, rounds: int) -> dict:
    """The ceiling of the server's ratio: `rows` sequences stepped together vs one, by an Engine in this process
    (no HTTP, no event loop, no clients), the same prompts and settings as the clients, interleaved rounds."""
    import lmforge
    from lmforge.generate import Engine, SamplingParams
    from lmforge.tokenizers import load_tokenizer
    tok, model, before = load_tokenizer(run), lmforge.load(run).eval(), torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    engine = Engine(model, alternatives=20)  # as the server's: Limits' max_logprobs / max_bars

    def tok_s(k):
        for i in range(k):
            engine.add(tok.encode(f"Client {i} says"), SamplingParams(temperature=1.0), max_new_tokens=tokens, seed=i)
        n, t = 0, time.perf_counter()
        while engine.active:
            n += len(engine.step())
        return n / (time.perf_counter() - t)
    try:
        with torch.inference_mode():
            tok_s(1), tok_s(rows)  # warm up
            one, many = zip(*[(tok_s(1), tok_s(rows)) for _ in range(rounds)])
    finally:
        torch.set_num_threads(before)
    ratios = sorted(b / a for a, b in zip(one, many))
    return {"one_row_tok_s": max(one), f"{rows}_rows_tok_s": max(many), "ratio": max(many) / max(one),
            "ratio_per_round_median": statistics.median(ratios)}


def bench_server(clients: int = 8, tokens: int = 128, threads: int | None = None, rounds: int = 3,
                 against: str | None = None) -> dict:
    """Aggregate streamed tokens/s of `clients` concurrent streams vs one, over `rounds` interleaved rounds, and
    the server's CPU use per thread while they stream. against: another checkout's src directory, served by a
    second server timed in the same rounds (before/after a change to the server, on the same machine load)."""
    import httpx

    from lmforge.models import build_model, save_model
    from lmforge.tokenizers import CharTokenizer, save_tokenizer
    d = Path(tempfile.mkdtemp())
    tok = CharTokenizer.train("".join(chr(c) for c in range(32, 127)) + "\n")
    torch.manual_seed(0)
    save_model(build_model("gpt", dict(vocab_size=tok.vocab_size, max_len=256, d_model=384, n_heads=6, n_layers=6)), d)
    save_tokenizer(tok, d)
    extra = [] if threads is None else ["--threads", str(threads)]
    trees = {"this tree": None} if against is None else {"this tree": None, "against": str(Path(against).resolve())}
    servers, procs = {}, []
    try:
        for i, (name, src) in enumerate(trees.items()):
            port = 8000 + (os.getpid() + 7 * i) % 1000
            env = dict(os.environ) if src is None else {**os.environ, "PYTHONPATH": src}
            procs.append(subprocess.Popen([sys.executable, "-m", "lmforge", "serve", str(d), "--port", str(port),
                                           "--name", "m", *extra], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            servers[name] = (f"http://127.0.0.1:{port}", procs[-1].pid)
        for url, _ in servers.values():
            for _ in range(300):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)

        def one(client, url, i, out):
            n = 0
            with client.stream("POST", url + "/v1/completions", timeout=300,
                               json={"model": "m", "prompt": f"Client {i} says", "max_tokens": tokens,
                                     "temperature": 1.0, "seed": i, "stream": True}) as r:
                for line in r.iter_lines():
                    if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["text"] is not None:
                        n += 1
            out[i] = n

        def run(url, pid, k):
            """(tokens/s the k clients received, the server's CPU use meanwhile)."""
            out = [0] * k
            # each client made before the clock starts: an httpx.Client builds an SSL context (tens of ms of
            # this process's interpreter lock), which would leave the engine idle and count against the server
            clients = [httpx.Client() for _ in range(k)]
            stats = httpx.get(url + "/api/stats").json()
            engine = stats.get("engine_thread")  # None from a server before it said
            ts = [threading.Thread(target=one, args=(clients[i], url, i, out)) for i in range(k)]
            cpu0, t = _thread_times(pid), time.perf_counter()
            for th in ts:
                th.start()
            for th in ts:
                th.join()
            wall = time.perf_counter() - t
            times = _thread_times(pid)
            after = httpx.get(url + "/api/stats").json()
            for c in clients:
                c.close()
            cpu = _cpu_use(cpu0, times, pid, engine, wall, after.get("idle_s", 0.0) - stats.get("idle_s", 0.0))
            cpu["mean_batch"] = round((after["tokens"] - stats["tokens"]) / max(1, after["steps"] - stats["steps"]), 2)
            return sum(out) / wall, cpu

        per = {name: {"one": [], "many": [], "cpu_one": [], "cpu_many": []} for name in servers}
        for url, pid in servers.values():  # warm up: each server times its kernels for 1 and for 8 rows once
            run(url, pid, 1)
            run(url, pid, clients)
        for r in range(rounds):
            for name, (url, pid) in servers.items():
                (a, ca), (b, cb) = run(url, pid, 1), run(url, pid, clients)
                for key, v in (("one", a), ("many", b), ("cpu_one", ca), ("cpu_many", cb)):
                    per[name][key].append(v)
                print(f"round {r + 1}/{rounds} {name}: 1 client {a:.0f} tok/s, {clients} clients {b:.0f} tok/s "
                      f"({b / a:.2f}x)\n  with 1: {ca}\n  with {clients}: {cb}", flush=True)
        result = {"clients": clients, "tokens_each": tokens, "server_threads": threads or "default", "rounds": rounds,
                  "engine_alone": _engine_alone(d, clients, tokens, threads, rounds)}
        for name, p in per.items():
            ratios = sorted(b / a for a, b in zip(p["one"], p["many"]))
            result[name] = {
                "one_client_tok_s": max(p["one"]), f"{clients}_clients_tok_s": max(p["many"]),
                "ratio": max(p["many"]) / max(p["one"]),  # best vs best, as this bench reported before
                "ratio_per_round": {"median": statistics.median(ratios), "min": ratios[0], "max": ratios[-1]},
                f"cores_busy_{clients}_clients_median": {
                    k: statistics.median(c[k] for c in p["cpu_many"]) for k in p["cpu_many"][0]},
                "cores_busy_1_client_median": {
                    k: statistics.median(c[k] for c in p["cpu_one"]) for k in p["cpu_one"][0]},
            }
        return result
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def bench_linear(repeats: int, thread_counts: list[int]) -> dict:
    """Per path and GPT-2 matrix shape: the product lmforge.kernels.tune chooses on this machine and its speed
    relative to F.linear. A fresh Tuner (memory only: the user's cache is neither read nor written) times the
    candidates as in real use; then the chosen product (through lmforge.kernels.linear, inside a PackedWeights
    table as in the decoding Engine) and F.linear are timed again, interleaved, over enough copies of the
    matrix to exceed 256 MB, so the few-row products stream their weights from memory as in decoding: the
    median time per product (as the tuner times, each call on the next copy; stable on a loaded machine) and
    the best of whole rounds over all copies (as this bench timed before).
    Rows: 1, 2 and 8 (few rows: decoding) and 256 (the large path: a prefill, a training batch; one copy, as
    its weights are read once for many rows). A ratio under 1 beyond noise would break the promise that a
    fast path is never slower than torch's default."""
    import torch.nn.functional as F

    from lmforge.kernels import PackedWeights, linear
    from lmforge.kernels.packed import _PACK_AFTER
    from lmforge.kernels.tune import Tuner, measure, using
    tuner, table = Tuner(), PackedWeights()

    def ours(x, weights):
        with using(tuner), table:
            return [linear(x, w) for w in weights]

    def per_product(x, weights):
        """Median seconds per product, lmforge's and F.linear's, each call on the next of `weights`."""
        ws = {name: itertools.cycle(weights) for name in ("lmforge", "F.linear")}
        calls = {"lmforge": lambda: linear(x, next(ws["lmforge"])),
                 "F.linear": lambda: F.linear(x, next(ws["F.linear"]))}
        with using(tuner), table:  # entered once, as the Engine enters its table once a step
            return measure(calls, rounds=max(repeats, -(-20 // len(weights))), calls=len(weights))

    out = {}
    print(f"{'path':<9} {'matrix':<11} {'rows':>4} {'threads':>7}  {'chosen':<9} "
          f"{'vs F.linear: per product; best round':<37} tuner's timing: each candidate vs F.linear", flush=True)
    for shape in [(2304, 768), (768, 768), (3072, 768), (768, 3072), (50257, 768)]:
        copies = max(2, (256 << 20) // (shape[0] * shape[1] * 4))
        weights = [torch.randn(shape) for _ in range(copies)]
        for threads in thread_counts:
            set_threads(threads)
            for rows in (1, 2, 8, 256):
                x, ws = torch.randn(rows, shape[1]), (weights if rows <= 32 else weights[:1])
                before = set(tuner.records)
                with torch.no_grad():
                    for _ in range(_PACK_AFTER):  # timed by the tuner at the first call; every copy packed by the 4th
                        ours(x, ws)
                    median = per_product(x, ws)
                    steps = {"lmforge": lambda: ours(x, ws), "F.linear": lambda: [F.linear(x, w) for w in ws]}
                    times = interleaved(steps, rounds=repeats, iters=1, warmup=1, log=None)
                key, = set(tuner.records) - before
                record = tuner.records[key]
                r = ratio(times["lmforge"], times["F.linear"])
                row = {"path": key.split()[0], "chosen": record["order"][0],
                       "ratio_per_product": round(median["F.linear"] / median["lmforge"], 2),
                       "ratio_best_round": round(r["best"], 2),
                       "tuner": {n: round(record["ms"]["F.linear"] / ms, 2) for n, ms in record["ms"].items()}}
                out[f"{shape[0]}x{shape[1]} rows={rows} threads={threads}"] = row
                cands = " ".join(f"{n} {v:.2f}" for n, v in row["tuner"].items() if n != "F.linear")
                print(f"{row['path']:<9} {shape[0]}x{shape[1]:<6} {rows:>4} {threads:>7}  {row['chosen']:<9} "
                      f"{row['ratio_per_product']:.2f}x; {row['ratio_best_round']:.2f}x{'':<25} {cands}", flush=True)
        table.clear()  # this shape's packed copies
    return out


def bench_hugepages(repeats: int) -> dict:
    """GB/s of one decoding step's products (one row through lmforge.kernels.linear, every GPT-2-small matrix and
    the head) from weights in torch's own allocations vs the same weights after lmforge.kernels.huge_page_weights,
    interleaved in one process. Two models: 1 GB, so neither stays in cache."""
    from lmforge.kernels import huge_page_weights, linear
    from lmforge.kernels.hugepages import available
    from lmforge.models import build_model
    if not available():
        return {"skipped": "no transparent huge pages on this machine"}

    def matrices(m):
        ws = [(lin.weight, lin.bias) for b in m.blocks for lin in (b.attn.qkv, b.attn.out, b.ffn.fc1, b.ffn.fc2)]
        return ws + [(m.tok_emb.weight, None)]

    torch.manual_seed(0)
    normal, huge = build_model("gpt", "gpt2").eval(), build_model("gpt", "gpt2").eval()
    huge_page_weights(huge)
    sets = {"torch_alloc": matrices(normal), "huge_pages": matrices(huge)}
    gb = sum(w.numel() * 4 for w, _ in sets["torch_alloc"]) / 1e9
    x = {n: torch.randn(1, n) for n in (768, 3072)}
    steps = {k: (lambda ws=ws: [linear(x[w.size(1)], w, b) for w, b in ws]) for k, ws in sets.items()}
    out, all_threads = {}, torch.get_num_threads()
    for threads in sorted({1, all_threads}):
        set_threads(threads)
        with torch.inference_mode():
            times = interleaved(steps, rounds=max(10, repeats), iters=5, warmup=1, log=None)
        row = {f"{k}_GBps_best": round(gb / min(t), 1) for k, t in times.items()}
        row.update({f"{k}_GBps_median": round(gb / statistics.median(t), 1) for k, t in times.items()})
        r = ratio(times["huge_pages"], times["torch_alloc"])
        out[f"threads={threads}"] = dict(row, ratio_best=round(r["best"], 2), ratio_per_round_median=round(r["median"], 2))
    set_threads(all_threads)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["decode", "server", "ttft", "linear", "hugepages"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--server-threads", type=int, default=None, help="`lmforge serve --threads N` for --only server")
    p.add_argument("--against", default=None,
                   help="--only server: also serve another checkout's src directory and time both in the same rounds")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for --only linear (default: one thread, then all of them)")
    args = p.parse_args()
    print("machine:", machine_line(machine()), flush=True)
    results = {}
    if args.only in (None, "decode"):
        results["decode_fp32"] = bench_decode(args.repeats)
        print(json.dumps(results["decode_fp32"], indent=1), flush=True)
        if cpu_has_native_bf16():
            results["decode_bf16"] = bench_decode(args.repeats, torch.bfloat16)
            print(json.dumps(results["decode_bf16"], indent=1), flush=True)
    if args.only in (None, "ttft"):
        results["ttft_512"] = bench_ttft(args.repeats)
        print(json.dumps(results["ttft_512"], indent=1), flush=True)
    if args.only in (None, "server"):
        results["server"] = bench_server(threads=args.server_threads, rounds=args.repeats, against=args.against)
        print(json.dumps(results["server"], indent=1), flush=True)
    if args.only in (None, "linear"):
        all_threads = torch.get_num_threads()
        results["linear"] = bench_linear(args.repeats, [args.threads] if args.threads else sorted({1, all_threads}))
        set_threads(all_threads)
    if args.only in (None, "hugepages"):
        results["hugepages"] = bench_hugepages(args.repeats)
        print(json.dumps(results["hugepages"], indent=1), flush=True)


if __name__ == "__main__":
    main()
