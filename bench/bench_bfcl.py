"""Speed of the BFCL AST checker on every real possible answer (bfcl-eval 2026.3.23 data).

For each of the 2,501 entries of the 10 AST categories the canonical answer is prepared once in three shapes —
decoded calls (`check_calls`: the checker alone), JSON tool calls and Python call syntax (`check_entry`: decoding
+ checking) — and then checked repeatedly for about `--seconds` per row. Also timed: the parallel categories with
`faithful=True` (greedy matching only) and a mutated answer (the first call renamed: every check fails, the
parallel matcher tries all pairs). Prints checks per wall-clock second and per CPU second (the latter is
steadier on a shared machine). Bounded: 5 rows x `--seconds` plus loading
(~8 s by default).

    python bench/bench_bfcl.py               # default: 1 s per row
    python bench/bench_bfcl.py --seconds 3   # steadier numbers
"""
import argparse
import os
import platform
import time

from agentlab.actions.bfcl import AST_CATEGORIES, canonical_answer, load_bfcl, load_possible_answers
from agentlab.actions.bfcl_checker import check_calls, check_entry, to_python_syntax


def rate(fn, items, seconds: float) -> tuple:
    "Run fn over items repeatedly for ~seconds; (checks per wall second, per CPU second, passes in the last round, items)."
    n, t0, c0, passes = 0, time.perf_counter(), time.process_time(), 0
    while True:
        passes = sum(bool(fn(*x)) for x in items)
        n += len(items)
        dt = time.perf_counter() - t0
        if dt >= seconds: return n / dt, n / max(time.process_time() - c0, 1e-9), passes, len(items)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per row (default: 1)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    items = []
    for c in AST_CATEGORIES:
        gts = load_possible_answers(c)
        for e in load_bfcl(c):
            calls = canonical_answer(e, gts[e.id])
            items.append((e, gts[e.id], calls))
    load_s = time.perf_counter() - t0
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"loaded {len(items)} entries of {len(AST_CATEGORIES)} AST categories + canonical answers in {load_s:.2f} s\n")

    parallel = [x for x in items if "parallel" in x[0].category]
    renamed = [(e, gt, [{**calls[0], "name": calls[0]["name"] + "_x"}, *calls[1:]]) for e, gt, calls in items]
    rows = [
        ("check_calls (decoded calls, checker only)", lambda e, gt, calls: check_calls(calls, e.functions, gt, e.category, e.language), items),
        ("check_entry, JSON calls (decode + check)", lambda e, gt, calls: check_entry(e, calls, gt), items),
        ("check_entry, Python call syntax (ast decode + check)", lambda e, gt, pys: check_entry(e, pys, gt),
         [(e, gt, to_python_syntax(calls)) for e, gt, calls in items]),
        ("parallel categories, faithful=True (greedy only)", lambda e, gt, calls: check_calls(calls, e.functions, gt, e.category, e.language, faithful=True), parallel),
        ("mutated: first call renamed (all fail)", lambda e, gt, calls: check_calls(calls, e.functions, gt, e.category, e.language), renamed),
    ]
    print(f"{'row':58s} {'checks/s':>10s} {'per CPU-s':>10s} {'pass':>11s}")
    for name, fn, xs in rows:
        r, rc, passes, n = rate(fn, xs, args.seconds)
        print(f"{name:58s} {r:10,.0f} {rc:10,.0f} {passes:5d}/{n:<5d}")
    print("\n(the 4 ground truths that cannot pass are listed in tests/test_bfcl_real.py)")


if __name__ == "__main__":
    main()
