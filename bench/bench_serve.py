"""Throughput and latency of `agentlab serve` on this machine.

Starts the OpenAI-compatible server on 127.0.0.1 with a rule model (`echo`: measures the HTTP + validation + worker
overhead alone) and a tiny random-weight Hugging Face model (`llama-tiny` through `HFChat`: adds tokenisation, the
chat template and `generate`), then drives each at concurrency 1, 4 and 16 for a fixed time with real HTTP requests
(greedy, `max_tokens` 16) and prints requests/second and p50/p95 latency. A last row repeats the tiny model at the
highest concurrency with request batching off, to show what batching buys. Bounded: 7 x `--seconds` plus start-up
(~25 s by default). The load generator runs in the same process as the server, so on a small machine the client's
own CPU use caps the rule model's numbers.

    python bench/bench_serve.py                 # default: 2.5 s per cell
    python bench/bench_serve.py --seconds 1     # quicker
"""
import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx

from agentlab.llm.base import get_rule
from agentlab.serve.server import start_server


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


async def drive(base_url: str, model: str, concurrency: int, seconds: float, max_tokens: int) -> dict:
    "Keep `concurrency` requests in flight for `seconds`; return counts and latencies."
    latencies, tokens, errors = [], [], 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        deadline = time.perf_counter() + seconds

        async def user(u: int):
            nonlocal errors
            i = 0
            while time.perf_counter() < deadline:
                body = {"model": model, "max_tokens": max_tokens, "temperature": 0,
                        "messages": [{"role": "user", "content": f"user {u} request {i}: what is the weather in Paris?"}]}
                t0 = time.perf_counter()
                r = await client.post("/chat/completions", json=body)
                dt = time.perf_counter() - t0
                if r.status_code == 200:
                    latencies.append(dt)
                    tokens.append(r.json()["usage"]["completion_tokens"])
                else:
                    errors += 1
                i += 1

        t0 = time.perf_counter()
        await asyncio.gather(*[user(u) for u in range(concurrency)])
        elapsed = time.perf_counter() - t0
    return dict(n=len(latencies), errors=errors, rps=len(latencies) / elapsed,
                p50=percentile(latencies, 0.5) * 1000, p95=percentile(latencies, 0.95) * 1000,
                tok_s=sum(tokens) / elapsed, mean_tokens=statistics.mean(tokens) if tokens else 0.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.5, help="seconds of load per (model, concurrency) cell")
    p.add_argument("--concurrency", default="1,4,16", help="comma-separated concurrency levels")
    p.add_argument("--max-tokens", type=int, default=16, help="max_tokens per request for the tiny model")
    p.add_argument("--preset", default="llama-tiny", help="tiny model preset")
    args = p.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]

    models = {"rule:echo": get_rule("echo")}
    note = ""
    try:
        import torch
        from agentlab.llm.hf import HFChat
        from agentlab.models.tiny import tiny_model_path
        cache = os.environ.get("AGENTLAB_CACHE") or tempfile.mkdtemp(prefix="agentlab-bench-")
        path = tiny_model_path(args.preset, seed=0, cache_dir=cache)
        models[f"tiny:{args.preset}"] = HFChat(str(path), max_new_tokens=args.max_tokens, name=f"tiny:{args.preset}")
        threads = torch.get_num_threads()
    except ImportError as e:
        note = f"(tiny model skipped: {e})"
        threads = "n/a"

    print(f"machine: {platform.machine()} {platform.processor() or ''} | cpus {os.cpu_count()} | torch threads {threads}"
          f" | python {platform.python_version()} | {args.seconds:g} s per cell {note}")
    rows = []
    with start_server(models) as server:
        for name in models:  # warm-up: first generate call compiles kernels / allocates caches
            for _ in range(3):
                httpx.post(f"{server.base_url}/chat/completions", timeout=60, json={
                    "model": name, "max_tokens": args.max_tokens, "messages": [{"role": "user", "content": "warm up"}]})
        for name in models:
            for c in levels:
                res = asyncio.run(drive(server.base_url, name, c, args.seconds, args.max_tokens))
                rows.append((name, c, res))
                print(f"  done {name:<16} c={c:<3} {res['n']} requests", file=sys.stderr, flush=True)
    tiny = [name for name in models if name.startswith("tiny:")]
    if tiny:  # the same model at the highest concurrency with request batching switched off, for comparison
        name, c = tiny[0], max(levels)
        with start_server({name: models[name]}, batching=False) as server:
            res = asyncio.run(drive(server.base_url, name, c, args.seconds, args.max_tokens))
        rows.append((f"{name} unbatched", c, res))

    header = f"{'model':<27}{'conc':>5}{'requests':>10}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'tok/s':>9}{'tok/req':>9}"
    print(header)
    print("-" * len(header))
    for name, c, r in rows:
        print(f"{name:<27}{c:>5}{r['n']:>10}{r['errors']:>8}{r['rps']:>9.1f}{r['p50']:>9.1f}{r['p95']:>9.1f}"
              f"{r['tok_s']:>9.1f}{r['mean_tokens']:>9.1f}")
    print("tok/s and tok/req count completion tokens as the model reports them (words for the rule model).")


if __name__ == "__main__":
    main()
