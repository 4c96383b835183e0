"Tests for agentlab.stats.multires (MultiResolution: a RECONSTRUCTION of MROSS, spec §5)."
import numpy as np
import pytest
from sklearn.base import clone

from agentlab.stats.data import DESIGNS, simulate_design
from agentlab.stats.glm import DWD, newton
from agentlab.stats.multires import MultiResolution, VARIANTS, CRITERIA


@pytest.fixture(scope="module")
def mz():
    X, y, _ = simulate_design("mzNormal", n=10_000, seed=0)
    return X, y, newton(X, y).theta


def test_sklearn_clone_and_params():
    est = MultiResolution(r=500, q=0.25, passes=2, variant="R1b", criterion="mMSE", random_state=3)
    c = clone(est)
    assert c.get_params() == est.get_params()
    assert c is not est
    c.set_params(q=0.5)
    assert c.q == 0.5 and est.q == 0.25
    assert set(est.get_params()) >= {"r", "r0", "q", "passes", "variant", "criterion", "rest_fraction", "n_bins",
                                     "loss", "include_full_data_variance", "random_state"}


@pytest.mark.parametrize("kw, msg", [
    (dict(q=0), "(0, 1]"), (dict(q=-0.1), "(0, 1]"), (dict(q=1.01), "(0, 1]"), (dict(q="a"), "(0, 1]"),
    (dict(passes=0), "1, 2"), (dict(passes=3), "1, 2"), (dict(passes=True), "1, 2"),
    (dict(variant="R3"), "'R1', 'R1b', 'R2'"), (dict(criterion="A"), "'mVc', 'mMSE', 'uniform'"),
    (dict(partition="foo"), "'auto', 'abs_score', 'margin'"), (dict(rest_fraction=1.0), "rest_fraction"),
    (dict(n_bins=0), "n_bins"), (dict(r1b_matrix="exact"), "'hybrid', 'psd'"), (dict(ridge=-1), "ridge"),
])
def test_bad_settings(mz, kw, msg):
    X, y, _ = mz
    with pytest.raises(ValueError) as e: MultiResolution(**kw).fit(X, y)
    assert msg in str(e.value)


def test_bad_data(mz):
    X, y, _ = mz
    y2 = y.copy(); y2[17] = 2
    with pytest.raises(ValueError, match="row 17"): MultiResolution().fit(X, y2)
    with pytest.raises(ValueError, match="r0 \\+ r must be < n"): MultiResolution(r=1000, r0=200).fit(X[:1000], y[:1000])


def test_deterministic_and_attributes(mz):
    X, y, full = mz
    a = MultiResolution(q=0.4, passes=2, random_state=7).fit(X, y)
    b = MultiResolution(q=0.4, passes=2, random_state=7).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.converged_ and a.focus_fraction_ == 0.4 and a.threshold_ > 0
    assert a.rest_summary_["n"] == 6000 and a.rest_summary_["H"].shape == (7, 7)
    assert a.pass_params_.shape == (2, 7)
    assert abs(a.inclusion_probs_.sum() - 1000) < 1e-6
    assert "reconstruction" in a.result_.method.lower()
    assert a.predict_proba(X[:3]).shape == (3, 2)


def test_limits(mz):
    X, y, _ = mz
    m0 = MultiResolution(q=1e-9, random_state=1).fit(X, y)          # empty focus: one Newton step from the pilot
    np.testing.assert_allclose(m0.coef_, m0.pilot_ - np.linalg.solve(m0.rest_summary_["H"], m0.rest_summary_["g"]),
                               rtol=1e-8, atol=1e-10)
    m1 = MultiResolution(q=1.0, random_state=1).fit(X, y)           # no rest: Poisson weighted likelihood
    rng = np.random.default_rng(1)
    from agentlab.stats.sampling import case_control_probs, draw_with_replacement
    draw_with_replacement(rng, case_control_probs(y), 200)
    S = np.flatnonzero(rng.random(len(y)) < m1.inclusion_probs_)
    np.testing.assert_allclose(m1.coef_, newton(X[S], y[S], weights=1 / m1.inclusion_probs_[S]).theta, atol=1e-7)


def test_convergence_all_designs_no_divergence():
    configs = [dict(variant="R1", passes=1, q=0.3), dict(variant="R1", passes=2, q=0.4),
               dict(variant="R1b", passes=2, q=0.3), dict(variant="R2", passes=2, q=0.4),
               dict(variant="R1", passes=2, q=0.4, criterion="mMSE"),
               dict(variant="R1", passes=2, q=0.4, loss=DWD, ridge=1e-3)]
    failures, n = [], 0
    for name in DESIGNS:
        X, y, _ = simulate_design(name, n=5000, seed=11)
        for kw in configs:
            for s in range(3):
                m = MultiResolution(r=500, r0=200, random_state=s, **kw).fit(X, y); n += 1
                ok = m.converged_ and np.all(np.isfinite(m.coef_)) and np.abs(m.coef_).max() < 100 \
                     and np.all(np.isfinite(m.result_.cov_params()))
                if not ok: failures.append((name, kw, s))
    assert n == len(DESIGNS) * len(configs) * 3
    assert failures == []


def test_two_passes_beat_one_and_osmac(mz):
    X, y, full = mz
    from agentlab.stats.estimators import OSMAC
    def mse(est): return np.mean([((clone(est).set_params(random_state=s).fit(X, y).coef_ - full) ** 2).sum()
                                  for s in range(10)])
    k1, k2 = mse(MultiResolution(q=0.4, passes=1)), mse(MultiResolution(q=0.4, passes=2))
    assert k2 < k1
    assert k2 < mse(OSMAC(r=1000, r0=200, criterion="mVc"))


