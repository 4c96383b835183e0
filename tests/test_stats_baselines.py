"""Cross-module checks of agentlab.stats data / glm / sampling / estimators (the subsampling baselines).

The per-function checks live in nbs/stats/0[0-3]_*.ipynb; these tests exercise the modules together: the
scikit-learn protocol for every estimator, pandas input, every documented bad-input message, non-convergence
counting, agreement with statsmodels on every design, and reproducibility. Runtime: a few seconds.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

from agentlab.stats.data import DESIGNS, check_budget, check_full_rank, check_Xy, simulate_design, simulate_design_chunks
from agentlab.stats.estimators import (OSMAC, FullMLE, LocalCaseControl, OneStepNewton, PoissonSubsampling,
                                       SubsampleEstimator, UniformSubsampling)
from agentlab.stats.glm import DWD, LOGISTIC, SubsampleResult, loss_summaries, newton, sandwich
from agentlab.stats.sampling import case_control_probs, mmse_scores, mvc_scores, poisson_inclusion


def all_estimators(r=500, r0=100, seed=0):
    return [UniformSubsampling(r=r, r0=r0, random_state=seed),
            OSMAC(r=r, r0=r0, criterion="mVc", random_state=seed),
            OSMAC(r=r, r0=r0, criterion="mMSE", random_state=seed),
            PoissonSubsampling(r=r, r0=r0, criterion="mVc", weighted=True, random_state=seed),
            PoissonSubsampling(r=r, r0=r0, criterion="mMSE", weighted=False, random_state=seed),
            LocalCaseControl(r=r, r0=r0, random_state=seed),
            OneStepNewton(r0=r0, random_state=seed),
            FullMLE()]


IDS = ["uniform", "osmac-mvc", "osmac-mmse", "poisson-w", "poisson-logodds", "lcc", "one-step", "full"]


@pytest.fixture(scope="module")
def data():
    X, y, beta = simulate_design("mzNormal", n=5000, seed=11)
    return X, y, beta


@pytest.mark.parametrize("est", all_estimators(), ids=IDS)
def test_sklearn_protocol_and_results(est, data):
    X, y, beta = data
    c = clone(est)
    assert c.get_params() == est.get_params() and not hasattr(c, "coef_")
    assert c.fit(X, y) is c
    d = X.shape[1]
    assert c.coef_.shape == (d,) and np.all(np.isfinite(c.coef_))
    res = c.result_
    assert isinstance(res, SubsampleResult) and res.params is c.coef_ or np.array_equal(res.params, c.coef_)
    assert res.cov_params().shape == (d, d) and np.all(res.bse > 0)
    assert np.allclose(res.cov, res.cov.T)
    assert np.all(np.linalg.eigvalsh(res.cov) > 0)
    assert c.converged_ is True and res.info["n_not_converged"] == 0
    assert res.n_obs == len(y) and c.n_sub_ == res.n_sub > 0
    assert set(c.needs_passes) == {"Nd", "Nd2"}
    assert np.sum((c.coef_ - beta) ** 2) < 1.0
    text = str(res.summary())
    assert res.method in text and "P>|z|" in text and "x7" in text
    assert res.conf_int().shape == (d, 2) and list(res.to_frame().columns)[:2] == ["coef", "std err"]
    proba = c.predict_proba(X[:10])
    assert proba.shape == (10, 2) and np.allclose(proba.sum(1), 1)
    assert set(np.unique(c.predict(X))) <= {0, 1}
    assert c.score(X, y) > 0.75


@pytest.mark.parametrize("est", all_estimators()[:-1], ids=IDS[:-1])
def test_reproducible_and_pandas(est, data):
    X, y, _ = data
    a = clone(est).fit(X, y).coef_
    b = clone(est).fit(X, y).coef_
    assert np.array_equal(a, b)
    other = clone(est).set_params(random_state=est.random_state + 1).fit(X, y).coef_
    assert not np.array_equal(a, other)
    df = pd.DataFrame(X, columns=[f"c{j}" for j in range(X.shape[1])])
    p = clone(est).fit(df, pd.Series(y.astype(int)))
    assert np.allclose(p.coef_, a, rtol=0, atol=1e-12)
    assert list(p.result_.to_frame().index) == list(df.columns)
    assert list(p.result_.conf_int().index) == list(df.columns)
    # a Generator as random_state is consumed, so two fits with the same Generator differ
    rng = np.random.default_rng(0)
    g = clone(est).set_params(random_state=rng)
    assert not np.array_equal(g.fit(X, y).coef_, g.fit(X, y).coef_)


def test_cross_val_score_runs(data):
    X, y, _ = data
    s = cross_val_score(OSMAC(r=300, r0=100, random_state=0), X, y, cv=3)
    assert s.shape == (3,) and np.all(s > 0.75)


BAD = [
    (lambda X, y: (X[:, 0], y), "X must be 2-D"),
    (lambda X, y: (X, y[:-1]), "X has 5000 rows but y has 4999"),
    (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 17 * 7 + 3, np.nan, X), y),
     "row 17: X has a non-finite value (nan) in column 3"),
    (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 40 * 7 + 6, np.inf, X), y),
     "row 40: X has a non-finite value (inf) in column 6"),
    (lambda X, y: (X, np.where(np.arange(y.size) == 17, 2, y)), "row 17: label must be 0/1, got 2"),
    (lambda X, y: (X, np.where(np.arange(y.size) == 5, -1.0, y)), "row 5: label must be 0/1, got -1"),
    (lambda X, y: (X, np.ones_like(y)), "y has a single class (all 1): logistic regression needs both"),
    (lambda X, y: (X, np.zeros_like(y)), "y has a single class (all 0): logistic regression needs both"),
    (lambda X, y: (X[:1], y[:1]), "need at least 2 rows, got 1"),
]


@pytest.mark.parametrize("est", all_estimators(), ids=IDS)
@pytest.mark.parametrize("make_bad,msg", BAD, ids=[m for _, m in BAD])
def test_bad_input_messages(est, make_bad, msg, data):
    X, y, _ = data
    Xb, yb = make_bad(X, y)
    with pytest.raises(ValueError) as e:
        clone(est).fit(Xb, yb)
    assert msg in str(e.value)


def test_bad_input_pandas_and_budget(data):
    X, y, _ = data
    df = pd.DataFrame(X[:, :2], columns=["a", "b"]).assign(c=["u"] * len(y))
    with pytest.raises(ValueError, match="X column 'c' is not numeric"):
        OSMAC().fit(df, y)
    with pytest.raises(ValueError, match=r"r0 \+ r must be < n \(got r0 \+ r = 5200, n = 5000\)"):
        OSMAC(r=5000, r0=200).fit(X, y)
    with pytest.raises(ValueError, match=r"r0 must be at least 10 \(got 5\)"):
        PoissonSubsampling(r0=5).fit(X, y)
    with pytest.raises(ValueError, match=r"r must be at least 1 \(got 0\)"):
        LocalCaseControl(r=0).fit(X, y)
    with pytest.raises(ValueError, match="r must be an integer, got 10.5"):
        UniformSubsampling(r=10.5).fit(X, y)
    with pytest.raises(ValueError, match="criterion must be 'mVc' or 'mMSE', got 'A'"):
        PoissonSubsampling(criterion="A").fit(X, y)
    with pytest.raises(ValueError, match="loss must be a Loss or one of"):
        OSMAC(loss="hinge").fit(X, y)
    with pytest.raises(ValueError, match="design is singular: rank 6 < 7 columns"):
        check_full_rank(np.column_stack([X[:, :6], X[:, 0] - X[:, 1]]))
    with pytest.raises(ValueError, match=r"r0 \+ r must be < n"):
        check_budget(100, 90, 10)
    with pytest.raises(ValueError, match="the model was fitted with 7 columns"):
        OSMAC(random_state=0).fit(X, y).predict(X[:, :6])


def separable(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    y = (X[:, 1] > 0).astype(float)
    return X, y


@pytest.mark.parametrize("est", [UniformSubsampling(r=100, r0=50, random_state=0),
                                 OSMAC(r=100, r0=50, random_state=0),
                                 PoissonSubsampling(r=100, r0=50, random_state=0),
                                 PoissonSubsampling(r=100, r0=50, weighted=False, random_state=0),
                                 LocalCaseControl(r=100, r0=50, random_state=0),
                                 OneStepNewton(r0=50, random_state=0),
                                 FullMLE(), FullMLE(engine="newton")],
                         ids=["uniform", "osmac", "poisson-w", "poisson-logodds", "lcc", "one-step", "full-sm", "full-newton"])
def test_nonconvergence_is_counted_not_raised(est):
    X, y = separable()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = clone(est).fit(X, y)
    assert e.converged_ is False
    assert e.result_.converged is False and e.result_.info["n_not_converged"] >= 1
    assert np.all(np.isfinite(e.coef_))
    assert "False" in str(e.result_.summary())


def test_failure_rate_in_a_monte_carlo_loop():
    # a small, nearly separable design: some replications fail, and the count is available for exclusion
    X, y, _ = simulate_design("mzNormal", n=2000, d=3, beta=[4.0, 4.0, 4.0], seed=0)
    fails = sum(not UniformSubsampling(r=15, r0=10, random_state=s).fit(X, y).converged_ for s in range(40))
    assert 0 < fails < 40


@pytest.mark.parametrize("name", DESIGNS)
def test_newton_and_sandwich_match_statsmodels_on_every_design(name):
    X, y, _ = simulate_design(name, n=3000, seed=1)
    w = np.random.default_rng(2).exponential(size=len(y)) + 0.1
    off = np.random.default_rng(3).normal(scale=0.3, size=len(y))
    fit = newton(X, y, weights=w, offset=off)
    ref = sm.GLM(y, X, family=sm.families.Binomial(), var_weights=w, offset=off).fit(cov_type="HC0")
    assert fit.converged
    np.testing.assert_allclose(fit.theta, ref.params, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(sandwich(X, y, fit.theta, weights=w, offset=off), ref.cov_params(), rtol=1e-6, atol=1e-12)
    S = loss_summaries(X, y, fit.theta, weights=w, offset=off)
    assert np.max(np.abs(S.grad)) < 1e-6 * len(y)


@pytest.mark.parametrize("name", DESIGNS)
def test_estimators_on_every_design(name):
    X, y, beta = simulate_design(name, n=10_000, seed=0)
    full = FullMLE().fit(X, y)
    for est in all_estimators(r=1000, r0=200)[:-1]:
        e = clone(est).fit(X, y)
        assert e.converged_, (name, e.result_.method)
        # within a generous multiple of the spec §6 scale (T3 and ueNormal have a large full-data error)
        assert np.sum((e.coef_ - full.coef_) ** 2) < 40 * max(np.trace(full.result_.cov), 0.01), (name, e.result_.method)


def test_probabilities_and_budget_across_modules():
    X, y, beta = simulate_design("EXP", n=20_000, seed=4)
    pcc = case_control_probs(y)
    assert abs(pcc.sum() - 1) < 1e-12 and abs(pcc[y == 1].sum() - 0.5) < 1e-12
    p = OSMAC(random_state=0).fit(X, y)
    s1 = mvc_scores(X, y, p.pilot_)
    s2 = mmse_scores(X, y, p.pilot_, np.cov(X.T))
    for s in (s1, s2):
        assert abs((s / s.sum()).sum() - 1) < 1e-12
        for r in (100, 1000, 15_000):
            assert abs(poisson_inclusion(s, r).sum() - r) < 1e-8 * r
    sizes = [PoissonSubsampling(r=800, r0=200, random_state=s).fit(X, y).n_sub_ for s in range(20)]
    assert abs(np.mean(sizes) - 800) < 30


def test_chunked_data_equals_in_memory():
    X, y, _ = simulate_design("T3", n=70_000, seed=5)
    parts = list(simulate_design_chunks("T3", 70_000, chunk=9_999, seed=5))
    assert np.array_equal(np.concatenate([p[0] for p in parts]), X)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), y)


def test_dwd_loss_in_estimators():
    X, y, beta = simulate_design("mzNormal", n=5000, seed=0)
    for est in (OSMAC(loss="dwd", random_state=0), UniformSubsampling(loss=DWD, random_state=0), OneStepNewton(loss="dwd", random_state=0)):
        e = est.fit(X, y)
        assert e.converged_ and np.all(np.isfinite(e.coef_))
        # DWD and logistic coefficients point the same way (DWD's scale differs)
        cos = e.coef_ @ beta / np.linalg.norm(e.coef_) / np.linalg.norm(beta)
        assert cos > 0.9
    assert clone(OSMAC(loss=DWD)).get_params()["loss"] == DWD


def test_onestep_is_the_zero_row_newton_limit(data):
    X, y, _ = data
    one = OneStepNewton(r0=200, random_state=3).fit(X, y)
    S = loss_summaries(X, y, one.pilot_)
    np.testing.assert_allclose(one.coef_, one.pilot_ - np.linalg.solve(S.hessian, S.grad), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(one.result_.cov, np.linalg.inv(S.hessian), rtol=1e-8, atol=1e-14)


def test_check_xy_accepts_lists_and_bools():
    X, y = check_Xy([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0]], [True, False, True])
    assert X.dtype == np.float64 and y.tolist() == [1.0, 0.0, 1.0]
    assert isinstance(UniformSubsampling(), SubsampleEstimator)


@pytest.mark.parametrize("est", all_estimators(), ids=IDS)
def test_rank_deficient_design(est, data):
    X, y, _ = data
    Xcol = np.column_stack([X[:, :6], 2 * X[:, 2] + X[:, 3]])
    if isinstance(est, FullMLE):
        with pytest.raises(ValueError, match=r"design is singular: rank 6 < 7 columns"):
            clone(est).fit(Xcol, y)
        return
    with pytest.warns(RuntimeWarning, match="not identified"):
        e = clone(est).fit(Xcol, y)
    assert e.converged_ is False and "rank 6 < 7" in e.result_.info["singular_sample"]
