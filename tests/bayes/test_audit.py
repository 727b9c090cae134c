"""calibration.bayes.audit: the design-based Δ and the agreement rule. No database."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.bayes.audit import AuditEstimate, Stratum, agree, audit_delta, stratum_estimate
from calibration.bayes.decision import HELD, audited_verdict, combine_verdicts


def _population(rng, n, p_pass, se, sp):
    y = rng.random(n) < p_pass
    f = np.where(y, rng.random(n) < se, rng.random(n) >= sp).astype(float)
    return y.astype(float), f


def _stratum(rng, y, f, k):
    idx = rng.choice(y.size, size=k, replace=False)  # uniform audit draws
    return Stratum(y=y[idx], f=f[idx], f_sum=f.sum(), f_sq_sum=(f**2).sum(), n_all=y.size)


def test_unbiased_and_covers_under_a_judge_that_flatters_the_candidate():
    """The judge passes the candidate's failures far more often (sp .55 vs .90): the model
    can be fooled by that; a uniform sample cannot."""
    rng = np.random.default_rng(0)
    w = np.array([0.7, 0.3])
    pops = {
        "inc": [_population(rng, 4000, p, 0.9, 0.9) for p in (0.80, 0.70)],
        "cand": [_population(rng, 4000, p, 0.9, 0.55) for p in (0.77, 0.66)],
    }
    truth = sum(
        wr * (pops["cand"][r][0].mean() - pops["inc"][r][0].mean()) for r, wr in enumerate(w)
    )
    est, cover = [], 0
    for _ in range(400):
        a = audit_delta(
            [_stratum(rng, *pops["cand"][r], 60) for r in range(2)],
            [_stratum(rng, *pops["inc"][r], 60) for r in range(2)],
            w,
        )
        est.append(a.mean)
        cover += a.lower <= truth <= a.upper
    assert np.mean(est) == pytest.approx(truth, abs=0.006)
    assert 0.91 <= cover / 400 <= 0.98


def test_an_informative_judge_narrows_the_stratum_and_a_useless_one_costs_little():
    rng = np.random.default_rng(1)
    y, f_good = _population(rng, 5000, 0.7, 0.95, 0.95)
    f_bad = rng.random(5000).round()
    idx = rng.choice(5000, 200, replace=False)

    def var(f):
        s = Stratum(y=y[idx], f=f[idx], f_sum=f.sum(), f_sq_sum=(f**2).sum(), n_all=5000)
        return stratum_estimate(s)[1]

    plain = y[idx].var(ddof=1) / 200
    assert var(f_good) < 0.5 * plain
    assert var(f_bad) < 1.1 * plain


def test_a_thin_region_pools_the_arm_and_too_few_grades_in_all_give_no_estimate():
    s_ok = Stratum(y=[1, 0, 1], f=[1, 0, 1], f_sum=5, f_sq_sum=5, n_all=8)
    s_thin = Stratum(y=[1], f=[1], f_sum=5, f_sq_sum=5, n_all=8)
    s_none = Stratum(y=[], f=[], f_sum=5, f_sq_sum=5, n_all=8)
    both = audit_delta([s_ok, s_ok], [s_ok, s_ok], [0.5, 0.5])
    assert both is not None and both.method == "stratified"
    pooled = audit_delta([s_ok, s_thin], [s_ok, s_ok], [0.5, 0.5])
    assert pooled is not None and pooled.method == "pooled"
    assert audit_delta([s_ok, s_thin], [s_ok, s_ok], [1.0, 0.0]).method == "stratified"
    # One grade in the whole arm: nothing to check a go with.
    assert audit_delta([s_thin, s_none], [s_ok, s_ok], [0.5, 0.5]) is None


def test_pooled_arms_stay_unbiased_and_cover_when_regions_differ_and_traffic_is_not_n():
    """A 200-label study's audit: 20 grades uniform over 2 arms × 3 regions, so a region is
    often thin. Regions differ by 20 points in pass rate, the judge flatters the candidate,
    and the imported sizes are not the traffic shares (equal imports, traffic .5/.3/.2): the
    per-response weights must restore the traffic mix. Measured (seed 3, 1,500 studies):
    66% pooled; among those, bias −1.8 points (s.e. 0.5) against an sd of 15.7, coverage
    92.3%. The bias is real: a region left without audit grades counts through its judge
    mean only, and its residual is taken to be the other regions' (audit.py)."""
    rng = np.random.default_rng(3)
    w = np.array([0.5, 0.3, 0.2])
    pops = {
        "inc": [_population(rng, 3000, p, 0.9, 0.85) for p in (0.90, 0.80, 0.70)],
        "cand": [_population(rng, 3000, p, 0.9, 0.50) for p in (0.88, 0.78, 0.68)],
    }
    truth = sum(
        wr * (pops["cand"][r][0].mean() - pops["inc"][r][0].mean()) for r, wr in enumerate(w)
    )
    errors, cover, runs = [], 0, 1500
    for _ in range(runs):
        # Uniform over all responses: each stratum's count is random, not fixed.
        k = rng.multinomial(20, [1 / 6] * 6)
        a = audit_delta(
            [_stratum(rng, *pops["cand"][r], k[r]) for r in range(3)],
            [_stratum(rng, *pops["inc"][r], k[3 + r]) for r in range(3)],
            w,
        )
        assert a is not None  # a go can be checked however the 20 grades fell
        if a.method != "pooled":
            continue
        errors.append(a.mean - truth)
        cover += a.lower <= truth <= a.upper
    assert len(errors) > 0.4 * runs
    assert abs(np.mean(errors)) < 0.02
    assert 0.90 <= cover / len(errors) <= 0.98


def test_agreement_within_joint_uncertainty_and_the_held_verdict():
    audit = AuditEstimate(mean=-0.05, se=0.02, lower=-0.089, upper=-0.011, n=100)
    # |0.00 − (−0.05)| = 0.05 vs 1.96·√(0.01² + 0.02²) = 0.0438: they disagree.
    assert not agree(0.0, 0.01, audit)
    assert agree(-0.02, 0.01, audit)
    assert audited_verdict("go", mean=0.0, sd=0.01, audit=audit) == (HELD, False)
    assert audited_verdict("go", mean=-0.02, sd=0.01, audit=audit) == ("go", True)
    assert audited_verdict("go", mean=0.0, sd=0.01, audit=None) == (HELD, None)
    assert audited_verdict("no-go", mean=0.0, sd=0.01, audit=audit)[0] == "no-go"
    assert combine_verdicts(["go", HELD], True) == HELD
    assert combine_verdicts(["go", HELD, "no-go"], True) == "no-go"
    assert combine_verdicts(["go", HELD, "undecided"], True) == "undecided"
