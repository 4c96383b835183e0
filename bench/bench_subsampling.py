"""Cost and accuracy of the subsampling estimators at large N (agentlab.stats; spec §6 timing, §9).

In memory (default N = 1e7, d = 10, design mzNormal, r0 = 200, r = 1000), per method:
  * wall time (best and median of `--repeat` plain runs) and peak extra memory (tracemalloc, one more run: numpy
    allocations on top of the data) of
    - `fit`  — the in-memory estimator classes (agentlab.stats.estimators / .multires), when importable;
      `MultiResolution` runs engine="auto" at this N: the compiled numba engine (the numpy "fast" engine when numba is
      not installed); the "fast" rows force the fused numpy engine, the "exact" rows engine="exact";
    - `blockwise` — `agentlab.stats.outofcore.fit_dask` on the numpy array in blocks of `--block-rows` rows (the
      out-of-core algorithm without dask; same sample as the dask path for the same seed);
  * the time relative to one `X @ beta` pass (X @ beta is timed 5 times before and 5 times after the fits: best and
    median; the ratio columns are fit best / X@beta best and fit median / X@beta median), and the number of passes
    over the data (blockwise path); the issue-3 targets (MR K = 1 < 3x, K = 2 < 5x) are checked per engine;
  * the full-data statsmodels GLM fit time at `--sm-n` rows (default: all N when the machine has the memory free —
    statsmodels' IRLS needs about 0.9 KB per row at d = 10, 8.7 GB at 1e7 — else 1e6, and the note says so);
  * the MSE ratio of the multi-resolution estimator (MROSS reconstruction R1, not the paper's algorithm) to
    OSMAC-mVc at equal budget r0 + r, over `--reps` replications on the first `--mse-n` rows (default 1e6, to stay
    within the time budget; the blockwise path, i.e. the out-of-core algorithm), against the full-data MLE
    (conditional target) and against the true beta; mean and median (single-pass methods have rare large errors
    from a poor 200-point pilot, spec §6/§10).
Out of core (off by default): `--dask-n 1e8` fits OSMAC-mVc, one-step and MR (passes 1 and 2) on a dask array of
`--dask-n` rows in chunks of `--block-rows`, generated lazily chunk by chunk (`--dask-source lazy`, no disk) or
written first to parquet under `--dask-dir` (`--dask-source parquet`, ~8 GB at 1e8 x 10 and several minutes to write),
and reports wall time, passes and peak RSS growth (psutil). At 1e8 on 2 cores each pass takes ~1-2 min.

    python bench/bench_subsampling.py                    # N = 1e7 (about 5 min on 2 idle cores, statsmodels at 1e7 included)
    python bench/bench_subsampling.py --n 1e6 --reps 10  # quick
    python bench/bench_subsampling.py --n 1e6 --reps 0 --dask-n 1e7
    python bench/bench_subsampling.py --methods MR,OSMAC-mVc --reps 0 --sm-n 0 --no-blockwise --repeat 3   # timings only
    python bench/bench_subsampling.py --methods "MR q=.3" --reps 0 --sm-n 0 --no-blockwise --repeat 7     # MR engines only
"""
import argparse
import gc
import os
import platform
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from agentlab.stats.data import simulate_design
from agentlab.stats.glm import newton
from agentlab.stats.outofcore import OUTOFCORE_PASSES, block_summaries, as_blocks, design_dask, fit_dask, \
    read_design_parquet, write_design_parquet


class _Params:
    "Parameter holder used when the in-memory estimator classes are not importable (blockwise path only)."
    def __init__(self, **kw): self.__dict__.update(kw)


def make(name, **kw):
    "The estimator class `name` if importable, else a parameter holder of that class name."
    for mod in ("agentlab.stats.estimators", "agentlab.stats.multires"):
        try:
            m = __import__(mod, fromlist=[name])
            if hasattr(m, name): return getattr(m, name)(**kw), True
        except ImportError: pass
    return type(name, (_Params,), {})(**kw), False


