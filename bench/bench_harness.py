"""Evaluation-harness throughput against an OpenAI-compatible server with added latency.

Starts `agentlab serve`'s app on 127.0.0.1 with a rule-based model that waits `--latency` seconds per request
(standing in for a remote LLM) and plays FunctionGym through the real HTTP path (`openai:` spec -> OpenAIChat ->
server -> model), then runs the same episodes at concurrency 1, 8 and 32 and prints episodes/s, requests/s and the
speed-up over concurrency 1. With latency L and no server bottleneck, the ideal speed-up is min(concurrency,
episodes in flight); it flattens when the client or the server saturates.

    python bench/bench_harness.py                      # latency 50 ms, 32 episodes
    python bench/bench_harness.py --latency 0.2 --episodes 64
"""
import argparse
import asyncio
import os
import platform
import time

from agentlab.core.messages import assistant_message, make_tool_call
from agentlab.gyms.agents import LLMAgent
from agentlab.gyms.harness import evaluate
from agentlab.llm.base import RuleChat
from agentlab.llm.openai import OpenAIChat
from agentlab.serve.server import start_server


def slow_policy(latency):
    "A rule 'LLM' that thinks for `latency` seconds, then probes, fetches the test case and answers 0."
    async def policy(messages, tools=None, **generation):
        await asyncio.sleep(latency)
        turn = sum(m["role"] == "assistant" for m in messages)
        action = [("action", "1 2 3 4"), ("action", "2 2 3 4"), ("search", "test")][turn] if turn < 3 else ("answer", "0")
        return assistant_message(None, [make_tool_call("interact_with_env", {"choice": action[0], "content": action[1]})])
    return policy


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.05, help="seconds the server's model waits per request")
    p.add_argument("--episodes", type=int, default=32)
    p.add_argument("--max-turns", type=int, default=4)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = p.parse_args(argv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}")
    server = start_server({"slow": RuleChat(slow_policy(args.latency), name="slow")})
    try:
        model = OpenAIChat("slow", base_url=server.base_url, max_concurrency=max(args.concurrency), max_retries=1)
        print(f"server {server.base_url}, model latency {args.latency * 1000:.0f} ms, {args.episodes} FunctionGym "
              f"episodes x {args.max_turns} turns")
        print(f"{'concurrency':>11s} {'episodes/s':>11s} {'requests/s':>11s} {'speed-up':>9s}")
        base = None
        for c in args.concurrency:
            t0 = time.perf_counter()
            res = evaluate("function", lambda: LLMAgent(model), episodes=args.episodes, max_turns=args.max_turns,
                           concurrency=c, progress=False)
            dt = time.perf_counter() - t0
            eps = len(res.records) / dt
            reqs = sum(r["steps"] for r in res.records) / dt
            base = base or eps
            print(f"{c:>11d} {eps:>11.2f} {reqs:>11.1f} {eps / base:>8.1f}x")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
