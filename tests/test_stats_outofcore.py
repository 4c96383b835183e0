"""Out-of-core (dask) subsampling fits: same sample and estimate as in memory, statistical agreement with the in-memory
classes, and bounded memory (agentlab.stats.outofcore)."""
import gc
import threading
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("pyarrow")
psutil = pytest.importorskip("psutil")

from agentlab.stats.data import simulate_design
from agentlab.stats.estimators import LocalCaseControl, OneStepNewton, OSMAC, PoissonSubsampling, UniformSubsampling
from agentlab.stats.glm import newton, sandwich
from agentlab.stats.multires import MultiResolution
from agentlab.stats.outofcore import design_dask, fit_dask, read_design_parquet, write_design_parquet

N, D = 50_000, 7
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")   # dask's parquet reader on pandas 3.1


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    "A 50k-row mzNormal design on disk in 6 parquet files, plus the same rows in memory."
    path = write_design_parquet(tmp_path_factory.mktemp("ooc") / "mz", "mzNormal", N, chunk_rows=9_000, seed=3, d=D)
    X, y, beta = simulate_design("mzNormal", n=N, d=D, seed=3)
    return path, X, y, beta


def configs():
    return [UniformSubsampling(r=1000, r0=200), OSMAC(r=1000, r0=200), OSMAC(r=1000, r0=200, criterion="mMSE"),
            PoissonSubsampling(r=1000, r0=200), PoissonSubsampling(r=1000, r0=200, weighted=False),
            LocalCaseControl(r=1000, r0=200), OneStepNewton(r0=200),
            MultiResolution(r=1000, r0=200, q=0.3, passes=1), MultiResolution(r=1000, r0=200, q=0.3, passes=2)]


@pytest.mark.parametrize("est", configs(), ids=lambda e: f"{type(e).__name__}-{getattr(e, 'criterion', '')}"
                         f"{getattr(e, 'weighted', '')}{getattr(e, 'passes', '')}")
def test_same_seed_same_estimate_across_sources(design, est):
    "Parquet -> dask arrays, parquet -> dask DataFrame, numpy as one block: identical samples and estimates."
    path, X, y, _ = design
    est.set_params(random_state=11)
    Xp, yp = read_design_parquet(path)
    assert len(Xp.chunks[0]) == 6
    a = est.fit(Xp, yp); ca, rows = a.coef_.copy(), np.array(a.sample_indices_)
    cb = est.fit(read_design_parquet(path, as_array=False), "y").coef_.copy()
    c = fit_dask(est, X, y)
    np.testing.assert_allclose(ca, cb, atol=1e-8)
    np.testing.assert_allclose(ca, c.coef_, atol=1e-8)
    np.testing.assert_array_equal(rows, c.sample_indices_)
    assert est.outofcore_["passes"] <= 3


def test_equals_in_memory_fit_on_the_same_rows(design):
    "The out-of-core estimate is the in-memory weighted/offset fit on the recorded rows."
    path, X, y, _ = design
    Xp, yp = read_design_parquet(path)
    e = OSMAC(r=1000, r0=200, random_state=1).fit(Xp, yp)
    idx, w = e.sample_indices_, e.outofcore_["weights"]
    assert len(idx) == 1200
    f = newton(X[idx], y[idx], weights=w, theta0=e.pilot_)
    np.testing.assert_allclose(e.coef_, f.theta, atol=1e-7)
    np.testing.assert_allclose(e.result_.cov, sandwich(X[idx], y[idx], e.coef_, weights=w), rtol=1e-6)
    e = LocalCaseControl(r=1000, r0=200, random_state=1).fit(Xp, yp)
    idx, a = e.sample_indices_, e.outofcore_["offset"]
    np.testing.assert_allclose(e.coef_, newton(X[idx], y[idx], offset=a).theta, atol=1e-7)
    e = MultiResolution(r=1000, r0=200, q=0.3, passes=1, random_state=1).fit(Xp, yp)
    idx, pi, rs = e.sample_indices_, e.outofcore_["pi"], e.rest_summary_
    f = newton(X[idx], y[idx], weights=1 / pi, linear=rs["g"], quadratic=rs["H"], theta_ref=e.pilot_, theta0=e.pilot_)
    np.testing.assert_allclose(e.coef_, f.theta, atol=1e-7)
    R = np.abs(X @ e.pilot_) >= e.threshold_                     # rest summaries are exact sums over R
    p = 1 / (1 + np.exp(-X[R] @ e.pilot_))
    np.testing.assert_allclose(rs["g"], X[R].T @ (p - y[R]), rtol=1e-9)


@pytest.mark.parametrize("make", [lambda s: OSMAC(r=1000, r0=200, random_state=s),
                                  lambda s: PoissonSubsampling(r=1000, r0=200, random_state=s),
                                  lambda s: MultiResolution(r=1000, r0=200, q=0.3, passes=2, random_state=s)],
                         ids=["OSMAC", "Poisson", "MR2"])
def test_statistically_matches_in_memory(design, make):
    "Over 15 seeds the dask and in-memory fits have the same centre and the same error size around the full MLE."
    path, X, y, _ = design
    Xd, yd = da.from_array(X, chunks=(8_000, D)), da.from_array(y, chunks=8_000)
    full = newton(X, y).theta
    ed = np.array([make(s).fit(Xd, yd).coef_ - full for s in range(15)])
    em = np.array([make(s).fit(X, y).coef_ - full for s in range(15)])
    mse_d, mse_m = (ed**2).sum(1).mean(), (em**2).sum(1).mean()
    assert 0.4 < mse_d / mse_m < 2.5, (mse_d, mse_m)
    se = np.sqrt(mse_d / D / 15)                               # s.e. of a coordinate mean
    assert np.abs(ed.mean(0)).max() < 5 * se + 1e-3


def _peak_rss_growth(fn):
    "Run fn() while sampling RSS every 5 ms; returns (result, peak RSS - start RSS in MB)."
    gc.collect()
    proc = psutil.Process(); start = proc.memory_info().rss; peak = [start]; stop = threading.Event()
    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss); time.sleep(0.005)
    t = threading.Thread(target=watch, daemon=True); t.start()
    try: out = fn()
    finally: stop.set(); t.join()
    return out, (peak[0] - start) / 2**20


def test_memory_stays_bounded():
    "A lazily generated 2.4M x 10 design (201 MB with y) is fitted with far less extra memory than the data (loose check)."
    n, d = 2_400_000, 10
    X, y = design_dask("mzNormal", n, chunk_rows=50_000, d=d, seed=0)
    data_mb = n * (d + 1) * 8 / 2**20
    Xw, yw = design_dask("mzNormal", 400_000, chunk_rows=50_000, d=d, seed=1)     # warm-up: pools, imports, allocator
    MultiResolution(r=1000, r0=200, q=0.3, passes=2, random_state=0).fit(Xw, yw)
    est, grow = _peak_rss_growth(lambda: MultiResolution(r=1000, r0=200, q=0.3, passes=2, random_state=0).fit(X, y))
    assert est.outofcore_["passes"] == 3 and est.result_.n_obs == n
    print(f"peak RSS growth {grow:.0f} MB for {data_mb:.0f} MB of data")
    assert grow < 0.3 * data_mb, f"peak RSS grew by {grow:.0f} MB for {data_mb:.0f} MB of data"