def test_variance_calibration_smoke(mz):
    X, y, full = mz
    fits = [MultiResolution(q=0.4, passes=2, variant="R1b", random_state=s).fit(X, y) for s in range(30)]
    P = np.array([m.coef_ for m in fits]); V = np.array([np.diag(m.result_.cov_params()) for m in fits])
    ratio = (P.var(0) / V.mean(0)).mean()
    cover = (np.abs(P - full) <= 1.96 * np.sqrt(V)).mean()
    assert 0.5 < ratio < 2.0 and cover > 0.85
    # adding the full-data variance gives (model-based) Var(theta_hat - theta_true) >= conditional one
    a = MultiResolution(q=0.4, passes=2, random_state=1).fit(X, y)
    b = MultiResolution(q=0.4, passes=2, random_state=1, include_full_data_variance=True).fit(X, y)
    assert np.all(np.diag(b.result_.cov_params()) > np.diag(a.result_.cov_params()))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("criterion", CRITERIA)
def test_every_variant_and_criterion_runs(mz, variant, criterion):
    X, y, full = mz
    m = MultiResolution(q=0.3, passes=2, variant=variant, criterion=criterion, random_state=0).fit(X, y)
    assert m.converged_ and np.all(np.isfinite(m.coef_))
    if variant != "R2":   # R2's pseudo-points are biased for small q (Jensen gap + lost within-cell spread); see notebook
        assert ((m.coef_ - full) ** 2).sum() < 0.5


# --- compiled engine (engine="numba"): the numpy fast engine's algorithm in numba kernels -------------------------
import warnings

import agentlab.stats.multires as mr_mod


@pytest.fixture(scope="module")
def big():
    X, y, _ = simulate_design("mzNormal", n=200_000, d=10, seed=3)
    return X, y


needs_numba = pytest.mark.skipif(mr_mod.numba is None, reason="numba is not installed")


@needs_numba
@pytest.mark.parametrize("kw", [dict(passes=1), dict(passes=2), dict(passes=2, criterion="mMSE"),
                                dict(passes=1, criterion="uniform", q=0.6), dict(passes=2, q=0.05)])
def test_numba_engine_equals_fast_engine(big, kw):
    "Same seed -> the same sampled rows, and the same estimate and covariance up to summation order."
    X, y = big
    a = MultiResolution(engine="fast", random_state=5, **kw).fit(X, y)
    b = MultiResolution(engine="numba", random_state=5, **kw).fit(X, y)
    assert a.result_.info["engine"] == "fast" and b.result_.info["engine"] == "numba"
    np.testing.assert_array_equal(b.sample_indices_, a.sample_indices_)
    np.testing.assert_allclose(b.sample_inclusion_probs_, a.sample_inclusion_probs_, rtol=1e-12)
    np.testing.assert_allclose(b.coef_, a.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.result_.cov_params(), a.result_.cov_params(), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(b.rest_summary_["H"], a.rest_summary_["H"], rtol=1e-11)
    assert b.threshold_ == pytest.approx(a.threshold_, rel=1e-14) and b.focus_fraction_ == a.focus_fraction_


@needs_numba
def test_numba_engine_deterministic_across_threads(big):
    X, y = big
    fits = [MultiResolution(engine="numba", passes=2, random_state=9, n_jobs=j).fit(X, y) for j in (1, 2, 3)]
    for f in fits[1:]:
        np.testing.assert_array_equal(f.sample_indices_, fits[0].sample_indices_)
        np.testing.assert_array_equal(f.coef_, fits[0].coef_)          # chunk sums added in chunk order: bit for bit


@needs_numba
def test_numba_kernel_pieces_match_references():
    from agentlab.core.seeding import derive_seed
    from agentlab.stats.outofcore import row_uniforms
    rows = np.array([0, 3, 65_536, 9_999_999, 2**41])
    key = np.uint64(derive_seed(77, "outofcore", mr_mod.FAST_UNIFORMS))
    np.testing.assert_array_equal([mr_mod._nb_uniform(key, i) for i in rows], row_uniforms(77, mr_mod.FAST_UNIFORMS, rows))
    x = np.linspace(-40, 40, 2001)
    e = np.array([m * np.array([b]).view(np.float64)[0] for m, b in map(mr_mod._nb_exp_parts, x)])
    np.testing.assert_allclose(e, np.exp(x), rtol=1e-15)


@needs_numba
def test_auto_engine_and_bad_rows(big):
    X, y = big
    assert MultiResolution()._engine_for(10**7) == "numba" and MultiResolution()._engine_for(10**4) == "exact"
    assert MultiResolution(variant="R1b")._engine_for(10**7) == "exact"
    y2 = y.copy(); y2[4321] = 0.5
    with pytest.raises(ValueError, match="row 4321"): MultiResolution(engine="numba").fit(X, y2)
    X2 = X.copy(); X2[77_777, 2] = np.inf
    with pytest.raises(ValueError, match="row 77777"): MultiResolution(engine="numba").fit(X2, y)
    with pytest.raises(ValueError, match="engine='numba' supports the logistic loss only"):
        MultiResolution(engine="numba", loss=DWD).fit(X, y)


def test_numba_missing_falls_back_to_numpy_engine(big, monkeypatch):
    X, y = big
    monkeypatch.setattr(mr_mod, "numba", None)
    assert MultiResolution()._engine_for(10**7) == "fast"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = MultiResolution(engine="numba", random_state=5).fit(X, y)
    assert m.result_.info["engine"] == "fast" and any("numba is not installed" in str(x.message) for x in w)
    ref = MultiResolution(engine="fast", random_state=5).fit(X, y)
    np.testing.assert_array_equal(m.coef_, ref.coef_)