def methods(r, r0):
    return [("Uniform", "UniformSubsampling", {}),
            ("OSMAC-mVc", "OSMAC", {"criterion": "mVc"}),
            ("OSMAC-mMSE", "OSMAC", {"criterion": "mMSE"}),
            ("Poisson-mVc w", "PoissonSubsampling", {"criterion": "mVc", "weighted": True}),
            ("Poisson-mVc lo", "PoissonSubsampling", {"criterion": "mVc", "weighted": False}),
            ("LCC", "LocalCaseControl", {}),
            ("OneStep", "OneStepNewton", {}),
            ("MR q=.3 K=1", "MultiResolution", {"q": 0.3, "passes": 1}),
            ("MR q=.3 K=2", "MultiResolution", {"q": 0.3, "passes": 2}),
            ("MR q=.3 K=1 fast", "MultiResolution", {"q": 0.3, "passes": 1, "engine": "fast"}),
            ("MR q=.3 K=2 fast", "MultiResolution", {"q": 0.3, "passes": 2, "engine": "fast"}),
            ("MR q=.3 K=1 exact", "MultiResolution", {"q": 0.3, "passes": 1, "engine": "exact"}),
            ("MR q=.3 K=2 exact", "MultiResolution", {"q": 0.3, "passes": 2, "engine": "exact"})]


def select(rows, patterns):
    "The methods whose label contains one of the comma-separated patterns (case-insensitive); all when None."
    if not patterns: return rows
    pats = [p.strip().lower() for p in patterns.split(",") if p.strip()]
    out = [m for m in rows if any(p in m[0].lower() for p in pats)]
    if not out: raise SystemExit(f"--methods {patterns!r} matches none of: {', '.join(m[0] for m in rows)}")
    return out


def kwargs_for(cls, r, r0, kw, seed):
    out = {"r0": r0, "random_state": seed, **kw}
    if cls != "OneStepNewton": out["r"] = r
    return out


def measure(fn, repeat=1, median=False):
    """(result, wall time = min over `repeat` plain runs [, median], tracemalloc peak MB of one more run).

    The time is taken WITHOUT tracemalloc (tracing every numpy allocation slows blockwise code noticeably)."""
    ts = []
    for _ in range(max(1, repeat)):
        gc.collect(); t = time.perf_counter(); out = fn(); ts.append(time.perf_counter() - t)
    gc.collect(); tracemalloc.start(); fn(); peak = tracemalloc.get_traced_memory()[1] / 2**20; tracemalloc.stop()
    return (out, min(ts), float(np.median(ts)), peak) if median else (out, min(ts), peak)


def rss_mb():
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def peak_rss_growth(fn):
    "fn() while a thread samples RSS every 10 ms: (result, peak growth in MB)."
    import threading
    import psutil
    gc.collect(); proc = psutil.Process(); start = proc.memory_info().rss; peak = [start]; stop = threading.Event()
    def watch():
        while not stop.is_set(): peak[0] = max(peak[0], proc.memory_info().rss); time.sleep(0.01)
    th = threading.Thread(target=watch, daemon=True); th.start()
    try: out = fn()
    finally: stop.set(); th.join()
    return out, (peak[0] - start) / 2**20


