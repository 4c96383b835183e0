"""Property tests of agentlab.rl.rewards (UserRL reward shaping, spec §3.4 and §5 pitfalls 1, 2, 10, 11).

Random episodes (per-turn rewards in [0, 1] like UserRL's gyms, sometimes exactly 0, and random turn lengths) and
random groups check the invariants the formulas promise: the rescaled credits average to 1 over the non-zero-credit
tokens, Equalized credits are vanilla GRPO, group advantages are centred and shift-invariant, and the two
zero-credit rules differ only on episodes whose credits sum to 0.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlab.rl.rewards import (TRAJECTORY_SCORE_METHODS, TURN_CREDIT_METHODS, ShapingConfig, credit_sum_is_zero,
                                 exp_map, group_advantages, mean_abs_advantage_per_turn, reward_to_go,
                                 shape_group, shape_group_details, token_advantages, trajectory_score,
                                 turn_credits, zero_advantage_fraction)

PROPS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# rewards in [0, 1], with exact zeros common (most turns of a UserRL episode earn nothing)
reward = st.one_of(st.just(0.0), st.sampled_from([0.2, 0.5, 0.8, 1.0]), st.floats(0.0, 1.0, allow_nan=False))


@st.composite
def episode(draw, min_turns=1, max_turns=8):
    "(rewards, turn_lengths) of one episode; some turns may have no tokens."
    t = draw(st.integers(min_turns, max_turns))
    rewards = draw(st.lists(reward, min_size=t, max_size=t))
    lengths = draw(st.lists(st.integers(0, 12), min_size=t, max_size=t))
    return rewards, lengths


@st.composite
def group(draw, min_size=1, max_size=8):
    eps = draw(st.lists(episode(), min_size=min_size, max_size=max_size))
    return [e[0] for e in eps], [e[1] for e in eps]


gammas = st.floats(0.0, 1.0, allow_nan=False)
advantages = st.floats(-5.0, 5.0, allow_nan=False)


# ---------------------------------------------------------------- the worked example (spec §3.4), to 4 decimals
def test_worked_example():
    r = [0, 0.8, 0, 1.0]
    assert trajectory_score(r, "sum_mean") == pytest.approx(0.45, abs=1e-4)
    assert trajectory_score(r, "r2g", gamma=0.8) == pytest.approx(1.152, abs=1e-4)
    np.testing.assert_allclose(turn_credits(r, "r2g", gamma=0.8), [1.152, 1.44, 0.8, 1.0], atol=1e-4)
    np.testing.assert_allclose(turn_credits(r, "em"), [0.5, 0.9615, 0.5, 1.0], atol=1e-4)
    np.testing.assert_allclose(exp_map([0.2, 0.5]), [0.6906, 0.8655], atol=1e-4)


# ---------------------------------------------------------------- rescaling (pitfall 11)
@PROPS
@given(ep=episode(), method=st.sampled_from(TURN_CREDIT_METHODS), a=advantages, gamma=gammas)
def test_rescaled_mean_credit_is_one(ep, method, a, gamma):
    "Over the tokens with non-zero credit the token-weighted mean of A_tok is the episode advantage (mean credit 1)."
    rewards, lengths = ep
    c = turn_credits(rewards, method, gamma=gamma)
    tok = token_advantages(a, c, lengths)
    c_tok = np.repeat(c, lengths)
    assert tok.shape == (sum(lengths),)
    if credit_sum_is_zero(c, lengths):
        np.testing.assert_allclose(tok, a)                     # fallback: equal credits
    else:
        nz = c_tok != 0
        assert tok[nz].mean() == pytest.approx(a, rel=1e-9, abs=1e-9)
        assert np.all(tok[~nz] == 0)                          # zero-credit tokens stay at 0
        if method != "raw":                                   # non-negative credits: every token has the sign of A
            assert np.all(tok * a >= -1e-12)


@PROPS
@given(ep=episode(), a=advantages)
def test_equalized_is_vanilla_grpo(ep, a):
    "Equalized credits give every policy token the episode advantage, under both zero-credit rules."
    rewards, lengths = ep
    for zc in ("equalize", "zero"):
        tok = token_advantages(a, turn_credits(rewards, "equalized"), lengths, zero_credit=zc)
        if sum(lengths):
            np.testing.assert_allclose(tok, np.full(sum(lengths), a), rtol=1e-12, atol=1e-12)


@PROPS
@given(g=group(), gamma=gammas)
def test_equalized_group_matches_plain_grpo(g, gamma):
    "shape_group with Equalized credits = the GRPO advantage of each episode's score, broadcast over its tokens."
    rewards, lengths = g
    for score in TRAJECTORY_SCORE_METHODS:
        cfg = ShapingConfig("equalized", score, gamma=gamma)
        adv = group_advantages([trajectory_score(r, score, gamma=gamma) for r in rewards])
        for a, tok, tl in zip(adv, shape_group(rewards, lengths, cfg), lengths):
            np.testing.assert_allclose(tok, np.full(sum(tl), a), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- group advantages (pitfall 10)
@PROPS
@given(scores=st.lists(st.floats(-10, 10, allow_nan=False), min_size=2, max_size=16),
       shift=st.floats(-100, 100, allow_nan=False))
def test_group_advantages_centred_and_shift_invariant(scores, shift):
    a = group_advantages(scores)
    assert abs(a.sum()) <= 1e-6 * max(1.0, np.abs(a).sum())
    np.testing.assert_allclose(group_advantages(np.asarray(scores) + shift), a, atol=1e-5)
    s = np.asarray(scores)
    np.testing.assert_allclose(a, (s - s.mean()) / (s.std(ddof=1) + 1e-6), rtol=1e-12, atol=1e-12)


@PROPS
@given(x=st.floats(-10, 10, allow_nan=False), n=st.integers(2, 16))
def test_equal_scores_give_zero_advantage(x, n):
    np.testing.assert_array_equal(group_advantages([x] * n), np.zeros(n))


def test_group_of_one_uses_mean_0_std_1():
    np.testing.assert_allclose(group_advantages([0.6]), [0.6 / (1 + 1e-6)])


# ---------------------------------------------------------------- zero-credit rule (pitfall 2)
@PROPS
@given(ep=episode(), method=st.sampled_from(TURN_CREDIT_METHODS), a=advantages, gamma=gammas)
def test_zero_credit_modes_differ_only_when_credit_sum_is_zero(ep, method, a, gamma):
    rewards, lengths = ep
    c = turn_credits(rewards, method, gamma=gamma)
    eq = token_advantages(a, c, lengths, zero_credit="equalize")
    zero = token_advantages(a, c, lengths, zero_credit="zero")
    if credit_sum_is_zero(c, lengths):
        assert np.all(zero == 0)
        np.testing.assert_allclose(eq, a)
    else:
        np.testing.assert_array_equal(eq, zero)


@PROPS
@given(g=group(min_size=2), gamma=st.floats(0.05, 1.0))
def test_failures_pushed_down_unless_reference_r2g(g, gamma):
    "A failed episode (all rewards 0) in a group with a success gets A < 0 on every token, except R2G credits + reference rule."
    rewards, lengths = g
    rewards[0] = [0.0] * len(rewards[0])                      # one failure ...
    rewards[1] = list(rewards[1][:-1]) + [1.0]                # ... and one success
    if not sum(lengths[0]):
        lengths[0] = [1] * len(lengths[0])
    for tc in ("equalized", "r2g", "em"):
        for faithful in (False, True):
            tok = shape_group(rewards, lengths, ShapingConfig(tc, "sum", gamma=gamma, faithful_zero_credit=faithful))[0]
            if tc == "r2g" and faithful:
                assert np.all(tok == 0)
            else:
                assert np.all(tok < 0)


# ---------------------------------------------------------------- credits and scores
@PROPS
@given(rewards=st.lists(reward, min_size=1, max_size=12), gamma=gammas)
def test_r2g_recursion(rewards, gamma):
    c = reward_to_go(rewards, gamma)
    r = np.asarray(rewards)
    np.testing.assert_allclose(c[:-1], r[:-1] + gamma * c[1:], atol=1e-12)
    assert c[-1] == pytest.approx(r[-1])
    assert trajectory_score(rewards, "r2g", gamma=gamma) == pytest.approx(c[0])


@PROPS
@given(rewards=st.lists(reward, min_size=1, max_size=12), k=st.floats(0.1, 10))
def test_em_range_and_order(rewards, k):
    c = exp_map(rewards, k)
    assert np.all((c >= 0.5) & (c <= 1.0))
    order = np.argsort(rewards, kind="stable")
    assert np.all(np.diff(c[order]) >= 0)                     # monotone (rounding may tie)


@PROPS
@given(rewards=st.lists(reward, min_size=1, max_size=12))
def test_sum_vs_sum_mean(rewards):
    assert trajectory_score(rewards, "sum") == pytest.approx(sum(rewards))
    assert trajectory_score(rewards, "sum_mean") == round(float(np.sum(rewards)) / len(rewards), 4)
    assert ShapingConfig(trajectory_score="sum", faithful_sum=True).score_method == "sum_mean"


# ---------------------------------------------------------------- groups and statistics
@PROPS
@given(g=group(), tc=st.sampled_from(TURN_CREDIT_METHODS), ts=st.sampled_from(TRAJECTORY_SCORE_METHODS),
       gamma=gammas, faithful=st.booleans())
def test_shape_group_shapes_and_stats(g, tc, ts, gamma, faithful):
    rewards, lengths = g
    d = shape_group_details(rewards, lengths, ShapingConfig(tc, ts, gamma=gamma, faithful_zero_credit=faithful))
    assert [len(t) for t in d.token_advantages] == [sum(tl) for tl in lengths]
    assert all(np.all(np.isfinite(t)) for t in d.token_advantages)
    m = mean_abs_advantage_per_turn(d.token_advantages, lengths)
    assert m.shape == (max(len(tl) for tl in lengths),)
    assert np.all(np.isnan(m) | (m >= 0))
    assert zero_advantage_fraction([d.token_advantages]) == float(d.is_zero)
    if len(set(d.scores.tolist())) == 1 and len(rewards) > 1:  # equal scores: nothing to learn
        assert d.is_zero


@pytest.mark.parametrize("call, message", [
    (lambda: turn_credits([0, 1], "naive"), "valid: equalized, r2g, em, raw"),
    (lambda: trajectory_score([0, 1], "mean"), "valid: sum, sum_mean, r2g"),
    (lambda: turn_credits([0, float("nan")], "r2g"), "rewards[1] is nan"),
    (lambda: turn_credits([0, 1], "r2g", gamma=-0.1), "gamma must be finite and >= 0"),
    (lambda: token_advantages(1.0, [1, 1], [3]), "turn_lengths has 1 entries but credits has 2"),
    (lambda: token_advantages(1.0, [1], [3], zero_credit="skip"), "valid: equalize, zero"),
    (lambda: shape_group([[0, 1], [1]], [[1, 1], [1, 1]]), "episode 1: turn_lengths has 2 entries but credits has 1"),
    (lambda: shape_group([[1]], [[1], [1]]), "got 1 reward lists but 2 turn_lengths lists"),
    (lambda: ShapingConfig(k=0), "k must be finite and > 0"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match=None) as e:
        call()
    assert message in str(e.value)