def full_mle(X, y, block_rows, iters=25):
    "Full-data MLE by blockwise Newton (g, H in one pass per iteration)."
    data = as_blocks(X, y, block_rows=block_rows)
    th = newton(X[:200_000], y[:200_000]).theta
    for i in range(iters):
        g, H = block_summaries(data, th); step = np.linalg.solve(H, g); th = th - step
        if np.abs(step).max() < 1e-10: break
    return th, i + 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=float, default=1e7)
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--design", default="mzNormal")
    ap.add_argument("--r", type=int, default=1000)
    ap.add_argument("--r0", type=int, default=200)
    ap.add_argument("--reps", type=int, default=40, help="replications for the MSE ratio (0: skip)")
    ap.add_argument("--mse-n", type=float, default=1e6, help="rows (the first ones of the data) for the MSE replications")
    ap.add_argument("--sm-n", type=float, default=-1, help="rows for the statsmodels full fit (0: skip; -1: N if it fits in free memory, else 1e6)")
    ap.add_argument("--block-rows", type=int, default=1_000_000)
    ap.add_argument("--no-fit", action="store_true", help="skip the in-memory estimator classes")
    ap.add_argument("--no-blockwise", action="store_true", help="skip the blockwise (out-of-core algorithm) timings")
    ap.add_argument("--methods", default=None, help="comma-separated substrings of the method labels to run, e.g. 'MR,OSMAC-mVc'")
    ap.add_argument("--repeat", type=int, default=1, help="timed fits per method (the minimum is reported)")
    ap.add_argument("--dask-n", type=float, default=0, help="rows for the out-of-core run (0: off)")
    ap.add_argument("--dask-source", choices=["lazy", "parquet"], default="lazy")
    ap.add_argument("--dask-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    n, d = int(a.n), a.d
    print(f"# bench_subsampling: N={n:,} d={d} design={a.design} r0={a.r0} r={a.r}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, numpy {np.__version__}")
    t = time.perf_counter(); X, y, beta = simulate_design(a.design, n=n, d=d, seed=a.seed)
    print(f"data: {X.nbytes / 2**20:,.0f} MB generated in {time.perf_counter() - t:.1f} s; mean(y) = {y.mean():.3f}")
    xbs = [_timeit(lambda: X @ beta) for _ in range(5)]
    print(f"one X @ beta pass: {min(xbs) * 1e3:.1f} ms (best of 5; median {np.median(xbs) * 1e3:.1f} ms)\n")

    rows = []
    for label, cls, kw in select(methods(a.r, a.r0), a.methods):
        row = {"method": label}
        if not a.no_fit:
            est, real = make(cls, **kwargs_for(cls, a.r, a.r0, kw, a.seed))
            if real:
                w = min(n, 600_000)                    # warm-up (imports, thread pool, allocator; MR's fast engines from 500k
                est.fit(X[:w], y[:w])                  # rows on: numba compiles or loads its cached kernels here)
                _, row["fit_s"], row["fit_med"], row["fit_mb"] = measure(lambda: est.fit(X, y), a.repeat, median=True)
                row["engine"] = getattr(est, "result_", None).info.get("engine", "") if hasattr(est, "result_") else ""
        if not a.no_blockwise and "engine" not in kw:
            est, _ = make(cls, **kwargs_for(cls, a.r, a.r0, {k: v for k, v in kw.items() if k != "engine"}, a.seed))
            est, row["blk_s"], row["blk_mb"] = measure(lambda: fit_dask(est, X, y, block_rows=a.block_rows), a.repeat)
            row["passes"] = est.outofcore_["passes"]; row["n_sub"] = est.n_sub_
        rows.append(row)
    xbs += [_timeit(lambda: X @ beta) for _ in range(5)]
    xb, xb_med = min(xbs), float(np.median(xbs))
    print(f"one X @ beta pass, 5 runs before and 5 after the fits: best {xb * 1e3:.1f} ms, median {xb_med * 1e3:.1f} ms")
    hdr = (f"{'method':<19}{'engine':>7}{'fit s':>8}{'median':>8}{'x X@b':>7}{'(med)':>7}{'peak MB':>9}{'blockwise s':>12}"
           f"{'x X@b':>8}{'peak MB':>9}{'passes':>7}{'n_sub':>7}")
    print(hdr); print("-" * len(hdr))
    for r_ in rows:
        f = (f"{r_.get('engine', ''):>7}{r_['fit_s']:8.3f}{r_['fit_med']:8.3f}{r_['fit_s'] / xb:7.1f}{r_['fit_med'] / xb_med:7.1f}"
             f"{r_['fit_mb']:9.0f}" if "fit_s" in r_ else f"{'-':>7}{'-':>8}{'-':>8}{'-':>7}{'-':>7}{'-':>9}")
        b = (f"{r_['blk_s']:12.2f}{r_['blk_s'] / xb:8.1f}{r_['blk_mb']:9.0f}{r_['passes']:7d}{r_['n_sub']:7d}" if "blk_s" in r_
             else f"{'-':>12}{'-':>8}{'-':>9}{'-':>7}{'-':>7}")
        print(f"{r_['method']:<19}{f}{b}")
    print(f"(x X@b = best fit time / best X @ beta pass ({xb * 1e3:.1f} ms); (med) = median / median ({xb_med * 1e3:.1f} ms); "
          f"--repeat {a.repeat}; data itself: {X.nbytes / 2**20:,.0f} MB, not counted in 'peak MB'; 'fit' = in-memory estimator "
          "classes (MultiResolution: engine='auto' -> 'numba' at this N, or 'fast' without numba; the label says when "
          "the numpy 'fast' or the 'exact' engine is forced); 'blockwise' = agentlab.stats.outofcore.fit_dask on the numpy array)")
    for r_ in rows:
        m_ = r_["method"]
        if "fit_s" not in r_ or not m_.startswith("MR q=.3 K=") or "exact" in m_: continue
        lim = 3 if "K=1" in m_ else 5; best, med = r_["fit_s"] / xb, r_["fit_med"] / xb_med
        verdict = ("met (best and median)" if max(best, med) < lim else "met by the median only" if med < lim
                   else "met by the best run only" if best < lim else "NOT met")
        print(f"target: {m_} (engine {r_['engine']}) < {lim}x X@beta -> best/best {best:.2f}x, median/median {med:.2f}x: {verdict}")

    if a.sm_n:
        import psutil
        import statsmodels.api as sm
        need = 1.3 * 930 * n * d / 10                  # bytes: measured 8.65 GiB of extra RSS at N = 1e7, d = 10 (+30 %)
        m = min(n, int(a.sm_n)) if a.sm_n > 0 else (n if psutil.virtual_memory().available > need else min(n, 10**6))
        _, ts, pk = measure(lambda: sm.GLM(y[:m], X[:m], family=sm.families.Binomial()).fit())
        mrk1 = next((r_["fit_s"] for r_ in rows if r_["method"] == "MR q=.3 K=1" and "fit_s" in r_), None)
        note = "" if m == n else f" (timed at N={m:,}, not {n:,}: ~x{n // m} rows -> expect >= x{n // m} time and memory)"
        print(f"\nstatsmodels GLM full fit: {ts:.2f} s, peak {pk:,.0f} MB{note}")
        if m == n: print(f"  = {ts / xb:.0f} x one X @ beta pass" + (f"; MR q=.3 K=1 is {ts / mrk1:.0f}x faster" if mrk1 else ""))

    if a.reps:
        m = min(n, int(a.mse_n)); Xm, ym = X[:m], y[:m]
        t = time.perf_counter(); th_full, it = full_mle(Xm, ym, a.block_rows)
        print(f"\nMSE at N={m:,}{'' if m == n else ' (the first rows; --mse-n)'}: full-data MLE by blockwise Newton: "
              f"{it} passes, {time.perf_counter() - t:.1f} s")
        errs = {k: [] for k in ("OSMAC-mVc", "MR q=.3 K=1", "MR q=.3 K=2", "OneStep")}
        cfg = {"OSMAC-mVc": ("OSMAC", {"criterion": "mVc"}), "MR q=.3 K=1": ("MultiResolution", {"q": 0.3, "passes": 1}),
               "MR q=.3 K=2": ("MultiResolution", {"q": 0.3, "passes": 2}), "OneStep": ("OneStepNewton", {})}
        if not a.no_fit:                      # the in-memory classes too (their own random streams)
            for k in list(cfg):
                if make(cfg[k][0], **kwargs_for(cfg[k][0], a.r, a.r0, cfg[k][1], 0))[1]:
                    cfg[k + " (fit)"] = cfg[k]; errs[k + " (fit)"] = []
        t = time.perf_counter()
        for s in range(a.reps):
            for k, (cls, kw) in cfg.items():
                est, _ = make(cls, **kwargs_for(cls, a.r, a.r0, kw, 1000 + s))
                c = (est.fit(Xm, ym) if k.endswith("(fit)") else fit_dask(est, Xm, ym, block_rows=a.block_rows)).coef_
                errs[k].append((np.sum((c - th_full) ** 2), np.sum((c - beta) ** 2)))
        print(f"MSE over {a.reps} replications (same data, seeds 1000..; {time.perf_counter() - t:.0f} s); rows without "
              "'(fit)' = out-of-core algorithm (blockwise), '(fit)' = in-memory classes:")
        print(f"{'method':<20}{'MSE vs full MLE':>17}{'median SE':>11}{'MSE vs beta':>13}{'median SE':>11}")
        for k, v in errs.items():
            v = np.array(v)
            print(f"{k:<20}{v[:, 0].mean():17.3e}{np.median(v[:, 0]):11.3e}{v[:, 1].mean():13.3e}{np.median(v[:, 1]):11.3e}")
        pairs = [(k, "OSMAC-mVc") for k in ("MR q=.3 K=1", "MR q=.3 K=2", "OneStep")]
        pairs += [(k + " (fit)", "OSMAC-mVc (fit)") for k, _ in pairs if k + " (fit)" in errs and "OSMAC-mVc (fit)" in errs]
        for k, ref in pairs:
            m_, o = np.array(errs[k]), np.array(errs[ref])
            print(f"ratio {k} / {ref} (equal budget r0+r={a.r0 + a.r}; OneStep uses r0 only): "
                  f"mean MSE vs full MLE {m_[:, 0].mean() / o[:, 0].mean():.3f} (median {np.median(m_[:, 0]) / np.median(o[:, 0]):.3f}), "
                  f"vs beta {m_[:, 1].mean() / o[:, 1].mean():.3f} (median {np.median(m_[:, 1]) / np.median(o[:, 1]):.3f})")

    if a.dask_n:
        del X, y; gc.collect()
        dn = int(a.dask_n)
        if a.dask_source == "parquet":
            import tempfile
            path = a.dask_dir or tempfile.mkdtemp(prefix="bench_subsampling_")
            t = time.perf_counter(); write_design_parquet(os.path.join(path, "design"), a.design, dn, chunk_rows=a.block_rows, seed=a.seed, d=d)
            print(f"\nwrote {dn:,} rows to parquet in {time.perf_counter() - t:.0f} s ({path})")
            Xd, yd = read_design_parquet(os.path.join(path, "design"))
        else:
            Xd, yd = design_dask(a.design, dn, chunk_rows=a.block_rows, d=d, seed=a.seed)
        print(f"\nout of core: N={dn:,} ({dn * d * 8 / 2**30:.1f} GB as float64), {a.dask_source}, chunks of {a.block_rows:,} rows")
        print(f"{'method':<14}{'wall s':>9}{'passes':>8}{'peak RSS +MB':>15}")
        for label, cls, kw in [("OSMAC-mVc", "OSMAC", {"criterion": "mVc"}), ("OneStep", "OneStepNewton", {}),
                               ("MR q=.3 K=1", "MultiResolution", {"q": 0.3, "passes": 1}),
                               ("MR q=.3 K=2", "MultiResolution", {"q": 0.3, "passes": 2})]:
            est, _ = make(cls, **kwargs_for(cls, a.r, a.r0, kw, a.seed))
            t = time.perf_counter(); _, grow = peak_rss_growth(lambda: fit_dask(est, Xd, yd))
            print(f"{label:<14}{time.perf_counter() - t:9.1f}{est.outofcore_['passes']:8d}{grow:15.0f}   coef[:3] {np.round(est.coef_[:3], 4)}")
    print("\npasses per method (out-of-core algorithm):", ", ".join(f"{k} {v}" for k, v in OUTOFCORE_PASSES.items()))


def _timeit(f):
    t = time.perf_counter(); f(); return time.perf_counter() - t


if __name__ == "__main__":
    main()
